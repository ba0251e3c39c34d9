//! The remediation engine as the webhook's [`FindingSink`].

use super::{BoxFuture, FindingSink, Handled, SinkError};
use crate::remediate::{Engine, IncidentOutcome};
use crate::scan::{Finding, Fingerprint, Origin};
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
                .filter_map(|o| {
                    Some(Handled {
                        fingerprint: Fingerprint::parse(&o.fingerprint)?,
                        contained: contained(self, o),
                    })
                })
                .collect())
        })
    }
}

/// Whether the key can no longer be used: frozen, revoked, rotated,
/// expired. A Tatum key waiting for a manual rotation is frozen already,
/// which only its stage tells.
fn contained(engine: &Engine, o: &IncidentOutcome) -> bool {
    if matches!(
        o.state.as_str(),
        "contained" | "rotated" | "expired" | "revoked" | "confirmed" | "closed"
    ) {
        return true;
    }
    o.provider == "tatum"
        && o.state == "waiting-manual"
        && engine
            .store()
            .incident(o.incident_id)
            .ok()
            .flatten()
            .is_some_and(|row| {
                matches!(
                    row.stage.as_str(),
                    "contained" | "inventoried" | "rotated" | "propagated" | "expired"
                )
            })
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
