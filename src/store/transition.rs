//! The transitions of the incident state machine ([`super::state`]), as
//! methods of [`IncidentRow`]: each names the stages it may start from.

use super::{IncidentRow, Refused, Stage, State};

/// The transitions a playbook makes. Each moves the stage (and the state
/// that goes with it) and clears what the previous step left: its reason,
/// failure count, backoff and waits. Call [`Store::save_incident`] after.
///
/// [`Store::save_incident`]: super::Store::save_incident
impl IncidentRow {
    fn step(
        &mut self,
        transition: &'static str,
        from: &[Stage],
        to: (Stage, State),
    ) -> Result<(), Refused> {
        if self.state.is_final() || !from.contains(&self.stage) {
            return Err(Refused {
                id: self.id,
                transition,
                state: self.state,
                stage: self.stage,
                allowed: from
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("|"),
            });
        }
        (self.stage, self.state) = to;
        self.reason = None;
        self.failures = 0;
        self.retry_at_ms = None;
        self.waits = 0;
        Ok(())
    }

    /// The provider says the key works.
    pub fn verify(&mut self) -> Result<(), Refused> {
        self.step(
            "verify",
            &[Stage::Detected],
            (Stage::Verified, State::Verified),
        )
    }

    /// The rule cannot verify: go on as if live, but show `detected`.
    pub fn skip_verify(&mut self) -> Result<(), Refused> {
        self.step(
            "skip verify",
            &[Stage::Detected],
            (Stage::Verified, State::Detected),
        )
    }

    /// The provider already rejects the key.
    pub fn not_live(&mut self) -> Result<(), Refused> {
        self.step(
            "mark not-live",
            &[Stage::Detected],
            (Stage::NotLive, State::NotLive),
        )
    }

    /// The key is frozen: it exists but cannot transact.
    pub fn contain(&mut self) -> Result<(), Refused> {
        self.step(
            "contain",
            &[Stage::Verified],
            (Stage::Contained, State::Contained),
        )
    }

    /// What the key is bound to is known; still contained.
    pub fn inventory(&mut self) -> Result<(), Refused> {
        self.step(
            "inventory",
            &[Stage::Contained],
            (Stage::Inventoried, State::Contained),
        )
    }

    /// The key was replaced by a new one. Also from any earlier stage: the
    /// owner may hand over a new key by hand before keysentry got that far.
    pub fn rotate(&mut self) -> Result<(), Refused> {
        self.step(
            "rotate",
            &[
                Stage::Detected,
                Stage::Verified,
                Stage::Contained,
                Stage::Inventoried,
                Stage::Rotated,
                Stage::Expired,
            ],
            (Stage::Rotated, State::Rotated),
        )
    }

    /// The key was expired (or died while being frozen).
    pub fn expire(&mut self) -> Result<(), Refused> {
        self.step(
            "expire",
            &[Stage::Verified, Stage::Inventoried],
            (Stage::Expired, State::Expired),
        )
    }

    /// The new key reached every consumer of the old one.
    pub fn propagate(&mut self) -> Result<(), Refused> {
        self.step(
            "propagate",
            &[Stage::Rotated],
            (Stage::Propagated, State::Rotated),
        )
    }

    /// The provider accepted the revoke.
    pub fn revoke(&mut self) -> Result<(), Refused> {
        self.step(
            "revoke",
            &[Stage::Verified],
            (Stage::Revoked, State::Revoked),
        )
    }

    /// The old key is checked dead (and the new one live, if any).
    pub fn confirm(&mut self) -> Result<(), Refused> {
        self.step(
            "confirm",
            &[Stage::Propagated, Stage::Expired, Stage::Revoked],
            (Stage::Confirmed, State::Confirmed),
        )
    }

    pub fn close(&mut self) -> Result<(), Refused> {
        self.step("close", &[Stage::Confirmed], (Stage::Closed, State::Closed))
    }

    /// Waits for the owner or the provider in `state` (`waiting-manual`, or
    /// the state it is in), without moving the stage.
    pub fn wait_in(&mut self, state: State, reason: String) -> Result<(), Refused> {
        let waitable = matches!(
            state,
            State::WaitingManual | State::Revoked | State::Rotated | State::Expired
        );
        if self.state.is_final() || !waitable {
            return Err(Refused {
                id: self.id,
                transition: "wait",
                state: self.state,
                stage: self.stage,
                allowed: format!("any open one, into {state}"),
            });
        }
        self.state = state;
        self.reason = Some(reason);
        self.waits = self.waits.saturating_add(1);
        Ok(())
    }

    /// A step failed; the stage stays so the next pass resumes there. An
    /// incident already finished is left as it is.
    pub fn fail(&mut self, reason: String) -> Result<(), Refused> {
        if self.state.is_final() {
            return Err(Refused {
                id: self.id,
                transition: "fail",
                state: self.state,
                stage: self.stage,
                allowed: "any open one".into(),
            });
        }
        self.state = State::Failed;
        self.reason = Some(reason);
        self.failures = self.failures.saturating_add(1);
        Ok(())
    }
}
