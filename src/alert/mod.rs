//! Alerts to a key's owner. An `Alert` is plain data built by the
//! remediation engine; channels (webhook, Slack, email, GitHub issue) render
//! and deliver it. An alert never carries a key, only its redacted form and
//! fingerprint.
//!
//! - [`render`]: the words every channel shares (subject, text, markdown).
//! - `webhook`: generic JSON and Slack incoming webhooks.
//! - `email`: SMTP through lettre.
//! - `github_issue`: an issue through octocrab.
//! - `owner`: who an alert is addressed to.
//!
//! Channels are built once from the config, failing early on a missing
//! environment variable or a malformed address; sending never fails as a
//! whole: each channel reports its own [`Delivery`], and one channel that is
//! down or slow does not hold up the others.

pub mod digest;
mod email;
mod github_issue;
mod owner;
pub mod render;
mod webhook;

pub use owner::{resolve_owner, OwnerResolver};
pub use render::location;
pub use webhook::{generic_payload, slack_payload};

use crate::config::{AlertConfig, Config};
use crate::metrics::ComponentHealth;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;

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
    /// Set when this alert sums up many not-live incidents (see
    /// [`digest`]); `locations` then lists them, one line each.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<DigestSummary>,
}

/// What a digest sums up.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DigestSummary {
    /// Not-live incidents in the window.
    pub count: usize,
    /// How many of them are listed (the rest are counted only).
    pub listed: usize,
    pub interval_secs: u64,
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
    /// e.g. `slack (alerts[1])`.
    pub channel: String,
    /// The error names the channel, the cause and what to change.
    pub result: Result<(), String>,
}

impl Delivery {
    pub fn is_ok(&self) -> bool {
        self.result.is_ok()
    }
}

/// A channel that cannot be built from the config. Names the YAML path and,
/// for secrets taken from the environment, the variable; never a value.
#[derive(Debug, thiserror::Error)]
pub enum AlertError {
    #[error(
        "{at}: environment variable {var} is not set; export it in keysentry's environment \
         (for the systemd service: an EnvironmentFile) or remove the channel"
    )]
    MissingEnv { at: String, var: String },
    #[error("{at}: {reason}")]
    Invalid { at: String, reason: String },
    #[error("owners[{index}].match.path: `{glob}` is not a valid glob ({reason}); fix its syntax")]
    OwnerGlob {
        index: usize,
        glob: String,
        reason: String,
    },
}

/// How channels read `url_env` / `token_env`: the process environment, or a
/// map in tests.
pub type EnvLookup<'a> = dyn Fn(&str) -> Option<String> + 'a;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Fans an alert out to the configured channels.
pub struct Alerter {
    channels: Vec<Arc<Channel>>,
    http: reqwest::Client,
}

struct Channel {
    /// `slack (alerts[1])`: what deliveries and errors call it.
    label: String,
    /// `alerts[1]`, the YAML path.
    at: String,
    timeout: Duration,
    kind: Kind,
    /// How the last delivery ended (`None` before the first), for health.
    last: Mutex<Option<Result<(), String>>>,
}

enum Kind {
    Webhook(webhook::Webhook),
    Email(email::Email),
    GithubIssue(github_issue::GithubIssue),
}

impl Kind {
    fn new(
        config: &Config,
        at: &str,
        c: &AlertConfig,
        timeout: Duration,
        env: &EnvLookup<'_>,
    ) -> Result<Kind, AlertError> {
        use webhook::{Shape, Webhook};
        Ok(match c {
            AlertConfig::Webhook { url, url_env, .. } => Kind::Webhook(Webhook::new(
                at,
                Shape::Generic,
                url.as_deref(),
                url_env.as_deref(),
                env,
                config.allow_insecure_http,
            )?),
            AlertConfig::Slack { url, url_env, .. } => Kind::Webhook(Webhook::new(
                at,
                Shape::Slack,
                url.as_deref(),
                url_env.as_deref(),
                env,
                config.allow_insecure_http,
            )?),
            AlertConfig::Email { smtp, from, to, .. } => {
                Kind::Email(email::Email::new(at, smtp, from, to, timeout)?)
            }
            AlertConfig::GithubIssue {
                repo,
                api_url,
                token_env,
                ..
            } => {
                let github = config.github.as_ref();
                let settings = github_issue::Settings {
                    repo,
                    api_url: api_url.as_deref(),
                    token_env: token_env.as_deref(),
                    github_api_url: github.and_then(|g| g.api_url.as_deref()),
                    github_token_env: github.and_then(|g| g.token_env.as_deref()),
                    timeout,
                    allow_insecure_http: config.allow_insecure_http,
                };
                Kind::GithubIssue(github_issue::GithubIssue::new(at, settings, env)?)
            }
        })
    }
}

impl Alerter {
    /// Builds every channel in `alerts:`, reading `url_env` / `token_env`
    /// from the process environment, and checks the `owners` globs.
    pub fn from_config(config: &Config) -> Result<Alerter, AlertError> {
        Alerter::from_config_with_env(config, &|name| std::env::var(name).ok())
    }

    pub fn from_config_with_env(
        config: &Config,
        env: &EnvLookup<'_>,
    ) -> Result<Alerter, AlertError> {
        OwnerResolver::new(config)?;
        let channels = config
            .alerts
            .iter()
            .enumerate()
            .map(|(i, c)| Channel::new(config, i, c, env).map(Arc::new))
            .collect::<Result<_, _>>()?;
        let http = reqwest::Client::builder()
            .user_agent(concat!("keysentry/", env!("CARGO_PKG_VERSION")))
            // A redirect would turn the POST into a GET or resend the body
            // elsewhere; report it instead.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| AlertError::Invalid {
                at: "alerts".into(),
                reason: format!(
                    "cannot set up the HTTP client: {}",
                    webhook::error_chain(&e)
                ),
            })?;
        Ok(Alerter { channels, http })
    }

    /// Every problem in `alerts:` and `owners:` rather than the first, for
    /// `keysentry config check`.
    pub fn problems(config: &Config, env: &EnvLookup<'_>) -> Vec<AlertError> {
        let mut problems = owner::problems(config);
        for (i, c) in config.alerts.iter().enumerate() {
            if let Err(e) = Channel::new(config, i, c, env) {
                problems.push(e);
            }
        }
        problems
    }

    /// The channels' labels, in config order.
    pub fn channels(&self) -> impl Iterator<Item = &str> {
        self.channels.iter().map(|c| c.label.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    /// `failed` once every channel's last delivery failed (an owner hears
    /// nothing); `ok` otherwise, `None` without channels.
    pub fn health(&self) -> Option<ComponentHealth> {
        if self.channels.is_empty() {
            return None;
        }
        let mut errors = Vec::new();
        for c in &self.channels {
            match &*c.last.lock().unwrap_or_else(|p| p.into_inner()) {
                Some(Err(e)) => errors.push(e.clone()),
                _ => return Some(ComponentHealth::ok()),
            }
        }
        Some(ComponentHealth::failed(format!(
            "every alert channel fails: {}",
            errors.join("; ")
        )))
    }

    /// Delivers to every channel at once, each bounded by its timeout; one
    /// `Delivery` per channel, in config order.
    pub async fn send(&self, alert: &Alert) -> Vec<Delivery> {
        let alert = Arc::new(alert.clone());
        let mut tasks = JoinSet::new();
        let mut index_of = HashMap::new();
        for (i, channel) in self.channels.iter().enumerate() {
            let (channel, alert, http) = (channel.clone(), alert.clone(), self.http.clone());
            let handle = tasks.spawn(async move { channel.deliver(&http, &alert).await });
            index_of.insert(handle.id(), i);
        }
        let mut results: Vec<Option<Result<(), String>>> = vec![None; self.channels.len()];
        while let Some(joined) = tasks.join_next_with_id().await {
            let (id, result) = match joined {
                Ok((id, result)) => (id, result),
                Err(e) => (e.id(), Err(format!("internal error: {e}"))),
            };
            if let Some(&i) = index_of.get(&id) {
                results[i] = Some(result);
            }
        }
        self.channels
            .iter()
            .zip(results)
            .map(|(channel, result)| {
                let result = result
                    .unwrap_or_else(|| Err("internal error: delivery lost".into()))
                    .map_err(|e| format!("{}: {e}", channel.label));
                *channel.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(result.clone());
                match &result {
                    Ok(()) => tracing::info!(channel = %channel.label, incident = alert.incident_id, "alert delivered"),
                    Err(e) => tracing::warn!(channel = %channel.label, incident = alert.incident_id, error = %e, "alert not delivered"),
                }
                Delivery {
                    channel: channel.label.clone(),
                    result,
                }
            })
            .collect()
    }
}

impl fmt::Debug for Alerter {
    /// Labels only: URLs and tokens stay out of debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Alerter")
            .field("channels", &self.channels().collect::<Vec<_>>())
            .finish()
    }
}

impl Channel {
    fn new(
        config: &Config,
        index: usize,
        c: &AlertConfig,
        env: &EnvLookup<'_>,
    ) -> Result<Channel, AlertError> {
        let at = format!("alerts[{index}]");
        let (name, secs) = match c {
            AlertConfig::Webhook { timeout_secs, .. } => ("webhook", timeout_secs),
            AlertConfig::Slack { timeout_secs, .. } => ("slack", timeout_secs),
            AlertConfig::Email { timeout_secs, .. } => ("email", timeout_secs),
            AlertConfig::GithubIssue { timeout_secs, .. } => ("github_issue", timeout_secs),
        };
        let timeout = secs.map_or(DEFAULT_TIMEOUT, Duration::from_secs);
        if timeout.is_zero() {
            return Err(AlertError::Invalid {
                at: format!("{at}.timeout_secs"),
                reason: "must be at least 1".into(),
            });
        }
        Ok(Channel {
            label: format!("{name} ({at})"),
            kind: Kind::new(config, &at, c, timeout, env)?,
            at,
            timeout,
            last: Mutex::new(None),
        })
    }

    async fn deliver(&self, http: &reqwest::Client, alert: &Alert) -> Result<(), String> {
        let attempt = async {
            match &self.kind {
                Kind::Webhook(hook) => hook.deliver(http, alert).await,
                Kind::Email(mail) => mail.deliver(alert).await,
                Kind::GithubIssue(issue) => issue.deliver(alert).await,
            }
        };
        tokio::time::timeout(self.timeout, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "no answer within {} s; check that the receiver is up and reachable, \
                     or raise {}.timeout_secs",
                    self.timeout.as_secs(),
                    self.at
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The engine holds one `Alerter` across tasks and awaits `send` inside
    /// spawned work.
    #[test]
    fn alerter_and_its_future_can_cross_threads() {
        fn send_sync<T: Send + Sync>(_: &T) {}
        fn send<T: Send>(_: &T) {}
        let alerter = Alerter::from_config(&Config::default()).expect("no channels");
        send_sync(&alerter);
        let alert = Alert {
            incident_id: 1,
            owner: None,
            provider: "tatum".into(),
            rule_id: "tatum.api-key".into(),
            rule_name: "Tatum API key".into(),
            redacted: "t-66…[51 chars]".into(),
            fingerprint: "0".repeat(64),
            state: "detected".into(),
            locations: Vec::new(),
            actions: Vec::new(),
            bound: None,
            next_steps: Vec::new(),
            digest: None,
        };
        send(&alerter.send(&alert));
        assert!(alerter.is_empty());
    }
}
