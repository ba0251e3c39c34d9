//! The one pipeline every daemon source feeds:
//!
//! ```text
//! sources ──Work──▶ scan stage ──Scanned──▶ sink stage ──▶ FindingSink (engine)
//!  (bounded)         (rayon, off the         (in order)  └─▶ store: offsets, cursors
//!                     async runtime)
//! ```
//!
//! Both channels are bounded, so a slow engine slows the scanner, which
//! slows the readers: memory never grows with the backlog. Work carries the
//! [`DaemonWrite`] that records its progress (a log offset, a repository
//! cursor); the sink stage applies it only after the findings from that work
//! were accepted by the sink, and in the order the work was sent. That is
//! what makes a restart neither miss nor re-report anything.
//!
//! The sink stage is fair between lanes (one log file, one repository; see
//! [`lanes`]): a flood of findings in one file does not hold up a key found
//! in another.

mod lanes;
mod output;

pub use output::ChannelOutput;

use crate::metrics::{Metrics, SourceState};
use crate::scan::driver::FirstSeen;
use crate::scan::{Chunk, Finding, FindingSink, Origin, Scanner, SinkError};
use crate::store::{DaemonWrite, Store};
use lanes::LaneGate;
use rayon::prelude::*;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

/// Work items waiting for the scanner. Each holds at most one chunk of at
/// most `MAX_PIECE` (1 MiB), so this bounds queued data to 16 MiB.
const QUEUE: usize = 16;
/// Scanned batches waiting for the sink stage.
const SCANNED_QUEUE: usize = 2;
/// How long a source waits on a full pipeline before saying it is alive.
const ALIVE_EVERY: Duration = Duration::from_secs(1);
/// Work items scanned together (in parallel) at most.
const MAX_BATCH: usize = 64;
const MAX_BATCH_BYTES: usize = 8 << 20;
/// Longest wait between two attempts to hand findings to a failing sink.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// The health entry for the sink.
pub const ENGINE_SOURCE: &str = "remediation";

pub enum Payload {
    Chunk(Chunk),
    /// Progress only (or a flush marker).
    Nothing,
}

pub struct Work {
    /// `log:<glob>` or `repo:<path>`: the label in metrics.
    pub source: Arc<str>,
    /// What is kept in order and served fairly against the rest: one log
    /// file (its path when first followed), one repository.
    pub lane: Arc<str>,
    pub payload: Payload,
    /// Applied once the payload's findings are with the sink.
    pub then: Option<DaemonWrite>,
    /// Answered once everything sent before it has been handled.
    pub done: Option<oneshot::Sender<()>>,
}

struct Scanned {
    source: Arc<str>,
    lane: Arc<str>,
    findings: Vec<Finding>,
    then: Option<DaemonWrite>,
    done: Option<oneshot::Sender<()>>,
    bytes: u64,
    lines: u64,
}

/// What the stages share and a reload swaps.
pub struct Shared<S> {
    scanner: RwLock<Arc<Scanner>>,
    sink: RwLock<Arc<S>>,
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
}

impl<S: FindingSink + 'static> Shared<S> {
    pub fn new(scanner: Scanner, sink: S, store: Arc<Store>, metrics: Arc<Metrics>) -> Self {
        Shared {
            scanner: RwLock::new(Arc::new(scanner)),
            sink: RwLock::new(Arc::new(sink)),
            store,
            metrics,
        }
    }

    pub fn scanner(&self) -> Arc<Scanner> {
        self.scanner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn sink(&self) -> Arc<S> {
        self.sink.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn replace(&self, scanner: Scanner, sink: S) {
        self.replace_arcs(Arc::new(scanner), Arc::new(sink));
    }

    /// As [`Shared::replace`], with what [`Shared::scanner`] and
    /// [`Shared::sink`] handed out earlier (a reload that rolls back).
    pub fn replace_arcs(&self, scanner: Arc<Scanner>, sink: Arc<S>) {
        *self.scanner.write().unwrap_or_else(|p| p.into_inner()) = scanner;
        *self.sink.write().unwrap_or_else(|p| p.into_inner()) = sink;
    }
}

pub struct Pipeline {
    tx: mpsc::Sender<Work>,
    gate: Arc<LaneGate>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Pipeline {
    pub fn start<S: FindingSink + 'static>(shared: Arc<Shared<S>>) -> Pipeline {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (scanned_tx, scanned_rx) = mpsc::channel(SCANNED_QUEUE);
        let (stop, stop_rx) = watch::channel(false);
        shared
            .metrics
            .set_source(ENGINE_SOURCE, SourceState::Running);
        let gate = Arc::new(LaneGate::default());
        let tasks = vec![
            tokio::spawn(scan_stage(shared.clone(), rx, scanned_tx, stop_rx.clone())),
            tokio::spawn(lanes::sink_stage(
                shared.clone(),
                gate.clone(),
                scanned_rx,
                stop_rx,
            )),
        ];
        Pipeline {
            tx,
            gate,
            stop,
            tasks,
        }
    }

    pub fn sender(&self) -> mpsc::Sender<Work> {
        self.tx.clone()
    }

    /// Where a source hands its work. Call on the runtime (the tailer's
    /// thread blocks on it through the runtime's handle).
    pub fn output(&self, metrics: Arc<Metrics>) -> ChannelOutput {
        ChannelOutput {
            tx: self.tx.clone(),
            gate: self.gate.clone(),
            metrics,
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// Waits until everything sent so far has been handled (offsets
    /// persisted). `false` if that did not happen within `limit`.
    pub async fn flush(&self, limit: Duration) -> bool {
        let (done, wait) = oneshot::channel();
        let work = Work {
            source: Arc::from("flush"),
            lane: Arc::from("flush"),
            payload: Payload::Nothing,
            then: None,
            done: Some(done),
        };
        let flushed = async { self.tx.send(work).await.is_ok() && wait.await.is_ok() };
        tokio::time::timeout(limit, flushed).await.unwrap_or(false)
    }

    /// Stops taking work, lets the batch in the sink (its remediation) end,
    /// and returns. Work not yet handed to the sink is dropped: its offsets
    /// were never persisted, so it is read again on the next start.
    pub async fn shutdown(self, limit: Duration) -> bool {
        let _ = self.stop.send(true);
        drop(self.tx);
        let all = futures_join(self.tasks);
        tokio::time::timeout(limit, all).await.is_ok()
    }
}

async fn futures_join(tasks: Vec<JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}

async fn scan_stage<S: FindingSink + 'static>(
    shared: Arc<Shared<S>>,
    mut rx: mpsc::Receiver<Work>,
    out: mpsc::Sender<Vec<Scanned>>,
    mut stop: watch::Receiver<bool>,
) {
    // Per repository lane, the keys its history scan has handed on: a key
    // kept across edits is reported once, at its first commit (as `scan
    // --git` does). Work arrives in order per lane; the lane's progress
    // write (the new cursor) ends a scan and clears its set.
    let mut first_seen: HashMap<Arc<str>, FirstSeen> = HashMap::new();
    loop {
        let first = tokio::select! {
            biased;
            _ = super::stopped(&mut stop) => return,
            w = rx.recv() => match w { Some(w) => w, None => return },
        };
        let mut bytes = work_bytes(&first);
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            match rx.try_recv() {
                Ok(w) => {
                    bytes += work_bytes(&w);
                    batch.push(w);
                }
                Err(_) => break,
            }
        }
        let scanner = shared.scanner();
        let mut scanned = match tokio::task::spawn_blocking(move || scan_batch(&scanner, batch))
            .await
        {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("the scanner failed on a batch: {e}; its data will be read again after a restart");
                return;
            }
        };
        for s in &mut scanned {
            if s.findings
                .iter()
                .any(|f| matches!(*f.origin, Origin::Git { .. }))
            {
                let seen = first_seen.entry(s.lane.clone()).or_default();
                s.findings.retain(|f| seen.first(f));
            }
            if s.then.is_some() {
                first_seen.remove(&s.lane);
            }
        }
        if out.send(scanned).await.is_err() {
            return;
        }
    }
}

fn work_bytes(w: &Work) -> usize {
    match &w.payload {
        Payload::Chunk(c) => c.data.len(),
        _ => 0,
    }
}

fn scan_batch(scanner: &Scanner, batch: Vec<Work>) -> Vec<Scanned> {
    batch
        .into_par_iter()
        .map(|w| {
            let (findings, bytes, lines) = match w.payload {
                Payload::Chunk(c) => {
                    let lines = crate::source::count_lines(&c.data);
                    let found = crate::scan::driver::scan(scanner, &c);
                    (found, c.data.len() as u64, lines)
                }
                Payload::Nothing => (Vec::new(), 0, 0),
            };
            Scanned {
                source: w.source,
                lane: w.lane,
                findings,
                then: w.then,
                done: w.done,
                bytes,
                lines,
            }
        })
        .collect()
}

/// Offers findings to the sink until it takes them or refuses them for
/// good ([`SinkError::Permanent`]: each is logged, without the key, and
/// the `remediation` health entry says so; the caller then persists the
/// progress, so one refusal does not stall the source forever). `false` if
/// asked to stop first (the findings' offsets then stay unpersisted).
async fn submit<S: FindingSink + 'static>(
    shared: &Shared<S>,
    findings: Vec<Finding>,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let mut backoff = Duration::from_millis(500);
    loop {
        let sink = shared.sink();
        let started = Instant::now();
        match sink.submit(findings.clone()).await {
            Ok(_) => {
                shared.metrics.remediation_latency(started.elapsed());
                shared
                    .metrics
                    .set_source(ENGINE_SOURCE, SourceState::Running);
                return true;
            }
            Err(e @ SinkError::Permanent(_)) => {
                for f in &findings {
                    tracing::error!(
                        rule = %f.rule_id,
                        fingerprint = %f.fingerprint.short(),
                        redacted = %f.secret.redacted(),
                        path = %f.origin.path(),
                        line = f.line,
                        "finding dropped: {e}"
                    );
                }
                shared
                    .metrics
                    .set_source(ENGINE_SOURCE, SourceState::Failed(e.to_string()));
                return true;
            }
            Err(e) => {
                tracing::warn!(
                    "the remediation engine did not take {} findings: {e}; retrying in {backoff:?}",
                    findings.len()
                );
                shared
                    .metrics
                    .set_source(ENGINE_SOURCE, SourceState::Failed(e.to_string()));
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = super::stopped(stop) => return false,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// One line per finding, never the key: fingerprint and redacted form.
fn log_finding(f: &Finding) {
    tracing::info!(
        rule = %f.rule_id,
        provider = %f.provider,
        fingerprint = %f.fingerprint.short(),
        redacted = %f.secret.redacted(),
        source = f.origin.kind(),
        path = %f.origin.path(),
        line = f.line,
        offset = f.offset,
        commit = f.origin.commit(),
        "finding"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleSet;
    use crate::scan::driver::Flow;
    use crate::scan::{Allowlist, BoxFuture, Handled};
    use crate::source::repo_watch::RepoOutput;
    use crate::store::{FileId, LogOffset};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    /// Refuses submissions while `fail` is above 0, then records.
    #[derive(Default)]
    struct TestSink {
        fail: AtomicUsize,
        offered: AtomicUsize,
        taken: Mutex<Vec<usize>>,
    }

    impl FindingSink for Arc<TestSink> {
        fn submit(&self, findings: Vec<Finding>) -> BoxFuture<'_, Result<Vec<Handled>, SinkError>> {
            Box::pin(async move {
                self.offered.fetch_add(1, Ordering::SeqCst);
                if self.fail.load(Ordering::SeqCst) > 0 {
                    return Err(SinkError::Transient("engine down".into()));
                }
                self.taken.lock().unwrap().push(findings.len());
                Ok(Vec::new())
            })
        }
    }

    fn chunk(text: &str) -> Chunk {
        Chunk::whole(
            Origin::Log {
                path: "/var/log/app.log".into(),
            },
            text.as_bytes().to_vec(),
        )
    }

    fn offset(n: u64) -> DaemonWrite {
        DaemonWrite::Offset(LogOffset {
            id: FileId { dev: 1, ino: 2 },
            path: "/var/log/app.log".into(),
            offset: n,
            line: n,
            head_len: 0,
            head_hash: String::new(),
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn offsets_are_persisted_only_after_the_sink_took_the_findings() {
        let scanner = Scanner::new(&RuleSet::builtin().unwrap(), Allowlist::default()).unwrap();
        let sink = Arc::new(TestSink::default());
        sink.fail.store(1, Ordering::SeqCst);
        // (set to 0 below, once the refusal has been seen twice)
        let store = Arc::new(Store::in_memory().unwrap());
        let metrics = Arc::new(Metrics::new());
        let shared = Arc::new(Shared::new(
            scanner,
            sink.clone(),
            store.clone(),
            metrics.clone(),
        ));
        let pipeline = Pipeline::start(shared);
        let tx = pipeline.sender();
        let key = "x-api-key: t-6677183273e3a22c239969cb-dbb1e8c8d1c012c954834afa\n";
        for (i, text) in ["plain line\n", key, "another\n"].iter().enumerate() {
            let work = Work {
                source: Arc::from("log:test"),
                lane: Arc::from("/var/log/app.log"),
                payload: Payload::Chunk(chunk(text)),
                then: Some(offset(i as u64 + 1)),
                done: None,
            };
            tx.send(work).await.unwrap();
        }
        // While the sink refuses the key's finding, nothing from the key's
        // line on is persisted.
        while sink.offered.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let stored = store.log_offsets().unwrap();
        assert!(stored.iter().all(|o| o.offset < 2), "{stored:?}");
        assert!(metrics.unhealthy().iter().any(|(n, _)| n == ENGINE_SOURCE));
        sink.fail.store(0, Ordering::SeqCst);
        assert!(pipeline.flush(Duration::from_secs(10)).await);
        assert_eq!(*sink.taken.lock().unwrap(), vec![1]);
        let stored = store.log_offsets().unwrap();
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].offset, 3);
        let text = metrics.render(&Default::default());
        assert!(
            text.contains("keysentry_scanned_lines_total{source=\"log:test\"} 3"),
            "{text}"
        );
        assert!(pipeline.shutdown(Duration::from_secs(5)).await);
    }

    /// Takes findings slowly, remembering the file each came from.
    #[derive(Default)]
    struct SlowSink {
        taken: Mutex<Vec<String>>,
    }

    impl FindingSink for Arc<SlowSink> {
        fn submit(&self, findings: Vec<Finding>) -> BoxFuture<'_, Result<Vec<Handled>, SinkError>> {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(5 * findings.len() as u64)).await;
                let mut taken = self.taken.lock().unwrap();
                taken.extend(findings.iter().map(|f| f.origin.path()));
                Ok(Vec::new())
            })
        }
    }

    fn keys(seed: &str, n: usize) -> String {
        (0..n)
            .map(|i| {
                let h = crate::scan::Fingerprint::of(format!("{seed} {i}").as_bytes());
                let h = h.as_str();
                format!("x-api-key: t-{}-{}\n", &h[..24], &h[24..48])
            })
            .collect()
    }

    fn log_work(path: &str, text: String) -> Work {
        Work {
            source: Arc::from("log:/var/log/*.log"),
            lane: Arc::from(path),
            payload: Payload::Chunk(Chunk::whole(
                Origin::Log { path: path.into() },
                text.into_bytes(),
            )),
            then: None,
            done: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_flood_in_one_file_does_not_hold_up_a_key_in_another() {
        let scanner = Scanner::new(&RuleSet::builtin().unwrap(), Allowlist::default()).unwrap();
        let sink = Arc::new(SlowSink::default());
        let store = Arc::new(Store::in_memory().unwrap());
        let shared = Arc::new(Shared::new(
            scanner,
            sink.clone(),
            store,
            Arc::new(Metrics::new()),
        ));
        let pipeline = Pipeline::start(shared);
        let tx = pipeline.sender();
        tx.send(log_work("/var/log/flood.log", keys("decoy", 200)))
            .await
            .unwrap();
        tx.send(log_work("/var/log/app.log", keys("real", 1)))
            .await
            .unwrap();
        assert!(pipeline.flush(Duration::from_secs(30)).await);
        let taken = sink.taken.lock().unwrap().clone();
        assert_eq!(taken.len(), 201);
        let real = taken.iter().position(|p| p == "/var/log/app.log").unwrap();
        // At most one slice of the flood went first.
        assert!(real <= lanes::SLICE, "the key waited for {real} decoys");
        assert!(pipeline.shutdown(Duration::from_secs(5)).await);
    }

    /// Answers each submission with the next scripted result (then `Ok`),
    /// remembering every offer's fingerprints.
    #[derive(Default)]
    struct Scripted {
        script: Mutex<Vec<SinkError>>,
        offers: Mutex<Vec<Vec<String>>>,
    }

    impl FindingSink for Arc<Scripted> {
        fn submit(&self, findings: Vec<Finding>) -> BoxFuture<'_, Result<Vec<Handled>, SinkError>> {
            Box::pin(async move {
                let fps = findings.iter().map(|f| f.fingerprint.as_str().to_string());
                self.offers.lock().unwrap().push(fps.collect());
                let mut script = self.script.lock().unwrap();
                if script.is_empty() {
                    Ok(Vec::new())
                } else {
                    Err(script.remove(0))
                }
            })
        }
    }

    fn scripted(script: Vec<SinkError>) -> (Arc<Scripted>, Arc<Store>, Arc<Metrics>, Pipeline) {
        let scanner = Scanner::new(&RuleSet::builtin().unwrap(), Allowlist::default()).unwrap();
        let sink = Arc::new(Scripted {
            script: Mutex::new(script),
            ..Default::default()
        });
        let store = Arc::new(Store::in_memory().unwrap());
        let metrics = Arc::new(Metrics::new());
        let shared = Arc::new(Shared::new(
            scanner,
            sink.clone(),
            store.clone(),
            metrics.clone(),
        ));
        (sink, store, metrics, Pipeline::start(shared))
    }

    fn key_work(then: u64) -> Work {
        let text = keys("scripted", 1);
        Work {
            source: Arc::from("log:test"),
            lane: Arc::from("/var/log/app.log"),
            payload: Payload::Chunk(chunk(&text)),
            then: Some(offset(then)),
            done: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_transient_refusal_offers_the_same_findings_again_and_holds_the_offset() {
        let down = SinkError::Transient("store locked".into());
        let (sink, store, _metrics, pipeline) = scripted(vec![down.clone(), down]);
        pipeline.sender().send(key_work(7)).await.unwrap();
        while sink.offers.lock().unwrap().len() < 2 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            store.log_offsets().unwrap().is_empty(),
            "offset written early"
        );
        assert!(pipeline.flush(Duration::from_secs(120)).await);
        let offers = sink.offers.lock().unwrap().clone();
        assert_eq!(offers.len(), 3, "{offers:?}");
        assert!(offers.iter().all(|o| o == &offers[0] && o.len() == 1));
        assert_eq!(store.log_offsets().unwrap()[0].offset, 7);
        assert!(pipeline.shutdown(Duration::from_secs(5)).await);
    }

    #[tokio::test(start_paused = true)]
    async fn a_permanent_refusal_is_recorded_once_and_the_source_moves_on() {
        let refused = SinkError::Permanent("row too big".into());
        let (sink, store, metrics, pipeline) = scripted(vec![refused]);
        pipeline.sender().send(key_work(9)).await.unwrap();
        assert!(pipeline.flush(Duration::from_secs(120)).await);
        assert_eq!(
            sink.offers.lock().unwrap().len(),
            1,
            "retried a permanent refusal"
        );
        assert_eq!(store.log_offsets().unwrap()[0].offset, 9);
        let health = metrics.unhealthy();
        let engine = health.iter().find(|(n, _)| n == ENGINE_SOURCE);
        assert!(
            engine.is_some_and(|(_, why)| why.contains("row too big")),
            "{health:?}"
        );
        assert!(pipeline.shutdown(Duration::from_secs(5)).await);
    }

    /// A log tail's chunk and a repository history's chunks (emitted through
    /// the repository's lane, a key kept across two commits) both reach the
    /// one sink; the kept key once, at its first commit.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn chunks_from_a_log_and_a_repository_reach_the_one_sink() {
        let (sink, store, metrics, pipeline) = scripted(Vec::new());
        pipeline.sender().send(key_work(1)).await.unwrap();
        let repo: Arc<str> = Arc::from("repo:/srv/app");
        let lane = RepoOutput::lane(&pipeline.output(metrics), &repo);
        let kept = keys("kept", 1);
        tokio::task::spawn_blocking(move || {
            for (seq, commit) in ["c1", "c2"].into_iter().enumerate() {
                let origin = Origin::Git {
                    repo: "/srv/app".into(),
                    commit: commit.into(),
                    author_email: None,
                    path: "app.env".into(),
                };
                let blob = Chunk::whole(origin, format!("{commit}\n{kept}").into_bytes());
                assert_eq!(lane.chunk(seq as u64, &blob), Flow::Continue);
            }
        })
        .await
        .unwrap();
        assert!(pipeline.flush(Duration::from_secs(30)).await);
        let offered: Vec<String> = sink.offers.lock().unwrap().concat();
        assert_eq!(offered.len(), 2, "{offered:?}");
        assert_eq!(store.log_offsets().unwrap()[0].offset, 1);
        assert!(pipeline.shutdown(Duration::from_secs(5)).await);
    }

    #[test]
    fn a_full_lane_asks_its_source_to_wait_and_leaves_the_others_alone() {
        let gate = LaneGate::default();
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("/a.log"), Arc::from("/b.log"));
        for _ in 0..lanes::LANE_CAP {
            assert!(gate.has_room(&a));
            gate.enter(&a);
        }
        assert!(!gate.has_room(&a));
        assert!(gate.has_room(&b));
    }
}

#[cfg(test)]
mod backoff_tests;
