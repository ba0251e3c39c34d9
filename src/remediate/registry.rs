//! The registry: which [`Playbook`] runs a provider's incidents. The only
//! place outside a playbook's own module that names one.

use super::playbook::Playbook;
use crate::config::Config;
use crate::rules::RuleSet;
use crate::store::IncidentRow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// Renders a playbook's data about an incident as (label, value) lines.
type Details = fn(&IncidentRow) -> Vec<(&'static str, String)>;

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
        for api in [
            super::admin_keys::Api::OpenAi,
            super::admin_keys::Api::Anthropic,
        ] {
            let playbook = super::admin_keys::AdminKeyPlaybook::new(api, config, rules.clone());
            registry.register(api.provider(), Arc::new(playbook));
        }
        registry.register(
            super::aws::PROVIDER,
            Arc::new(super::aws::AwsPlaybook::new(config, rules.clone())),
        );
        registry.poll_interval = super::tatum::poll_interval(config);
        registry
    }

    /// Providers with a playbook of their own, whatever the config says.
    const OWN: &'static [&'static str] = &[
        super::tatum::PROVIDER,
        super::admin_keys::Api::OpenAi.provider(),
        super::admin_keys::Api::Anthropic.provider(),
        super::aws::PROVIDER,
    ];

    /// What `incidents show` prints from a playbook's own data, as (label,
    /// value) lines; it needs no config, so it is looked up without one.
    const DETAILS: &'static [(&'static str, Details)] = &[
        (super::tatum::PROVIDER, super::tatum::details),
        (super::aws::PROVIDER, super::aws::details),
    ];

    /// The lines of the incident's playbook data for `incidents show`.
    pub fn details(row: &IncidentRow) -> Vec<(&'static str, String)> {
        Registry::DETAILS
            .iter()
            .find(|(p, _)| *p == row.provider)
            .map_or_else(
                || super::template_rotate::details(row),
                |(_, details)| details(row),
            )
    }

    /// The providers that have a playbook of their own (they are known even
    /// when no loaded rule names them: their config section is theirs).
    pub fn own_providers() -> &'static [&'static str] {
        Registry::OWN
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
    use crate::config::Action;

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
            .filter(|p| !with_revoke.contains(*p) && !Registry::OWN.contains(p))
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
        assert!(registry.get("aws").capabilities().contain);
        assert_eq!(registry.get("aws").default_action(), Action::Freeze);
        assert_eq!(registry.get("no-such").default_action(), Action::Revoke);
    }

    use super::super::ctx::Ctx;
    use super::super::playbook::{BoxFuture, Capabilities};
    use super::super::{Engine, StepError};
    use crate::scan::{Confidence, Finding, Origin, Secret};
    use crate::store::{State, Store};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A playbook that verifies every key it is given and counts its runs.
    struct Counting(Arc<AtomicUsize>);

    impl Playbook for Counting {
        fn capabilities(&self) -> Capabilities {
            Capabilities::default()
        }
        fn default_action(&self) -> Action {
            Action::Notify
        }
        fn settled(&self, _: &IncidentRow, _: Action) -> bool {
            false
        }
        fn run<'a>(&'a self, ctx: &'a mut Ctx<'_>) -> BoxFuture<'a, Result<(), StepError>> {
            Box::pin(async move {
                self.0.fetch_add(1, Ordering::SeqCst);
                ctx.note("counting", "ran");
                ctx.advance(IncidentRow::verify)
            })
        }
        fn plan(&self, _: &Ctx<'_>) -> Vec<String> {
            Vec::new()
        }
        fn next_steps(&self, _: &IncidentRow) -> Vec<String> {
            Vec::new()
        }
    }

    fn finding(provider: &str, key: &str) -> Finding {
        let secret = Secret::new(key);
        Finding {
            rule_id: format!("{provider}.key").into(),
            rule_name: "a key".into(),
            provider: provider.into(),
            fingerprint: secret.fingerprint(),
            secret,
            origin: Arc::new(Origin::Log {
                path: "app.log".into(),
            }),
            line: 1,
            column: 1,
            offset: 0,
            confidence: Confidence::High,
            encoding: None,
        }
    }

    #[tokio::test]
    async fn the_engine_runs_the_registered_playbook_and_templates_for_the_rest() {
        let config = Config::default();
        let rules = RuleSet::load(&[]).unwrap();
        let runs = Arc::new(AtomicUsize::new(0));
        let mut registry = Registry::builtin(&config, &rules);
        registry.register("acme", Arc::new(Counting(runs.clone())));
        let engine = Engine::with_registry(
            &config,
            rules,
            Arc::new(Store::in_memory().unwrap()),
            registry,
        )
        .unwrap();
        let out = engine
            .process(vec![finding("acme", "acme-1"), finding("other", "other-1")])
            .await
            .unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), 1, "once, for acme only");
        assert_eq!(out[0].state, State::Verified);
        assert!(out[0].actions.iter().any(|a| a.action == "counting"));
        // No playbook and no rule templates: the template playbook asks
        // the owner to revoke by hand.
        assert_eq!(out[1].state, State::WaitingManual);
        assert!(!out[1].actions.iter().any(|a| a.action == "counting"));
    }
}
