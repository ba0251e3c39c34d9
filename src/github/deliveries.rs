//! The durable delivery queue and its worker.
//!
//! The router stores a delivery's job before answering 202; the worker
//! claims due deliveries (at most `concurrency` at once), runs them, and
//! marks each done, failed (it can never succeed), or pending again with a
//! time to retry (rate limit, GitHub or engine outage). Nothing is held only
//! in memory: a restart picks up every pending delivery where the store says.

use super::job::{now_ms, Job};
use super::processor::{ProcessError, Processor};
use crate::scan::SinkError;
use crate::store::webhook::{DeliveryStore, DueDelivery, Enqueued, WebhookStoreError};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// Retries of transient failures back off up to this.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// After shutdown is signalled, running deliveries get this long to finish;
/// the rest stay pending for the next start.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// With nothing due, the worker still looks at the store this often.
const IDLE_POLL: Duration = Duration::from_secs(30);

/// The store plus a doorbell: enqueueing wakes the worker at once.
#[derive(Clone)]
pub struct DeliveryQueue {
    store: Arc<DeliveryStore>,
    wake: Arc<Notify>,
}

impl DeliveryQueue {
    pub fn new(store: Arc<DeliveryStore>) -> DeliveryQueue {
        DeliveryQueue {
            store,
            wake: Arc::new(Notify::new()),
        }
    }

    pub fn store(&self) -> &Arc<DeliveryStore> {
        &self.store
    }

    /// Stores the delivery (durably, before returning) unless its id is known.
    pub async fn enqueue(
        &self,
        id: String,
        event: &'static str,
        job: &Job,
    ) -> Result<Enqueued, WebhookStoreError> {
        // A job is plain strings and numbers: serialising cannot fail.
        let json = serde_json::to_string(job).unwrap_or_default();
        let r = self
            .blocking(move |s| s.insert(&id, event, &json, now_ms()))
            .await?;
        if r == Enqueued::New {
            self.wake.notify_one();
        }
        Ok(r)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&DeliveryStore) -> Result<T, WebhookStoreError> + Send + 'static,
    ) -> Result<T, WebhookStoreError> {
        let store = self.store.clone();
        let path = store.path().display().to_string();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| WebhookStoreError::Task {
                path,
                message: e.to_string(),
            })?
    }
}

/// Runs stored deliveries. One worker per store.
pub struct Worker {
    queue: DeliveryQueue,
    processor: Arc<Processor>,
    concurrency: usize,
    /// Called on every turn of the loop (at least every [`IDLE_POLL`]), so
    /// the daemon's health check sees the queue is alive.
    heartbeat: Option<Heartbeat>,
}

/// Tells the health check the delivery queue made a turn.
pub type Heartbeat = Arc<dyn Fn() + Send + Sync>;

/// How long the queue may go without a turn before it is called stuck.
pub const STUCK_AFTER: Duration = Duration::from_secs(3 * IDLE_POLL.as_secs());

type Outcome = (String, u32, Result<(), ProcessError>);

impl Worker {
    pub fn new(queue: DeliveryQueue, processor: Arc<Processor>, concurrency: usize) -> Worker {
        Worker {
            queue,
            processor,
            concurrency: concurrency.max(1),
            heartbeat: None,
        }
    }

    pub fn with_heartbeat(mut self, beat: Heartbeat) -> Worker {
        self.heartbeat = Some(beat);
        self
    }

    /// Processes deliveries until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut tasks: JoinSet<Outcome> = JoinSet::new();
        // Task id → delivery id, to release a delivery whose task panicked.
        let mut ids: HashMap<tokio::task::Id, String> = HashMap::new();
        let mut running: HashSet<String> = HashSet::new();
        loop {
            if let Some(beat) = &self.heartbeat {
                beat();
            }
            let free = self.concurrency.saturating_sub(tasks.len());
            let mut wait = IDLE_POLL;
            if free > 0 {
                match self.claim(free, &running).await {
                    Ok((due, next)) => {
                        for d in due {
                            running.insert(d.id.clone());
                            let handle = tasks.spawn(run_one(self.processor.clone(), d.clone()));
                            ids.insert(handle.id(), d.id);
                        }
                        if let Some(next) = next {
                            wait = Duration::from_millis((next - now_ms()).max(0) as u64)
                                .min(IDLE_POLL);
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read pending webhook deliveries");
                        wait = Duration::from_secs(1);
                    }
                }
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.queue.wake.notified() => {}
                Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    let (task, outcome) = match done {
                        Ok((task, outcome)) => (task, outcome),
                        Err(e) => {
                            let id = ids.get(&e.id()).cloned().unwrap_or_default();
                            let err = ProcessError::Sink(SinkError::Transient(format!("processing panicked: {e}")));
                            (e.id(), (id, 0, Err(err)))
                        }
                    };
                    ids.remove(&task);
                    running.remove(&outcome.0);
                    self.record(outcome).await;
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
        self.drain(tasks).await;
    }

    /// Due deliveries to start, and when the next not-yet-due one is due.
    async fn claim(
        &self,
        free: usize,
        running: &HashSet<String>,
    ) -> Result<(Vec<DueDelivery>, Option<i64>), WebhookStoreError> {
        let running = running.clone();
        self.queue
            .blocking(move |s| {
                let now = now_ms();
                Ok((s.due(now, free, &running)?, s.next_due_after(now)?))
            })
            .await
    }

    async fn record(&self, (id, attempts, result): Outcome) {
        if id.is_empty() {
            return;
        }
        let now = now_ms();
        let write = match result {
            Ok(()) => {
                tracing::debug!(delivery = %id, "webhook delivery processed");
                let id = id.clone();
                self.queue.blocking(move |s| s.mark_done(&id, now)).await
            }
            Err(e) if e.is_transient() => {
                let wait = e.retry_after().unwrap_or_else(|| backoff(attempts));
                let reason = e.to_string();
                tracing::warn!(delivery = %id, error = %reason, retry_in_ms = wait.as_millis() as u64, "webhook delivery will be retried");
                let at = now + wait.as_millis() as i64;
                let id = id.clone();
                self.queue
                    .blocking(move |s| s.reschedule(&id, at, &reason))
                    .await
            }
            Err(e) => {
                let reason = e.to_string();
                tracing::error!(delivery = %id, error = %reason, "webhook delivery failed; it is kept in the store");
                let id = id.clone();
                self.queue
                    .blocking(move |s| s.mark_failed(&id, now, &reason))
                    .await
            }
        };
        if let Err(e) = write {
            // The delivery stays pending and runs again; the sink is
            // idempotent, so that repeats work, not remediation.
            tracing::error!(delivery = %id, error = %e, "cannot record a webhook delivery's outcome");
        }
    }

    async fn drain(&self, mut tasks: JoinSet<Outcome>) {
        let deadline = tokio::time::sleep(SHUTDOWN_GRACE);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => break,
                next = tasks.join_next() => match next {
                    Some(Ok(outcome)) => self.record(outcome).await,
                    Some(Err(_)) => {}
                    None => return,
                },
            }
        }
        tasks.abort_all();
    }
}

async fn run_one(processor: Arc<Processor>, d: DueDelivery) -> Outcome {
    let result = match serde_json::from_str::<Job>(&d.job) {
        Ok(job) => processor.run(&d.id, &job).await,
        Err(e) => Err(ProcessError::BadJob(e.to_string())),
    };
    (d.id, d.attempts, result)
}

/// 1 s, 2 s, 4 s ... up to five minutes.
fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.min(9)).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(40), MAX_BACKOFF);
    }
}
