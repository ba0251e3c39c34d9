//! The tailer thread: tracked files, what to read from each, rotation.

use super::file::{
    count_newlines, file_id, find_by_id, head_hash, kind, lane_of, open_log, piece_cut,
    read_full_at, still_same,
};
use super::watcher::{DirWatcher, GlobSource, Wakeup};
use super::{StartFrom, Stopped, TailOutput, MAX_PIECE};
use crate::metrics::{Metrics, SourceState};
use crate::scan::{Chunk, Origin};
use crate::store::{DaemonWrite, FileId, LogOffset};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bytes hashed to recognise a file: enough to tell two logs apart by their
/// first timestamped line.
const HEAD: u64 = 64;

/// A file whose path now leads elsewhere is read until it has been quiet
/// this long (the writer may append until it reopens its log), then let go.
const RETIRE_IDLE: Duration = Duration::from_secs(2);

/// Bytes read from one file before turning to the next, so one busy log
/// cannot starve the others.
const ROUND_BYTES: u64 = 4 << 20;

/// How soon the tailer looks again when it left a file unread because the
/// pipeline's lane for it was full.
const HELD_BACK_RETRY: Duration = Duration::from_millis(50);

/// Files up to this size have their lines counted when tailing starts at
/// their end; in larger ones line numbers count from where tailing began.
const COUNT_LINES_MAX: u64 = 256 << 20;

struct Tracked {
    path: PathBuf,
    origin: Arc<Origin>,
    source: Arc<str>,
    /// The pipeline lane: the path it was first followed at.
    lane: Arc<str>,
    file: File,
    offset: u64,
    line: u64,
    head_len: u64,
    head_hash: String,
    /// Set when the path no longer leads to this file: the last time it
    /// grew.
    retired: Option<Instant>,
    /// A read error was already logged (log it once, not every poll).
    failing: bool,
}

impl Tracked {
    fn snapshot(&self, id: FileId) -> DaemonWrite {
        DaemonWrite::Offset(LogOffset {
            id,
            path: self.path.clone(),
            offset: self.offset,
            line: self.line,
            head_len: self.head_len,
            head_hash: self.head_hash.clone(),
        })
    }
}

pub(super) struct Tailer<O> {
    globs: Vec<GlobSource>,
    from: StartFrom,
    poll: Duration,
    files: BTreeMap<FileId, Tracked>,
    by_path: HashMap<PathBuf, FileId>,
    /// Per glob: why it is not healthy, found during the current pass.
    problems: Vec<Option<String>>,
    /// Matching files that could not be opened, so each is reported once.
    unreadable: HashSet<PathBuf>,
    /// Matching paths that are not regular files (a FIFO, a symlink), so
    /// each is reported once while it exists.
    skipped: HashSet<PathBuf>,
    /// A file was left unread this pass because its lane was full.
    held_back: bool,
    watcher: DirWatcher,
    wake: Arc<Wakeup>,
    metrics: Arc<Metrics>,
    out: O,
}

impl<O: TailOutput> Tailer<O> {
    pub fn new(
        globs: Vec<GlobSource>,
        from: StartFrom,
        poll: Duration,
        watcher: DirWatcher,
        wake: Arc<Wakeup>,
        metrics: Arc<Metrics>,
        out: O,
    ) -> Self {
        let problems = vec![None; globs.len()];
        Tailer {
            globs,
            from,
            poll,
            files: BTreeMap::new(),
            by_path: HashMap::new(),
            problems,
            unreadable: HashSet::new(),
            skipped: HashSet::new(),
            held_back: false,
            watcher,
            wake,
            metrics,
            out,
        }
    }

    /// Takes up the stored offsets and the files that exist now.
    pub fn start(
        &mut self,
        stored: Vec<LogOffset>,
        known_globs: &HashSet<String>,
    ) -> Result<(), Stopped> {
        self.ensure_watches();
        let mut stored: HashMap<FileId, LogOffset> =
            stored.into_iter().map(|s| (s.id, s)).collect();
        for gi in 0..self.globs.len() {
            let known = known_globs.contains(&self.globs[gi].glob);
            for path in self.discover(gi) {
                self.take_up(gi, &path, &mut stored, known)?;
            }
        }
        // Files rotated away while we were stopped: finish them from where
        // we were, if they are still in their directory.
        for (id, s) in stored {
            match find_by_id(&s.path, id) {
                Some((path, file)) => self.resume_retired(id, s, path, file),
                None => {
                    let source = self.source_for(&s.path);
                    let lane = lane_of(&s.path);
                    self.out
                        .emit(&source, &lane, None, DaemonWrite::Forget(id))?
                }
            }
        }
        for g in &self.globs {
            if !known_globs.contains(&g.glob) {
                let write = DaemonWrite::GlobSeen(g.glob.clone());
                self.out.emit(&g.name, &g.name, None, write)?;
            }
        }
        self.publish_health();
        Ok(())
    }

    /// At start: decide where to begin in `path`.
    fn take_up(
        &mut self,
        gi: usize,
        path: &Path,
        stored: &mut HashMap<FileId, LogOffset>,
        glob_known: bool,
    ) -> Result<(), Stopped> {
        let Some((file, meta)) = self.open(gi, path) else {
            return Ok(());
        };
        let id = file_id(&meta);
        if self.files.contains_key(&id) {
            return Ok(());
        }
        if let Some(s) = stored.remove(&id) {
            if still_same(&file, meta.len(), &s) {
                self.track(
                    gi,
                    id,
                    path,
                    file,
                    s.offset,
                    s.line,
                    (s.head_len, s.head_hash),
                );
            } else {
                tracing::info!(path = %path.display(), "log file was truncated or replaced while keysentry was stopped; reading it from the start");
                self.track(gi, id, path, file, 0, 0, (0, String::new()));
            }
            return Ok(());
        }
        if glob_known || self.from == StartFrom::Start {
            self.track(gi, id, path, file, 0, 0, (0, String::new()));
            return Ok(());
        }
        // First sight of an existing file: begin at its end.
        let size = meta.len();
        let line = if size <= COUNT_LINES_MAX {
            count_newlines(&file, size).unwrap_or(0)
        } else {
            tracing::info!(path = %path.display(), size, "large log: line numbers count from where tailing began");
            0
        };
        let head_len = size.min(HEAD);
        let head = head_hash(&file, head_len).unwrap_or_default();
        self.track(gi, id, path, file, size, line, (head_len, head));
        let (name, lane, write) = {
            let t = &self.files[&id];
            (t.source.clone(), t.lane.clone(), t.snapshot(id))
        };
        self.out.emit(&name, &lane, None, write)
    }

    /// The glob a path belongs to, for metrics; rotated files may match
    /// none.
    fn source_for(&self, path: &Path) -> Arc<str> {
        self.globs
            .iter()
            .find(|g| g.matches(path))
            .or(self.globs.first())
            .map(|g| g.name.clone())
            .unwrap_or_else(|| Arc::from("log"))
    }

    fn resume_retired(&mut self, id: FileId, s: LogOffset, path: PathBuf, file: File) {
        let source = self.source_for(&s.path);
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let offset = if still_same(&file, size, &s) {
            s.offset
        } else {
            0
        };
        tracing::info!(path = %path.display(), "finishing a log file rotated while keysentry was stopped");
        self.files.insert(
            id,
            Tracked {
                origin: Arc::new(Origin::Log {
                    path: s.path.clone(),
                }),
                lane: lane_of(&s.path),
                path,
                source,
                file,
                offset,
                line: if offset == 0 { 0 } else { s.line },
                head_len: if offset == 0 { 0 } else { s.head_len },
                head_hash: s.head_hash,
                retired: Some(Instant::now()),
                failing: false,
            },
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn track(
        &mut self,
        gi: usize,
        id: FileId,
        path: &Path,
        file: File,
        offset: u64,
        line: u64,
        head: (u64, String),
    ) {
        if let Some(old) = self.by_path.insert(path.to_path_buf(), id) {
            self.retire(old);
        }
        self.files.insert(
            id,
            Tracked {
                path: path.to_path_buf(),
                origin: Arc::new(Origin::Log {
                    path: path.to_path_buf(),
                }),
                source: self.globs[gi].name.clone(),
                lane: lane_of(path),
                file,
                offset,
                line,
                head_len: head.0,
                head_hash: head.1,
                retired: None,
                failing: false,
            },
        );
    }

    fn retire(&mut self, id: FileId) {
        if let Some(t) = self.files.get_mut(&id) {
            if t.retired.is_none() {
                tracing::debug!(path = %t.path.display(), "log file rotated or deleted; draining it");
                t.retired = Some(Instant::now());
            }
            if self.by_path.get(&t.path) == Some(&id) {
                self.by_path.remove(&t.path);
            }
        }
    }

    fn open(&mut self, gi: usize, path: &Path) -> Option<(File, std::fs::Metadata)> {
        let failed = match open_log(path) {
            // A path stays in `skipped` while it exists, even if it turns
            // back into a file: one that is swapped back and forth is told
            // once, not on every swap.
            Ok((f, m)) if m.is_file() => {
                self.unreadable.remove(path);
                return Some((f, m));
            }
            Ok((_, m)) => {
                let why = format!("it is a {}, not a regular file", kind(&m));
                self.skip(gi, path, &why);
                return None;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.unreadable.remove(path);
                return None;
            }
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                let why = "it is a symbolic link, which keysentry does not follow in a watched \
                    directory (it could point at any file); name the real file in watch.logs";
                self.skip(gi, path, why);
                return None;
            }
            Err(e) => e,
        };
        let why = format!(
            "cannot read {}: {failed}; give keysentry read access to it (its mode or group, and ReadOnlyPaths= in the systemd unit)",
            path.display()
        );
        // Said (and counted) once until the file becomes readable again; the
        // health check names it on every pass.
        if self.unreadable.insert(path.to_path_buf()) {
            self.metrics.source_error(&self.globs[gi].name);
            tracing::warn!(source = %self.globs[gi].name, "{why}");
        }
        self.problems[gi] = Some(why);
        None
    }

    /// Warns once (while the path exists) that a matching path is not
    /// tailed. Not a failure of the glob: the other files are read, and
    /// anyone who can create files in a log directory could otherwise turn
    /// readiness off.
    fn skip(&mut self, gi: usize, path: &Path, why: &str) {
        if self.skipped.insert(path.to_path_buf()) {
            tracing::warn!(
                source = %self.globs[gi].name,
                path = %path.display(),
                "not tailing {}: {why}",
                path.display()
            );
        }
    }

    /// Tells the health check every glob is alive.
    fn beat(&self) {
        for g in &self.globs {
            self.metrics.beat(&g.name);
        }
    }

    fn discover(&mut self, gi: usize) -> Vec<PathBuf> {
        match self.globs[gi].discover() {
            Ok(paths) => paths,
            Err(e) => {
                let g = &self.globs[gi];
                self.problems[gi]
                    .get_or_insert_with(|| format!("cannot list {}: {e}", g.base.display()));
                Vec::new()
            }
        }
    }

    fn ensure_watches(&mut self) {
        for (gi, g) in self.globs.iter().enumerate() {
            if let Err(why) = self.watcher.ensure(&g.base, g.recursive()) {
                self.problems[gi].get_or_insert(why);
            }
        }
    }

    fn publish_health(&mut self) {
        for (gi, g) in self.globs.iter().enumerate() {
            let state = match self.problems[gi].take() {
                None => SourceState::Running,
                Some(why) => SourceState::Failed(why),
            };
            self.metrics.set_source(&g.name, state);
        }
    }

    pub fn run(&mut self) {
        if self.pump().is_err() {
            return;
        }
        let mut last_full = Instant::now();
        loop {
            self.beat();
            let next_full = self.poll.saturating_sub(last_full.elapsed());
            let mut wait = next_full.min(RETIRE_IDLE);
            if self.held_back {
                wait = wait.min(HELD_BACK_RETRY);
            }
            let woken = self.wake.wait(wait);
            if woken.stop {
                return;
            }
            self.beat();
            if woken.rescan || last_full.elapsed() >= self.poll {
                self.full_pass();
                last_full = Instant::now();
            } else {
                for p in &woken.dirty {
                    self.consider(p);
                }
            }
            if self.pump().is_err() || self.finish_retired().is_err() {
                return;
            }
        }
    }

    /// The fallback: re-watch, re-list, re-check every tracked file.
    fn full_pass(&mut self) {
        self.ensure_watches();
        let tracked: Vec<(FileId, PathBuf)> = self
            .files
            .iter()
            .filter(|(_, t)| t.retired.is_none())
            .map(|(id, t)| (*id, t.path.clone()))
            .collect();
        for (id, path) in tracked {
            let same = std::fs::metadata(&path).is_ok_and(|m| file_id(&m) == id);
            if !same {
                self.retire(id);
                self.consider(&path);
            }
        }
        let mut seen = HashSet::new();
        for gi in 0..self.globs.len() {
            for path in self.discover(gi) {
                self.consider(&path);
                seen.insert(path);
            }
        }
        // Forget unreadable files that are gone, and skipped paths that no
        // longer exist (a FIFO is never "seen": discovery lists files).
        self.unreadable.retain(|p| seen.contains(p));
        self.skipped
            .retain(|p| std::fs::symlink_metadata(p).is_ok());
        self.publish_health();
    }

    /// Something happened at `path`: a new file, a rename, a deletion.
    fn consider(&mut self, path: &Path) {
        let gi = self.globs.iter().position(|g| g.matches(path));
        let meta = std::fs::metadata(path).ok();
        let Some(meta) = meta.filter(|m| m.is_file()) else {
            if let Some(id) = self.by_path.get(path).copied() {
                self.retire(id);
            }
            if let Some(gi) = gi {
                if std::fs::metadata(path).is_ok_and(|m| !m.is_dir()) {
                    // Not a log (a FIFO, a socket): say so, once.
                    let _ = self.open(gi, path);
                }
            }
            return;
        };
        let id = file_id(&meta);
        if self.by_path.get(path) == Some(&id) {
            return;
        }
        if let Some(old) = self.by_path.remove(path) {
            self.retire(old);
        }
        if let Some(t) = self.files.get_mut(&id) {
            if gi.is_some() {
                // Renamed to a name that is also watched: keep following it.
                t.path = path.to_path_buf();
                t.origin = Arc::new(Origin::Log {
                    path: path.to_path_buf(),
                });
                t.retired = None;
                self.by_path.insert(path.to_path_buf(), id);
            }
            return;
        }
        let Some(gi) = gi else { return };
        if let Some((file, meta)) = self.open(gi, path) {
            let id = file_id(&meta);
            if !self.files.contains_key(&id) {
                tracing::info!(path = %path.display(), "following new log file");
                self.track(gi, id, path, file, 0, 0, (0, String::new()));
            }
        }
    }

    /// Reads every file until all are caught up, fairly.
    fn pump(&mut self) -> Result<(), Stopped> {
        self.held_back = false;
        loop {
            let ids: Vec<FileId> = self.files.keys().copied().collect();
            let mut progressed = false;
            for id in ids {
                progressed |= self.read_file(id, false)? > 0;
                if self.wake.stopping() {
                    return Err(Stopped);
                }
                self.beat();
            }
            if !progressed {
                return Ok(());
            }
        }
    }

    /// Reads up to [`ROUND_BYTES`] of new complete lines from one file.
    /// `flush` also hands on a final line without a newline (the file is
    /// finished). Returns the bytes handed on.
    fn read_file(&mut self, id: FileId, flush: bool) -> Result<u64, Stopped> {
        let Some(t) = self.files.get_mut(&id) else {
            return Ok(0);
        };
        let size = match t.file.metadata() {
            Ok(m) => m.len(),
            Err(e) => {
                note_error(t, &self.metrics, &e);
                return Ok(0);
            }
        };
        if size < t.offset {
            tracing::info!(path = %t.path.display(), "log file was truncated (copytruncate); reading it from the start");
            restart_at_zero(t);
        } else if size > t.offset
            && t.head_len > 0
            && !head_hash(&t.file, t.head_len).is_ok_and(|h| h == t.head_hash)
        {
            // Truncated and rewritten past our offset before we looked.
            tracing::info!(path = %t.path.display(), "log file was truncated and rewritten; reading it from the start");
            restart_at_zero(t);
        }
        let mut sent = 0u64;
        while sent < ROUND_BYTES && t.offset < size {
            if !self.out.has_room(&t.lane) {
                // Other files first; this one waits for its lane.
                self.held_back = true;
                break;
            }
            let want = ((size - t.offset) as usize).min(MAX_PIECE);
            let mut buf = vec![0u8; want];
            let n = match read_full_at(&t.file, &mut buf, t.offset) {
                Ok(n) => n,
                Err(e) => {
                    note_error(t, &self.metrics, &e);
                    break;
                }
            };
            t.failing = false;
            buf.truncate(n);
            let cut = match memchr::memrchr(b'\n', &buf) {
                Some(p) => p + 1,
                None if n == MAX_PIECE => piece_cut(&buf),
                None if flush && n > 0 => n,
                // A partial line: wait for the rest of it.
                None => break,
            };
            buf.truncate(cut);
            let lines = crate::source::count_lines(&buf);
            let chunk = Chunk {
                origin: t.origin.clone(),
                data: buf,
                first_line: t.line + 1,
                base_offset: t.offset,
            };
            t.offset += cut as u64;
            t.line += lines;
            if t.head_len < HEAD && t.offset > t.head_len {
                t.head_len = t.offset.min(HEAD);
                t.head_hash = head_hash(&t.file, t.head_len).unwrap_or_default();
            }
            if t.retired.is_some() {
                t.retired = Some(Instant::now());
            }
            sent += cut as u64;
            let write = t.snapshot(id);
            self.out.emit(&t.source, &t.lane, Some(chunk), write)?;
        }
        Ok(sent)
    }

    /// Lets go of rotated or deleted files once they have been quiet.
    fn finish_retired(&mut self) -> Result<(), Stopped> {
        let done: Vec<FileId> = self
            .files
            .iter()
            .filter(|(_, t)| t.retired.is_some_and(|at| at.elapsed() >= RETIRE_IDLE))
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            while self.read_file(id, true)? > 0 {}
            let lane_full = self
                .files
                .get(&id)
                .is_some_and(|t| !self.out.has_room(&t.lane));
            if lane_full {
                // Maybe not read to its end yet: finish it next time.
                continue;
            }
            if let Some(t) = self.files.remove(&id) {
                tracing::debug!(path = %t.path.display(), "finished rotated log file");
                self.out
                    .emit(&t.source, &t.lane, None, DaemonWrite::Forget(id))?;
            }
        }
        Ok(())
    }
}

fn restart_at_zero(t: &mut Tracked) {
    t.offset = 0;
    t.line = 0;
    t.head_len = 0;
    t.head_hash.clear();
}

fn note_error(t: &mut Tracked, metrics: &Metrics, e: &std::io::Error) {
    metrics.source_error(&t.source);
    if !t.failing {
        tracing::warn!(path = %t.path.display(), "cannot read log file: {e}");
        t.failing = true;
    }
}
