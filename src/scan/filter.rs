//! Filters applied to a candidate secret after its regex matched: entropy,
//! placeholders, and the user's allowlist and baseline (provider checksums:
//! `checksum.rs`).

use super::secret::Fingerprint;
use globset::{Glob, GlobSet, GlobSetBuilder};
use regex::Regex;
use std::collections::HashSet;

/// Shannon entropy in bits per byte.
pub fn shannon_entropy(s: &[u8]) -> f64 {
    if s.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in s {
        counts[b as usize] += 1;
    }
    let n = s.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / n;
            -p * p.log2()
        })
        .sum()
}

const PLACEHOLDER_MARKERS: &[&str] = &[
    "example",
    "xxxx",
    "placeholder",
    "your_",
    "your-",
    "<",
    ">",
    "${",
    "{{",
    "dummy",
    "redacted",
    "changeme",
    "****",
    "0123456789",
    "abcdefghij",
];

/// Secrets longer than this (PEM blocks) are only checked for template
/// syntax: a kilobyte of base64 holds `xxxx` or `Example` by chance often
/// enough to lose real keys.
const LONG_SECRET: usize = 200;

const TEMPLATE_MARKERS: &[&str] = &["<", ">", "${", "{{", "..."];

/// True for values that are documentation or templates, not keys: all zeros,
/// `xxxx`, `<your-api-key>`, `${TATUM_API_KEY}`, AWS's `...EXAMPLE` keys.
pub fn is_placeholder(secret: &str) -> bool {
    if secret.len() > LONG_SECRET {
        return TEMPLATE_MARKERS.iter().any(|m| secret.contains(m));
    }
    let lower = secret.to_ascii_lowercase();
    if PLACEHOLDER_MARKERS.iter().any(|m| lower.contains(m)) {
        return true;
    }
    let distinct: HashSet<u8> = lower.bytes().collect();
    distinct.len() <= 3
}

/// What the user told us to ignore: path globs, secret regexes, and the
/// fingerprints of a baseline report.
#[derive(Debug, Clone, Default)]
pub struct Allowlist {
    paths: Option<GlobSet>,
    secrets: Vec<Regex>,
    fingerprints: HashSet<Fingerprint>,
}

#[derive(Debug, thiserror::Error)]
pub enum AllowlistError {
    #[error("allowlist path glob `{glob}` is invalid: {message}; fix the glob syntax")]
    Glob { glob: String, message: String },
    // The pattern is not shown: allowlist regexes are often a key in full.
    #[error("scan.allowlist.secrets[{index}]: invalid regex: {message}; fix the regex")]
    Regex { index: usize, message: String },
}

impl Allowlist {
    pub fn new(path_globs: &[String], secret_patterns: &[String]) -> Result<Self, AllowlistError> {
        let paths = if path_globs.is_empty() {
            None
        } else {
            let mut b = GlobSetBuilder::new();
            for g in path_globs {
                b.add(Glob::new(g).map_err(|e| AllowlistError::Glob {
                    glob: g.clone(),
                    message: e.to_string(),
                })?);
            }
            Some(b.build().map_err(|e| AllowlistError::Glob {
                glob: path_globs.join(", "),
                message: e.to_string(),
            })?)
        };
        let secrets = secret_patterns
            .iter()
            .enumerate()
            .map(|(index, p)| {
                Regex::new(p).map_err(|e| AllowlistError::Regex {
                    index,
                    message: crate::mask::regex_cause(p, &e),
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Allowlist {
            paths,
            secrets,
            fingerprints: HashSet::new(),
        })
    }

    pub fn add_fingerprints(&mut self, fps: impl IntoIterator<Item = Fingerprint>) {
        self.fingerprints.extend(fps);
    }

    pub fn path_allowed(&self, path: &str) -> bool {
        self.paths.as_ref().is_some_and(|g| g.is_match(path))
    }

    /// The key is in the baseline report (`--baseline`).
    pub fn in_baseline(&self, fp: &Fingerprint) -> bool {
        self.fingerprints.contains(fp)
    }

    /// The key matches an allowlist secret regex.
    pub fn secret_listed(&self, secret: &str) -> bool {
        self.secrets.iter().any(|r| r.is_match(secret))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_recognised() {
        for p in [
            "t-000000000000000000000000-000000000000000000000000",
            "AKIAIOSFODNN7EXAMPLE",
            "<your-api-key>",
            "${TATUM_API_KEY}",
            "xxxxxxxxxxxxxxxxxxxx",
        ] {
            assert!(is_placeholder(p), "{p}");
        }
        assert!(!is_placeholder(
            "t-66a8f1c2e4b0a1d2c3e4f5a6-5f3e9b1c7d2a4e6f8b0c1d3e"
        ));
    }

    /// Regression: a PEM body is long enough to contain `xxxx` or `example`
    /// by chance; such a key was dropped as a placeholder.
    #[test]
    fn long_keys_are_not_placeholders_by_chance() {
        let body = "MIIEowIBAAKCAQEAxxxxQ8r3Zexample+Yk2".repeat(10);
        let pem = format!("-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----");
        assert!(!is_placeholder(&pem));
        let template = "-----BEGIN RSA PRIVATE KEY-----\n<paste your key here>\n".repeat(5);
        assert!(is_placeholder(&template));
    }

    #[test]
    fn entropy_of_uniform_and_constant_strings() {
        assert_eq!(shannon_entropy(b"aaaa"), 0.0);
        assert!((shannon_entropy(b"abcd") - 2.0).abs() < 1e-9);
    }
}
