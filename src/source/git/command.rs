//! Running the `git` CLI: finding the repository, spawning plumbing commands
//! with a predictable environment, and turning their failures into
//! [`GitError`]s that say what to do.

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::thread::JoinHandle;

/// Enough of git's stderr to explain a failure; the rest is dropped.
const STDERR_KEEP: usize = 4096;

/// io errors are named `cause`, not `source`: the message already shows
/// them, and a `source` would be printed a second time by error chains.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("cannot run `git`: {cause}; install git (e.g. `apt-get install git`) and make sure it is on PATH")]
    GitMissing { cause: std::io::Error },
    #[error("{path} is not a git repository; pass the directory of a repository with --git, or drop --git to scan the files (git said: {detail})")]
    NotARepo { path: String, detail: String },
    // git's own advice (`git config --global safe.directory`) would not
    // help: keysentry reads no global git config.
    #[error("{path} belongs to another user and git refuses to read it (\"dubious ownership\"); run keysentry as the repository's owner, or give the repository to the user keysentry runs as")]
    NotOwned { path: String },
    #[error("`git {command}` failed in {repo}: {detail}; check that the repository is readable by this user and intact (`git fsck`)")]
    Failed {
        repo: String,
        command: String,
        detail: String,
    },
    #[error("talking to `git {command}` in {repo}: {cause}")]
    Io {
        repo: String,
        command: String,
        cause: std::io::Error,
    },
    #[error("cannot read blob {blob}: {cause}")]
    Blob { blob: String, cause: Box<GitError> },
    #[error("the git scan is incomplete: {count} object(s) could not be read, first {first}; nothing was fetched. Repair the repository (`git fsck`), or in a partial clone fetch the missing objects yourself, and scan again")]
    Incomplete { count: usize, first: String },
    #[error("{repo} is a bare repository: it has no index, so nothing is staged; run --staged in a work tree, or use --git for its history")]
    BareIndex { repo: String },
    #[error("invalid revision {rev:?}: {why}")]
    BadRev { rev: String, why: &'static str },
    #[error("{rev:?} is not a commit in {repo}; name a branch, tag or commit id that `git log` shows (a shallow CI checkout may need more history: fetch-depth 0)")]
    UnknownRev { rev: String, repo: String },
    #[error("unexpected output from `git {command}` in {repo}: {detail}; this git may be too old (keysentry needs git 2.31 or later)")]
    Protocol {
        repo: String,
        command: String,
        detail: String,
    },
}

/// A repository located by `git rev-parse`.
#[derive(Debug, Clone)]
pub struct Repo {
    /// Absolute; every later command names it with `--git-dir`, so neither
    /// the current directory nor repository discovery can change the answer.
    git_dir: PathBuf,
    /// What findings report as their `repo`.
    pub label: String,
    /// A bare repository has history but no index.
    pub bare: bool,
}

impl Repo {
    /// Finds the repository containing `path` (a work tree, any directory
    /// inside one, or a bare repository).
    pub fn open(path: &Path) -> Result<Repo, GitError> {
        let shown = path.display().to_string();
        let out = run_discovery(path, &["--is-bare-repository", "--absolute-git-dir"])?;
        let mut lines = out.lines();
        let (Some(bare), Some(git_dir)) = (lines.next(), lines.next()) else {
            return Err(GitError::Protocol {
                repo: shown,
                command: "rev-parse".into(),
                detail: format!("expected two lines, got {out:?}"),
            });
        };
        let git_dir = PathBuf::from(git_dir);
        let root = if bare == "true" {
            git_dir.clone()
        } else {
            PathBuf::from(run_discovery(path, &["--show-toplevel"])?.trim_end())
        };
        let label = root.canonicalize().unwrap_or(root).display().to_string();
        Ok(Repo {
            git_dir,
            label,
            bare: bare == "true",
        })
    }

    /// A `git` command on this repository with stdout piped.
    pub fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = git();
        cmd.arg("--git-dir").arg(&self.git_dir).args(args);
        cmd
    }

    pub fn spawn(&self, cmd: &mut Command, name: &'static str) -> Result<Process, GitError> {
        Process::spawn(cmd, name, &self.label)
    }

    /// Runs a command to completion, feeding it `input` from a separate
    /// thread so that neither side can block the other on a full pipe.
    pub fn output(
        &self,
        args: &[&str],
        name: &'static str,
        input: &[u8],
    ) -> Result<Vec<u8>, GitError> {
        let mut cmd = self.command(args);
        cmd.stdin(Stdio::piped());
        let mut proc = self.spawn(&mut cmd, name)?;
        let stdin = proc.stdin.take();
        let mut stdout = proc.stdout.take();
        let mut out = Vec::new();
        let (written, read) = std::thread::scope(|s| {
            let writer = s.spawn(move || match stdin {
                Some(mut w) => w.write_all(input),
                None => Ok(()),
            });
            let read = match stdout.as_mut() {
                Some(r) => r.read_to_end(&mut out).map(|_| ()),
                None => Ok(()),
            };
            let written = writer
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("stdin writer panicked")));
            (written, read)
        });
        // A failed exit explains more than the broken pipe it caused.
        proc.finish()?;
        read.and(written)
            .map_err(|source| proc_io(&self.label, name, source))?;
        Ok(out)
    }
}

pub fn proc_io(repo: &str, command: &str, cause: std::io::Error) -> GitError {
    GitError::Io {
        repo: repo.to_string(),
        command: command.to_string(),
        cause,
    }
}

/// What a git child inherits from keysentry's environment: nothing else, so
/// no token or secret in the daemon's environment reaches git, a
/// credential helper or anything a hostile repository makes git run.
const INHERITED: &[&str] = &["PATH", "HOME", "LANG"];

/// Every git process keysentry starts is built here (clippy's
/// `disallowed-methods` and a test keep it that way), hardened against the
/// repository it reads:
/// - no transport of any kind: a partial clone missing an object, or a ref
///   pointing at one, must not make git fetch from the "promisor" remote the
///   repository names, which runs `remote.*.uploadpack` or a remote helper
///   of the repository's choosing. `protocol.allow=never` alone is not
///   enough (a repository's own `protocol.file.allow=always` outranks it);
///   an empty `GIT_ALLOW_PROTOCOL` overrides every `protocol.*` setting, on
///   every git since 2.6 (older than partial clones), and children such as
///   the lazy `git fetch` inherit both. `GIT_NO_LAZY_FETCH` makes newer gits not even try, so a missing
///   object reads as "missing" instead of a failed fetch;
/// - no system or global config (`GIT_CONFIG_NOSYSTEM`, `GIT_CONFIG_GLOBAL`),
///   no prompt, no pager, no fsmonitor (it is a command the index read
///   runs), no hooks; output in the C locale, because messages are matched.
pub(crate) fn git() -> Command {
    #[allow(clippy::disallowed_methods)] // This is the one place.
    let mut cmd = Command::new("git");
    cmd.env_clear();
    for var in INHERITED {
        if let Some(value) = std::env::var_os(var) {
            cmd.env(var, value);
        }
    }
    cmd.env("LC_ALL", "C")
        .env("GIT_NO_LAZY_FETCH", "1")
        .env("GIT_ALLOW_PROTOCOL", "")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .args([
            "--no-pager",
            "-c",
            "protocol.allow=never",
            "-c",
            "core.fsmonitor=false",
            "-c",
            "core.hooksPath=/dev/null",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// `git -C path rev-parse ARGS`, mapping failure to "not a repository"
/// unless git refused for another reason worth passing on (ownership).
fn run_discovery(path: &Path, args: &[&str]) -> Result<String, GitError> {
    let shown = path.display().to_string();
    let mut cmd = git();
    cmd.arg("-C").arg(path).arg("rev-parse").args(args);
    let out = cmd
        .output()
        .map_err(|cause| GitError::GitMissing { cause })?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if !out.status.success() {
        let detail = stderr
            .strip_prefix("fatal: ")
            .unwrap_or(&stderr)
            .to_string();
        if detail.contains("safe.directory") || detail.contains("dubious ownership") {
            return Err(GitError::NotOwned { path: shown });
        }
        return Err(GitError::NotARepo {
            path: shown,
            detail,
        });
    }
    String::from_utf8(out.stdout).map_err(|e| GitError::Protocol {
        repo: shown,
        command: "rev-parse".into(),
        detail: e.to_string(),
    })
}

/// A running git command. Its stderr is drained on a thread, so a chatty
/// git never blocks on a full stderr pipe, and kept for the error message.
pub struct Process {
    child: Child,
    pub stdin: Option<ChildStdin>,
    pub stdout: Option<ChildStdout>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    name: &'static str,
    repo: String,
}

impl Process {
    fn spawn(cmd: &mut Command, name: &'static str, repo: &str) -> Result<Process, GitError> {
        let mut child = cmd
            .spawn()
            .map_err(|cause| GitError::GitMissing { cause })?;
        let stderr = child.stderr.take().map(|mut err| {
            std::thread::spawn(move || {
                let mut kept = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n) = err.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let room = STDERR_KEEP.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
                kept
            })
        });
        Ok(Process {
            stdin: child.stdin.take(),
            stdout: child.stdout.take(),
            child,
            stderr,
            name,
            repo: repo.to_string(),
        })
    }

    pub fn io_error(&self, source: std::io::Error) -> GitError {
        proc_io(&self.repo, self.name, source)
    }

    pub fn protocol_error(&self, detail: String) -> GitError {
        GitError::Protocol {
            repo: self.repo.clone(),
            command: self.name.to_string(),
            detail,
        }
    }

    /// Waits for exit; a non-zero status becomes [`GitError::Failed`] with
    /// git's own explanation.
    pub fn finish(mut self) -> Result<(), GitError> {
        drop(self.stdin.take());
        drop(self.stdout.take());
        let status = self.child.wait().map_err(|e| self.io_error(e))?;
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        if status.success() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&stderr).trim().to_string();
        Err(GitError::Failed {
            repo: self.repo.clone(),
            command: self.name.to_string(),
            detail: if text.is_empty() {
                status.to_string()
            } else {
                text
            },
        })
    }

    /// Stops the command after `err`. If git had already failed on its own,
    /// its message is the better explanation and replaces `err`.
    pub fn fail(mut self, err: GitError) -> GitError {
        let exited = self.exited_with_failure();
        if !exited {
            let _ = self.child.kill();
        }
        match self.finish() {
            Err(git) if exited => git,
            _ => err,
        }
    }

    /// A git that closed its output because it failed is usually a moment
    /// away from exiting; give it that moment so its message is not lost.
    fn exited_with_failure(&mut self) -> bool {
        for _ in 0..20 {
            match self.child.try_wait() {
                Ok(Some(status)) => return !status.success(),
                Ok(None) => std::thread::sleep(std::time::Duration::from_millis(10)),
                Err(_) => return false,
            }
        }
        false
    }

    /// Stops the command after an error elsewhere, so nothing waits on it.
    pub fn abort(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    /// Clippy's `disallowed-methods` (clippy.toml) stops a `std` git
    /// `Command` elsewhere; this also catches tokio's and a build script's.
    #[test]
    fn only_this_module_builds_a_git_command() {
        fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    rust_files(&path, out);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    out.push(path);
                }
            }
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        // build.rs is not here: it runs at build time on the crate's own
        // checkout (not a watched repository), cannot use this builder, and
        // applies the same guards itself.
        let mut files = Vec::new();
        rust_files(&root.join("src"), &mut files);
        assert!(files.len() > 20, "found the sources: {files:?}");
        let this = root.join("src/source/git/command.rs");
        let offenders: Vec<_> = files
            .iter()
            .filter(|f| **f != this)
            .filter(|f| {
                let text = std::fs::read_to_string(f).unwrap_or_default();
                text.contains("Command::new(\"git\"") || text.contains("Command::new(r\"git\"")
            })
            .collect();
        assert!(
            offenders.is_empty(),
            "run git through source::git::command::git(): {offenders:?}"
        );
    }
}
