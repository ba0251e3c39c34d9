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
        let deadline = tokio::time::Instant::now() + limit;
        for t in self.tasks {
            if tokio::time::timeout_at(deadline, t).await.is_err() {
                tracing::debug!("an ingest task did not stop in time");
            }
        }
    }
}

/// Hands queued messages to the pipeline in the listener's lane, waiting
/// while it is full. Consecutive messages from the same sender go as one
/// chunk, one line each, up to [`BATCH_BYTES`]: the scanner's cost per
/// chunk made one chunk per message ten times slower (bench/syslog.sh).
/// A finding's line is the message's number on its listener since the
/// daemon started (the first message is line 1), so it is a real position
/// in what the listener received.
async fn forward(mut rx: mpsc::UnboundedReceiver<Message>, tx: mpsc::Sender<Work>, name: Arc<str>) {
    let mut seq: u64 = 0;
    let mut next: Option<Message> = None;
    loop {
        let first = match next.take() {
            Some(m) => m,
            None => match rx.recv().await {
                Some(m) => m,
                None => return,
            },
        };
        let (origin, mut data, held) = first.take();
        data.push(b'\n');
        let mut holds = vec![held];
        while data.len() < BATCH_BYTES {
            match rx.try_recv() {
                Ok(m) if Arc::ptr_eq(&m.origin, &origin) || m.origin == origin => {
                    let (_, line, held) = m.take();
                    data.extend_from_slice(&line);
                    data.push(b'\n');
                    holds.push(held);
                }
                Ok(m) => {
                    next = Some(m);
                    break;
                }
                Err(_) => break,
            }
        }
        let first_line = seq + 1;
        seq += holds.len() as u64;
        let work = Work {
            source: name.clone(),
            lane: name.clone(),
            payload: Payload::Chunk(Chunk {
                origin,
                data,
                first_line,
                base_offset: 0,
            }),
            then: None,
            done: None,
        };
        if tx.send(work).await.is_err() {
            return;
        }
        // The queue's share is given back once the pipeline has the lines.
        drop(holds);
    }
}

/// The largest chunk handed on (a message may take it a little over).
const BATCH_BYTES: usize = 256 << 10;
