//! Repository watching: each `watch.repos` entry is polled for commits on
//! any ref that are not reachable from the tips of the previous scan (the
//! cursor, persisted in the store). Only the blobs those commits introduced
//! are scanned (see [`crate::source::git::scan_repo`]).
//!
//! The first start scans the whole history once, unless `history: false`,
//! which takes the current tips as the cursor and reports only what comes
//! after. A force-push or a deleted branch leaves cursor entries that no
//! longer resolve; the scan ignores them, so the cursor never breaks: at
//! worst an old commit that became reachable again is scanned again, which
//! the engine deduplicates by fingerprint.

use super::git::{current_tips, scan_repo, GitOptions};
use super::log_tail::Stopped;
use super::ScanStats;
use crate::metrics::{Metrics, SourceState};
use crate::scan::{Finding, Scanner};
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

/// Where a repository watcher hands its findings.
pub trait RepoOutput: Send + Sync + 'static {
    /// Hands on `findings`; `then` (the new cursor) is persisted once they
    /// are with the engine. Waits while the pipeline is full.
    fn emit(
        &self,
        source: &Arc<str>,
        findings: Vec<Finding>,
        then: DaemonWrite,
    ) -> impl Future<Output = Result<(), Stopped>> + Send;
}

/// Polls one repository until `stop` fires.
pub async fn watch_repo(
    settings: RepoSettings,
    store: Arc<Store>,
    scanner: Arc<Scanner>,
    metrics: Arc<Metrics>,
    out: impl RepoOutput,
    mut stop: Shutdown,
) {
    let name: Arc<str> = settings.name().into();
    metrics.set_source(&name, SourceState::Starting);
    metrics.expect_progress(&name, settings.stuck_after);
    watch_loop(&settings, &name, &store, &scanner, &metrics, out, &mut stop).await;
    metrics.forget_progress(&name);
}

async fn watch_loop(
    settings: &RepoSettings,
    name: &Arc<str>,
    store: &Arc<Store>,
    scanner: &Arc<Scanner>,
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
        match poll_once(settings, &name, scanner, metrics, since.clone()).await {
            Ok((findings, tips, missed)) => {
                if missed.is_some() && missed != incomplete {
                    metrics.source_error(&name);
                    if let Some(why) = &missed {
                        tracing::warn!(repo = %settings.path.display(), "{why}");
                    }
                }
                incomplete = missed;
                let moved = since.as_ref() != Some(&tips);
                if moved || !findings.is_empty() {
                    if !findings.is_empty() {
                        tracing::info!(repo = %settings.path.display(), "{} findings in new commits", findings.len());
                    }
                    let write = DaemonWrite::RepoTips {
                        repo: name.to_string(),
                        tips: tips.clone(),
                    };
                    if out.emit(&name, findings, write).await.is_err() {
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

/// Findings, new tips, and why the scan was incomplete if it was.
type Polled = (Vec<Finding>, Vec<String>, Option<String>);

/// One scan, off the runtime: the findings since `since` and the new tips.
async fn poll_once(
    settings: &RepoSettings,
    name: &Arc<str>,
    scanner: &Arc<Scanner>,
    metrics: &Arc<Metrics>,
    since: Option<Vec<String>>,
) -> Result<Polled, String> {
    let (path, scanner, history) = (settings.path.clone(), scanner.clone(), settings.history);
    let stats = Arc::new(ScanStats::default());
    let counted = stats.clone();
    let mut scan = tokio::task::spawn_blocking(move || -> Result<Polled, String> {
        let since = match since {
            Some(s) => s,
            // First sight without history: today's tips are the cursor.
            None if !history => {
                let tips = current_tips(&path).map_err(|e| e.to_string())?;
                return Ok((Vec::new(), tips, None));
            }
            None => Vec::new(),
        };
        let scan = scan_repo(&path, &scanner, &GitOptions::default(), &counted, &since)
            .map_err(|e| e.to_string())?;
        let incomplete = scan.incomplete().map(|e| e.to_string());
        Ok((scan.findings, scan.tips, incomplete))
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
    let scanned = scanned.map_err(|e| format!("repository scan task failed: {e}"))?;
    metrics.scanned(name, stats.bytes.load(Relaxed), 0);
    scanned
}
