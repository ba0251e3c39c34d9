//! Which action an incident gets: `remediation.rule_policy[rule]`, else
//! `remediation.policy[provider]`, else the default of the provider's
//! playbook ([`super::playbook::Playbook::default_action`]; the template
//! playbook's is revoke).
//!
//! Providers driven by rule templates have one containment, the `revoke`
//! template: for them `regenerate`, `expire` and `freeze` mean revoke, and
//! `notify` means verify and tell the owner.

use crate::config::{Action, RemediationConfig};

pub fn action_for(
    config: &RemediationConfig,
    provider: &str,
    rule_id: &str,
    default: Action,
) -> Action {
    config
        .rule_policy
        .get(rule_id)
        .or_else(|| config.policy.get(provider))
        .copied()
        .unwrap_or(default)
}

pub fn action_name(action: Action) -> &'static str {
    match action {
        Action::Regenerate => "regenerate",
        Action::Expire => "expire",
        Action::Freeze => "freeze",
        Action::Revoke => "revoke",
        Action::Notify => "notify",
    }
}

pub fn parse_action(name: &str) -> Option<Action> {
    Some(match name {
        "regenerate" => Action::Regenerate,
        "expire" => Action::Expire,
        "freeze" => Action::Freeze,
        "revoke" => Action::Revoke,
        "notify" => Action::Notify,
        _ => return None,
    })
}

/// The provider's API base when the config names none.
pub fn default_api_url(provider: &str) -> Option<&'static str> {
    Some(match provider {
        "github" => "https://api.github.com",
        "gitlab" => "https://gitlab.com",
        "slack" => "https://slack.com",
        "openai" => "https://api.openai.com",
        "anthropic" => "https://api.anthropic.com",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_beats_provider_beats_default() {
        let mut c = RemediationConfig::default();
        let regen = Action::Regenerate;
        assert_eq!(action_for(&c, "tatum", "tatum.api-key", regen), regen);
        assert_eq!(
            action_for(&c, "github", "github.pat", Action::Revoke),
            Action::Revoke
        );
        c.policy.insert("tatum".into(), Action::Expire);
        assert_eq!(
            action_for(&c, "tatum", "tatum.api-key", regen),
            Action::Expire
        );
        c.rule_policy.insert("tatum.api-key".into(), Action::Notify);
        assert_eq!(
            action_for(&c, "tatum", "tatum.api-key", regen),
            Action::Notify
        );
        assert_eq!(
            action_for(&c, "tatum", "tatum.other", regen),
            Action::Expire
        );
        for a in ["regenerate", "expire", "freeze", "revoke", "notify"] {
            assert_eq!(parse_action(a).map(action_name), Some(a));
        }
    }
}
