//! GitHub as a source: the webhook target that scans every push within
//! seconds and feeds GitHub's own secret scanning alerts to the engine.
//!
//! ```text
//! POST github.webhook.path
//!   └─ signature (HMAC of the raw body) ─ 401 ─┐
//!   └─ job stored, keyed by X-GitHub-Delivery ─┴─ answered at once (202)
//!          │ worker (deliveries), resumes after a restart
//!          ▼
//!   push:  compare / commits / blobs (api) → chunks (push, patch) → scan::driver
//!   secret_scanning_alert: alerts API (secret_scanning)           → scan::driver
//!          ▼
//!   FindingSink (scan::FindingSink: the engine) → optional commit comment
//! ```
//!
//! - [`signature`]: `X-Hub-Signature-256`, constant time.
//! - [`untrusted`]: ref names, shas and repository names checked before
//!   they reach an API path; errors that never quote what they reject.
//! - [`webhook`]: the axum router (`webhook_router`).
//! - [`deliveries`]: the durable queue and its worker; GitHub rate limits
//!   and outages reschedule a delivery, never drop it.
//! - [`api`]: the REST calls through octocrab (token or GitHub App).
//! - the daemon wires it to its engine (`daemon::webhook`); nothing here
//!   knows the daemon.

mod api;
mod deliveries;
mod job;
mod patch;
mod processor;
mod push;
mod secret_scanning;
mod signature;
mod untrusted;
mod webhook;

#[cfg(test)]
mod fuzz;

pub use api::{rate_limit_wait, ApiError, GitHubApi, RepoClient, DEFAULT_API_URL};
pub use deliveries::{DeliveryQueue, Worker, STUCK_AFTER as DELIVERY_STUCK_AFTER};
pub use job::Job;
pub use processor::{ProcessError, Processor};
pub use push::{parse_push, PayloadError, PushEvent, PushJob, PushLimits, PushedCommit};
pub use secret_scanning::{parse_alert, provider_of, AlertEvent, AlertJob};
pub use signature::{SignatureError, WebhookSecret};
pub use webhook::{webhook_router, WebhookState};

use crate::config::Config;
use crate::rules::RuleSet;
use crate::scan::{FindingSink, Scanner};
use crate::server::HttpGuard;
use crate::store::webhook::{DeliveryStore, WebhookStoreError};
use std::collections::HashSet;
use std::sync::Arc;

/// The scanner for the next delivery: a fixed one, or the daemon's current
/// one (a reload swaps it).
pub type CurrentScanner = Arc<dyn Fn() -> Arc<Scanner> + Send + Sync>;

/// A [`CurrentScanner`] that never changes.
pub fn fixed_scanner(scanner: Arc<Scanner>) -> CurrentScanner {
    Arc::new(move || scanner.clone())
}

/// The default `github.webhook.path`.
pub const DEFAULT_PATH: &str = "/github/webhook";
/// GitHub caps payloads at 25 MiB; so does the default `max_body`.
pub const DEFAULT_MAX_BODY: usize = 25 << 20;
/// Deliveries processed at once.
pub const DEFAULT_CONCURRENCY: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("environment variable {name} (github.webhook.secret_env) is unset or empty; set it to the secret configured on the GitHub webhook")]
    SecretEnv { name: String },
    #[error("github.webhook.path `{path}` must start with `/`")]
    Path { path: String },
    #[error("http.max_inflight_body_bytes ({inflight}) is below github.webhook.max_body ({max_body}): a delivery of the largest size could never be read; raise http.max_inflight_body_bytes or lower github.webhook.max_body")]
    Budget { inflight: usize, max_body: usize },
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error(transparent)]
    Store(#[from] WebhookStoreError),
    #[error("github.webhook.listen `{listen}`: {source}; pick a free port or address")]
    Listen {
        listen: String,
        source: std::io::Error,
    },
}

/// The `github` section, validated: everything the router and worker need.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub path: String,
    pub secret: WebhookSecret,
    pub max_body: usize,
    /// Comment on the offending commit once a key is contained.
    pub comment: bool,
    pub max_file_size: u64,
    pub concurrency: usize,
    /// The process's HTTP limits: the body budget and timeout apply here.
    pub http: HttpGuard,
}

impl WebhookSettings {
    /// `None` when the config has no `github.webhook`. `http` is the guard
    /// every server of the process shares.
    pub fn from_config(
        config: &Config,
        http: &HttpGuard,
    ) -> Result<Option<WebhookSettings>, WebhookError> {
        let Some(gh) = &config.github else {
            return Ok(None);
        };
        let Some(hook) = &gh.webhook else {
            return Ok(None);
        };
        let secret = std::env::var(&hook.secret_env)
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| WebhookError::SecretEnv {
                name: hook.secret_env.clone(),
            })?;
        let path = hook.path.clone().unwrap_or_else(|| DEFAULT_PATH.into());
        if !path.starts_with('/') {
            return Err(WebhookError::Path { path });
        }
        let max_body = hook.max_body.unwrap_or(DEFAULT_MAX_BODY);
        let inflight = http.limits().max_inflight_body_bytes;
        if inflight < max_body {
            return Err(WebhookError::Budget { inflight, max_body });
        }
        Ok(Some(WebhookSettings {
            path,
            secret: WebhookSecret::new(secret),
            max_body,
            comment: gh.comment,
            max_file_size: config.scan.max_file_size.unwrap_or(20 << 20),
            concurrency: DEFAULT_CONCURRENCY,
            http: http.clone(),
        }))
    }
}

/// The providers keysentry can remediate: the remediation registry says.
pub fn remediable_providers(rules: &RuleSet) -> HashSet<String> {
    crate::remediate::Registry::remediable(rules)
}

/// The router and its worker, wired: merge `router` into the server and run
/// `worker` until shutdown.
pub struct GitHubWebhook {
    pub router: axum::Router,
    pub worker: Worker,
    pub queue: DeliveryQueue,
}

impl GitHubWebhook {
    /// Must run inside a tokio runtime (the GitHub client lives there).
    pub fn new(
        config: &Config,
        settings: WebhookSettings,
        store: Arc<DeliveryStore>,
        scanner: CurrentScanner,
        remediable: HashSet<String>,
        sink: Arc<dyn FindingSink>,
    ) -> Result<GitHubWebhook, WebhookError> {
        let gh = config.github.clone().unwrap_or_default();
        let api = GitHubApi::from_config(&gh)?;
        let queue = DeliveryQueue::new(store.clone());
        let processor = Processor {
            api,
            scanner,
            sink,
            store,
            comment: settings.comment,
            limits: PushLimits {
                max_file_size: settings.max_file_size,
            },
        };
        let worker = Worker::new(queue.clone(), Arc::new(processor), settings.concurrency);
        let state = WebhookState::new(&settings, queue.clone(), remediable);
        Ok(GitHubWebhook {
            router: webhook_router(state),
            worker,
            queue,
        })
    }
}
