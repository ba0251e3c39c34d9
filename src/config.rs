//! The YAML config file, parsed once into `Config`. Unknown keys are errors
//! that name their path in the YAML (`alerts[1].url_env`), so a typo never
//! silently disables a feature. The core never sees clap types.

mod consumer;
mod env;
mod ingest;
mod problem;
mod schema;

use crate::limits;
pub use crate::mask::{regex_cause, safe_message, without_key_like_runs};
pub use consumer::{
    Consumer, ConsumerKind, GithubActionsConsumer, KubernetesConsumer, VaultConsumer,
};
pub use env::{Env, EnvFileError};
pub use ingest::{HttpIngestConfig, SyslogConfig};
pub use problem::{Problem, ProblemKind};
pub(crate) use schema::parse_all as schema_parse_all;

use crate::rules::HttpTemplate;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}; check the path and its permissions")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config {path} {source}")]
    Limit {
        path: PathBuf,
        source: limits::LimitError,
    },
    /// Every problem in the file, one per line.
    #[error("{path}: {n} problem{s}:\n  {list}\n`keysentry config check {path}` checks a config without running anything",
        n = problems.len(),
        s = if problems.len() == 1 { "" } else { "s" },
        list = problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("\n  "))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
    #[error("{path}: at `{at}`{line}: {message}")]
    Parse {
        path: PathBuf,
        at: String,
        line: String,
        message: String,
    },
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the incident store lives (`keysentry.db`).
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// This daemon's name in a fleet (default: `$KEYSENTRY_NODE`, else the
    /// hostname): keys its per-host state in a shared store.
    #[serde(default)]
    pub node: Option<String>,
    /// A shared store (PostgreSQL) instead of SQLite in `state_dir`.
    #[serde(default)]
    pub store: Option<StoreConfig>,
    #[serde(default)]
    pub scan: ScanConfig,
    #[serde(default)]
    pub remediation: RemediationConfig,
    #[serde(default)]
    pub providers: ProvidersConfig,
    #[serde(default)]
    pub alerts: Vec<AlertConfig>,
    /// How incidents whose key is not live are told: one digest per owner
    /// per interval rather than one alert each.
    #[serde(default)]
    pub alert_digest: Option<AlertDigestConfig>,
    #[serde(default)]
    pub owners: Vec<OwnerRule>,
    /// Who is told when no `owners` entry and no commit author matches.
    #[serde(default)]
    pub default_owner: Option<String>,
    #[serde(default)]
    pub watch: WatchConfig,
    #[serde(default)]
    pub http: Option<HttpConfig>,
    #[serde(default)]
    pub github: Option<GitHubConfig>,
    /// Allow plain http:// to hosts other than loopback for provider,
    /// management, GitHub and alert URLs (checks: src/remediate/urls.rs).
    #[serde(default)]
    pub allow_insecure_http: bool,
}

/// `store:`: where a fleet's shared store is.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `postgres://USER@HOST:PORT/DATABASE` (`?sslmode=require` for TLS,
    /// `&sslrootcert=FILE` for a private CA).
    #[serde(default)]
    pub url: Option<String>,
    /// The environment variable holding the URL (keeps a password out of
    /// the config file).
    #[serde(default)]
    pub url_env: Option<String>,
    /// Connections this daemon opens at most (default 4).
    #[serde(default)]
    pub max_connections: Option<usize>,
}

impl StoreConfig {
    /// The URL, from `url` or the variable `url_env` names; `Ok(None)`
    /// when neither is set (SQLite).
    pub fn resolve_url(&self) -> Result<Option<String>, String> {
        match (&self.url, &self.url_env) {
            (Some(_), Some(_)) => Err("set `url` or `url_env`, not both".into()),
            (Some(u), None) => Ok(Some(u.clone())),
            (None, Some(name)) => match std::env::var(name) {
                Ok(u) if !u.trim().is_empty() => Ok(Some(u.trim().to_owned())),
                _ => Err(format!(
                    "`url_env` names {name}, which is unset or empty; export the store's URL in it"
                )),
            },
            (None, None) => Ok(None),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanConfig {
    /// Extra rule directories, added to the built-in rules.
    #[serde(default)]
    pub rules: Vec<PathBuf>,
    #[serde(default)]
    pub allowlist: AllowlistConfig,
    /// Files larger than this many bytes are skipped (default 20 MiB).
    #[serde(default)]
    pub max_file_size: Option<u64>,
    /// Archives and container images in a file scan.
    #[serde(default)]
    pub archives: ArchivesConfig,
}

/// `scan.archives`: what a file scan does with zip, tar and gzip files and
/// image tarballs (src/source/archive.rs). Absent fields keep the defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArchivesConfig {
    /// Expand archives (default true); false skips them as binary.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Levels of archives expanded (default 3).
    #[serde(default)]
    pub max_depth: Option<u32>,
    /// Bytes decompressed from one archive, all levels (default 256 MiB).
    #[serde(default)]
    pub max_size: Option<u64>,
    /// Entries in one archive, all levels (default 100000).
    #[serde(default)]
    pub max_entries: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowlistConfig {
    /// Globs matched against the reported path.
    #[serde(default)]
    pub paths: Vec<String>,
    /// Regexes matched against the secret itself.
    #[serde(default)]
    pub secrets: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RemediationMode {
    /// Call providers.
    #[default]
    Auto,
    /// Log the plan, call nothing.
    DryRun,
    /// Record incidents and alert only.
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Regenerate,
    Expire,
    Freeze,
    Revoke,
    Notify,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemediationConfig {
    #[serde(default)]
    pub mode: RemediationMode,
    /// Action per provider.
    #[serde(default)]
    pub policy: BTreeMap<String, Action>,
    /// Action per rule id; wins over the provider's.
    #[serde(default)]
    pub rule_policy: BTreeMap<String, Action>,
    /// Attempts per provider call before the incident is marked failed
    /// (and retried on the next run).
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// Provider calls per second, per provider.
    #[serde(default)]
    pub rate_limit: Option<f64>,
    /// Delay before the first retry of a provider call, in milliseconds
    /// (doubled each attempt, with jitter; default 500).
    #[serde(default)]
    pub backoff_ms: Option<u64>,
    /// Timeout of one provider call, in seconds (default 15).
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    /// How long a daemon holds an incident it works on before another
    /// daemon of the fleet may take it over (default 600 s; longer than
    /// any pass). A daemon killed mid-remediation leaves its incidents to
    /// the others this long after.
    #[serde(default)]
    pub lease_secs: Option<u64>,
    /// Incidents remediated at the same time (default 16).
    #[serde(default)]
    pub concurrency: Option<usize>,
    /// How often the owner is reminded of an incident that waits for them
    /// (a manual rotation, a revoke not yet effective), in seconds
    /// (default 86400: once a day).
    #[serde(default)]
    pub reminder_interval_secs: Option<u64>,
    /// Where every new key is sealed (age) the moment it arrives, before any
    /// consumer is written (src/remediate/escrow.rs).
    #[serde(default)]
    pub escrow: Option<EscrowConfig>,
}

/// `remediation.escrow`: new keys are sealed to these age recipients and to
/// the service's own identity, and kept sealed in the store.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscrowConfig {
    /// `age1…` public keys that can always decrypt a new key
    /// (`keysentry incidents new-key ID | age -d -i KEY`).
    #[serde(default)]
    pub age_recipients: Vec<String>,
    /// The service's own age identity (default: the systemd credential
    /// `escrow.key` if handed over, else /etc/keysentry/escrow.key).
    #[serde(default)]
    pub identity_file: Option<PathBuf>,
}

// No `deny_unknown_fields` here: with `flatten` it would reject every simple
// provider; each of those is itself checked by `SimpleProviderConfig`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProvidersConfig {
    #[serde(default)]
    pub tatum: Option<TatumConfig>,
    /// Base URLs and credentials of the simple, rule-driven providers
    /// (github, gitlab, slack, ...).
    #[serde(flatten)]
    pub others: BTreeMap<String, SimpleProviderConfig>,
}

impl ProvidersConfig {
    /// The providers that set a `rate_limit` of their own.
    pub fn rate_limits(&self) -> std::collections::HashMap<String, f64> {
        let tatum = self.tatum.as_ref().and_then(|t| t.rate_limit);
        let tatum = tatum.map(|r| ("tatum".to_string(), r));
        let others = self
            .others
            .iter()
            .filter_map(|(name, p)| p.rate_limit.map(|r| (name.clone(), r)));
        tatum.into_iter().chain(others).collect()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimpleProviderConfig {
    #[serde(default)]
    pub api_url: Option<String>,
    /// Calls per second to this provider; overrides `remediation.rate_limit`.
    #[serde(default)]
    pub rate_limit: Option<f64>,
    /// Where a new key of this provider goes after a rotation.
    #[serde(default)]
    pub consumers: Vec<Consumer>,
    /// The variable holding an administrator's credential, for providers
    /// whose containment needs one (an OpenAI or Anthropic admin key, an
    /// AWS secret access key). The credential itself is never in the file.
    #[serde(default)]
    pub admin_key_env: Option<String>,
    /// The variable holding that credential's id, where it has one (the
    /// AWS access key id that goes with `admin_key_env`).
    #[serde(default)]
    pub admin_key_id_env: Option<String>,
    /// The region requests are signed for (AWS: `us-east-1`, where IAM is).
    #[serde(default)]
    pub region: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TatumConfig {
    #[serde(default)]
    pub api_url: Option<String>,
    #[serde(default)]
    pub management: TatumManagement,
    #[serde(default)]
    pub consumers: Vec<Consumer>,
    /// Expire even when subscriptions or virtual accounts are bound.
    #[serde(default)]
    pub force_expire: bool,
    /// How often to poll verify while waiting for a manual rotation.
    #[serde(default)]
    pub poll_interval_secs: Option<u64>,
    /// Calls per second to Tatum (your plan's limit); overrides
    /// `remediation.rate_limit`.
    #[serde(default)]
    pub rate_limit: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TatumManagement {
    #[serde(default)]
    pub regenerate: Option<HttpTemplate>,
    #[serde(default)]
    pub expire: Option<HttpTemplate>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AlertConfig {
    Webhook {
        #[serde(default)]
        url: Option<String>,
        #[serde(default)]
        url_env: Option<String>,
        /// Seconds before a delivery counts as failed (default 10).
        #[serde(default)]
        timeout_secs: Option<u64>,
    },
    Slack {
        #[serde(default)]
        url: Option<String>,
        #[serde(default)]
        url_env: Option<String>,
        #[serde(default)]
        timeout_secs: Option<u64>,
    },
    Email {
        smtp: String,
        from: String,
        /// Fallback recipients when the owner has no email.
        #[serde(default)]
        to: Vec<String>,
        #[serde(default)]
        timeout_secs: Option<u64>,
    },
    GithubIssue {
        repo: String,
        #[serde(default)]
        api_url: Option<String>,
        #[serde(default)]
        token_env: Option<String>,
        #[serde(default)]
        timeout_secs: Option<u64>,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnerRule {
    #[serde(rename = "match")]
    pub matcher: OwnerMatch,
    pub email: String,
    /// This owner's `age1…` public keys: new keys of their incidents are
    /// sealed to them too.
    #[serde(default)]
    pub age_recipients: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnerMatch {
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub rule: Option<String>,
    /// Glob over the finding's path.
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub repo: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WatchConfig {
    #[serde(default)]
    pub logs: Vec<String>,
    /// `start` or `end` (default): where to begin in files that exist when
    /// first seen.
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub repos: Vec<RepoWatch>,
    /// How often log files are re-checked even without a file-system event
    /// (notify can miss events, e.g. on network file systems), e.g. `1s`.
    #[serde(default)]
    pub poll: Option<String>,
    /// A source that makes no progress for this long is reported stuck by
    /// `/healthz` (default: 3 × its poll interval, at least 30 s), e.g. `2m`.
    #[serde(default)]
    pub stuck_after: Option<String>,
    /// Syslog listeners (src/source/syslog).
    #[serde(default)]
    pub syslog: Vec<SyslogConfig>,
    /// The HTTP ingest endpoint (src/source/http_ingest.rs).
    #[serde(default)]
    pub http_ingest: Option<HttpIngestConfig>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertDigestConfig {
    /// Seconds between two digests to the same owner (default 900).
    #[serde(default)]
    pub interval_secs: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepoWatch {
    pub path: PathBuf,
    /// e.g. `30s`, `5m`.
    #[serde(default)]
    pub poll: Option<String>,
    /// Scan the whole history on first start (default true).
    #[serde(default)]
    pub history: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: String,
    /// Limits of this server and the webhook's (`server::HttpLimits` has
    /// the defaults and why).
    #[serde(default)]
    pub max_connections: Option<usize>,
    #[serde(default)]
    pub header_timeout_secs: Option<u64>,
    #[serde(default)]
    pub body_timeout_secs: Option<u64>,
    #[serde(default)]
    pub idle_timeout_secs: Option<u64>,
    #[serde(default)]
    pub max_inflight_body_bytes: Option<usize>,
    /// The incident dashboard under `/ui`; absent, no `/ui` route exists.
    #[serde(default)]
    pub ui: Option<UiConfig>,
}

/// The shortest dashboard token `config check` and the daemon accept.
pub const UI_TOKEN_MIN_CHARS: usize = 16;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UiConfig {
    /// The variable holding the dashboard's sign-in token (at least 16
    /// characters); named, never written in the file.
    pub token_env: String,
    /// Mark the session cookie `Secure`: the daemon speaks plain http, so
    /// set this when a TLS proxy fronts it (browsers then send the cookie
    /// over https only).
    #[serde(default)]
    pub secure_cookie: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitHubConfig {
    #[serde(default)]
    pub api_url: Option<String>,
    #[serde(default)]
    pub token_env: Option<String>,
    #[serde(default)]
    pub app: Option<GitHubApp>,
    #[serde(default)]
    pub webhook: Option<WebhookConfig>,
    /// Comment on the offending commit once the key is contained.
    #[serde(default)]
    pub comment: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitHubApp {
    pub app_id: u64,
    pub private_key_path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub listen: String,
    #[serde(default)]
    pub path: Option<String>,
    pub secret_env: String,
    /// Bodies larger than this are refused with 413 (default 25 MiB).
    #[serde(default)]
    pub max_body: Option<usize>,
}

/// Reads a config file within [`limits`].
pub fn read(path: &Path) -> Result<String, ConfigError> {
    limits::read_capped(path, limits::MAX_CONFIG_BYTES, "config").map_err(|e| match e {
        limits::ReadError::Io(source) => ConfigError::Io {
            path: path.to_path_buf(),
            source,
        },
        limits::ReadError::Limit(source) => ConfigError::Limit {
            path: path.to_path_buf(),
            source,
        },
    })
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = read(path)?;
        Config::parse(path, &text)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        limits::check_depth(text, "config").map_err(|source| ConfigError::Limit {
            path: path.to_path_buf(),
            source,
        })?;
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        let de = serde_yaml::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let at = without_key_like_runs(&e.path().to_string());
            let inner = e.into_inner();
            ConfigError::Parse {
                path: path.to_path_buf(),
                at,
                line: inner
                    .location()
                    .map(|l| format!(" (line {})", l.line()))
                    .unwrap_or_default(),
                message: safe_message(&inner.to_string()),
            }
        })
    }
}
