//! Where a new key goes: the services that hold a provider's key
//! (`providers.<p>.consumers`), each of one kind — an env file, a Vault /
//! OpenBao KV v2 secret, a GitHub Actions secret, a Kubernetes Secret.
//!
//! Every kind answers the same four questions, in one place
//! ([`holding`], [`write`], [`read_back`], [`restart::restart`]): does it
//! hold the leaked key (found by fingerprint: the value is read and
//! compared, so a consumer holding some other key is never touched), write
//! the new key (with the version read, so a concurrent change is not
//! clobbered), read it back, restart what uses it. GitHub never returns a
//! secret's value, so a `github_actions` consumer is matched by config: it
//! is declared as holding this provider's key and written whenever a
//! rotation happened.
//!
//! Nothing here ever puts a key, or a body a service answered (it may echo
//! values), in an error: errors name the consumer, the status and the fix.

#[cfg(unix)]
pub mod env_file;
mod file;
mod github_actions;
mod http;
mod kubernetes;
pub mod restart;
mod vault;

use crate::config::{Consumer, ConsumerKind};
use crate::scan::{Fingerprint, Secret};
use std::time::Duration;

/// What a consumer's access needs beyond its own config.
#[derive(Debug, Clone, Copy)]
pub struct Reach {
    /// Timeout of one HTTP call to a consumer's service.
    pub timeout: Duration,
    pub allow_insecure_http: bool,
    /// How long a restart command may run.
    pub restart_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("consumer {consumer}: cannot read {path}: {source}; check the path and that keysentry may read it")]
    Read {
        consumer: String,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("consumer {consumer}: refused {path}: {why} (keysentry neither reads nor writes it, so the new key was not written there)")]
    Refused {
        consumer: String,
        path: std::path::PathBuf,
        why: String,
    },
    #[error("consumer {consumer}: cannot write {path}: {source}; keysentry needs write access to the file's directory (the file was left unchanged)")]
    Write {
        consumer: String,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// A remote consumer (Vault, GitHub, Kubernetes) refused or failed.
    #[error("consumer {consumer} ({kind}): {why}")]
    Remote {
        consumer: String,
        kind: ConsumerKind,
        why: String,
    },
    /// The consumer's value changed between keysentry's read and write, to
    /// a key that is neither the leaked nor the new one: left as it is.
    #[error("consumer {consumer} ({kind}): someone else changed the key while keysentry was writing it (it now holds neither the leaked key nor the new one); keysentry left it as it is: check who rotates it")]
    Changed {
        consumer: String,
        kind: ConsumerKind,
    },
    #[error("consumer {consumer}: restart command `{command}` could not run: {source}; check `restart` in the config")]
    Spawn {
        consumer: String,
        command: String,
        source: std::io::Error,
    },
    #[error("consumer {consumer}: restart `{command}` {how}; restart it by hand")]
    RestartFailed {
        consumer: String,
        command: String,
        how: String,
    },
    #[error("consumer {consumer}: {why}; fix providers.<provider>.consumers in the config")]
    Config { consumer: String, why: String },
}

impl ConsumerError {
    fn remote(c: &Consumer, kind: ConsumerKind, why: impl Into<String>) -> ConsumerError {
        ConsumerError::Remote {
            consumer: c.name.clone(),
            kind,
            why: why.into(),
        }
    }

    /// The file is not there: it holds no key (not a failure).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ConsumerError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }

    pub fn is_refused(&self) -> bool {
        matches!(self, ConsumerError::Refused { .. })
    }
}

/// What a consumer holds now, as far as keysentry can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Holding {
    /// The leaked key; `version` is what a write must find unchanged
    /// (Vault's `metadata.version`, Kubernetes' `resourceVersion`).
    Old { version: Option<String> },
    /// The new key (an earlier pass wrote it).
    New,
    /// Some other key, or nothing: never touched.
    Other,
    /// The place does not exist (no file, no secret, no key in it).
    Missing,
    /// Cannot be read (GitHub Actions): declared in the config as holding
    /// this provider's key.
    Declared,
}

/// The kind of `c`, or a config error.
pub fn kind(c: &Consumer) -> Result<ConsumerKind, ConsumerError> {
    c.kind().map_err(|why| ConsumerError::Config {
        consumer: c.name.clone(),
        why,
    })
}

/// What `c` holds compared with the leaked key `old` and the new key `new`.
pub async fn holding(
    c: &Consumer,
    reach: &Reach,
    old: &Fingerprint,
    new: Option<&Fingerprint>,
) -> Result<Holding, ConsumerError> {
    let seen = match kind(c)? {
        ConsumerKind::EnvFile => {
            let fp = file::current_fingerprint(c)?;
            return Ok(match fp {
                Some(fp) if fp == *old => Holding::Old { version: None },
                Some(fp) if Some(&fp) == new => Holding::New,
                Some(_) => Holding::Other,
                None => Holding::Missing,
            });
        }
        ConsumerKind::GithubActions => return Ok(Holding::Declared),
        ConsumerKind::Vault => vault::read(c, reach).await?,
        ConsumerKind::Kubernetes => kubernetes::read(c, reach).await?,
    };
    Ok(match seen {
        None => Holding::Missing,
        Some(s) if s.value.fingerprint() == *old => Holding::Old {
            version: Some(s.version),
        },
        Some(s) if Some(&s.value.fingerprint()) == new => Holding::New,
        Some(_) => Holding::Other,
    })
}

/// An env-file consumer's value (synchronous; other kinds are not read).
pub(crate) fn file_value(c: &Consumer) -> Result<Option<Secret>, ConsumerError> {
    file::current_value(c)
}

/// The key `c` holds now, when it can be read (to recover the new key an
/// earlier pass wrote).
pub async fn value(c: &Consumer, reach: &Reach) -> Result<Option<Secret>, ConsumerError> {
    Ok(match kind(c)? {
        ConsumerKind::EnvFile => file::current_value(c)?,
        ConsumerKind::GithubActions => None,
        ConsumerKind::Vault => vault::read(c, reach).await?.map(|s| s.value),
        ConsumerKind::Kubernetes => kubernetes::read(c, reach).await?.map(|s| s.value),
    })
}

/// Writes `new` where `c` held `old` (`version` from [`holding`]). A
/// concurrent change is retried while the value is still the leaked key,
/// and refused ([`ConsumerError::Changed`]) once it is some other key.
/// Returns false when the consumer did not hold the leaked key after all.
pub async fn write(
    c: &Consumer,
    reach: &Reach,
    old: &Fingerprint,
    new: &Secret,
    version: Option<String>,
) -> Result<bool, ConsumerError> {
    match kind(c)? {
        ConsumerKind::EnvFile => file::rewrite(c, old, new),
        ConsumerKind::GithubActions => github_actions::write(c, reach, new).await.map(|()| true),
        ConsumerKind::Vault => vault::write(c, reach, old, new, version).await,
        ConsumerKind::Kubernetes => kubernetes::write(c, reach, old, new, version).await,
    }
}

/// Whether `c` holds `new` now. For GitHub Actions (values cannot be read)
/// this is the secret's `updated_at` having moved since before the write.
pub async fn read_back(c: &Consumer, reach: &Reach, new: &Secret) -> Result<bool, ConsumerError> {
    let fp = new.fingerprint();
    Ok(match kind(c)? {
        ConsumerKind::EnvFile => file::current_fingerprint(c)? == Some(fp),
        ConsumerKind::GithubActions => github_actions::updated(c, reach).await?,
        ConsumerKind::Vault => vault::read(c, reach)
            .await?
            .is_some_and(|s| s.value.fingerprint() == fp),
        ConsumerKind::Kubernetes => kubernetes::read(c, reach)
            .await?
            .is_some_and(|s| s.value.fingerprint() == fp),
    })
}

/// A value read from a remote consumer, with the version to write against.
pub(crate) struct Seen {
    pub value: Secret,
    pub version: String,
}

/// Clears every string of a parsed answer (it may hold other secrets).
pub(crate) fn wipe_json(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::String(s) => zeroize::Zeroize::zeroize(s),
        Value::Array(a) => a.iter_mut().for_each(wipe_json),
        Value::Object(m) => m.values_mut().for_each(wipe_json),
        _ => {}
    }
}

/// What happened at one consumer during a hand-over. Never holds a key.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConsumerReport {
    pub name: String,
    pub kind: String,
    pub written: bool,
    pub verified: bool,
    pub restarted: bool,
    /// Why it was not written, verified or restarted (no key in it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why it was left alone (held another key, did not exist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

impl ConsumerReport {
    pub fn new(c: &Consumer) -> ConsumerReport {
        ConsumerReport {
            name: c.name.clone(),
            kind: c.kind().map(|k| k.to_string()).unwrap_or_default(),
            ..ConsumerReport::default()
        }
    }

    pub fn failed(&self) -> bool {
        self.error.is_some()
    }
}

impl std::fmt::Display for ConsumerReport {
    /// `kms: written, verified, restarted`, `other: FAILED (why)`,
    /// `old: left alone (why)`: what alerts and `incidents show` print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let done: Vec<&str> = [
            (self.written, "written"),
            (self.verified, "verified"),
            (self.restarted, "restarted"),
        ]
        .into_iter()
        .filter_map(|(yes, what)| yes.then_some(what))
        .collect();
        write!(f, "{}: ", self.name)?;
        match (&self.error, &self.skipped) {
            (Some(why), _) if done.is_empty() => write!(f, "FAILED ({why})"),
            (Some(why), _) => write!(f, "{}, then FAILED ({why})", done.join(", ")),
            (None, _) if !done.is_empty() => f.write_str(&done.join(", ")),
            (None, Some(why)) => write!(f, "left alone ({why})"),
            (None, None) => f.write_str("not written"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_says_what_happened_and_never_more() {
        let c = Consumer {
            name: "kms".into(),
            vault: Some(Default::default()),
            ..Consumer::default()
        };
        let mut r = ConsumerReport::new(&c);
        assert_eq!(r.to_string(), "kms: not written");
        r.written = true;
        assert_eq!(r.to_string(), "kms: written");
        r.error = Some("token lacks policy".into());
        assert_eq!(
            r.to_string(),
            "kms: written, then FAILED (token lacks policy)"
        );
        r.written = false;
        assert_eq!(r.to_string(), "kms: FAILED (token lacks policy)");
        r.error = None;
        r.skipped = Some("holds another key".into());
        assert_eq!(r.to_string(), "kms: left alone (holds another key)");
    }
}
