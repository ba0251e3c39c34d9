//! The dashboard ([`crate::ui`]) wired to the running daemon: the store it
//! shares, the current scanner and engine (a reload replaces them), and the
//! retry loop's wake-up.

use super::{DaemonError, Shared, Sink};
use crate::config::Config;
use crate::server::AppState;
use crate::ui::{self, Hooks, UiSettings, UiState};
use axum::Router;
use std::sync::Arc;
use tokio::sync::Notify;

/// The `/ui` routes when the config has `http.ui`; `None` without it. An
/// unset or short token stops the start: a dashboard nobody can sign in to
/// safely is a mistake to report, not to serve.
pub(super) fn router(
    config: &Config,
    shared: &Arc<Shared<Sink>>,
    app: AppState,
    wake: Arc<Notify>,
) -> Result<Option<Router>, DaemonError> {
    let settings = match UiSettings::from_config(config) {
        Ok(Some(s)) => s,
        Ok(None) => return Ok(None),
        Err(e) => {
            return Err(DaemonError::Setting {
                at: "http.ui.token_env".into(),
                message: e.to_string(),
            })
        }
    };
    let (scanner, engine) = (shared.clone(), shared.clone());
    let hooks = Hooks {
        scanner: Arc::new(move || scanner.scanner()),
        hand_over: Arc::new(move |id, key| {
            let sink = engine.sink();
            Box::pin(async move { sink.0.hand_over_key(id, key).await })
        }),
        wake: Arc::new(move || wake.notify_one()),
    };
    let state = UiState::new(settings, shared.store.clone(), app, hooks);
    Ok(Some(ui::router(state)))
}
