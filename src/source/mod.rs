//! Sources turn places (a directory, stdin, git history, the index, log
//! files) into `Chunk`s. None calls the scanner: each implements
//! [`crate::scan::driver::Source`] (or, for the daemon's log tail, hands
//! chunks to its `TailOutput`) and the driver scans what it emits. See
//! `scan::driver` for the contract: who calls what, from which thread, and
//! what `Flow::Stop` means.

pub mod archive;
pub mod fs;
pub mod git;
pub mod http_ingest;
pub mod image;
pub mod log_tail;
pub mod repo_watch;
pub mod stdin;
pub mod syslog;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

/// The shortest progress deadline: a source is never called stuck for a
/// pause a busy machine can explain.
const MIN_STUCK_AFTER: Duration = Duration::from_secs(30);

/// How long a source polling every `poll` may go without progress before
/// `/healthz` calls it stuck: `configured` (`watch.stuck_after`), else three
/// polls and at least 30 s.
pub fn stuck_after(poll: Duration, configured: Option<Duration>) -> Duration {
    configured.unwrap_or_else(|| poll.saturating_mul(3).max(MIN_STUCK_AFTER))
}

/// Counters for the scan summary. Shared across the scanning threads.
#[derive(Debug, Default)]
pub struct ScanStats {
    pub files: AtomicU64,
    pub blobs: AtomicU64,
    pub commits: AtomicU64,
    pub bytes: AtomicU64,
    pub skipped_binary: AtomicU64,
    pub skipped_large: AtomicU64,
    /// Archives opened (nested ones included).
    pub archives: AtomicU64,
    /// Files that could not be read, with the reason; reported, never fatal.
    pub unreadable: Mutex<Vec<String>>,
    /// Files over the size limit (path, bytes), for the warnings; the count
    /// is `skipped_large` (sources that do not name them only count).
    pub too_large: Mutex<Vec<(String, u64)>>,
}

impl ScanStats {
    pub fn add_bytes(&self, n: usize) {
        self.bytes.fetch_add(n as u64, Relaxed);
    }

    pub fn record_unreadable(&self, what: String) {
        if let Ok(mut list) = self.unreadable.lock() {
            list.push(what);
        }
    }

    pub fn record_too_large(&self, path: String, bytes: u64) {
        self.skipped_large.fetch_add(1, Relaxed);
        if let Ok(mut list) = self.too_large.lock() {
            list.push((path, bytes));
        }
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }
}

/// How much of a file the binary check looks at.
pub const BINARY_PROBE: usize = 8192;

/// Content with a NUL byte in its first 8 KiB is treated as binary, the
/// heuristic git and ripgrep use.
pub fn looks_binary(data: &[u8]) -> bool {
    memchr::memchr(0, &data[..data.len().min(BINARY_PROBE)]).is_some()
}

/// Newlines in `data` (memchr's vectorised search: this runs on every
/// tailed and scanned byte).
pub fn count_lines(data: &[u8]) -> u64 {
    memchr::memchr_iter(b'\n', data).count() as u64
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{path}: no such file or directory; pass an existing path (or `-` for stdin)")]
    Missing { path: String },
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Git(#[from] git::GitError),
}
