//! One pass over one incident, as a playbook sees it: the row being
//! advanced, the keys in hand, the actions taken, and the loop every
//! provider call goes through (journal before, retry with backoff, journal
//! after).
//!
//! The API is narrow on purpose: a playbook reads the row, moves it through
//! the state machine's transitions ([`Ctx::advance`], [`Ctx::wait`]), keeps
//! its own data ([`Ctx::data`]), calls its provider ([`Ctx::call`]),
//! journals other side effects ([`Ctx::journal_start`]) and notes what it
//! did. Alerting and saving the pass's end are the engine's.

use super::http_action::{Reply, Request};
use super::retry::RetryPolicy;
use super::{Inner, StepError};
use crate::alert::ActionResult;
use crate::config::Action;
use crate::scan::Secret;
use crate::store::{IncidentRow, Outcome, Refused, State};
use std::time::Duration;
use tokio::sync::OwnedSemaphorePermit;

/// How a call's statuses are read.
#[derive(Debug, Clone, Copy)]
pub struct Accept<'a> {
    /// Statuses that are answers even though they are 429 or 5xx (a verify
    /// may read 429 as "live but rate-limited").
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
    inner: &'a Inner,
    row: IncidentRow,
    /// The action the policy gives this incident.
    action: Action,
    /// The leaked key, when this process has it.
    secret: Option<Secret>,
    /// The replacement key, when this process has it (never stored).
    new_secret: Option<Secret>,
    actions: Vec<ActionResult>,
    /// The concurrency slot this pass runs in: a containment slot until the
    /// key is contained, then a rotation slot (see [`Ctx::rotation_slot`]).
    slot: Option<OwnedSemaphorePermit>,
    rotating: bool,
    created: bool,
    start_state: State,
    start_reason: Option<String>,
}

/// What a pass leaves for the engine to save, alert and report.
pub(super) struct Done {
    pub row: IncidentRow,
    pub actions: Vec<ActionResult>,
    pub created: bool,
    /// The state or the reason changed (or the incident is new).
    pub changed: bool,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(
        inner: &'a Inner,
        row: IncidentRow,
        action: Action,
        secret: Option<Secret>,
        created: bool,
    ) -> Self {
        Ctx {
            inner,
            start_state: row.state,
            start_reason: row.reason.clone(),
            row,
            action,
            secret,
            new_secret: None,
            actions: Vec::new(),
            slot: None,
            rotating: false,
            created,
        }
    }

    /// Runs this pass in `slot` (a containment slot).
    pub(super) fn with_slot(mut self, slot: Option<OwnedSemaphorePermit>) -> Self {
        self.slot = slot;
        self
    }

    /// Ends the pass: what the engine saves and alerts about.
    pub(super) fn done(self) -> Done {
        let changed = self.created
            || self.row.state != self.start_state
            || self.row.reason != self.start_reason;
        Done {
            row: self.row,
            actions: self.actions,
            created: self.created,
            changed,
        }
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

    pub fn row(&self) -> &IncidentRow {
        &self.row
    }

    /// The action the policy gives this incident now.
    pub fn policy(&self) -> Action {
        self.action
    }

    /// The leaked key, when this process has a copy.
    pub fn secret(&self) -> Option<Secret> {
        self.secret.clone()
    }

    /// The replacement key, when this process has it.
    pub fn new_secret(&self) -> Option<Secret> {
        self.new_secret.clone()
    }

    pub fn set_new_secret(&mut self, key: Option<Secret>) {
        self.new_secret = key;
    }

    /// The action the playbook settled on (shown in listings and alerts).
    pub fn set_action(&mut self, action: &str) {
        self.row.action = Some(action.to_string());
    }

    /// The playbook's own data about the incident (saved with the next
    /// transition). Unreadable data reads as the default, with a warning.
    pub fn data<T: serde::de::DeserializeOwned + Default>(&self) -> T {
        let (data, problem) = self.row.playbook_data.get();
        if let Some(why) = problem {
            tracing::warn!(incident = self.row.id, error = %why, "unreadable playbook data; starting afresh");
        }
        data
    }

    pub fn set_data<T: serde::Serialize>(&mut self, data: &T) {
        self.row.playbook_data.set(data);
    }

    pub fn retry(&self) -> RetryPolicy {
        self.inner.retry
    }

    /// How long a consumer's restart command may run.
    pub fn restart_timeout(&self) -> Duration {
        self.inner.restart_timeout
    }

    /// What consumers' calls need: the provider call timeout, the
    /// plain-http rule and the restart timeout.
    pub fn consumer_reach(&self) -> super::consumer::Reach {
        let r = &self.inner.config.remediation;
        super::consumer::Reach {
            timeout: Duration::from_secs(r.timeout_secs.unwrap_or(15).max(1)),
            allow_insecure_http: self.inner.config.allow_insecure_http,
            restart_timeout: self.inner.restart_timeout,
        }
    }

    /// Whether `key` may replace the leaked key (see [`super::new_key`]).
    pub fn check_new_key(&self, key: &Secret) -> Result<(), String> {
        super::new_key::check(
            &self.inner.rules,
            &self.row.provider,
            &self.row.fingerprint,
            key,
        )
    }

    /// Whether new keys are escrowed: `Ok(false)` when no escrow is
    /// configured, the reason when it is but cannot be used.
    pub fn escrow_ready(&self) -> Result<bool, StepError> {
        match &self.inner.escrow {
            None => Ok(false),
            Some(Ok(_)) => Ok(true),
            Some(Err(why)) => Err(StepError::Escrow(why.clone())),
        }
    }

    /// Seals a new key in escrow (journaled), before anything else is done
    /// with it. `Ok(false)` when no escrow is configured.
    pub fn seal_new_key(&mut self, key: &Secret) -> Result<bool, StepError> {
        let escrow = match &self.inner.escrow {
            None => return Ok(false),
            Some(Ok(e)) => e,
            Some(Err(why)) => return Err(StepError::Escrow(why.clone())),
        };
        let entry = self.journal_start("escrow")?;
        let sealed = escrow
            .seal(key, self.row.owner.as_deref())
            .map_err(|e| StepError::Escrow(e.to_string()))
            .and_then(|s| {
                let fp = key.fingerprint();
                self.inner
                    .store
                    .put_escrow(self.row.id, &fp, &s.armored, &s.recipients)?;
                Ok(s.recipients.len())
            });
        match sealed {
            Ok(n) => {
                let detail = format!("new key {} sealed to {n} age recipients", key.redacted());
                self.journal_complete(entry, Outcome::Ok, None, &detail)?;
                self.note("escrow", detail);
                Ok(true)
            }
            Err(e) => {
                self.journal_complete(entry, Outcome::Failed, None, &e.to_string())?;
                Err(e)
            }
        }
    }

    /// The newest escrowed new key of this incident, opened with the
    /// service's identity, when there is one and escrow is configured.
    pub fn escrowed_key(&self) -> Result<Option<Secret>, StepError> {
        let Some(Ok(escrow)) = &self.inner.escrow else {
            return Ok(None);
        };
        let Some(row) = self.inner.store.escrow(self.row.id)? else {
            return Ok(None);
        };
        let key = escrow
            .open(&row.ciphertext)
            .map_err(|e| StepError::Escrow(e.to_string()))?;
        if key.fingerprint().to_string() != row.fingerprint {
            return Err(StepError::Escrow(
                "the escrowed key does not match its recorded fingerprint".into(),
            ));
        }
        Ok(Some(key))
    }

    /// True when `step` completed `ok` for this incident at least once.
    pub fn step_done(&self, step: &str) -> Result<bool, StepError> {
        Ok(self.inner.store.step_done(self.row.id, step)?)
    }

    /// True when an earlier attempt of `step` may have taken effect unseen.
    pub fn step_uncertain(&self, step: &str) -> Result<bool, StepError> {
        Ok(self.inner.store.step_uncertain(self.row.id, step)?)
    }

    /// Journals a side effect about to happen (not a provider call: those go
    /// through [`Ctx::call`]); complete it with [`Ctx::journal_complete`].
    pub fn journal_start(&self, step: &str) -> Result<i64, StepError> {
        Ok(self.inner.store.journal_start(self.row.id, step)?)
    }

    /// `detail` must be redacted: no key, no response body.
    pub fn journal_complete(
        &self,
        entry: i64,
        outcome: Outcome,
        http_status: Option<u16>,
        detail: &str,
    ) -> Result<(), StepError> {
        Ok(self
            .inner
            .store
            .journal_complete(entry, outcome, http_status, detail)?)
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

    /// Moves the incident through `transition` (one of the state machine's,
    /// e.g. `IncidentRow::contain`) and saves it, so a restart resumes after
    /// the step that just completed.
    pub fn advance(
        &mut self,
        transition: fn(&mut IncidentRow) -> Result<(), Refused>,
    ) -> Result<(), StepError> {
        transition(&mut self.row)?;
        self.inner.store.save_incident(&self.row)?;
        Ok(())
    }

    /// Records what the incident waits for, in `state`, without failing it;
    /// the poller (`retry_pending`) looks again after the poll interval,
    /// doubled for each pass in a row that found it still waiting.
    pub fn wait(&mut self, state: State, reason: String) -> Result<(), StepError> {
        self.row.wait_in(state, reason)?;
        self.row.retry_at_ms = Some(self.inner.next_poll(&self.row, super::now_ms()));
        self.inner.store.save_incident(&self.row)?;
        Ok(())
    }

    /// The step failed: the incident is failed and backs off.
    pub(super) fn fail(&mut self, e: &StepError) {
        tracing::warn!(incident = self.row.id, error = %e, "remediation failed; will retry on the next run");
        if let Err(refused) = self.row.fail(e.to_string()) {
            tracing::error!(incident = self.row.id, error = %refused, "a failure after the incident was finished");
            return;
        }
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

    /// The engine's reason for an incident that waits for its key.
    pub(super) fn set_reason(&mut self, reason: &str) {
        self.row.reason = Some(reason.to_string());
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
}
