//! The daemon's edges, handed to [`super::run`] by its caller: the sockets
//! ([`Listeners`]) and the stop and reload requests ([`Control`]). The
//! binary binds what the config names and turns signals into these; a test
//! binds port 0 and fires the trigger itself.

use super::{DaemonError, Loaded};
use crate::shutdown::{Shutdown, Trigger};
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

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

/// What [`run`](super::run) is steered with: its end of the channels
/// whose other end is a [`Remote`].
#[derive(Debug)]
pub struct Control {
    /// Fired once: stop (SIGTERM/SIGINT in the binary).
    pub shutdown: Shutdown,
    /// Each message asks for a reload of `config_path` (SIGHUP in the
    /// binary). A request that arrives during a reload is served after it;
    /// a closed channel means no more reloads, not a stop.
    pub reload: mpsc::Receiver<()>,
    /// Counts the times the daemon became ready: 1 once the sources run
    /// (what systemd hears as `READY=1`), one more after each reload once it
    /// is done, applied or refused.
    pub ready: watch::Sender<u64>,
}

/// The caller's end: stop, reload, and see when the daemon is ready.
#[derive(Debug)]
pub struct Remote {
    pub trigger: Trigger,
    pub reload: mpsc::Sender<()>,
    /// See [`Control::ready`].
    pub ready: watch::Receiver<u64>,
}

impl Control {
    /// A control and the remote that steers it.
    pub fn channel() -> (Remote, Control) {
        let (trigger, shutdown) = crate::shutdown::channel();
        let (reload_tx, reload) = mpsc::channel(1);
        let (ready_tx, ready) = watch::channel(0);
        let remote = Remote {
            trigger,
            reload: reload_tx,
            ready,
        };
        let control = Control {
            shutdown,
            reload,
            ready: ready_tx,
        };
        (remote, control)
    }
}

impl Remote {
    /// Waits until the daemon is ready; `false` if it ended first.
    pub async fn ready(&mut self) -> bool {
        self.ready.wait_for(|n| *n > 0).await.is_ok()
    }

    /// Asks for a reload and waits until it is done (applied or refused);
    /// `false` if the daemon ended first.
    pub async fn reload(&mut self) -> bool {
        let before = *self.ready.borrow_and_update();
        if self.reload.send(()).await.is_err() {
            return false;
        }
        self.ready.wait_for(|n| *n > before).await.is_ok()
    }
}
