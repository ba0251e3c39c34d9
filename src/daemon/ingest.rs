//! Logs shipped to the daemon (`watch.syslog`, `watch.http_ingest`): the
//! listeners are bound at start, beside `http.listen` (a busy port stops
//! the start with an error naming the listener), and each feeds the
//! pipeline through its own bounded queue and lane. Like the sockets, they
//! are not rebound by a reload (a change is logged: restart).
//!
//! Messages still in a listener's queue when the daemon stops are not
//! scanned: unlike a log file, a socket has no offset to resume from. The
//! queue is small (`source::syslog::QUEUE_BYTES`) and senders that need
//! delivery across restarts (rsyslog's action queues, Vector's buffers)
//! retry what the closed connection did not take.

use super::pipeline::{Payload, Pipeline, Work};
use super::DaemonError;
use crate::metrics::{Metrics, SourceState};
use crate::scan::Chunk;
use crate::server::HttpGuard;
use crate::settings::Settings;
use crate::shutdown::Shutdown;
use crate::source::http_ingest::Endpoint;
use crate::source::syslog::{Listener, Message, Queue};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// The running listeners and the HTTP route to merge into the server.
pub struct IngestService {
    /// `watch.http_ingest`'s route, for `http.listen`'s server.
    pub router: Option<axum::Router>,
    tasks: Vec<JoinHandle<()>>,
}

/// The health and metrics names of what `settings` ships in.
pub fn names(settings: &Settings) -> Vec<String> {
    let mut out: Vec<String> = settings.syslog.iter().map(|s| s.name()).collect();
    out.extend(settings.http_ingest.iter().map(|h| h.name()));
    out
}

impl IngestService {
    pub async fn start(
        settings: &Settings,
        pipeline: &Pipeline,
        metrics: &Arc<Metrics>,
        http: &HttpGuard,
        shutdown: &Shutdown,
    ) -> Result<IngestService, DaemonError> {
        let mut tasks = Vec::new();
        for (i, s) in settings.syslog.iter().enumerate() {
            let listener = Listener::bind(s, i).await?;
            let name = s.name();
            tracing::info!(
                listener = %name,
                addr = %listener.local,
                "syslog {} listener on {}",
                s.protocol.as_str(),
                listener.local
            );
            let (queue, rx) = Queue::new(metrics.listener(&name));
            tasks.push(tokio::spawn(forward(
                rx,
                pipeline.sender(),
                Arc::from(name.as_str()),
            )));
            tasks.push(tokio::spawn(listener.run(queue, shutdown.clone())));
            metrics.set_source(&name, SourceState::Running);
        }
        let mut router = None;
        if let Some(h) = &settings.http_ingest {
            // `config check` says the same before the start.
            let token = std::env::var(&h.token_env).map_err(|_| DaemonError::Setting {
                at: "watch.http_ingest.token_env".into(),
                message: format!(
                    "environment variable {} is not set; set it to the bearer token the senders use",
                    h.token_env
                ),
            })?;
            if token.chars().count() < crate::config::UI_TOKEN_MIN_CHARS {
                return Err(DaemonError::Setting {
                    at: "watch.http_ingest.token_env".into(),
                    message: format!(
                        "environment variable {} holds fewer than {} characters; set it to a random token, e.g. `openssl rand -hex 32`",
                        h.token_env,
                        crate::config::UI_TOKEN_MIN_CHARS
                    ),
                });
            }
            let name = h.name();
            let (queue, rx) = Queue::new(metrics.listener(&name));
            tasks.push(tokio::spawn(forward(
                rx,
                pipeline.sender(),
                Arc::from(name.as_str()),
            )));
            router = Some(Endpoint::new(h, &token, queue, http.clone()).router(&h.path));
            tracing::info!(listener = %name, "HTTP ingest on {} of http.listen", h.path);
            metrics.set_source(&name, SourceState::Running);
        }
        Ok(IngestService { router, tasks })
    }

    /// Waits (briefly) for the listeners to close once `shutdown` fired;
    /// forwarders end with the pipeline.
    pub async fn stop(self, limit: std::time::Duration) {
        for t in self.tasks {
            if tokio::time::timeout(limit, t).await.is_err() {
                tracing::debug!("an ingest task did not stop in time");
            }
        }
    }
}

/// Hands each queued message to the pipeline as one chunk in the
/// listener's lane (line 1 of its own chunk: a location is the sender,
/// not a position in a stream), waiting while the pipeline is full.
async fn forward(mut rx: mpsc::UnboundedReceiver<Message>, tx: mpsc::Sender<Work>, name: Arc<str>) {
    while let Some(m) = rx.recv().await {
        let (origin, mut data, held) = m.take();
        // One line: counted as one in `keysentry_scanned_lines_total`.
        data.push(b'\n');
        let work = Work {
            source: name.clone(),
            lane: name.clone(),
            payload: Payload::Chunk(Chunk {
                origin,
                data,
                first_line: 1,
                base_offset: 0,
            }),
            then: None,
            done: None,
        };
        if tx.send(work).await.is_err() {
            return;
        }
        drop(held);
    }
}
