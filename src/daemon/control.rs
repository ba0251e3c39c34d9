//! The daemon's edges, handed to [`super::run`] by its caller: the sockets
//! ([`Listeners`]) and the stop and reload requests ([`Control`]). The
//! binary binds what the config names and turns signals into these; a test
//! binds port 0 and fires the trigger itself.

use super::{DaemonError, Loaded};
use crate::shutdown::{Shutdown, Trigger};
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// The sockets the daemon serves, bound by its caller: the binary binds
/// what the config names, a test binds port 0 and reads the port from here.
#[derive(Debug, Default)]
pub struct Listeners {
    /// `http.listen`: `/healthz`, `/readyz`, `/metrics`, and the webhook
    /// when it has no socket of its own.
    pub http: Option<TcpListener>,
    /// `github.webhook.listen`, when it differs from `http.listen`.
    pub webhook: Option<TcpListener>,
}

impl Listeners {
    /// Binds `http.listen` and, when the webhook listens elsewhere,
    /// `github.webhook.listen`. A busy port is an error naming the setting.
    pub async fn bind(loaded: &Loaded) -> Result<Listeners, DaemonError> {
        let http = match &loaded.settings.http_listen {
            Some(listen) => Some(bind(listen).await.map_err(|source| DaemonError::Listen {
                listen: listen.clone(),
                source,
            })?),
            None => None,
        };
        let webhook = match webhook_listen(&loaded.config) {
            Some(listen) if loaded.settings.http_listen.as_deref() != Some(listen) => {
                let listener =
                    bind(listen)
                        .await
                        .map_err(|source| crate::github::WebhookError::Listen {
                            listen: listen.to_string(),
                            source,
                        })?;
                Some(listener)
            }
            _ => None,
        };
        Ok(Listeners { http, webhook })
    }

    /// Where `/healthz` answers.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref()?.local_addr().ok()
    }

    /// Where the webhook answers when it has a socket of its own.
    pub fn webhook_addr(&self) -> Option<SocketAddr> {
        self.webhook.as_ref()?.local_addr().ok()
    }
}

async fn bind(listen: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(listen).await
}

fn webhook_listen(config: &crate::config::Config) -> Option<&str> {
    let hook = config.github.as_ref()?.webhook.as_ref()?;
    Some(hook.listen.as_str())
}

/// What the caller of [`run`] steers it with.
#[derive(Debug)]
pub struct Control {
    /// Fired once: stop (SIGTERM/SIGINT in the binary).
    pub shutdown: Shutdown,
    /// Each message asks for a reload of `config_path` (SIGHUP in the
    /// binary). A request that arrives during a reload is served after it;
    /// a closed channel means no more reloads, not a stop.
    pub reload: mpsc::Receiver<()>,
}

impl Control {
    /// A control with its trigger and reload sender, for callers that run
    /// the daemon in-process (tests, embedders).
    pub fn channel() -> (Trigger, mpsc::Sender<()>, Control) {
        let (trigger, shutdown) = crate::shutdown::channel();
        let (reload_tx, reload) = mpsc::channel(1);
        (trigger, reload_tx, Control { shutdown, reload })
    }
}
