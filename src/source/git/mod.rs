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

pub use command::GitError;
pub use history::BlobId;

use super::{ScanStats, SourceError};
use crate::scan::{Finding, Scanner};
use command::Repo;
use std::collections::HashSet;
use std::path::Path;

#[derive(Debug, Clone)]
pub struct GitOptions {
    /// Blobs larger than this are skipped and counted.
    pub max_blob_size: u64,
    /// What findings report as `repo`; the daemon passes its configured name.
    pub repo_label: Option<String>,
}

impl Default for GitOptions {
    fn default() -> Self {
        GitOptions {
            max_blob_size: 20 << 20,
            repo_label: None,
        }
    }
}

/// The result of [`scan_repo`].
#[derive(Debug)]
pub struct GitScan {
    /// In history order, oldest first.
    pub findings: Vec<Finding>,
    /// The commits the refs pointed at when the scan started, sorted. Pass
    /// them as `since` next time to scan only what is new.
    pub tips: Vec<String>,
}

/// Scans the history of the repository containing `repo`.
///
/// `since` lists commits already scanned (the `tips` of an earlier scan):
/// they and their ancestors are skipped. Ids that no longer exist, after a
/// force-push or a deleted branch was garbage-collected, are ignored. With
/// `since` empty the whole history is scanned.
pub fn scan_repo(
    repo: &Path,
    scanner: &Scanner,
    opts: &GitOptions,
    stats: &ScanStats,
    since: &[String],
) -> Result<GitScan, SourceError> {
    if !repo.exists() {
        return Err(SourceError::Missing {
            path: repo.display().to_string(),
        });
    }
    let repo = Repo::open(repo)?;
    let tips = tips(&repo)?;
    if tips.is_empty() {
        return Ok(GitScan {
            findings: Vec::new(),
            tips,
        });
    }
    let mut revs = String::new();
    for tip in &tips {
        revs.push_str(tip);
        revs.push('\n');
    }
    for known in existing_commits(&repo, since)? {
        revs.push('^');
        revs.push_str(&known);
        revs.push('\n');
    }
    let label = opts.repo_label.as_deref().unwrap_or(&repo.label);
    let found = pipeline::scan_history(
        &repo,
        label,
        revs.as_bytes(),
        scanner,
        opts.max_blob_size,
        stats,
    )?;
    Ok(GitScan {
        findings: first_appearances(found),
        tips,
    })
}

/// The commits every ref (and HEAD) points at, peeled; refs to trees or
/// blobs have no history and are left out.
fn tips(repo: &Repo) -> Result<Vec<String>, GitError> {
    let out = repo.output(&["rev-list", "--all", "--no-walk"], "rev-list", b"")?;
    let mut tips: Vec<String> = String::from_utf8_lossy(&out)
        .lines()
        .filter(|l| BlobId::from_hex(l.as_bytes()).is_some())
        .map(str::to_string)
        .collect();
    tips.sort();
    tips.dedup();
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

/// Later versions of a file repeat the keys earlier versions held; keep the
/// first appearance of each (rule, key, path).
fn first_appearances(findings: Vec<Finding>) -> Vec<Finding> {
    let mut seen = HashSet::new();
    findings
        .into_iter()
        .filter(|f| seen.insert((f.rule_id.clone(), f.fingerprint.clone(), f.origin.path())))
        .collect()
}
