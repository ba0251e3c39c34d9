//! One pass over one incident: the row being advanced, the keys in hand, the
//! actions taken, and the loop every provider call goes through (journal
//! before, retry with backoff, journal after).

use super::http_action::{Reply, Request};
use super::{notify, IncidentOutcome, Inner, StepError};
use crate::alert::ActionResult;
use crate::config::{Action, RemediationMode};
use crate::scan::Secret;
use crate::store::{IncidentRow, Outcome};
use tokio::sync::OwnedSemaphorePermit;

/// How a call's statuses are read.
#[derive(Debug, Clone, Copy)]
pub struct Accept<'a> {
    /// Statuses that are answers even though they are 429 or 5xx (Tatum's
    /// verify reads 429 as "live but rate-limited").
    pub answers: &'a [u16],
    /// Any status that is neither 2xx nor in `answers` means "unknown" and
    /// is retried like a 5xx (verify: only live and dead are answers).
    pub retry_others: bool,
    /// The call changes state at the provider (regenerate, expire, revoke):
    /// after a timeout or 5xx it may have happened, so it is not simply
    /// repeated; the caller verifies first.
    pub state_changing: bool,
}

impl<'a> Accept<'a> {
    pub const READ: Accept<'static> = Accept {
        answers: &[],
        retry_others: false,
        state_changing: false,
    };
    pub const CHANGE: Accept<'static> = Accept {
        answers: &[],
        retry_others: false,
        state_changing: true,
    };

    /// A verify call: only `answers` (and 2xx) end it.
    pub fn verify(answers: &'a [u16]) -> Accept<'a> {
        Accept {
            answers,
            retry_others: true,
            state_changing: false,
        }
    }
}

/// Why an attempt is worth repeating.
struct Retry {
    retry_after: Option<std::time::Duration>,
    reason: String,
    /// The provider may have acted on the request.
    maybe_done: bool,
}

pub struct Ctx<'a> {
    pub inner: &'a Inner,
    pub row: IncidentRow,
    /// The leaked key, when this process has it.
    pub secret: Option<Secret>,
    /// The replacement key, when this process has it (never stored).
    pub new_secret: Option<Secret>,
    pub actions: Vec<ActionResult>,
    pub plan: Vec<String>,
    /// The concurrency slot this pass runs in: a containment slot until the
    /// key is contained, then a rotation slot (see [`Ctx::rotation_slot`]).
    slot: Option<OwnedSemaphorePermit>,
    rotating: bool,
    created: bool,
    start_state: String,
    start_reason: Option<String>,
}

impl<'a> Ctx<'a> {
    pub fn new(inner: &'a Inner, row: IncidentRow, secret: Option<Secret>, created: bool) -> Self {
        Ctx {
            inner,
            start_state: row.state.clone(),
            start_reason: row.reason.clone(),
            row,
            secret,
            new_secret: None,
            actions: Vec::new(),
            plan: Vec::new(),
            slot: None,
            rotating: false,
            created,
        }
    }

    /// Runs this pass in `slot` (a containment slot).
    pub fn with_slot(mut self, slot: Option<OwnedSemaphorePermit>) -> Self {
        self.slot = slot;
        self
    }

    /// Trades the containment slot for a rotation slot. Containment (verify,
    /// freeze) and rotation have separate concurrency limits, so a batch of
    /// findings is contained as fast as the provider allows while rotations
    /// queue behind: the leak is stopped first, the key replaced second.
    pub async fn rotation_slot(&mut self) {
        if self.rotating || self.slot.is_none() {
            return;
        }
        self.slot = None;
        self.slot = self.inner.rotate_slots.clone().acquire_owned().await.ok();
        self.rotating = true;
    }

    /// The action the policy gives this incident now.
    pub fn policy(&self) -> Action {
        super::policy::action_for(
            &self.inner.config.remediation,
            &self.row.provider,
            &self.row.rule_id,
        )
    }

    pub fn note(&mut self, action: &str, result: impl Into<String>) {
        let result = result.into();
        tracing::info!(
            incident = self.row.id,
            provider = %self.row.provider,
            key = %self.row.redacted,
            action,
            result = %result,
        );
        self.actions.push(ActionResult {
            action: action.to_string(),
            result,
        });
    }

    /// Moves the incident to `stage` (and the user-visible `state`) and
    /// saves it, so a restart resumes after the step that just completed.
    pub fn advance(&mut self, stage: &str, state: &str) -> Result<(), StepError> {
        self.row.stage = stage.to_string();
        self.row.state = state.to_string();
        self.row.reason = None;
        self.row.failures = 0;
        self.row.retry_at_ms = None;
        self.row.waits = 0;
        self.inner.store.save_incident(&self.row)?;
        Ok(())
    }

    /// Records what the incident waits for without failing it; the poller
    /// (`retry_pending`) looks again after the poll interval, doubled for
    /// each pass in a row that found it still waiting.
    pub fn wait(&mut self, state: &str, reason: String) -> Result<(), StepError> {
        self.row.state = state.to_string();
        self.row.reason = Some(reason);
        self.row.waits = self.row.waits.saturating_add(1);
        self.row.retry_at_ms = Some(self.inner.next_poll(&self.row, super::now_ms()));
        self.inner.store.save_incident(&self.row)?;
        Ok(())
    }

    pub fn fail(&mut self, e: &StepError) {
        tracing::warn!(incident = self.row.id, error = %e, "remediation failed; will retry on the next run");
        self.row.state = "failed".into();
        self.row.reason = Some(e.to_string());
        self.row.failures = self.row.failures.saturating_add(1);
        // Back off between runs too: a daemon that sees the key every second
        // must not hammer a provider that is down.
        let wait = self
            .inner
            .retry
            .base
            .saturating_mul(1 << self.row.failures.min(16))
            .min(std::time::Duration::from_secs(15 * 60));
        self.row.retry_at_ms = Some(super::now_ms() + wait.as_millis() as i64);
        self.actions.push(ActionResult {
            action: "failed".into(),
            result: e.to_string(),
        });
    }

    pub fn provider_error(&self, step: &str, reason: impl Into<String>) -> StepError {
        StepError::Provider {
            provider: self.row.provider.clone(),
            step: step.to_string(),
            reason: reason.into(),
        }
    }

    /// Makes a provider call: journaled before and after each attempt,
    /// retried on 429, 5xx and transport errors with backoff (or the
    /// provider's `Retry-After`) up to the attempt limit. Returns the first
    /// answer that is not retried, whatever its status.
    pub async fn call(
        &mut self,
        step: &str,
        req: &Request,
        accept: Accept<'_>,
    ) -> Result<Reply, StepError> {
        let policy = self.inner.retry;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let Retry {
                retry_after,
                reason,
                maybe_done,
            } = match self.attempt(step, req, accept).await? {
                Ok(reply) => return Ok(reply),
                Err(retry) => retry,
            };
            tracing::debug!(incident = self.row.id, step, attempt, reason = %reason, "provider call did not succeed");
            if accept.state_changing && maybe_done {
                return Err(StepError::Uncertain {
                    provider: self.row.provider.clone(),
                    step: step.to_string(),
                    reason,
                });
            }
            if let Some(wait) = retry_after.filter(|w| *w > policy.max_retry_after) {
                return Err(self.provider_error(
                    step,
                    format!(
                        "{reason} and asked to wait {}s (Retry-After); will retry on the next run",
                        wait.as_secs()
                    ),
                ));
            }
            if attempt >= policy.max_attempts {
                return Err(self.provider_error(
                    step,
                    format!("{reason} ({attempt} attempts); will retry on the next run"),
                ));
            }
            tokio::time::sleep(policy.delay(attempt, retry_after)).await;
        }
    }

    /// One journaled attempt: the answer, or why to try again.
    async fn attempt(
        &mut self,
        step: &str,
        req: &Request,
        accept: Accept<'_>,
    ) -> Result<Result<Reply, Retry>, StepError> {
        let store = &self.inner.store;
        let entry = store.journal_start(self.row.id, step)?;
        let reply = match self.inner.http.send(&self.row.provider, req).await {
            Ok(reply) => reply,
            Err(t) => {
                let outcome = if t.maybe_delivered() && accept.state_changing {
                    Outcome::Unknown
                } else {
                    Outcome::Failed
                };
                let detail = format!("{}: {t}", req.label);
                store.journal_complete(entry, outcome, None, &detail)?;
                return Ok(Err(Retry {
                    retry_after: None,
                    reason: t.to_string(),
                    maybe_done: t.maybe_delivered(),
                }));
            }
        };
        let status = reply.status;
        let answer = accept.answers.contains(&status) || (200..300).contains(&status);
        let retry = !answer && (accept.retry_others || status == 429 || status >= 500);
        // A read is done once answered (a 401 is an answer); a change only
        // when the provider accepted it. A 429 was refused before any work;
        // a 5xx to a change may or may not have been.
        let outcome = match (retry, accept.state_changing) {
            (false, false) => Outcome::Ok,
            (false, true) if (200..300).contains(&status) => Outcome::Ok,
            (true, true) if status != 429 => Outcome::Unknown,
            _ => Outcome::Failed,
        };
        store.journal_complete(entry, outcome, Some(status), &req.label)?;
        if !retry {
            return Ok(Ok(reply));
        }
        Ok(Err(Retry {
            retry_after: reply.retry_after,
            reason: format!("answered {status}"),
            maybe_done: status != 429,
        }))
    }

    /// Saves the incident, alerts the owner if anything changed (or, for an
    /// incident still waiting, reminds them once per reminder interval), and
    /// reports.
    pub async fn finish(mut self) -> IncidentOutcome {
        let mode = self.inner.config.remediation.mode;
        let changed = self.created
            || self.row.state != self.start_state
            || self.row.reason != self.start_reason;
        if mode != RemediationMode::DryRun {
            let now = super::now_ms();
            // Waiting: the last pass that got anywhere ended in `wait`, and
            // nothing failed since. A pass that could not even poll (no copy
            // of the key after a restart) still reminds and backs off.
            let waiting = self.row.waits > 0
                && !matches!(
                    self.row.state.as_str(),
                    "failed" | "closed" | "not-live" | "resolved"
                );
            let remind = !changed && waiting && self.inner.reminder_due(&self.row, now);
            if changed || remind {
                self.row.reminded_at_ms = Some(now);
            }
            if waiting {
                self.row.retry_at_ms = Some(self.inner.next_poll(&self.row, now));
            }
            if remind {
                let every = self.inner.reminder_interval.as_secs();
                let reason = self.row.reason.clone().unwrap_or_default();
                self.note(
                    "reminder",
                    format!(
                        "still {}: {reason} (reminded every {})",
                        self.row.state,
                        span(every)
                    ),
                );
            }
            if let Err(e) = self.inner.store.save_incident(&self.row) {
                tracing::error!(incident = self.row.id, error = %e, "cannot save incident");
            }
            if changed || remind {
                notify::send(&mut self, if remind { "reminder" } else { "change" }).await;
            }
            self.inner.note_health(&self.row);
        }
        self.inner.release_secret(&self.row);
        let mut outcome = IncidentOutcome::of(&self.row, self.created);
        outcome.actions = self.actions;
        outcome.plan = self.plan;
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
