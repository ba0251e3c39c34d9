//! Playbooks and the registry that maps a provider to its playbook.
//!
//! A [`Playbook`] is everything the engine needs to know about one kind of
//! provider: what it can do ([`Capabilities`]), the default action of the
//! policy, how to run one pass over an incident ([`Playbook::run`], through
//! the narrow API of [`Ctx`]), what a dry run would do, what the owner should
//! do next, and (for playbooks that can take one) how to finish with a new
//! key the owner hands over by hand ([`Playbook::hand_over`]).
//!
//! The engine asks the [`Registry`](super::registry::Registry) and names no
//! provider. Two playbooks are built in: the template playbook
//! ([`super::revoke`]: the rule YAML's `verify`/`revoke`) for every provider
//! without one of its own, and Tatum's ([`super::tatum`]). To add a provider
//! with more than templates can say, implement [`Playbook`] in its own
//! module and register it in
//! [`Registry::builtin`](super::registry::Registry::builtin).
//!
//! Contract of [`Playbook::run`]: it is called with the incident leased to
//! this process (no other pass runs it), moves the incident only through the
//! transitions of [`crate::store::State`] via [`Ctx::advance`] (each saved
//! at once, so a crash resumes after the last completed step), and returns
//! `Err` for a step that could not finish: the engine then marks the
//! incident failed, backs off and alerts. `Ok` with the incident still open
//! means it waits (for its key, its owner, a provider).

use super::ctx::Ctx;
use super::StepError;
use crate::alert::Bound;
use crate::config::Action;
use crate::scan::{Fingerprint, Secret};
use crate::store::IncidentRow;
use std::future::Future;
use std::pin::Pin;

/// A boxed future: keeps [`Playbook`] object-safe without a macro crate.
pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a playbook can do to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Capabilities {
    /// Ask the provider whether the key works.
    pub verify: bool,
    /// Stop the key from being used without destroying it (freeze).
    pub contain: bool,
    /// Replace the key with a new one.
    pub rotate: bool,
    /// Destroy the key (revoke, expire).
    pub revoke: bool,
    /// Finish with a new key the owner made by hand.
    pub hand_over: bool,
}

/// Why a key handed over by hand was not taken.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HandOverError {
    /// This playbook takes no key by hand.
    #[error("this playbook takes no new key")]
    Unsupported,
    /// The key is not usable (the leaked key itself, not a key of the
    /// provider, the provider refused it): a message for the owner, which
    /// never holds the key.
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Step(#[from] StepError),
}

pub(crate) trait Playbook: Send + Sync {
    fn capabilities(&self) -> Capabilities;

    /// The action when `remediation.policy` names none for the provider.
    fn default_action(&self) -> Action;

    /// Whether an open incident needs no more work under `action` (e.g. a
    /// key contained under `freeze`). Final states are settled anyway.
    fn settled(&self, row: &IncidentRow, action: Action) -> bool;

    /// One pass over the incident; see the module's contract.
    fn run<'a>(&'a self, ctx: &'a mut Ctx<'_>) -> BoxFuture<'a, Result<(), StepError>>;

    /// `remediation.mode: dry-run`: what a pass would do from the incident's
    /// stage on.
    fn plan(&self, ctx: &Ctx<'_>) -> Vec<String>;

    /// What the owner should do now, for the alert (after the engine's own
    /// lines about failures, before "remove the key from ...").
    fn next_steps(&self, row: &IncidentRow) -> Vec<String>;

    /// What the key is bound to, when the playbook found out.
    fn bound(&self, _row: &IncidentRow) -> Option<Bound> {
        None
    }

    /// The leaked key from somewhere this process can read it (a consumer's
    /// env file), when no source handed it over: keys are never stored.
    fn recover_key(&self, _fingerprint: &Fingerprint) -> Option<Secret> {
        None
    }

    /// Checks a key the owner hands over before anything is done with it.
    fn accept_new_key(&self, _row: &IncidentRow, _key: &Secret) -> Result<(), HandOverError> {
        Err(HandOverError::Unsupported)
    }

    /// Finishes the incident with the key the owner hands over (accepted by
    /// [`Playbook::accept_new_key`] first).
    fn hand_over<'a>(
        &'a self,
        _ctx: &'a mut Ctx<'_>,
        _key: Secret,
    ) -> BoxFuture<'a, Result<(), HandOverError>> {
        Box::pin(async { Err(HandOverError::Unsupported) })
    }
}
