//! `providers.<p>.consumers[i]`: a service that holds a provider's key and
//! gets the new one after a rotation. Exactly one kind per entry: an env
//! file (`env_file` + `variable`, the original form), `vault`,
//! `github_actions` or `kubernetes`. The kind is chosen by which key is
//! present, so the env-file form reads as it always has.

use serde::Deserialize;
use std::path::PathBuf;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consumer {
    pub name: String,
    /// The `NAME=value` file holding the key (with `variable`).
    #[serde(default)]
    pub env_file: Option<PathBuf>,
    #[serde(default)]
    pub variable: Option<String>,
    /// For a key that comes as a pair (AWS: the access key id in
    /// `variable`): the variable in the same env file holding its secret.
    #[serde(default)]
    pub secret_variable: Option<String>,
    #[serde(default)]
    pub vault: Option<VaultConsumer>,
    #[serde(default)]
    pub github_actions: Option<GithubActionsConsumer>,
    #[serde(default)]
    pub kubernetes: Option<KubernetesConsumer>,
    /// Command run after the new key is written (argv, no shell).
    #[serde(default)]
    pub restart: Vec<String>,
    /// A systemd unit restarted after the new key is written
    /// (`systemctl try-restart UNIT`).
    #[serde(default)]
    pub restart_unit: Option<String>,
}

/// A field of a secret in Vault's or OpenBao's KV version 2 engine.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConsumer {
    /// e.g. `https://vault.example.com:8200`.
    pub addr: String,
    /// The KV v2 mount, e.g. `secret`.
    pub mount: String,
    /// The secret's path under the mount, e.g. `tatum/kms`.
    pub path: String,
    /// The field of the secret holding the key, e.g. `api_key`.
    pub field: String,
    /// The environment variable holding the Vault token.
    pub token_env: String,
    /// Vault Enterprise / OpenBao namespace (`X-Vault-Namespace`).
    #[serde(default)]
    pub namespace: Option<String>,
}

/// A GitHub Actions secret of a repository, one of its environments, or an
/// organisation.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GithubActionsConsumer {
    /// `owner/name`; required unless `org` is set.
    #[serde(default)]
    pub repo: Option<String>,
    /// The secret's name, e.g. `TATUM_API_KEY`.
    pub name: String,
    /// An environment of `repo` rather than the repository itself.
    #[serde(default)]
    pub environment: Option<String>,
    /// An organisation secret rather than a repository's.
    #[serde(default)]
    pub org: Option<String>,
    /// GitHub's REST API (default `https://api.github.com`).
    #[serde(default)]
    pub api_url: Option<String>,
    /// The environment variable holding a token that may write the secret.
    pub token_env: String,
}

/// A key of a Kubernetes Secret, written through the API server.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubernetesConsumer {
    /// The API server, e.g. `https://10.0.0.1:6443`.
    pub api_url: String,
    pub namespace: String,
    /// The Secret's name.
    pub secret: String,
    /// The key in the Secret's `data`.
    pub key: String,
    /// The environment variable holding a bearer token (or `token_file`).
    #[serde(default)]
    pub token_env: Option<String>,
    /// A file holding the bearer token, e.g. a service account's
    /// `/var/run/secrets/kubernetes.io/serviceaccount/token`.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// PEM bundle of the API server's CA (default: the system roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Deployments in `namespace` given a rollout restart after the write.
    #[serde(default)]
    pub restart_deployments: Vec<String>,
}

/// Which kind a consumer entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerKind {
    EnvFile,
    Vault,
    GithubActions,
    Kubernetes,
}

impl ConsumerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsumerKind::EnvFile => "env_file",
            ConsumerKind::Vault => "vault",
            ConsumerKind::GithubActions => "github_actions",
            ConsumerKind::Kubernetes => "kubernetes",
        }
    }
}

impl std::fmt::Display for ConsumerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Consumer {
    /// The entry's kind, or why it has none or several.
    pub fn kind(&self) -> Result<ConsumerKind, String> {
        let mut kinds = Vec::new();
        if self.env_file.is_some() || self.variable.is_some() {
            kinds.push(ConsumerKind::EnvFile);
        }
        if self.vault.is_some() {
            kinds.push(ConsumerKind::Vault);
        }
        if self.github_actions.is_some() {
            kinds.push(ConsumerKind::GithubActions);
        }
        if self.kubernetes.is_some() {
            kinds.push(ConsumerKind::Kubernetes);
        }
        match kinds[..] {
            [one] => Ok(one),
            [] => Err("names no place for the key: give `env_file` and `variable`, or one of `vault`, `github_actions`, `kubernetes`".into()),
            _ => Err(format!(
                "names {} places; give exactly one per consumer (split it into several consumers)",
                kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(" and ")
            )),
        }
    }
}

impl super::ProvidersConfig {
    /// The consumers of provider `name` (`providers.<name>.consumers`).
    pub fn consumers(&self, name: &str) -> &[Consumer] {
        match name {
            "tatum" => self.tatum.as_ref().map_or(&[], |t| &t.consumers[..]),
            other => self.others.get(other).map_or(&[], |p| &p.consumers[..]),
        }
    }

    /// Every provider's consumers with the YAML path of each list.
    pub fn all_consumers(&self) -> Vec<(String, &[Consumer])> {
        let tatum = self.tatum.as_ref().map(|t| ("tatum", &t.consumers[..]));
        let others = self
            .others
            .iter()
            .map(|(n, p)| (n.as_str(), &p.consumers[..]));
        tatum
            .into_iter()
            .chain(others)
            .filter(|(_, list)| !list.is_empty())
            .map(|(name, list)| (format!("providers.{name}.consumers"), list))
            .collect()
    }
}
