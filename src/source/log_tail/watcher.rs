//! Which files to tail and when to look at them: `watch.logs` globs, the
//! directories `notify` watches for them, and the wake-up the tailer thread
//! sleeps on.

use super::LogTailError;
use globset::{GlobBuilder, GlobMatcher};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Past this many distinct changed paths between two wake-ups the tailer
/// stops remembering them and rescans everything instead: a burst of events
/// costs one rescan, never unbounded memory.
const MAX_DIRTY: usize = 4096;

/// Where the tailer sleeps. notify's callback and the daemon mark work here;
/// the tailer takes it all at once, so any number of events between two
/// looks cost one look.
#[derive(Default)]
pub(super) struct Wakeup {
    state: Mutex<WakeState>,
    cv: Condvar,
}

#[derive(Default)]
struct WakeState {
    dirty: HashSet<PathBuf>,
    rescan: bool,
    stop: bool,
}

pub(super) struct Woken {
    pub dirty: Vec<PathBuf>,
    pub rescan: bool,
    pub stop: bool,
}

impl Wakeup {
    fn lock(&self) -> MutexGuard<'_, WakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn mark(&self, paths: impl IntoIterator<Item = PathBuf>) {
        let mut s = self.lock();
        for p in paths {
            if s.dirty.len() >= MAX_DIRTY {
                s.rescan = true;
                break;
            }
            s.dirty.insert(p);
        }
        self.cv.notify_one();
    }

    pub fn rescan(&self) {
        self.lock().rescan = true;
        self.cv.notify_one();
    }

    pub fn stop(&self) {
        self.lock().stop = true;
        self.cv.notify_one();
    }

    pub fn stopping(&self) -> bool {
        self.lock().stop
    }

    /// Waits until something is marked or `timeout` passes.
    pub fn wait(&self, timeout: Duration) -> Woken {
        let mut s = self.lock();
        if s.dirty.is_empty() && !s.rescan && !s.stop {
            s = self
                .cv
                .wait_timeout(s, timeout)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
        let woken = Woken {
            dirty: s.dirty.drain().collect(),
            rescan: s.rescan,
            stop: s.stop,
        };
        s.rescan = false;
        woken
    }
}

/// One `watch.logs` entry.
pub(super) struct GlobSource {
    /// `log:<glob>`: the label in metrics and health.
    pub name: Arc<str>,
    pub glob: String,
    matcher: GlobMatcher,
    /// The deepest directory without glob characters: the one to watch.
    pub base: PathBuf,
    /// How many path components below `base` a match can be; `None` for
    /// `**`.
    depth: Option<usize>,
}

impl GlobSource {
    pub fn parse(glob: &str) -> Result<GlobSource, LogTailError> {
        let invalid = |message: String| LogTailError::Glob {
            glob: glob.to_string(),
            message,
        };
        let path = Path::new(glob);
        if !path.is_absolute() {
            return Err(invalid(
                "log globs must be absolute paths (the daemon's working directory is /)".into(),
            ));
        }
        let matcher = GlobBuilder::new(glob)
            .literal_separator(true)
            .build()
            .map_err(|e| invalid(e.to_string()))?
            .compile_matcher();
        let mut base = PathBuf::new();
        let mut rest: Vec<String> = Vec::new();
        for c in path.components() {
            let s = c.as_os_str().to_string_lossy().into_owned();
            let magic = s.contains(['*', '?', '[', '{']);
            if rest.is_empty() && !magic {
                base.push(c.as_os_str());
            } else {
                rest.push(s);
            }
        }
        if rest.is_empty() {
            // A plain file name: watch its directory.
            let file = base
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .ok_or_else(|| invalid("names a directory, not a file".into()))?;
            base.pop();
            rest.push(file);
        }
        let depth = if rest.iter().any(|c| c.contains("**")) {
            None
        } else {
            Some(rest.len())
        };
        Ok(GlobSource {
            name: format!("log:{glob}").into(),
            glob: glob.to_string(),
            matcher,
            base,
            depth,
        })
    }

    pub fn matches(&self, path: &Path) -> bool {
        self.matcher.is_match(path)
    }

    pub fn recursive(&self) -> bool {
        self.depth != Some(1)
    }

    /// Paths under `base` that match and are not directories: regular
    /// files, and what the tailer refuses when it opens them and says why
    /// (symlinks, FIFOs, sockets).
    pub fn discover(&self) -> std::io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        self.walk(&self.base, 1, &mut out)?;
        out.sort();
        Ok(out)
    }

    fn walk(&self, dir: &Path, level: usize, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let Ok(entry) = entry else { continue };
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            // Recurse into real directories only: a symlinked directory
            // could loop.
            if kind.is_dir() {
                if self.depth.map_or(true, |d| level < d) {
                    // An unreadable subdirectory must not hide the others.
                    let _ = self.walk(&path, level + 1, out);
                }
            } else if self.matches(&path) && std::fs::metadata(&path).is_ok_and(|m| !m.is_dir()) {
                out.push(path);
            }
        }
        Ok(())
    }
}

/// The directories notify watches, re-watched when one is replaced (a
/// deleted and recreated directory loses its inotify watch).
pub(super) struct DirWatcher {
    inner: RecommendedWatcher,
    watched: HashMap<PathBuf, (u64, u64, bool)>,
}

impl DirWatcher {
    pub fn new(wake: Arc<Wakeup>) -> Result<DirWatcher, LogTailError> {
        let inner = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            match res {
                Ok(ev) if ev.need_rescan() => wake.rescan(),
                Ok(ev) => wake.mark(ev.paths),
                // The watcher lost track (e.g. queue overflow): look at all.
                Err(_) => wake.rescan(),
            }
        })
        .map_err(|e| LogTailError::Watcher(e.to_string()))?;
        Ok(DirWatcher {
            inner,
            watched: HashMap::new(),
        })
    }

    /// Makes sure `dir` is watched; the error says why it cannot be.
    pub fn ensure(&mut self, dir: &Path, recursive: bool) -> Result<(), String> {
        let meta = std::fs::metadata(dir).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!(
                "directory {} does not exist; create it or fix watch.logs",
                dir.display()
            ),
            _ => format!("cannot watch {}: {e}", dir.display()),
        })?;
        let key = (meta.dev(), meta.ino(), recursive);
        match self.watched.get(dir) {
            Some(&(dev, ino, rec)) if dev == key.0 && ino == key.1 && (rec || !recursive) => {
                return Ok(())
            }
            Some(_) => {
                let _ = self.inner.unwatch(dir);
            }
            None => {}
        }
        let mode = if recursive {
            RecursiveMode::Recursive
        } else {
            RecursiveMode::NonRecursive
        };
        self.inner
            .watch(dir, mode)
            .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
        self.watched.insert(dir.to_path_buf(), key);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_base_and_depth() {
        let g = GlobSource::parse("/var/log/app/*.log").unwrap();
        assert_eq!(g.base, Path::new("/var/log/app"));
        assert!(!g.recursive());
        assert!(g.matches(Path::new("/var/log/app/x.log")));
        assert!(!g.matches(Path::new("/var/log/app/sub/x.log")));

        let g = GlobSource::parse("/var/log/syslog").unwrap();
        assert_eq!(g.base, Path::new("/var/log"));
        assert!(g.matches(Path::new("/var/log/syslog")));

        let g = GlobSource::parse("/srv/**/*.log").unwrap();
        assert_eq!(g.base, Path::new("/srv"));
        assert!(g.recursive());
        assert!(g.matches(Path::new("/srv/a/b/c.log")));

        assert!(GlobSource::parse("logs/*.log").is_err());
        assert!(GlobSource::parse("/var/log/[").is_err());
    }

    #[test]
    fn discover_respects_depth() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        for f in ["a.log", "b.txt", "sub/c.log"] {
            std::fs::write(dir.path().join(f), "x").unwrap();
        }
        let flat = GlobSource::parse(&format!("{}/*.log", dir.path().display())).unwrap();
        assert_eq!(flat.discover().unwrap(), vec![dir.path().join("a.log")]);
        let deep = GlobSource::parse(&format!("{}/**/*.log", dir.path().display())).unwrap();
        assert_eq!(
            deep.discover().unwrap(),
            vec![dir.path().join("a.log"), dir.path().join("sub/c.log")]
        );
    }

    #[test]
    fn a_burst_of_events_is_bounded() {
        let w = Wakeup::default();
        w.mark((0..MAX_DIRTY + 10).map(|i| PathBuf::from(format!("/x/{i}"))));
        let woken = w.wait(Duration::from_millis(1));
        assert!(woken.rescan);
        assert_eq!(woken.dirty.len(), MAX_DIRTY);
    }
}
