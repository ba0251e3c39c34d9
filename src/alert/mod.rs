//! Alerts to a key's owner. An `Alert` is plain data built by the
//! remediation engine; channels (webhook, Slack, email, GitHub issue) render
//! and deliver it. An alert never carries a key, only its redacted form and
//! fingerprint.

use crate::config::Config;
use crate::scan::Finding;

/// Everything an owner needs to act on one incident.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Alert {
    pub incident_id: i64,
    /// The email (or handle) the alert is addressed to.
    pub owner: Option<String>,
    pub provider: String,
    pub rule_id: String,
    pub rule_name: String,
    pub redacted: String,
    pub fingerprint: String,
    /// The incident's state after the actions below (e.g. `contained`).
    pub state: String,
    /// Human-readable places the key was seen (`path:line`, `repo@commit:path:line`).
    pub locations: Vec<String>,
    /// What keysentry did and how each step ended.
    pub actions: Vec<ActionResult>,
    /// What an expire would break: Tatum subscription / virtual account counts.
    pub bound: Option<Bound>,
    /// What the owner should do now, in order.
    pub next_steps: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ActionResult {
    /// e.g. `verify`, `freeze`, `regenerate`, `propagate:kms`, `revoke`.
    pub action: String,
    /// e.g. `ok (200)`, `failed: provider answered 500`.
    pub result: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Bound {
    pub subscriptions: u64,
    pub virtual_accounts: u64,
}

/// Outcome of delivering one alert to one channel.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub channel: String,
    pub result: Result<(), String>,
}

/// Fans an alert out to the configured channels.
/// PLACEHOLDER (being replaced by the alerts work): delivers nothing.
pub struct Alerter {
    _private: (),
}

impl Alerter {
    pub fn from_config(_config: &Config) -> Result<Alerter, String> {
        Ok(Alerter { _private: () })
    }

    pub async fn send(&self, _alert: &Alert) -> Vec<Delivery> {
        Vec::new()
    }
}

/// The owner of a finding: the first matching `owners` entry, else the commit
/// author, else `default_owner`.
/// PLACEHOLDER (being replaced by the alerts work): author, then default.
pub fn resolve_owner(config: &Config, finding: &Finding) -> Option<String> {
    finding
        .origin
        .author_email()
        .map(str::to_string)
        .or_else(|| config.default_owner.clone())
}
