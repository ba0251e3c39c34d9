//! One stored job, processed: fetch what it names from GitHub, scan, hand
//! the findings to the sink, and (with `github.comment`) tell the commit.

use super::api::{ApiError, GitHubApi, RepoClient};
use super::job::{now_ms, Job};
use super::push::{scan_push, PushJob, PushLimits};
use super::secret_scanning::alert_findings;
use super::CurrentScanner;
use crate::scan::{Finding, FindingSink, Handled, SinkError};
use crate::store::webhook::{CommentKey, DeliveryStore, WebhookStoreError};
use std::sync::Arc;
use std::time::Duration;

pub struct Processor {
    pub api: GitHubApi,
    /// Looked up per delivery: a daemon reload swaps rules and allowlist.
    pub scanner: CurrentScanner,
    pub sink: Arc<dyn FindingSink>,
    /// Remembers posted comments, so a replay does not comment twice.
    pub store: Arc<DeliveryStore>,
    pub comment: bool,
    pub limits: PushLimits,
}

#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Store(#[from] WebhookStoreError),
    #[error("stored job is unreadable: {0}; the delivery is kept as failed")]
    BadJob(String),
}

impl ProcessError {
    /// Whether the delivery should stay pending and be tried again.
    pub fn is_transient(&self) -> bool {
        match self {
            ProcessError::Api(e) => e.is_transient(),
            ProcessError::Sink(e) => e.is_transient(),
            ProcessError::Store(_) => true,
            ProcessError::BadJob(_) => false,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ProcessError::Api(e) => e.retry_after(),
            _ => None,
        }
    }
}

impl Processor {
    pub async fn run(&self, delivery: &str, job: &Job) -> Result<(), ProcessError> {
        match job {
            Job::Push(push) => {
                let client = self.api.client(push.installation)?;
                let findings = scan_push(&client, push, &(self.scanner)(), self.limits).await?;
                log_findings(delivery, &findings);
                if findings.is_empty() {
                    return Ok(());
                }
                // The pusher travels on each finding's origin.
                let handled = self.sink.submit(findings.clone()).await?;
                if self.comment {
                    self.comment_contained(&client, push, &findings, &handled)
                        .await?;
                }
                Ok(())
            }
            Job::SecretScanningAlert(alert) => {
                let client = self.api.client(alert.installation)?;
                let findings = alert_findings(&client, alert, &(self.scanner)()).await?;
                log_findings(delivery, &findings);
                if !findings.is_empty() {
                    self.sink.submit(findings).await?;
                }
                Ok(())
            }
        }
    }

    /// One comment per contained key and place, never naming the key.
    async fn comment_contained(
        &self,
        client: &RepoClient,
        push: &PushJob,
        findings: &[Finding],
        handled: &[Handled],
    ) -> Result<(), ProcessError> {
        for f in findings {
            let contained = handled
                .iter()
                .any(|h| h.fingerprint == f.fingerprint && h.contained);
            let Some(commit) = f.origin.commit().filter(|_| contained) else {
                continue;
            };
            let path = f.origin.path();
            let key = CommentKey {
                repo: push.repo.clone(),
                commit: commit.to_string(),
                path: path.clone(),
                line: f.line,
                fingerprint: f.fingerprint.as_str().to_string(),
            };
            let k = key.clone();
            if self.blocking(move |s| s.comment_posted(&k)).await? {
                continue;
            }
            match client
                .comment_on_commit(&push.repo, commit, &comment_body(f, &path))
                .await
            {
                Ok(()) => {}
                Err(e) if e.is_transient() => return Err(e.into()),
                // The key is contained; a comment GitHub refuses (no write
                // access) must not leave the delivery failed.
                Err(e) => {
                    tracing::warn!(error = %e, "cannot comment on the commit; set github.comment: false or grant the token contents: write");
                    continue;
                }
            }
            self.blocking(move |s| s.record_comment(&key, now_ms()))
                .await?;
        }
        Ok(())
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&DeliveryStore) -> Result<T, WebhookStoreError> + Send + 'static,
    ) -> Result<T, ProcessError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| {
                ProcessError::Sink(SinkError::Transient(format!("store task failed: {e}")))
            })?
            .map_err(ProcessError::from)
    }
}

/// The commit comment: where, which rule, that the key was contained, and
/// the fingerprint to find the incident by. Never the key, not even redacted
/// (a prefix narrows a guess, and a public comment reaches everyone).
fn comment_body(f: &Finding, path: &str) -> String {
    format!(
        "**keysentry**: this commit adds a {} (rule `{}`) in `{}` at line {}.\n\n\
         The key has been contained and its owner alerted. Remove it from the code \
         and from the history, and use the replacement key from your secret store.\n\n\
         Incident fingerprint: `{}`",
        f.rule_name,
        f.rule_id,
        path,
        f.line,
        f.fingerprint.short()
    )
}

fn log_findings(delivery: &str, findings: &[Finding]) {
    for f in findings {
        tracing::warn!(
            delivery,
            rule = %f.rule_id,
            repo = f.origin.repo().unwrap_or(""),
            commit = f.origin.commit().unwrap_or(""),
            path = %f.origin.path(),
            line = f.line,
            fingerprint = f.fingerprint.short(),
            redacted = %f.secret,
            "key found in GitHub delivery"
        );
    }
}
