//! What one pass over an incident reports: the scan's `--remediate` lines,
//! the daemon's logs, the GitHub sink's "contained" answer.

use crate::alert::ActionResult;
use crate::scan::Fingerprint;
use crate::store::{IncidentRow, Stage, State};

/// What one pass over an incident did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct IncidentOutcome {
    pub incident_id: i64,
    pub fingerprint: Fingerprint,
    pub provider: String,
    pub rule_id: String,
    pub redacted: String,
    /// The incident's state after the pass.
    pub state: State,
    /// The playbook step it has reached (`contained`, `inventoried`, ...).
    pub stage: Stage,
    /// Why it failed, or what it is waiting for.
    pub reason: Option<String>,
    /// This pass created the incident.
    pub created: bool,
    /// Provider calls and side effects of this pass, in order.
    pub actions: Vec<ActionResult>,
    /// In dry-run mode: what would be done.
    pub plan: Vec<String>,
}

impl IncidentOutcome {
    /// Whether the key can no longer be used: frozen, revoked, rotated,
    /// expired. A key waiting for a manual rotation may be frozen already,
    /// which only its stage tells.
    pub fn contained(&self) -> bool {
        match self.state {
            State::Contained
            | State::Rotated
            | State::Expired
            | State::Revoked
            | State::Confirmed
            | State::Closed => true,
            State::WaitingManual => matches!(
                self.stage,
                Stage::Contained
                    | Stage::Inventoried
                    | Stage::Rotated
                    | Stage::Propagated
                    | Stage::Expired
            ),
            State::Detected
            | State::Verified
            | State::NotLive
            | State::Failed
            | State::Planned
            | State::Resolved => false,
        }
    }

    pub(super) fn of(row: &IncidentRow, created: bool) -> IncidentOutcome {
        IncidentOutcome {
            incident_id: row.id,
            fingerprint: row.fingerprint.clone(),
            provider: row.provider.clone(),
            rule_id: row.rule_id.clone(),
            redacted: row.redacted.clone(),
            state: row.state,
            stage: row.stage,
            reason: row.reason.clone(),
            created,
            actions: Vec::new(),
            plan: Vec::new(),
        }
    }
}
