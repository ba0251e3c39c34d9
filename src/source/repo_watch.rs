//! Repository watching: each `watch.repos` entry is polled for commits on
//! any ref that are not reachable from the tips of the previous scan (the
//! cursor, persisted in the store). Only the blobs those commits introduced
//! are emitted, as chunks, into the daemon's pipeline (see
//! [`crate::source::git::History`]); the new cursor follows them, and the
//! pipeline writes it once their findings are with the engine.
//!
//! The first start scans the whole history once, unless `history: false`,
//! which takes the current tips as the cursor and reports only what comes
//! after. A force-push or a deleted branch leaves cursor entries that no
//! longer resolve; the scan ignores them, so the cursor never breaks: at
//! worst an old commit that became reachable again is scanned again, which
//! the engine deduplicates by fingerprint.

use super::git::{current_tips, GitOptions, History};
use super::log_tail::Stopped;
use super::ScanStats;
use crate::metrics::{Metrics, SourceState};
use crate::scan::driver::{Emit, Source};
use crate::shutdown::Shutdown;
use crate::store::{DaemonWrite, Store};
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoSettings {
    pub path: PathBuf,
    pub poll: Duration,
    /// `/healthz` calls the repository stuck after this long without
    /// progress (a git process that hangs).
    pub stuck_after: Duration,
    /// Scan the whole history on first sight.
    pub history: bool,
}

impl RepoSettings {
    /// `repo:<path>`: the label in metrics and health, and the cursor's key.
    pub fn name(&self) -> String {
        format!("repo:{}", self.path.display())
    }
}

/// Where a repository watcher hands its chunks and its cursor.
pub trait RepoOutput: Send + Sync + 'static {
    /// Where the history scan of `source` emits its chunks: queued in
    /// order in the repository's lane (it does not scan inline); `Stop`
    /// once the pipeline is gone. Called from a blocking thread.
    fn lane(&self, source: &Arc<str>) -> Box<dyn Emit + Send>;

    /// Hands on `then` (the new cursor), persisted once every chunk
    /// emitted before it is scanned and its findings are with the engine.
    /// Waits while the pipeline is full.
    fn progress(
        &self,
        source: &Arc<str>,
        then: DaemonWrite,
    ) -> impl Future<Output = Result<(), Stopped>> + Send;
}

/// Polls one repository until `stop` fires.
pub async fn watch_repo(
    settings: RepoSettings,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    out: impl RepoOutput,
    mut stop: Shutdown,
) {
    let name: Arc<str> = settings.name().into();
    metrics.set_source(&name, SourceState::Starting);
    metrics.expect_progress(&name, settings.stuck_after);
    watch_loop(&settings, &name, &store, &metrics, out, &mut stop).await;
    metrics.forget_progress(&name);
}

async fn watch_loop(
    settings: &RepoSettings,
    name: &Arc<str>,
    store: &Arc<Store>,
    metrics: &Arc<Metrics>,
    out: impl RepoOutput,
    stop: &mut Shutdown,
) {
    let name = name.clone();
    let mut since = match cursor(store, &name).await {
        Ok(c) => c,
        Err(why) => {
            metrics.set_source(&name, SourceState::Failed(why));
            None
        }
    };
    // The last failure, so a repository that stays broken is logged once,
    // not on every poll (/healthz and the error counter keep showing it).
    let mut failing: Option<String> = None;
    // Likewise for an incomplete scan. The cursor still moves on: missing
    // objects do not appear by themselves (nothing is fetched), and a ref
    // to one is reported again on every poll.
    let mut incomplete: Option<String> = None;
    loop {
        metrics.beat(&name);
        let emit = out.lane(&name);
        match poll_once(settings, &name, emit, metrics, since.clone()).await {
            Ok(None) => return,
            Ok(Some((tips, missed))) => {
                if missed.is_some() && missed != incomplete {
                    metrics.source_error(&name);
                    if let Some(why) = &missed {
                        tracing::warn!(repo = %settings.path.display(), "{why}");
                    }
                }
                incomplete = missed;
                if since.as_ref() != Some(&tips) {
                    let write = DaemonWrite::RepoTips {
                        repo: name.to_string(),
                        tips: tips.clone(),
                    };
                    if out.progress(&name, write).await.is_err() {
                        return;
                    }
                }
                since = Some(tips);
                metrics.set_source(&name, SourceState::Running);
                if failing.take().is_some() {
                    tracing::info!(repo = %settings.path.display(), "repository scans again");
                }
            }
            Err(why) => {
                metrics.source_error(&name);
                if failing.as_ref() != Some(&why) {
                    tracing::warn!(repo = %settings.path.display(), "repository scan failed: {why}");
                }
                metrics.set_source(&name, SourceState::Failed(why.clone()));
                failing = Some(why);
            }
        }
        metrics.polled(&name);
        metrics.beat(&name);
        let next = tokio::time::Instant::now() + settings.poll;
        let mut alive = tokio::time::interval(BEAT_EVERY);
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => break,
                _ = alive.tick() => metrics.beat(&name),
                _ = stop.wait() => return,
            }
        }
    }
}

/// How often a watcher that waits or scans says so to the health check.
const BEAT_EVERY: Duration = Duration::from_secs(1);

async fn cursor(store: &Arc<Store>, name: &Arc<str>) -> Result<Option<Vec<String>>, String> {
    let (store, key) = (store.clone(), name.to_string());
    tokio::task::spawn_blocking(move || store.repo_tips(&key))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
}

/// The new tips, and why the scan was incomplete if it was; `None` when the
/// pipeline said stop (nothing is written, the next start scans again).
type Polled = Option<(Vec<String>, Option<String>)>;

/// One scan, off the runtime: emits what is new since `since` into `emit`
/// and returns the new tips.
async fn poll_once(
    settings: &RepoSettings,
    name: &Arc<str>,
    emit: Box<dyn Emit + Send>,
    metrics: &Arc<Metrics>,
    since: Option<Vec<String>>,
) -> Result<Polled, String> {
    let (path, history) = (settings.path.clone(), settings.history);
    let stats = Arc::new(ScanStats::default());
    let counted = stats.clone();
    let mut scan = tokio::task::spawn_blocking(move || -> Result<Polled, String> {
        let since = match since {
            Some(s) => s,
            // First sight without history: today's tips are the cursor.
            None if !history => {
                let tips = current_tips(&path).map_err(|e| e.to_string())?;
                return Ok(Some((tips, None)));
            }
            None => Vec::new(),
        };
        let opts = GitOptions::default();
        let mut source = History::new(&path, &opts, &counted, &since);
        let stop = StopSeen::new(&*emit);
        source.run(&stop).map_err(|e| e.to_string())?;
        if stop.seen() {
            return Ok(None);
        }
        let incomplete = source.incomplete().map(|e| e.to_string());
        Ok(Some((source.tips, incomplete)))
    });
    // Alive while the scan moves on; a git process that hangs moves
    // nothing, and the health check calls the repository stuck.
    let mut alive = tokio::time::interval(BEAT_EVERY);
    let progress = |s: &ScanStats| {
        (
            s.bytes.load(Relaxed),
            s.blobs.load(Relaxed),
            s.commits.load(Relaxed),
        )
    };
    let mut seen = progress(&stats);
    let scanned = loop {
        tokio::select! {
            done = &mut scan => break done,
            _ = alive.tick() => {
                let now = progress(&stats);
                if now != seen {
                    metrics.beat(name);
                    seen = now;
                }
            }
        }
    };
    // Bytes and lines are counted by the pipeline, which scans them.
    scanned.map_err(|e| format!("repository scan task failed: {e}"))?
}

/// Remembers whether the pipeline said stop: the history then ends early
/// with `Ok`, and its tips must not become the cursor.
struct StopSeen<'a> {
    inner: &'a dyn Emit,
    stopped: std::sync::atomic::AtomicBool,
}

impl<'a> StopSeen<'a> {
    fn new(inner: &'a dyn Emit) -> Self {
        StopSeen {
            inner,
            stopped: Default::default(),
        }
    }

    fn seen(&self) -> bool {
        self.stopped.load(Relaxed)
    }
}

impl Emit for StopSeen<'_> {
    fn chunk(&self, seq: u64, chunk: &crate::scan::Chunk) -> crate::scan::driver::Flow {
        let flow = self.inner.chunk(seq, chunk);
        if flow == crate::scan::driver::Flow::Stop {
            self.stopped.store(true, Relaxed);
        }
        flow
    }

    fn scans_inline(&self) -> bool {
        self.inner.scans_inline()
    }
}
