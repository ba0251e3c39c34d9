//! `Secret` and `Fingerprint`: the only place a key's bytes live, and the
//! content-based identity that everything else (dedup, incidents, baselines)
//! refers to instead.

use sha2::{Digest, Sha256};
use std::fmt;

/// A detected key. `Debug` and `Display` print only the redacted form, so a
/// secret that ends up in a log line, an error or a panic message stays hidden.
/// The raw value is reachable only through [`Secret::expose`].
///
/// A key that works only with a second one (an AWS key id and its secret)
/// carries the partner the scanner found near it ([`Secret::pair`]); the
/// partner is not part of the key's identity (equality, hash, fingerprint).
#[derive(Clone)]
pub struct Secret(String, Option<Box<Secret>>);

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for Secret {}

impl std::hash::Hash for Secret {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state)
    }
}

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into(), None)
    }

    /// The key with `partner` attached (see [`Secret::pair`]).
    pub fn with_pair(mut self, partner: Secret) -> Self {
        self.1 = Some(Box::new(Secret(partner.0.clone(), None)));
        self
    }

    /// The partner secret of a two-part key (the rule's `pair:`), when the
    /// scanner found one near it. Templates use it as `{{pair}}`.
    pub fn pair(&self) -> Option<&Secret> {
        self.1.as_deref()
    }

    /// The raw key. Call sites are the provider calls, `--show-secrets` output
    /// and consumer files: grep for `expose(` to audit them.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(self.0.as_bytes())
    }

    /// A form safe to show anyone: a short prefix (enough to recognise the
    /// provider, never enough to guess the key) and the length.
    pub fn redacted(&self) -> String {
        redact(&self.0)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

// Wiped when dropped, so a freed key does not linger in the heap for a core
// dump, a swap page or the next allocation to find (core dumps are also
// refused at start-up: see main.rs).
impl Drop for Secret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// Redacts any string the way [`Secret::redacted`] does.
pub fn redact(value: &str) -> String {
    let chars = value.chars().count();
    // Show at most a quarter of the key, capped at 4 characters; PEM blocks
    // show their fixed header only.
    let keep = if value.starts_with("-----BEGIN") {
        value.find("KEY-----").map(|i| i + 8).unwrap_or(0)
    } else {
        (chars / 4).min(4)
    };
    let prefix: String = value.chars().take(keep).collect();
    format!("{prefix}…[{chars} chars]")
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.redacted())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Lowercase hex SHA-256 of the exact secret bytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Fingerprint(String);

impl Fingerprint {
    pub fn of(bytes: &[u8]) -> Self {
        Fingerprint(hex(&Sha256::digest(bytes)))
    }

    /// Accepts a stored or user-supplied fingerprint; `None` unless it is 64
    /// lowercase hex digits.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        ok.then(|| Fingerprint(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first 12 hex digits, as shown in tables.
    pub fn short(&self) -> &str {
        &self.0[..12]
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.short())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "t-66a8f1c2e4b0a1d2c3e4f5a6-0123abcd4567ef89ab01cd23";

    #[test]
    fn debug_and_display_never_show_the_key() {
        let s = Secret::new(KEY);
        for shown in [format!("{s:?}"), format!("{s}"), s.redacted()] {
            assert!(!shown.contains(&KEY[4..]), "{shown}");
            assert!(shown.contains("[51 chars]"), "{shown}");
        }
    }

    #[test]
    fn a_partner_is_carried_but_not_part_of_the_identity() {
        let id = Secret::new("AKIAEXAMPLEEXAMPLE00");
        let paired = id.clone().with_pair(Secret::new("partner-secret-value"));
        assert_eq!(paired, id);
        assert_eq!(paired.fingerprint(), id.fingerprint());
        assert_eq!(
            paired.pair().map(Secret::expose),
            Some("partner-secret-value")
        );
        let shown = format!("{paired:?} {paired}");
        assert!(!shown.contains("partner-secret"), "{shown}");
    }

    #[test]
    fn fingerprint_is_sha256_hex() {
        let fp = Secret::new("abc").fingerprint();
        assert_eq!(
            fp.as_str(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Fingerprint::parse(fp.as_str()), Some(fp.clone()));
        assert_eq!(Fingerprint::parse("ABC"), None);
    }
}
