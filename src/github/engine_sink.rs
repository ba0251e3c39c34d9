//! The remediation engine as the webhook's [`FindingSink`].

use super::{BoxFuture, FindingSink, Handled, SinkError};
use crate::remediate::Engine;
use crate::scan::{Finding, Origin};
use std::sync::Arc;

impl FindingSink for Engine {
    fn process(
        &self,
        findings: Vec<Finding>,
        fallback_owner: Option<String>,
    ) -> BoxFuture<'_, Result<Vec<Handled>, SinkError>> {
        Box::pin(async move {
            let findings = findings
                .into_iter()
                .map(|f| with_fallback_author(f, fallback_owner.as_deref()))
                .collect();
            let outcomes = Engine::process(self, findings)
                .await
                .map_err(|e| SinkError(e.to_string()))?;
            Ok(outcomes
                .iter()
                .map(|o| Handled {
                    fingerprint: o.fingerprint.clone(),
                    contained: o.contained(),
                })
                .collect())
        })
    }
}

/// The owner order is `owners`, the commit author, the pusher, then
/// `default_owner`; the engine resolves the first two and the last, so the
/// pusher stands in for a commit that names no author.
fn with_fallback_author(mut f: Finding, pusher: Option<&str>) -> Finding {
    if let (
        Origin::GitHub {
            repo,
            commit,
            author_email: None,
            path,
        },
        Some(pusher),
    ) = (&*f.origin, pusher)
    {
        f.origin = Arc::new(Origin::GitHub {
            repo: repo.clone(),
            commit: commit.clone(),
            author_email: Some(pusher.to_string()),
            path: path.clone(),
        });
    }
    f
}
