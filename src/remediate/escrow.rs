//! Escrow of new keys: a key that a rotation just produced is sealed with
//! age, the moment it arrives and before any consumer is written, to the
//! configured recipients (`remediation.escrow.age_recipients`, the owner's
//! `owners[].age_recipients`) and to the service's own identity, and kept
//! sealed in the store. A restarted daemon finishes a hand-over from it
//! (decrypting with its identity); an owner can always recover the key with
//! `keysentry incidents new-key ID | age -d -i KEY`. The store never holds a
//! key in clear, and the identity lives outside it (a systemd credential, or
//! a root-only file made by `keysentry config init-escrow`).

use crate::config::{Config, EscrowConfig, Problem};
use crate::scan::Secret;
use age::secrecy::ExposeSecret;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use zeroize::Zeroizing;

/// The service's identity when `remediation.escrow.identity_file` is unset
/// and systemd hands over no credential.
pub const DEFAULT_IDENTITY: &str = "/etc/keysentry/escrow.key";

/// The name of the systemd credential (`LoadCredential=escrow.key:…`).
const CREDENTIAL: &str = "escrow.key";

#[derive(Debug, thiserror::Error)]
pub enum EscrowError {
    #[error("escrow identity {path}: {why}; create one with `keysentry config init-escrow --identity-file {path}` or set remediation.escrow.identity_file")]
    Identity { path: PathBuf, why: String },
    #[error("escrow identity {path} is readable by others (mode {mode:o}); `chmod 600 {path}` (it can decrypt every escrowed key)")]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("{at}: `{value}` is not an age recipient ({why}); give public keys as `age-keygen -y` prints them (age1…)")]
    Recipient {
        at: String,
        value: String,
        why: String,
    },
    #[error("{path} already exists; keysentry never overwrites an identity (escrowed keys would become unreadable): move it aside or pick another --identity-file")]
    Exists { path: PathBuf },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot seal the new key: {0}")]
    Seal(String),
    #[error("cannot open the escrowed key with the service's identity: {0}; was the identity file replaced?")]
    Open(String),
}

/// The escrow of a config: the service's identity and every recipient.
pub(crate) struct Escrow {
    identity: age::x25519::Identity,
    recipients: Vec<age::x25519::Recipient>,
    /// Each owner's (email) own recipients.
    owners: Vec<(String, Vec<age::x25519::Recipient>)>,
}

/// A new key, sealed: what the store keeps.
pub(crate) struct Sealed {
    pub armored: String,
    /// The public keys it was sealed to (the service's first).
    pub recipients: Vec<String>,
}

/// Where the service's identity is read from: the configured file, else the
/// systemd credential, else [`DEFAULT_IDENTITY`].
pub fn identity_path(cfg: &EscrowConfig) -> PathBuf {
    if let Some(p) = &cfg.identity_file {
        return p.clone();
    }
    if let Some(dir) = std::env::var_os("CREDENTIALS_DIRECTORY").filter(|d| !d.is_empty()) {
        let p = PathBuf::from(dir).join(CREDENTIAL);
        if p.is_file() {
            return p;
        }
    }
    PathBuf::from(DEFAULT_IDENTITY)
}

impl Escrow {
    /// The escrow the config asks for: `Ok(None)` when it has no
    /// `remediation.escrow`.
    pub fn load(config: &Config) -> Result<Option<Escrow>, EscrowError> {
        let Some(cfg) = &config.remediation.escrow else {
            return Ok(None);
        };
        let identity = read_identity(&identity_path(cfg))?;
        let recipients =
            parse_recipients("remediation.escrow.age_recipients", &cfg.age_recipients)?;
        let mut owners = Vec::new();
        for (i, o) in config.owners.iter().enumerate() {
            if !o.age_recipients.is_empty() {
                let at = format!("owners[{i}].age_recipients");
                owners.push((o.email.clone(), parse_recipients(&at, &o.age_recipients)?));
            }
        }
        Ok(Some(Escrow {
            identity,
            recipients,
            owners,
        }))
    }

    /// Seals `key` to the service's identity, the configured recipients and
    /// those of `owner`.
    pub fn seal(&self, key: &Secret, owner: Option<&str>) -> Result<Sealed, EscrowError> {
        let own = self.identity.to_public();
        let mut all: Vec<&age::x25519::Recipient> = vec![&own];
        all.extend(&self.recipients);
        for (email, theirs) in &self.owners {
            if owner.is_some_and(|o| o.eq_ignore_ascii_case(email)) {
                all.extend(theirs);
            }
        }
        let mut names: Vec<String> = Vec::new();
        let mut unique: Vec<&age::x25519::Recipient> = Vec::new();
        for r in all {
            let name = r.to_string();
            if !names.contains(&name) {
                names.push(name);
                unique.push(r);
            }
        }
        let seal = |e: &dyn std::fmt::Display| EscrowError::Seal(e.to_string());
        let encryptor =
            age::Encryptor::with_recipients(unique.iter().map(|r| *r as &dyn age::Recipient))
                .map_err(|e| seal(&e))?;
        let mut out = Vec::new();
        let armor =
            age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
                .map_err(|e| seal(&e))?;
        let mut writer = encryptor.wrap_output(armor).map_err(|e| seal(&e))?;
        writer
            .write_all(key.expose().as_bytes())
            .map_err(|e| seal(&e))?;
        writer
            .finish()
            .and_then(|armor| armor.finish())
            .map_err(|e| seal(&e))?;
        let armored = String::from_utf8(out).map_err(|e| seal(&e))?;
        Ok(Sealed {
            armored,
            recipients: names,
        })
    }

    /// The key in `armored`, decrypted with the service's identity. The
    /// plaintext buffer is wiped when dropped.
    pub fn open(&self, armored: &str) -> Result<Secret, EscrowError> {
        let plain = age::decrypt(&self.identity, armored.as_bytes())
            .map(Zeroizing::new)
            .map_err(|e| EscrowError::Open(e.to_string()))?;
        let text = std::str::from_utf8(&plain)
            .map_err(|_| EscrowError::Open("the plaintext is not text".into()))?;
        Ok(Secret::new(text))
    }
}

fn parse_recipients(
    at: &str,
    values: &[String],
) -> Result<Vec<age::x25519::Recipient>, EscrowError> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            age::x25519::Recipient::from_str(v.trim()).map_err(|why| EscrowError::Recipient {
                at: format!("{at}[{i}]"),
                // A public key: safe to repeat, and the owner must see which.
                value: v.chars().take(80).collect(),
                why: why.to_string(),
            })
        })
        .collect()
}

/// Reads an age identity file (`age-keygen`'s format: comments, then one
/// `AGE-SECRET-KEY-1…` line), refusing one others may read.
fn read_identity(path: &Path) -> Result<age::x25519::Identity, EscrowError> {
    let failed = |why: String| EscrowError::Identity {
        path: path.to_path_buf(),
        why,
    };
    let meta = std::fs::metadata(path).map_err(|e| failed(format!("cannot be read ({e})")))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(EscrowError::TooOpen {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    let text = std::fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(|e| failed(format!("cannot be read ({e})")))?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or_else(|| failed("holds no identity".into()))?;
    // The parser's message never includes the value.
    age::x25519::Identity::from_str(line)
        .map_err(|why| failed(format!("is not an age X25519 identity ({why})")))
}

/// `keysentry config init-escrow`: a new identity at `path`, mode 0600,
/// never over an existing file. Returns its public recipient.
pub fn init_identity(path: &Path) -> Result<String, EscrowError> {
    let write = |source| EscrowError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(write)?;
    }
    let identity = age::x25519::Identity::generate();
    let public = identity.to_public().to_string();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            EscrowError::Exists {
                path: path.to_path_buf(),
            }
        } else {
            write(e)
        }
    })?;
    let secret = identity.to_string();
    let text = Zeroizing::new(format!(
        "# keysentry escrow identity: decrypts every escrowed key; keep it root-only\n# public key: {public}\n{}\n",
        secret.expose_secret()
    ));
    file.write_all(text.as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(write)?;
    Ok(public)
}

/// `config check`'s word on `remediation.escrow` and `owners[].age_recipients`:
/// bad recipients are the file's fault, an identity that is missing,
/// unreadable or too open this machine's.
pub fn problems(config: &Config) -> Vec<Problem> {
    let mut out = Vec::new();
    let bad = |e: EscrowError| {
        match &e {
        EscrowError::Recipient { at, value, why } => Problem::config(
            at.clone(),
            format!("`{value}` is not an age recipient ({why}); give public keys as `age-keygen -y` prints them (age1…)"),
        ),
        _ => Problem::machine("remediation.escrow.identity_file", e.to_string()),
    }
    };
    if let Some(cfg) = &config.remediation.escrow {
        if let Err(e) = parse_recipients("remediation.escrow.age_recipients", &cfg.age_recipients) {
            out.push(bad(e));
        }
        if let Err(e) = read_identity(&identity_path(cfg)) {
            out.push(bad(e));
        }
    }
    for (i, o) in config.owners.iter().enumerate() {
        if let Err(e) = parse_recipients(&format!("owners[{i}].age_recipients"), &o.age_recipients)
        {
            out.push(bad(e));
        }
        if !o.age_recipients.is_empty() && config.remediation.escrow.is_none() {
            out.push(Problem::config(
                format!("owners[{i}].age_recipients"),
                "is set but remediation.escrow is not, so no key is ever sealed to it; add `remediation: {escrow: {}}`".to_string(),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_with(identity: &Path, recipients: Vec<String>) -> Config {
        let mut c = Config::default();
        c.remediation.escrow = Some(EscrowConfig {
            age_recipients: recipients,
            identity_file: Some(identity.to_path_buf()),
        });
        c
    }

    #[test]
    fn a_sealed_key_opens_with_the_identity_and_only_the_ciphertext_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("escrow.key");
        let public = init_identity(&path).unwrap();
        let owner = age::x25519::Identity::generate();
        let config = config_with(&path, vec![owner.to_public().to_string()]);
        let escrow = Escrow::load(&config).unwrap().unwrap();
        let key = Secret::new("t-6677183273e3a22c239969cb-dbb1e8c8d1c012c954834afa");

        let sealed = escrow.seal(&key, None).unwrap();

        assert!(sealed
            .armored
            .starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
        assert!(!sealed.armored.contains("dbb1e8c8"));
        assert_eq!(sealed.recipients[0], public);
        assert_eq!(sealed.recipients.len(), 2);
        assert_eq!(escrow.open(&sealed.armored).unwrap().expose(), key.expose());
        let by_owner = age::decrypt(&owner, sealed.armored.as_bytes()).unwrap();
        assert_eq!(by_owner, key.expose().as_bytes());
        assert!(matches!(
            init_identity(&path),
            Err(EscrowError::Exists { .. })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn an_open_identity_and_a_bad_recipient_are_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("escrow.key");
        init_identity(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let bad = config_with(&path, vec!["age1nope".into()]);
        let problems: Vec<String> = super::problems(&bad)
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("age_recipients[0]"), "{problems:?}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Escrow::load(&config_with(&path, vec![])).err().unwrap();
        assert!(err.to_string().contains("chmod 600"), "{err}");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!err.to_string().contains(text.lines().last().unwrap()));
    }
}
