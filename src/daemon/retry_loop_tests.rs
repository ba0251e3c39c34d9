//! The daemon's poll of pending incidents, on tokio's paused clock: one
//! `retry_pending` at start and then one every `RETRY_EVERY`, none after
//! the stop — asserted exactly, in no real time.

use super::*;
use crate::rules::RuleSet;
use crate::scan::{Allowlist, BoxFuture, Handled, SinkError};
use crate::scan::{Finding, Scanner};
use std::sync::Mutex;
use tokio::time::Instant as TokioInstant;

/// Records when it was asked to retry.
#[derive(Default)]
struct Polled(Mutex<Vec<TokioInstant>>);

impl FindingSink for Arc<Polled> {
    fn submit(&self, _: Vec<Finding>) -> BoxFuture<'_, Result<Vec<Handled>, SinkError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    fn retry_pending(&self) -> BoxFuture<'_, ()> {
        self.0.lock().unwrap().push(TokioInstant::now());
        Box::pin(async {})
    }
}

#[tokio::test(start_paused = true)]
async fn pending_incidents_are_polled_every_minute_until_the_stop() {
    let polled = Arc::new(Polled::default());
    let scanner = Scanner::new(&RuleSet::builtin().unwrap(), Allowlist::default()).unwrap();
    let shared = Arc::new(Shared::new(
        scanner,
        polled.clone(),
        Arc::new(Store::in_memory().unwrap()),
        Arc::new(Metrics::new()),
    ));
    let (trigger, shutdown) = crate::shutdown::channel();
    let start = TokioInstant::now();
    let task = tokio::spawn(retry_loop(
        shared,
        shutdown,
        Default::default(),
        RETRY_EVERY,
    ));
    tokio::time::sleep(RETRY_EVERY * 3 + Duration::from_secs(1)).await;
    trigger.fire();
    task.await.unwrap();
    tokio::time::sleep(RETRY_EVERY * 2).await;
    let at: Vec<Duration> = polled
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|t| *t - start)
        .collect();
    assert_eq!(
        at,
        [0, 1, 2, 3].map(|n| RETRY_EVERY * n),
        "one poll at start, then one a minute, none after the stop"
    );
}
