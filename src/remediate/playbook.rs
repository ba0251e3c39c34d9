//! Playbooks and the registry that maps a provider to its playbook.
//!
//! A [`Playbook`] is everything the engine needs to know about one kind of
//! provider: what it can do ([`Capabilities`]), the default action of the
//! policy, how to run one pass over an incident ([`Playbook::run`], through
//! the narrow API of [`Ctx`]), what a dry run would do, what the owner should
//! do next, and (for playbooks that can take one) how to finish with a new
//! key the owner hands over by hand ([`Playbook::hand_over`]).
//!
//! The engine asks the [`Registry`] and names no provider. Two playbooks are
//! built in: the template playbook ([`super::revoke`]: the rule YAML's
//! `verify`/`revoke`) for every provider without one of its own, and Tatum's
//! ([`super::tatum`]). To add a provider with more than templates can say,
//! implement [`Playbook`] in its own module and register it in
//! [`Registry::builtin`].
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
use crate::config::{Action, Config};
use crate::rules::RuleSet;
use crate::scan::{Fingerprint, Secret};
use crate::store::IncidentRow;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

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

/// Renders a playbook's data about an incident as (label, value) lines.
pub(crate) type Details = fn(&IncidentRow) -> Vec<(&'static str, String)>;

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

/// Provider → playbook; every provider without one gets the template
/// playbook.
pub(crate) struct Registry {
    own: HashMap<String, Arc<dyn Playbook>>,
    templates: Arc<dyn Playbook>,
    /// How often a waiting incident is first polled.
    pub poll_interval: Duration,
}

impl Registry {
    /// The built-in playbooks for `config` and `rules`.
    pub fn builtin(config: &Config, rules: &RuleSet) -> Registry {
        let mut registry = Registry::new(Arc::new(super::revoke::TemplatePlaybook::new(
            config,
            rules.clone(),
        )));
        registry.register(
            super::tatum::PROVIDER,
            Arc::new(super::tatum::TatumPlaybook::new(config, rules.clone())),
        );
        registry.poll_interval = super::tatum::poll_interval(config);
        registry
    }

    /// Providers with a playbook of their own, whatever the config says.
    const OWN: &'static [&'static str] = &[super::tatum::PROVIDER];

    /// What `incidents show` prints from a playbook's own data, as (label,
    /// value) lines; it needs no config, so it is looked up without one.
    const DETAILS: &'static [(&'static str, Details)] =
        &[(super::tatum::PROVIDER, super::tatum::details)];

    /// The lines of the incident's playbook data for `incidents show`.
    pub fn details(row: &IncidentRow) -> Vec<(&'static str, String)> {
        Registry::DETAILS
            .iter()
            .find(|(p, _)| *p == row.provider)
            .map_or_else(Vec::new, |(_, details)| details(row))
    }

    pub fn new(templates: Arc<dyn Playbook>) -> Registry {
        Registry {
            own: HashMap::new(),
            templates,
            poll_interval: Duration::from_secs(60),
        }
    }

    pub fn register(&mut self, provider: &str, playbook: Arc<dyn Playbook>) {
        self.own.insert(provider.to_string(), playbook);
    }

    pub fn get(&self, provider: &str) -> &dyn Playbook {
        self.own.get(provider).unwrap_or(&self.templates).as_ref()
    }

    /// The providers keysentry can remediate under the built-in registry:
    /// those with a playbook of their own, and those whose rules carry a
    /// `revoke` template for the template playbook. A provider with neither
    /// is only verified and reported.
    pub fn remediable(rules: &RuleSet) -> HashSet<String> {
        let mut set: HashSet<String> = rules
            .rules()
            .iter()
            .filter(|r| r.spec.revoke.is_some())
            .map(|r| r.spec.provider.clone())
            .collect();
        set.extend(Registry::OWN.iter().map(|p| p.to_string()));
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_provider_without_a_playbook_or_revoke_template_is_not_remediable() {
        let rules = RuleSet::load(&[]).unwrap();
        let remediable = Registry::remediable(&rules);
        let with_revoke: HashSet<String> = rules
            .rules()
            .iter()
            .filter(|r| r.spec.revoke.is_some())
            .map(|r| r.spec.provider.clone())
            .collect();
        assert!(!with_revoke.is_empty(), "some built-in rule can revoke");
        assert!(with_revoke.is_subset(&remediable));
        assert!(remediable.contains("tatum"), "its own playbook");
        let without: Vec<&str> = rules
            .rules()
            .iter()
            .map(|r| r.spec.provider.as_str())
            .filter(|p| !with_revoke.contains(*p) && *p != "tatum")
            .collect();
        assert!(!without.is_empty(), "some built-in provider has neither");
        for p in without {
            assert!(!remediable.contains(p), "{p}");
        }
    }

    #[test]
    fn the_registered_playbook_wins_and_the_rest_get_the_templates() {
        let config = Config::default();
        let rules = RuleSet::load(&[]).unwrap();
        let registry = Registry::builtin(&config, &rules);
        assert!(registry.get("tatum").capabilities().hand_over);
        assert!(registry.get("tatum").capabilities().contain);
        let github = registry.get("github").capabilities();
        assert!(!github.hand_over && !github.contain && github.revoke);
        assert_eq!(registry.get("tatum").default_action(), Action::Regenerate);
        assert_eq!(registry.get("no-such").default_action(), Action::Revoke);
    }
}
