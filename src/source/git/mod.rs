//! `--git`: every blob in a repository's history (all refs: branches, tags,
//! remotes, stash, notes), each scanned once and attributed to the earliest
//! commit that introduced it.
//!
//! History comes from the `git` CLI rather than a git library: `git log
//! --raw` names the blobs each commit introduced and one long-running `git
//! cat-file --batch` streams their contents (see `pipeline`). Git is present
//! wherever repositories are, and this keeps a very large dependency tree out
//! of the build; the benchmark in `bench/git_history.sh` measures the result.
//!
//! What a finding reports:
//! - `repo`: the canonical absolute path of the repository's work tree (of
//!   its git directory when bare), whatever path was given, unless
//!   [`GitOptions::repo_label`] names it;
//! - `path`: relative to the repository root; `commit` and `author_email`:
//!   the earliest commit (parents before children, then by commit date) whose
//!   diff against its first parent added the blob;
//! - a key that stays in a file across edits is reported once, at the commit
//!   that first put it at that path: each later version of the file is a new
//!   blob, but not a new leak.

mod command;
mod history;
mod pipeline;
mod revs;
mod staged;

pub use command::GitError;
pub use history::BlobId;
pub use revs::Commits;
pub use staged::scan_staged;

use super::{ScanStats, SourceError};
use crate::scan::driver::{Emit, FirstSeen, Source};
use crate::scan::{Finding, Scanner};
use command::Repo;
use std::path::Path;

#[derive(Debug, Clone)]
pub struct GitOptions {
    /// Blobs larger than this are skipped and counted.
    pub max_blob_size: u64,
    /// What findings report as `repo`; the daemon passes its configured name.
    pub repo_label: Option<String>,
    /// Every commit, or only those a push or pull request adds.
    pub commits: Commits,
}

impl Default for GitOptions {
    fn default() -> Self {
        GitOptions {
            max_blob_size: 20 << 20,
            repo_label: None,
            commits: Commits::All,
        }
    }
}

/// The result of [`scan_repo`].
#[derive(Debug)]
pub struct GitScan {
    /// In history order, oldest first.
    pub findings: Vec<Finding>,
    /// The commits the refs pointed at when the scan started, sorted. Pass
    /// them as `since` next time to scan only what is new. For a range, its
    /// end.
    pub tips: Vec<String>,
    /// Blobs that could not be read (missing from a partial clone, corrupt),
    /// each named with its path and commit: the scan did not see them.
    pub missing: Vec<String>,
}

impl GitScan {
    /// An error naming what could not be read, if anything: a scan that
    /// missed blobs must not pass for a clean one.
    pub fn incomplete(&self) -> Option<GitError> {
        incomplete(&self.missing)
    }
}

fn incomplete(missing: &[String]) -> Option<GitError> {
    let first = missing.first()?;
    Some(GitError::Incomplete {
        count: missing.len(),
        first: first.clone(),
    })
}

/// Scans the history of the repository containing `repo`: [`History`]
/// run by the one-shot driver.
pub fn scan_repo(
    repo: &Path,
    scanner: &Scanner,
    opts: &GitOptions,
    stats: &ScanStats,
    since: &[String],
) -> Result<GitScan, SourceError> {
    let mut history = History::new(repo, opts, stats, since);
    let findings = crate::scan::driver::run(scanner, &mut history)?;
    Ok(GitScan {
        findings,
        tips: history.tips,
        missing: history.missing,
    })
}

/// The history of the repository containing `repo`, as a [`Source`]: each
/// blob the selected commits introduced is emitted once, at its place in
/// history order, its origin the earliest commit and path that added it.
///
/// `since` lists commits already scanned (the `tips` of an earlier scan):
/// they and their ancestors are skipped. Ids that no longer exist, after a
/// force-push or a deleted branch was garbage-collected, are ignored. With
/// `since` empty the whole history is scanned.
pub struct History<'a> {
    repo: &'a Path,
    opts: &'a GitOptions,
    stats: &'a ScanStats,
    since: &'a [String],
    /// After `run`: what the refs pointed at when it started (see
    /// [`GitScan::tips`]).
    pub tips: Vec<String>,
    /// After `run`: what could not be read (see [`GitScan::missing`]).
    pub missing: Vec<String>,
}

impl<'a> History<'a> {
    pub fn new(
        repo: &'a Path,
        opts: &'a GitOptions,
        stats: &'a ScanStats,
        since: &'a [String],
    ) -> Self {
        History {
            repo,
            opts,
            stats,
            since,
            tips: Vec::new(),
            missing: Vec::new(),
        }
    }

    /// After `run`: an error naming what could not be read, if anything.
    pub fn incomplete(&self) -> Option<GitError> {
        incomplete(&self.missing)
    }
}

impl Source for History<'_> {
    type Error = SourceError;

    fn run(&mut self, out: &dyn Emit) -> Result<(), SourceError> {
        let (repo, opts, stats) = (self.repo, self.opts, self.stats);
        if !repo.exists() {
            return Err(SourceError::Missing {
                path: repo.display().to_string(),
            });
        }
        let repo = Repo::open(repo)?;
        // Only full commit ids reach `git log --stdin`, which would take a
        // line such as `--all` or `--not` as an option.
        let (tips, exclude, missing) = match &opts.commits {
            Commits::All => {
                let Tips { commits, missing } = tips(&repo)?;
                for what in &missing {
                    stats.record_unreadable(what.clone());
                }
                (commits, existing_commits(&repo, self.since)?, missing)
            }
            Commits::Range { from, to } => (
                vec![revs::resolve(&repo, to)?],
                vec![revs::resolve(&repo, from)?],
                Vec::new(),
            ),
        };
        self.tips = tips;
        self.missing = missing;
        if self.tips.is_empty() {
            return Ok(());
        }
        let mut revs = String::new();
        for tip in &self.tips {
            revs.push_str(tip);
            revs.push('\n');
        }
        for known in exclude {
            revs.push('^');
            revs.push_str(&known);
            revs.push('\n');
        }
        let label = opts.repo_label.as_deref().unwrap_or(&repo.label);
        let missed = pipeline::emit_history(
            &repo,
            label,
            revs.as_bytes(),
            out,
            opts.max_blob_size,
            stats,
        )?;
        self.missing.extend(missed);
        Ok(())
    }

    /// Later versions of a file repeat the keys earlier versions held; keep
    /// the first appearance of each (rule, key, path).
    fn finish(&self, found: Vec<(u64, Finding)>) -> Vec<Finding> {
        let mut first = FirstSeen::default();
        found
            .into_iter()
            .map(|(_, f)| f)
            .filter(|f| first.first(f))
            .collect()
    }
}

/// The commits every ref points at, without scanning anything: where a
/// repository watcher that skips history starts.
pub fn current_tips(repo: &Path) -> Result<Vec<String>, SourceError> {
    if !repo.exists() {
        return Err(SourceError::Missing {
            path: repo.display().to_string(),
        });
    }
    Ok(tips(&Repo::open(repo)?)?.commits)
}

/// What the refs point at.
struct Tips {
    /// The commits every ref (and HEAD) points at, peeled, sorted.
    commits: Vec<String>,
    /// Refs to an object the repository lacks, described: a ref to a commit
    /// a partial clone never fetched must not stop the scan of the others.
    missing: Vec<String>,
}

/// Refs are listed without reading their objects (`for-each-ref` with only
/// the name and id), then looked up and peeled in one `cat-file
/// --batch-check`; refs to trees or blobs have no history and are left out.
/// (`rev-list --all` dies on the first ref to a missing object.)
fn tips(repo: &Repo) -> Result<Tips, GitError> {
    let refs = repo.output(
        &["for-each-ref", "--format=%(objectname) %(refname)"],
        "for-each-ref",
        b"",
    )?;
    let mut named: Vec<(String, String)> = String::from_utf8_lossy(&refs)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(id, name)| (id.to_string(), name.to_string()))
        .collect();
    // A detached HEAD is no ref; an unborn one names nothing.
    if let Ok(head) = repo.output(
        &["rev-parse", "--quiet", "--verify", "HEAD"],
        "rev-parse",
        b"",
    ) {
        named.push((
            String::from_utf8_lossy(&head).trim().to_string(),
            "HEAD".into(),
        ));
    }
    named.retain(|(id, _)| BlobId::from_hex(id.as_bytes()).is_some());
    let query: String = named.iter().map(|(id, _)| format!("{id}^{{}}\n")).collect();
    let mut tips = Tips {
        commits: Vec::new(),
        missing: Vec::new(),
    };
    if named.is_empty() {
        return Ok(tips);
    }
    let out = repo.output(
        &["cat-file", "--batch-check=%(objectname) %(objecttype)"],
        "cat-file",
        query.as_bytes(),
    )?;
    let answers = String::from_utf8_lossy(&out);
    let answers: Vec<&str> = answers.lines().collect();
    if answers.len() != named.len() {
        return Err(GitError::Protocol {
            repo: repo.label.clone(),
            command: "cat-file".into(),
            detail: format!("{} answers for {} refs", answers.len(), named.len()),
        });
    }
    for ((id, name), answer) in named.iter().zip(answers) {
        if let Some(commit) = answer.strip_suffix(" commit") {
            tips.commits.push(commit.to_string());
        } else if answer.ends_with(" missing") {
            tips.missing.push(format!(
                "{name}: it points to {id}, which is missing from the object store (it was not fetched)"
            ));
        }
    }
    tips.commits.sort();
    tips.commits.dedup();
    tips.missing.dedup();
    Ok(tips)
}

/// The ids in `since` that name commits present in the repository. Anything
/// else (gone after a force-push, or not an id at all) is dropped: it must
/// not reach `git log`, where it would be an error or an option.
fn existing_commits(repo: &Repo, since: &[String]) -> Result<Vec<String>, GitError> {
    let mut query = String::new();
    for id in since {
        if BlobId::from_hex(id.as_bytes()).is_some() {
            query.push_str(id);
            query.push('\n');
        }
    }
    if query.is_empty() {
        return Ok(Vec::new());
    }
    let out = repo.output(
        &["cat-file", "--batch-check=%(objectname) %(objecttype)"],
        "cat-file",
        query.as_bytes(),
    )?;
    Ok(String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| l.strip_suffix(" commit"))
        .map(str::to_string)
        .collect())
}
