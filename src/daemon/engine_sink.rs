//! The remediation engine as the [`FindingSink`] of every source: the
//! daemon's pipeline (through [`EngineSink`], which logs each incident) and
//! the GitHub webhook (the engine itself, or the daemon's current one).

use crate::remediate::{Engine, RemediateError};
use crate::scan::{BoxFuture, Finding, FindingSink, Handled, Origin, SinkError};
use crate::store::StoreError;
use std::sync::Arc;

impl FindingSink for Engine {
    fn submit(&self, findings: Vec<Finding>) -> BoxFuture<'_, Result<Vec<Handled>, SinkError>> {
        Box::pin(async move {
            let findings = findings.into_iter().map(with_fallback_author).collect();
            let outcomes = Engine::process(self, findings).await.map_err(classify)?;
            Ok(outcomes
                .iter()
                .map(|o| Handled {
                    fingerprint: o.fingerprint.clone(),
                    contained: o.contained(),
                })
                .collect())
        })
    }

    fn retry_pending(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            for o in Engine::retry_pending(self).await {
                tracing::info!(incident = o.incident_id, state = %o.state, reason = o.reason.as_deref(), "incident retried");
            }
        })
    }
}

/// Whether retrying the same findings can help. The store refusing the rows
/// themselves (a constraint, a value too big) is permanent; a store that is
/// busy, full or unreachable, and anything else, is transient: the findings
/// wait (a wrong guess costs a retry, not a lost key).
fn classify(e: RemediateError) -> SinkError {
    let permanent = match &e {
        RemediateError::Store(StoreError::Sql { source, .. }) => {
            source.is_constraint_violation() || source.is_too_big()
        }
        _ => false,
    };
    if permanent {
        SinkError::Permanent(e.to_string())
    } else {
        SinkError::Transient(e.to_string())
    }
}

/// The owner order is `owners`, the commit author, the pusher, then
/// `default_owner`; the engine resolves the first two and the last, so the
/// pusher (on the origin of a push's findings) stands in for a commit that
/// names no author.
fn with_fallback_author(mut f: Finding) -> Finding {
    if let Origin::GitHub {
        repo,
        commit,
        author_email: None,
        path,
        pusher: Some(pusher),
    } = &*f.origin
    {
        f.origin = Arc::new(Origin::GitHub {
            repo: repo.clone(),
            commit: commit.clone(),
            author_email: Some(pusher.clone()),
            path: path.clone(),
            pusher: Some(pusher.clone()),
        });
    }
    f
}

/// The engine as the daemon pipeline's sink: each outcome logged.
pub struct EngineSink(pub Engine);

impl FindingSink for EngineSink {
    fn submit(&self, findings: Vec<Finding>) -> BoxFuture<'_, Result<Vec<Handled>, SinkError>> {
        Box::pin(async move {
            let findings: Vec<Finding> = findings.into_iter().map(with_fallback_author).collect();
            let outcomes = self.0.process(findings).await.map_err(classify)?;
            let mut handled = Vec::with_capacity(outcomes.len());
            for o in outcomes {
                tracing::info!(
                    incident = o.incident_id,
                    provider = %o.provider,
                    fingerprint = %o.fingerprint.short(),
                    state = %o.state,
                    reason = o.reason.as_deref(),
                    new = o.created,
                    "incident"
                );
                handled.push(Handled {
                    fingerprint: o.fingerprint.clone(),
                    contained: o.contained(),
                });
            }
            Ok(handled)
        })
    }

    fn retry_pending(&self) -> BoxFuture<'_, ()> {
        FindingSink::retry_pending(&self.0)
    }
}
