//! The end of a pass: save the incident, alert the owner if anything changed
//! (or, for an incident still waiting, remind them once per reminder
//! interval), keep the health view and the held keys in step, and report.

use super::ctx::Done;
use super::playbook::Playbook;
use super::{notify, IncidentOutcome, Inner};
use crate::config::RemediationMode;
use crate::store::State;

impl Inner {
    pub(super) async fn finish(
        &self,
        done: Done,
        playbook: &dyn Playbook,
        plan: Vec<String>,
    ) -> IncidentOutcome {
        let Done {
            mut row,
            mut actions,
            created,
            changed,
        } = done;
        let mode = self.config.remediation.mode;
        if mode != RemediationMode::DryRun {
            let now = super::now_ms();
            // Waiting: the last pass that got anywhere ended in `wait`, and
            // nothing failed since. A pass that could not even poll (no copy
            // of the key after a restart) still reminds and backs off.
            let waiting = row.waits > 0 && row.state != State::Failed && !row.state.is_final();
            let remind = !changed && waiting && self.reminder_due(&row, now);
            if changed || remind {
                row.reminded_at_ms = Some(now);
            }
            if waiting {
                row.retry_at_ms = Some(self.next_poll(&row, now));
            }
            if remind {
                let every = self.reminder_interval.as_secs();
                let reason = row.reason.clone().unwrap_or_default();
                let result = format!(
                    "still {}: {reason} (reminded every {})",
                    row.state,
                    span(every)
                );
                tracing::info!(incident = row.id, provider = %row.provider, key = %row.redacted, action = "reminder", result = %result);
                actions.push(crate::alert::ActionResult {
                    action: "reminder".into(),
                    result,
                });
            }
            if let Err(e) = self.store.save_incident(&row) {
                tracing::error!(incident = row.id, error = %e, "cannot save incident");
            }
            if changed || remind {
                let kind = if remind { "reminder" } else { "change" };
                notify::send(self, playbook, &row, &actions, kind).await;
            }
            self.note_health(&row);
        }
        self.release_secret(&row);
        let mut outcome = IncidentOutcome::of(&row, created);
        outcome.actions = actions;
        outcome.plan = plan;
        outcome
    }
}

/// `86400` → `24 h`, `600` → `10 min`, `5` → `5 s`: a reminder interval as
/// an owner reads it.
fn span(secs: u64) -> String {
    match secs {
        s if s >= 3600 && s % 3600 == 0 => format!("{} h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}
