//! The pipeline's retry of a sink that refuses findings, on tokio's paused
//! clock: the schedule is asserted exactly, in no real time.

use super::*;
use crate::rules::RuleSet;
use crate::scan::{Allowlist, BoxFuture, Handled};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use tokio::time::Instant as TokioInstant;

/// Refuses the first `refusals` offers, recording when each came.
struct Refusing {
    refusals: AtomicUsize,
    offers: Mutex<Vec<TokioInstant>>,
}

impl FindingSink for Arc<Refusing> {
    fn submit(&self, _findings: Vec<Finding>) -> BoxFuture<'_, Result<Vec<Handled>, SinkError>> {
        Box::pin(async move {
            self.offers.lock().unwrap().push(TokioInstant::now());
            let left = self.refusals.load(Ordering::SeqCst);
            if left > 0 {
                self.refusals.store(left - 1, Ordering::SeqCst);
                return Err(SinkError::Transient("engine down".into()));
            }
            Ok(Vec::new())
        })
    }
}

fn shared(refusals: usize) -> (Arc<Refusing>, Shared<Arc<Refusing>>) {
    let sink = Arc::new(Refusing {
        refusals: AtomicUsize::new(refusals),
        offers: Mutex::new(Vec::new()),
    });
    let scanner = Scanner::new(&RuleSet::builtin().unwrap(), Allowlist::default()).unwrap();
    let shared = Shared::new(
        scanner,
        sink.clone(),
        Arc::new(Store::in_memory().unwrap()),
        Arc::new(Metrics::new()),
    );
    (sink, shared)
}

#[tokio::test(start_paused = true)]
async fn a_refusing_sink_is_retried_after_doubling_waits_capped_at_a_minute() {
    let (sink, shared) = shared(9);
    let (_keep, mut stop) = watch::channel(false);
    let start = TokioInstant::now();
    assert!(submit(&shared, Vec::new(), &mut stop).await);
    let gaps: Vec<u64> = sink
        .offers
        .lock()
        .unwrap()
        .windows(2)
        .map(|w| (w[1] - w[0]).as_millis() as u64)
        .collect();
    assert_eq!(
        gaps,
        [500, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000]
    );
    // The health entry says the engine failed while it refused, and is
    // running again once it took them.
    assert!(shared.metrics.unhealthy().is_empty());
    assert_eq!(start.elapsed(), Duration::from_millis(183_500));
}

#[tokio::test(start_paused = true)]
async fn a_stop_during_the_wait_gives_up_at_once_and_persists_nothing() {
    let (sink, shared) = shared(usize::MAX);
    let (tx, mut stop) = watch::channel(false);
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let _ = tx.send(true);
    });
    let start = TokioInstant::now();
    assert!(!submit(&shared, Vec::new(), &mut stop).await);
    // Offered at 0 and 500 ms; stopped at 700 ms, inside the 1 s wait.
    assert_eq!(start.elapsed(), Duration::from_millis(700));
    assert_eq!(sink.offers.lock().unwrap().len(), 2);
    assert!(shared
        .metrics
        .unhealthy()
        .iter()
        .any(|(n, _)| n == ENGINE_SOURCE));
    stopper.await.unwrap();
}
