//! Files under a path: every file, .gitignored ones included (a leaked key in
//! an ignored `.env` is still leaked), `.git/` skipped, binary and oversized
//! files skipped and counted, symlinks and special files (FIFOs, sockets,
//! devices) not followed or opened. The walk and the scanning run together
//! on the walker's threads, so memory does not grow with the size of the
//! tree: each thread holds one file at a time.
//!
//! Several roots can be scanned in one run (pre-commit passes file names). A
//! directory's findings are placed relative to that directory; a file named
//! on the command line keeps the path as given (made relative to the current
//! directory when it is under it), and is never skipped for its size: over
//! the limit it is streamed in pieces, as stdin is.

use super::archive::{self, ArchiveLimits};
use super::{looks_binary, ScanStats, SourceError, BINARY_PROBE};
use crate::scan::driver::{Emit, Flow, Source};
use crate::scan::{Chunk, Finding, Origin};
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;

#[derive(Debug, Clone)]
pub struct FsOptions {
    /// Files larger than this are skipped and counted in a directory walk;
    /// a named file over it is streamed instead.
    pub max_file_size: u64,
    /// Walker threads; 0 picks one per core.
    pub threads: usize,
    /// Archives and images are expanded within these limits (their own
    /// `max_file_size` for the files inside); `None` skips them as binary.
    pub archives: Option<ArchiveLimits>,
}

impl Default for FsOptions {
    fn default() -> Self {
        FsOptions {
            max_file_size: 20 << 20,
            threads: 0,
            archives: Some(ArchiveLimits::default()),
        }
    }
}

/// The path a finding reports: relative to the scanned root (its file name
/// when the root is a file).
/// No I/O: it runs once per scanned file.
pub fn relative(root: &Path, file: &Path) -> String {
    let rel = match file.strip_prefix(root) {
        Ok(rel) if !rel.as_os_str().is_empty() => rel,
        // The root itself is the file.
        _ => file.file_name().map(Path::new).unwrap_or(file),
    };
    rel.to_string_lossy().replace('\\', "/")
}

/// Every file under each of `roots` (directories walked, files read whole
/// or streamed), as a [`Source`]: findings come out in argument order,
/// each directory's sorted by path and position. Every root must exist: a
/// missing one is an error before anything is emitted. A root named twice
/// (`. .`, `a.env ./a.env`) is read once. `on_file` runs after each file
/// (progress).
pub struct Paths<'a> {
    pub roots: &'a [PathBuf],
    pub opts: &'a FsOptions,
    pub stats: &'a ScanStats,
    pub on_file: &'a (dyn Fn() + Sync),
}

impl Source for Paths<'_> {
    type Error = SourceError;

    fn run(&mut self, out: &dyn Emit) -> Result<(), SourceError> {
        let mut unique: Vec<(&PathBuf, PathBuf)> = Vec::new();
        for root in self.roots {
            // `<(cmd)` names /dev/fd/N, a link to a pipe that does not
            // canonicalize: such a root is its own identity.
            let real = std::fs::canonicalize(root)
                .or_else(|_| std::fs::metadata(root).map(|_| root.clone()))
                .map_err(|_| SourceError::Missing {
                    path: root.display().to_string(),
                })?;
            if !unique.iter().any(|(_, r)| *r == real) {
                unique.push((root, real));
            }
        }
        let cwd = std::env::current_dir().ok();
        // A root's index is its findings' `seq`: argument order.
        for (seq, (root, real)) in unique.into_iter().enumerate() {
            let seq = seq as u64;
            let flow = if real.is_dir() {
                walk_tree(root, seq, out, self.opts, self.stats, self.on_file)?
            } else {
                let shown = as_given(root, cwd.as_deref());
                let flow = scan_named_file(root, shown, seq, out, self.opts, self.stats);
                (self.on_file)();
                flow
            };
            if flow == Flow::Stop {
                break;
            }
        }
        Ok(())
    }

    /// Within a root, by path and position (the walker's threads emit in
    /// no particular order).
    fn finish(&self, mut found: Vec<(u64, Finding)>) -> Vec<Finding> {
        found.sort_by(|(sa, a), (sb, b)| {
            (sa, a.origin.path(), a.offset, &a.rule_id).cmp(&(
                sb,
                b.origin.path(),
                b.offset,
                &b.rule_id,
            ))
        });
        found.into_iter().map(|(_, f)| f).collect()
    }
}

/// The path a named file reports: as the user typed it, without `./`, and
/// relative to `cwd` when it is an absolute path under it.
pub fn as_given(path: &Path, cwd: Option<&Path>) -> String {
    let path = match cwd.map(|c| path.strip_prefix(c)) {
        Some(Ok(rel)) if path.is_absolute() && !rel.as_os_str().is_empty() => rel,
        _ => path,
    };
    let clean: PathBuf = path
        .components()
        .filter(|c| *c != Component::CurDir)
        .collect();
    clean.to_string_lossy().replace('\\', "/")
}

/// A file the user named: read whole when under the size limit, streamed in
/// pieces (bounded memory) when over it. Also reads FIFOs (`<(cmd)`).
fn scan_named_file(
    path: &Path,
    shown: String,
    seq: u64,
    out: &dyn Emit,
    opts: &FsOptions,
    stats: &ScanStats,
) -> Flow {
    let meta = std::fs::metadata(path).ok();
    let regular = meta.as_ref().is_some_and(|m| m.is_file());
    let small = regular && meta.is_some_and(|m| m.len() <= opts.max_file_size);
    // An archive of any size is expanded within its own limits. Only a
    // regular file is probed: a pipe's bytes would be gone.
    if small || (regular && opts.archives.is_some() && is_archive(path)) {
        let whole = FsOptions {
            max_file_size: u64::MAX,
            ..opts.clone()
        };
        return scan_file(path, shown, Vec::new(), seq, out, &whole, stats).0;
    }
    let streamed = || -> Result<Option<Flow>, SourceError> {
        let io = |source| SourceError::Io {
            path: shown.clone(),
            source,
        };
        let mut file = std::fs::File::open(path).map_err(io)?;
        let mut head = Vec::with_capacity(BINARY_PROBE);
        (&mut file)
            .take(BINARY_PROBE as u64)
            .read_to_end(&mut head)
            .map_err(io)?;
        if looks_binary(&head) {
            return Ok(None);
        }
        let input = std::io::Cursor::new(head).chain(file);
        let origin = Origin::File {
            path: shown.clone(),
        };
        super::stdin::Stream::new(input, origin, stats)
            .emit_at(seq, out)
            .map(Some)
    };
    match streamed() {
        Ok(Some(flow)) => flow,
        Ok(None) => {
            stats.skipped_binary.fetch_add(1, Relaxed);
            Flow::Continue
        }
        Err(e) => {
            stats.record_unreadable(e.to_string());
            Flow::Continue
        }
    }
}

/// Emits every file under `root` (or `root` itself if it is a file), each
/// at `seq`, from the walker's threads. Files and directories that cannot
/// be read are recorded in `stats.unreadable` and skipped; only a missing
/// root is an error. `on_file` runs after each file (progress).
fn walk_tree(
    root: &Path,
    seq: u64,
    out: &dyn Emit,
    opts: &FsOptions,
    stats: &ScanStats,
    on_file: &(dyn Fn() + Sync),
) -> Result<Flow, SourceError> {
    if !root.exists() {
        return Err(SourceError::Missing {
            path: root.display().to_string(),
        });
    }
    let stopped = std::sync::atomic::AtomicBool::new(false);
    let walker = ignore::WalkBuilder::new(root)
        .standard_filters(false)
        .follow_links(false)
        .threads(opts.threads)
        .filter_entry(|e| e.file_name() != ".git")
        .build_parallel();
    walker.run(|| {
        let stopped = &stopped;
        let mut buf = Vec::new();
        Box::new(move |entry| {
            match entry {
                Ok(e) if e.file_type().is_some_and(|t| t.is_file()) => {
                    let rel = relative(root, e.path());
                    let taken = std::mem::take(&mut buf);
                    let (flow, back) = scan_file(e.path(), rel, taken, seq, out, opts, stats);
                    buf = back;
                    on_file();
                    if flow == Flow::Stop {
                        stopped.store(true, Relaxed);
                        return ignore::WalkState::Quit;
                    }
                }
                Ok(_) => {}
                Err(err) => stats.record_unreadable(describe_walk_error(root, &err)),
            }
            ignore::WalkState::Continue
        })
    });
    Ok(if stopped.load(Relaxed) {
        Flow::Stop
    } else {
        Flow::Continue
    })
}

/// Reads one file into `buf` (a per-thread buffer handed back for the
/// next file, so a tree of small files costs no allocation each) and emits
/// it as one chunk.
fn scan_file(
    path: &Path,
    rel: String,
    mut buf: Vec<u8>,
    seq: u64,
    out: &dyn Emit,
    opts: &FsOptions,
    stats: &ScanStats,
) -> (Flow, Vec<u8>) {
    buf.clear();
    let archives = opts.archives.as_ref();
    match read_text(path, &rel, opts.max_file_size, archives.is_some(), &mut buf) {
        Ok(Content::Text) => {}
        Ok(Content::Archive) => {
            let flow = match archives {
                Some(limits) => archive::emit_file(path, &rel, limits, seq, out, stats),
                None => Flow::Continue,
            };
            return (flow, buf);
        }
        Ok(Content::TooLarge(bytes)) => {
            stats.record_too_large(rel, bytes);
            return (Flow::Continue, buf);
        }
        Ok(Content::Binary) => {
            stats.skipped_binary.fetch_add(1, Relaxed);
            return (Flow::Continue, buf);
        }
        Err(e) => {
            stats.record_unreadable(format!("{rel}: {e}"));
            return (Flow::Continue, buf);
        }
    }
    stats.files.fetch_add(1, Relaxed);
    stats.add_bytes(buf.len());
    let chunk = Chunk::whole(Origin::File { path: rel }, buf);
    let flow = out.chunk(seq, &chunk);
    (flow, chunk.data)
}

enum Content {
    Text,
    Binary,
    /// An archive or image (`archive::detect`), whatever its size.
    Archive,
    /// With the size seen.
    TooLarge(u64),
}

/// Reads a text file into `buf`. The binary check runs on the first 8 KiB
/// before the rest is read, so a tree full of build artifacts costs little.
/// With `archives`, an archive (by those 8 KiB and `rel`) is named as one.
fn read_text(
    path: &Path,
    rel: &str,
    max_size: u64,
    archives: bool,
    buf: &mut Vec<u8>,
) -> std::io::Result<Content> {
    let file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    if len > max_size && !archives {
        return Ok(Content::TooLarge(len));
    }
    // One byte past the limit: a file that grew since the stat is caught as
    // too large instead of scanned in part.
    let mut file = file.take(max_size.saturating_add(1));
    (&mut file).take(BINARY_PROBE as u64).read_to_end(buf)?;
    if archives && archive::detect(rel, buf).is_some() {
        return Ok(Content::Archive);
    }
    if len > max_size {
        return Ok(Content::TooLarge(len));
    }
    if looks_binary(buf) {
        return Ok(Content::Binary);
    }
    file.read_to_end(buf)?;
    Ok(if buf.len() as u64 > max_size {
        Content::TooLarge(buf.len() as u64)
    } else {
        Content::Text
    })
}

/// Whether the file at `path` starts like an archive (a named file over
/// the size limit is expanded, not streamed as text).
fn is_archive(path: &Path) -> bool {
    let mut head = Vec::with_capacity(BINARY_PROBE);
    std::fs::File::open(path)
        .and_then(|f| f.take(BINARY_PROBE as u64).read_to_end(&mut head))
        .is_ok_and(|_| archive::detect(&path.to_string_lossy(), &head).is_some())
}

/// `relative/path: reason` for a directory entry the walker could not read.
fn describe_walk_error(root: &Path, err: &ignore::Error) -> String {
    fn parts(err: &ignore::Error) -> (Option<&Path>, String) {
        match err {
            ignore::Error::WithPath { path, err } => (Some(path), parts(err).1),
            ignore::Error::WithDepth { err, .. } | ignore::Error::WithLineNumber { err, .. } => {
                parts(err)
            }
            other => (None, other.to_string()),
        }
    }
    match parts(err) {
        (Some(path), reason) => format!("{}: {reason}", relative(root, path)),
        (None, reason) => reason,
    }
}

#[cfg(test)]
mod tests {
    use super::as_given;
    use std::path::Path;

    #[test]
    fn named_paths_are_shown_as_given_relative_to_the_cwd() {
        let cwd = Some(Path::new("/home/u/repo"));
        assert_eq!(as_given(Path::new("src/a.env"), cwd), "src/a.env");
        assert_eq!(as_given(Path::new("./src/./a.env"), cwd), "src/a.env");
        assert_eq!(
            as_given(Path::new("/home/u/repo/src/a.env"), cwd),
            "src/a.env"
        );
        assert_eq!(as_given(Path::new("/etc/app.env"), cwd), "/etc/app.env");
        assert_eq!(as_given(Path::new("../b.env"), cwd), "../b.env");
        assert_eq!(as_given(Path::new("/etc/app.env"), None), "/etc/app.env");
    }
}
