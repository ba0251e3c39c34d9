//! Log tailing: every file matching a `watch.logs` glob is followed from its
//! stored offset, and its new complete lines become chunks.
//!
//! One thread does the file I/O. It sleeps until notify reports a change in
//! a watched directory or the poll interval passes (notify can miss events),
//! then reads every file that grew. Files are tracked by identity (device +
//! inode), which is what makes log rotation work:
//!
//! - rename + create: the renamed file is read to its end (the writer may
//!   still append before it reopens), its last partial line flushed once it
//!   has been idle, then let go; the new file at the path is read from 0.
//! - copytruncate: the size drops below the offset (or the first bytes
//!   change): read again from 0.
//! - files created after start are read from 0; files that exist when a glob
//!   is first watched start at `watch.from` (`end` by default, so a
//!   multi-gigabyte log is not scanned on first sight).
//!
//! Only complete lines are handed on; the partial last line stays in the
//! file until its newline arrives. A line longer than [`MAX_PIECE`] is
//! handed on in pieces, cut where a key cannot straddle the cut, so memory
//! stays bounded. Offsets are not persisted here: each chunk carries the
//! [`DaemonWrite`] to apply once its findings are with the engine.

mod file;
mod tailer;
mod watcher;

use crate::metrics::{Metrics, SourceState};
use crate::scan::Chunk;
use crate::store::{DaemonWrite, Store, StoreError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use tailer::Tailer;
use watcher::{DirWatcher, GlobSource, Wakeup};

/// The largest chunk, and so the longest line handed on whole. Longer lines
/// go in pieces: memory stays bounded whatever a log contains.
pub const MAX_PIECE: usize = 1 << 20;

/// Where to start in a file that already exists when its glob is first
/// watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFrom {
    Start,
    End,
}

#[derive(Debug, Clone)]
pub struct LogTailSettings {
    pub globs: Vec<String>,
    pub from: StartFrom,
    /// Fallback rescan interval.
    pub poll: Duration,
    /// `/healthz` calls a glob stuck after this long without progress.
    pub stuck_after: Duration,
}

/// The pipeline went away; the tailer stops.
#[derive(Debug)]
pub struct Stopped;

/// Where the tailer hands its work.
pub trait TailOutput: Send + 'static {
    /// Hands on `chunk` (if any) from source `source`, file `lane`; `then`
    /// is to be persisted once the chunk's findings are with the engine, in
    /// order within the lane. Blocks while the pipeline is full: that is the
    /// back pressure. `Err` means the pipeline is gone and the tailer must
    /// stop.
    fn emit(
        &mut self,
        source: &Arc<str>,
        lane: &Arc<str>,
        chunk: Option<Chunk>,
        then: DaemonWrite,
    ) -> Result<(), Stopped>;

    /// Whether `lane` takes more work now. The tailer reads other files
    /// while one file's lane is full, so a flood in one file does not stop
    /// the others from being read.
    fn has_room(&self, _lane: &str) -> bool {
        true
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogTailError {
    #[error("watch.logs: `{glob}` is not a valid glob: {message}")]
    Glob { glob: String, message: String },
    #[error("cannot start the file watcher: {0}; check the inotify limits (fs.inotify.max_user_instances)")]
    Watcher(String),
    #[error("cannot read the log offsets: {0}")]
    Store(#[from] StoreError),
    #[error("cannot start the log tailer thread: {0}")]
    Thread(std::io::Error),
}

/// A running tailer. Stop it with [`LogTail::stop`].
pub struct LogTail {
    wake: Arc<Wakeup>,
    thread: Option<JoinHandle<()>>,
    /// The globs' source names, watched for progress while this runs.
    names: Vec<Arc<str>>,
    metrics: Arc<Metrics>,
}

/// Checks the globs without starting anything (for config validation).
pub fn check_globs(globs: &[String]) -> Result<(), LogTailError> {
    globs
        .iter()
        .try_for_each(|g| GlobSource::parse(g).map(drop))
}

impl LogTail {
    /// Reads the stored offsets, starts watching, spawns the tailer thread
    /// and waits for it to take up the files that exist now. Blocks: call
    /// it off the async runtime. Sources report their state to `metrics` as `log:<glob>`.
    pub fn start(
        settings: &LogTailSettings,
        store: &Store,
        metrics: Arc<Metrics>,
        out: impl TailOutput,
    ) -> Result<LogTail, LogTailError> {
        let globs: Vec<GlobSource> = settings
            .globs
            .iter()
            .map(|g| GlobSource::parse(g))
            .collect::<Result<_, _>>()?;
        for g in &globs {
            metrics.set_source(&g.name, SourceState::Starting);
            metrics.expect_progress(&g.name, settings.stuck_after);
        }
        let stored = store.log_offsets()?;
        let known = store.known_log_globs()?;
        let wake = Arc::new(Wakeup::default());
        let watcher = DirWatcher::new(wake.clone())?;
        let names = globs.iter().map(|g| g.name.clone()).collect();
        let mut tailer = Tailer::new(
            globs,
            settings.from,
            settings.poll,
            watcher,
            wake.clone(),
            metrics.clone(),
            out,
        );
        let (started_tx, started) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("log-tail".into())
            .spawn(move || {
                let ok = tailer.start(stored, &known).is_ok();
                let _ = started_tx.send(());
                if ok {
                    tailer.run();
                }
            })
            .map_err(LogTailError::Thread)?;
        // Which files existed "at start" (and so begin at `watch.from`) is
        // settled before this returns: a file created afterwards is new.
        let _ = started.recv();
        Ok(LogTail {
            wake,
            thread: Some(thread),
            names,
            metrics,
        })
    }

    /// Asks the thread to stop, without waiting.
    pub fn request_stop(&self) {
        self.wake.stop();
    }

    /// Asks the thread to stop and waits for it. What it read but the
    /// pipeline has not finished is read again next time: offsets only move
    /// once findings are handed on.
    pub fn stop(mut self) {
        self.wake.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        for g in &self.names {
            self.metrics.forget_progress(g);
        }
    }

    /// False once the thread has ended (it stops only when asked, or when
    /// the pipeline is gone).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for LogTail {
    fn drop(&mut self) {
        self.wake.stop();
    }
}
