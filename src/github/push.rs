//! Push events: exactly what a push added, scanned, each finding attributed
//! to the repository, the commit that added the line, its author, the path
//! and the line in the new file.
//!
//! - an existing branch: `compare before...after` (GitHub diffs from the merge
//!   base, so a force push yields what it newly brought in);
//! - a new branch or tag (`before` all zeros): `compare <default>...after`,
//!   or, for the default branch itself (a repository's first push), the
//!   listed commits one by one;
//! - a deleted branch: nothing (filtered before it is stored);
//! - a file whose patch GitHub omits (too large) is fetched as a blob and
//!   scanned whole.
//!
//! Known gaps: a key added and removed again within one push is not in the
//! compare diff; a compare truncated at GitHub's 300-file cap falls back to
//! the commits it lists, whose own file lists are not paged.

use super::api::{ApiError, CommitData, FileChange, RepoClient};
use super::patch;
use super::untrusted;
use crate::scan::driver::{Emit, Flow, Source};
use crate::scan::{Chunk, Finding, Origin, Scanner};
use crate::source::looks_binary;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::Arc;

/// GitHub's compare response lists at most this many files.
const COMPARE_FILE_CAP: usize = 300;

/// What processing a push needs, extracted from the payload at receipt and
/// stored as the delivery's job. Commit messages are left out on purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushJob {
    pub repo: String,
    pub git_ref: String,
    pub before: String,
    pub after: String,
    pub created: bool,
    pub forced: bool,
    pub default_branch: Option<String>,
    pub commits: Vec<PushedCommit>,
    /// The owner of last resort, after `owners` and the commit author.
    pub pusher_email: Option<String>,
    pub installation: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushedCommit {
    pub id: String,
    pub author_email: Option<String>,
}

/// What to do with a push delivery.
#[derive(Debug, PartialEq, Eq)]
pub enum PushEvent {
    Ignored(&'static str),
    Scan(PushJob),
}

#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    #[error("malformed {event} payload: {message}")]
    Json {
        event: &'static str,
        message: String,
    },
    /// The value is left out on purpose (see `untrusted`).
    #[error("malformed {event} payload: `{field}` {problem}")]
    Field {
        event: &'static str,
        field: &'static str,
        problem: &'static str,
    },
}

#[derive(Deserialize)]
struct Payload {
    #[serde(rename = "ref")]
    git_ref: String,
    before: String,
    after: String,
    #[serde(default)]
    created: bool,
    #[serde(default)]
    deleted: bool,
    #[serde(default)]
    forced: bool,
    #[serde(default)]
    commits: Vec<PayloadCommit>,
    repository: PayloadRepo,
    #[serde(default)]
    pusher: Option<PayloadPerson>,
    #[serde(default)]
    installation: Option<PayloadInstallation>,
}

#[derive(Deserialize)]
struct PayloadCommit {
    id: String,
    #[serde(default)]
    author: Option<PayloadPerson>,
}

#[derive(Deserialize)]
pub(super) struct PayloadRepo {
    pub(super) full_name: String,
    #[serde(default)]
    default_branch: Option<String>,
}

#[derive(Deserialize)]
struct PayloadPerson {
    #[serde(default)]
    email: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct PayloadInstallation {
    pub(super) id: u64,
}

pub fn parse_push(body: &[u8]) -> Result<PushEvent, PayloadError> {
    let p: Payload = serde_json::from_slice(body).map_err(|e| PayloadError::Json {
        event: "push",
        message: untrusted::json_problem(&e),
    })?;
    if p.deleted {
        return Ok(PushEvent::Ignored("branch deleted"));
    }
    check_repo("push", &p.repository.full_name)?;
    for (field, sha) in [("before", &p.before), ("after", &p.after)] {
        check_sha("push", field, sha)?;
    }
    // Both can end up in a compare URL (`../` there left the repository's
    // API paths, with the token).
    field("push", "ref", untrusted::full_ref_problem(&p.git_ref))?;
    if let Some(b) = &p.repository.default_branch {
        field(
            "push",
            "repository.default_branch",
            untrusted::branch_problem(b),
        )?;
    }
    let commits = p
        .commits
        .into_iter()
        .map(|c| {
            check_sha("push", "commits[].id", &c.id)?;
            Ok(PushedCommit {
                id: c.id,
                author_email: c.author.and_then(|a| a.email).filter(|e| !e.is_empty()),
            })
        })
        .collect::<Result<Vec<_>, PayloadError>>()?;
    Ok(PushEvent::Scan(PushJob {
        repo: p.repository.full_name,
        git_ref: p.git_ref,
        created: p.created || is_zero(&p.before),
        forced: p.forced,
        before: p.before,
        after: p.after,
        default_branch: p.repository.default_branch,
        commits,
        pusher_email: p.pusher.and_then(|u| u.email).filter(|e| !e.is_empty()),
        installation: p.installation.map(|i| i.id),
    }))
}

fn field(
    event: &'static str,
    field: &'static str,
    problem: Option<&'static str>,
) -> Result<(), PayloadError> {
    match problem {
        None => Ok(()),
        Some(problem) => Err(PayloadError::Field {
            event,
            field,
            problem,
        }),
    }
}

/// `owner/name`, nothing that could step outside the `/repos/` path.
pub(super) fn check_repo(event: &'static str, repo: &str) -> Result<(), PayloadError> {
    field(event, "repository.full_name", untrusted::repo_problem(repo))
}

fn check_sha(event: &'static str, name: &'static str, sha: &str) -> Result<(), PayloadError> {
    field(event, name, untrusted::sha_problem(sha))
}

fn is_zero(sha: &str) -> bool {
    sha.bytes().all(|b| b == b'0')
}

/// Limits on what is fetched and scanned.
#[derive(Debug, Clone, Copy)]
pub struct PushLimits {
    /// Blobs larger than this are skipped, as `scan.max_file_size` says.
    pub max_file_size: u64,
}

/// Every key the push added, attributed to the commit that added it.
pub async fn scan_push(
    client: &RepoClient,
    job: &PushJob,
    scanner: &Arc<Scanner>,
    limits: PushLimits,
) -> Result<Vec<Finding>, ApiError> {
    check_job(job)?;
    let ctx = Ctx {
        client,
        job,
        scanner,
        limits,
    };
    match ctx.diff().await? {
        // One commit: the compare's diff is that commit's own.
        Diff::Compare(cmp) if cmp.commits.len() <= 1 && cmp.files.len() < COMPARE_FILE_CAP => {
            let (sha, email) = match cmp.commits.as_slice() {
                [only] => (answered_sha(job, &only.sha)?, ctx.author(only)),
                _ => (job.after.clone(), ctx.listed_author(&job.after)),
            };
            ctx.scan_files(&cmp.files, &sha, email).await
        }
        // Several commits (or more files than a compare lists): each
        // commit's own diff. A key that one commit added and a later one
        // removed is not in the net diff, yet it is public in the history;
        // and each finding is attributed to the commit that added it.
        Diff::Compare(cmp) => {
            let shas = cmp.commits.iter().map(|c| c.sha.clone()).collect();
            ctx.walk(shas).await
        }
        Diff::Commits(shas) => ctx.walk(shas).await,
    }
}

/// What a stored job names is checked again before it reaches a URL: the
/// store may hold jobs received before these checks existed.
pub(super) fn check_job(job: &PushJob) -> Result<(), ApiError> {
    let what = format!("push to {}", job.repo);
    let invalid = |field, problem| ApiError::Invalid {
        what: what.clone(),
        field,
        problem,
    };
    if let Some(p) = untrusted::repo_problem(&job.repo) {
        return Err(invalid("repository.full_name", p));
    }
    for (field, sha) in [("before", &job.before), ("after", &job.after)] {
        if let Some(p) = untrusted::sha_problem(sha) {
            return Err(invalid(field, p));
        }
    }
    if let Some(p) = untrusted::full_ref_problem(&job.git_ref) {
        return Err(invalid("ref", p));
    }
    if let Some(p) = job
        .default_branch
        .as_deref()
        .and_then(untrusted::branch_problem)
    {
        return Err(invalid("repository.default_branch", p));
    }
    if let Some(p) = job
        .commits
        .iter()
        .find_map(|c| untrusted::sha_problem(&c.id))
    {
        return Err(invalid("commits[].id", p));
    }
    Ok(())
}

/// A commit sha from a GitHub answer, before it goes into a URL or a
/// finding (and from there into a comment URL).
fn answered_sha(job: &PushJob, sha: &str) -> Result<String, ApiError> {
    match untrusted::sha_problem(sha) {
        None => Ok(sha.to_string()),
        Some(problem) => Err(ApiError::Invalid {
            what: format!("push to {}", job.repo),
            field: "sha (in GitHub's answer)",
            problem,
        }),
    }
}

enum Diff {
    Compare(Compare),
    Commits(Vec<String>),
}

type Compare = super::api::Compare;

struct Ctx<'a> {
    client: &'a RepoClient,
    job: &'a PushJob,
    scanner: &'a Arc<Scanner>,
    limits: PushLimits,
}

impl Ctx<'_> {
    /// Which diff says what the push added.
    async fn diff(&self) -> Result<Diff, ApiError> {
        let job = self.job;
        let listed = || Diff::Commits(job.commits.iter().map(|c| c.id.clone()).collect());
        let base = if !job.created {
            job.before.clone()
        } else {
            let default = match &job.default_branch {
                Some(b) => b.clone(),
                None => self.client.default_branch(&job.repo).await?,
            };
            if job.git_ref == format!("refs/heads/{default}") {
                // The default branch itself is new: nothing to compare with.
                return Ok(listed());
            }
            default
        };
        match self.client.compare(&job.repo, &base, &job.after).await {
            Ok(c) => Ok(Diff::Compare(c)),
            // The base is gone (an empty default branch, a garbage-collected
            // `before`): the commits the payload lists are all we have.
            Err(ApiError::Refused { status: 404, .. }) => Ok(listed()),
            Err(e) => Err(e),
        }
    }

    async fn walk(&self, shas: Vec<String>) -> Result<Vec<Finding>, ApiError> {
        let mut findings = Vec::new();
        for sha in shas {
            let sha = answered_sha(self.job, &sha)?;
            let c = self.client.commit(&self.job.repo, &sha).await?;
            let email = self.author(&c);
            let answered = answered_sha(self.job, &c.sha)?;
            findings.extend(self.scan_files(&c.files, &answered, email).await?);
        }
        Ok(findings)
    }

    fn author(&self, c: &CommitData) -> Option<String> {
        c.commit
            .author
            .as_ref()
            .and_then(|a| a.email.clone())
            .filter(|e| !e.is_empty())
            .or_else(|| self.listed_author(&c.sha))
    }

    fn listed_author(&self, sha: &str) -> Option<String> {
        self.job
            .commits
            .iter()
            .find(|c| c.id == sha)
            .and_then(|c| c.author_email.clone())
    }

    /// The added lines of `files` (patches, or whole blobs where GitHub
    /// omitted the patch), scanned.
    async fn scan_files(
        &self,
        files: &[FileChange],
        commit: &str,
        author_email: Option<String>,
    ) -> Result<Vec<Finding>, ApiError> {
        let mut work: Vec<(Chunk, Option<Arc<HashSet<u64>>>)> = Vec::new();
        for f in files {
            if f.status == "removed" {
                continue;
            }
            let origin = Arc::new(Origin::GitHub {
                repo: self.job.repo.clone(),
                commit: commit.to_string(),
                author_email: author_email.clone(),
                path: f.filename.clone(),
                pusher: self.job.pusher_email.clone(),
            });
            if let Some(p) = &f.patch {
                let side = patch::new_side(p, &origin);
                let added = Arc::new(side.added);
                work.extend(side.chunks.into_iter().map(|c| (c, Some(added.clone()))));
            } else if let Some(chunk) = self.blob_chunk(f, origin).await? {
                work.push((chunk, None));
            }
        }
        if work.is_empty() {
            return Ok(Vec::new());
        }
        let scanner = self.scanner.clone();
        let scanned = tokio::task::spawn_blocking(move || {
            let Ok(found) = crate::scan::driver::run(&scanner, &mut Added(work));
            found
        })
        .await;
        scanned.map_err(|e| ApiError::Decode {
            what: format!("scanning {}@{commit}", self.job.repo),
            message: e.to_string(),
        })
    }

    /// The new blob of a file whose patch GitHub left out, unless it is
    /// binary, too large, or the change added nothing (a pure rename).
    async fn blob_chunk(
        &self,
        f: &FileChange,
        origin: Arc<Origin>,
    ) -> Result<Option<Chunk>, ApiError> {
        let Some(sha) = &f.sha else {
            return Ok(None);
        };
        let sha = answered_sha(self.job, sha)?;
        if f.additions == 0 && f.status != "added" {
            return Ok(None);
        }
        let data = self.client.blob(&self.job.repo, &sha).await?;
        if data.len() as u64 > self.limits.max_file_size {
            tracing::warn!(
                repo = %self.job.repo, path = %f.filename, bytes = data.len(),
                "skipped: larger than scan.max_file_size"
            );
            return Ok(None);
        }
        if looks_binary(&data) {
            return Ok(None);
        }
        Ok(Some(Chunk {
            origin,
            data,
            first_line: 1,
            base_offset: 0,
        }))
    }
}

/// One commit's files as a [`Source`]: patches (each hunk's new side, its
/// added lines listed) and whole blobs, in order; [`Source::finish`] keeps
/// the findings on added lines (a patch's context lines are not the push's
/// doing).
struct Added(Vec<(Chunk, Option<Arc<HashSet<u64>>>)>);

impl Source for Added {
    type Error = std::convert::Infallible;

    fn run(&mut self, out: &dyn Emit) -> Result<(), Self::Error> {
        for (seq, (chunk, _)) in self.0.iter().enumerate() {
            if out.chunk(seq as u64, chunk) == Flow::Stop {
                break;
            }
        }
        Ok(())
    }

    fn finish(&self, found: Vec<(u64, Finding)>) -> Vec<Finding> {
        found
            .into_iter()
            .filter(|(seq, f)| {
                self.0
                    .get(*seq as usize)
                    .is_some_and(|(_, added)| added.as_ref().map_or(true, |a| a.contains(&f.line)))
            })
            .map(|(_, f)| f)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(before: &str, deleted: bool) -> String {
        serde_json::json!({
            "ref": "refs/heads/feature",
            "before": before,
            "after": "b".repeat(40),
            "created": before.bytes().all(|b| b == b'0'),
            "deleted": deleted,
            "forced": false,
            "commits": [{"id": "b".repeat(40), "message": "add t-key",
                         "author": {"name": "Dev", "email": "dev@example.com"}}],
            "head_commit": null,
            "repository": {"full_name": "acme/app", "default_branch": "main"},
            "pusher": {"name": "dev", "email": "pusher@example.com"},
            "sender": {"login": "dev"}
        })
        .to_string()
    }

    #[test]
    fn a_push_becomes_a_job_without_commit_messages() {
        let PushEvent::Scan(job) = parse_push(payload(&"a".repeat(40), false).as_bytes()).unwrap()
        else {
            panic!("expected a job")
        };
        assert_eq!(job.repo, "acme/app");
        assert!(!job.created);
        assert_eq!(
            job.commits[0].author_email.as_deref(),
            Some("dev@example.com")
        );
        assert_eq!(job.pusher_email.as_deref(), Some("pusher@example.com"));
        assert!(!serde_json::to_string(&job).unwrap().contains("add t-key"));
    }

    #[test]
    fn new_and_deleted_branches() {
        let zero = "0".repeat(40);
        let PushEvent::Scan(job) = parse_push(payload(&zero, false).as_bytes()).unwrap() else {
            panic!("expected a job")
        };
        assert!(job.created);
        assert_eq!(
            parse_push(payload(&"a".repeat(40), true).as_bytes()).unwrap(),
            PushEvent::Ignored("branch deleted")
        );
    }
}
