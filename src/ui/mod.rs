//! The incident dashboard, served by the daemon under `/ui` when the config
//! has `http.ui.token_env` (without it no `/ui` route exists at all).
//!
//! Server-rendered HTML that reads with JavaScript off, and a JSON API under
//! `/ui/api/` for the same views; both read through the store's views
//! ([`crate::store::IncidentFilter`], [`Store::incident_view`]), as
//! `keysentry incidents` does. Sign-in is the token once (a session cookie
//! after) or `Authorization: Bearer` on every request; every form carries a
//! per-session CSRF token; every answer carries a strict CSP. Pages and
//! JSON hold fingerprints and redacted forms only; a key pasted for a hand
//! over goes to the engine and nowhere else.
//!
//! [`router`] builds the routes without a socket, so tests call them with
//! `oneshot`.

mod actions;
mod api;
mod auth;
mod html;
mod pages;
mod read;
mod stats;
#[cfg(test)]
mod tests;

use crate::config::{Config, UI_TOKEN_MIN_CHARS};
use crate::remediate::{IncidentOutcome, RemediateError};
use crate::scan::{BoxFuture, Scanner, Secret};
use crate::server::AppState;
use crate::store::Store;
use axum::extract::Request;
use axum::http::{header, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use std::sync::Arc;

/// Incidents a list page (and an API page) holds.
pub(crate) const PAGE_SIZE: usize = 100;

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Why the dashboard cannot start.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    #[error("environment variable {name} (http.ui.token_env) is unset or empty; set it to a random token of at least {min} characters (e.g. `openssl rand -hex 32`), or remove http.ui")]
    TokenUnset { name: String, min: usize },
    #[error("environment variable {name} (http.ui.token_env) holds {len} characters; the dashboard token needs at least {min}: set a random one (e.g. `openssl rand -hex 32`)")]
    TokenShort {
        name: String,
        len: usize,
        min: usize,
    },
}

/// The dashboard's settings, read once at start.
pub struct UiSettings {
    token: Secret,
    /// `Secure` on the session cookie (`http.ui.secure_cookie`).
    pub secure_cookie: bool,
    /// This daemon's name, for the `node` filter (one node per store today).
    pub node: String,
    /// Where commit links point: the GitHub web host of `github.api_url`.
    pub github_web: String,
}

impl UiSettings {
    /// The settings of `config`'s `http.ui`, `None` when it has none. The
    /// token is read from the environment here.
    pub fn from_config(config: &Config) -> Result<Option<UiSettings>, UiError> {
        let Some(ui) = config.http.as_ref().and_then(|h| h.ui.as_ref()) else {
            return Ok(None);
        };
        let token = std::env::var(&ui.token_env)
            .ok()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| UiError::TokenUnset {
                name: ui.token_env.clone(),
                min: UI_TOKEN_MIN_CHARS,
            })?;
        let len = token.chars().count();
        if len < UI_TOKEN_MIN_CHARS {
            return Err(UiError::TokenShort {
                name: ui.token_env.clone(),
                len,
                min: UI_TOKEN_MIN_CHARS,
            });
        }
        let api = config.github.as_ref().and_then(|g| g.api_url.as_deref());
        Ok(Some(UiSettings {
            token: Secret::new(token),
            secure_cookie: ui.secure_cookie,
            node: config
                .node
                .clone()
                .unwrap_or_else(crate::store::default_node),
            github_web: github_web(api),
        }))
    }

    /// Settings for tests, which hold the token already.
    #[cfg(test)]
    pub fn new(token: &str) -> UiSettings {
        UiSettings {
            token: Secret::new(token),
            secure_cookie: false,
            node: "local".into(),
            github_web: github_web(None),
        }
    }
}

/// `https://api.github.com` → `https://github.com`; a GitHub Enterprise
/// `https://ghe.corp/api/v3` → `https://ghe.corp`.
fn github_web(api_url: Option<&str>) -> String {
    let api = api_url
        .unwrap_or("https://api.github.com")
        .trim_end_matches('/');
    if let Some(host) = api.strip_prefix("https://api.") {
        return format!("https://{host}");
    }
    api.strip_suffix("/api/v3").unwrap_or(api).to_string()
}

/// Hands a new key to the current engine (`Engine::hand_over_key`).
pub type HandOver = Arc<
    dyn Fn(i64, Secret) -> BoxFuture<'static, Result<IncidentOutcome, RemediateError>>
        + Send
        + Sync,
>;

/// What the dashboard asks of the daemon beyond the store.
#[derive(Clone)]
pub struct Hooks {
    /// The scanner in use: a note that holds a key is refused, as `incidents
    /// resolve` refuses one.
    pub scanner: Arc<dyn Fn() -> Arc<Scanner> + Send + Sync>,
    pub hand_over: HandOver,
    /// Wakes the daemon's retry loop, so an incident made due is taken up
    /// now rather than at the next tick.
    pub wake: Arc<dyn Fn() + Send + Sync>,
}

/// What the handlers read.
#[derive(Clone)]
pub struct UiState(Arc<Inner>);

struct Inner {
    settings: UiSettings,
    store: Arc<Store>,
    /// `/healthz` and `/metrics`' state: the sources page shows the same.
    app: AppState,
    hooks: Hooks,
    sessions: auth::Sessions,
}

impl UiState {
    pub fn new(settings: UiSettings, store: Arc<Store>, app: AppState, hooks: Hooks) -> UiState {
        UiState(Arc::new(Inner {
            settings,
            store,
            app,
            hooks,
            sessions: auth::Sessions::default(),
        }))
    }
}

/// The `/ui` routes, to merge into the daemon's router.
pub fn router(state: UiState) -> Router {
    Router::new()
        .route("/ui", get(pages::to_list))
        .route("/ui/", get(pages::list))
        .route("/ui/login", get(auth::login_page).post(auth::login))
        .route("/ui/logout", post(auth::logout))
        .route("/ui/incidents/{id}", get(pages::incident))
        .route("/ui/incidents/{id}/{action}", post(actions::form_action))
        .route("/ui/sources", get(pages::sources))
        .route("/ui/stats", get(stats::stats))
        .route("/ui/static/{file}", get(pages::asset))
        .route("/ui/api/incidents", get(api::incidents))
        .route("/ui/api/incidents/{id}", get(api::incident))
        .route("/ui/api/incidents/{id}/{action}", post(actions::api_action))
        .route("/ui/api/sources", get(api::sources))
        .route("/ui/api/stats", get(api::stats))
        .route("/ui/{*rest}", get(pages::not_found).post(pages::not_found))
        .layer(axum::middleware::from_fn(headers))
        .with_state(state)
}

/// The headers every `/ui` answer carries, whatever made it (a handler, an
/// extractor's rejection, a 404).
async fn headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    resp
}

/// Runs blocking store work off the runtime's worker threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}
