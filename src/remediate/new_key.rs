//! A replacement key is written into consumers' env files and used as a
//! credential, so it is checked before anything trusts it, whether it came
//! from a management answer or from `tatum set-key`: a line break in it
//! would add lines to an env file (`LD_PRELOAD=...`), and a value that is
//! not a key of the provider means the answer is not what it claims to be.
//!
//! Reasons never include the value.

use crate::rules::RuleSet;
use crate::scan::{Fingerprint, Secret};

/// `Ok` when `new` may be used as the replacement of the leaked key (whose
/// fingerprint is `leaked_fp`): no control characters, not the leaked key,
/// and a whole match of one of `provider`'s rule patterns.
pub fn check(
    rules: &RuleSet,
    provider: &str,
    leaked_fp: &Fingerprint,
    new: &Secret,
) -> Result<(), String> {
    let value = new.expose();
    if value.is_empty() {
        return Err("it is empty".into());
    }
    if value.chars().any(char::is_control) {
        return Err("it contains a control character (such as a line break)".into());
    }
    if new.fingerprint() == *leaked_fp {
        return Err("it is the leaked key itself".into());
    }
    let own: Vec<_> = rules
        .rules()
        .iter()
        .filter(|r| r.spec.provider == provider)
        .collect();
    if own.is_empty() {
        // No rule to judge by (a provider known only from the config).
        return Ok(());
    }
    // Bare, and as an env assignment: context rules (a UUID key needs a
    // `TATUM_*` name nearby) only match with the latter.
    let bare = value.as_bytes().to_vec();
    let prefix = format!("{}_API_KEY=", provider.to_ascii_uppercase());
    let assigned = format!("{prefix}{value}\n").into_bytes();
    let whole_match = |data: &[u8], at: std::ops::Range<usize>| {
        own.iter().any(|r| {
            let mut caps = r.pattern.captures();
            matches!(
                r.pattern.find(&mut caps, data, 0, data.len(), false),
                Some((_, Some(secret))) if secret == at
            )
        })
    };
    if whole_match(&bare, 0..bare.len())
        || whole_match(&assigned, prefix.len()..prefix.len() + value.len())
    {
        return Ok(());
    }
    let ids: Vec<&str> = own.iter().map(|r| r.id()).collect();
    Err(format!(
        "it does not have the shape of a {provider} key (no match for {})",
        ids.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NEW: &str = "t-6677183273e3a22c239969cb-dbb1e8c8d1c012c954834afa";
    const OLD: &str = "t-6600e7d2d658045e2e294d2c-7aa7207891c7244f76fe6763";

    fn check_tatum(value: &str) -> Result<(), String> {
        let rules = RuleSet::builtin().unwrap();
        let old = Secret::new(OLD).fingerprint();
        check(&rules, "tatum", &old, &Secret::new(value))
    }

    #[test]
    fn only_a_fresh_well_formed_key_passes() {
        assert_eq!(check_tatum(NEW), Ok(()));
        let injected = format!("{NEW}\nLD_PRELOAD=/tmp/x.so");
        for (bad, why) in [
            (injected.as_str(), "control character"),
            (OLD, "leaked key itself"),
            ("t-not-a-key", "shape of a tatum key"),
            (&NEW[..NEW.len() - 1], "shape of a tatum key"),
            ("", "empty"),
        ] {
            let err = check_tatum(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
            if bad.len() > 8 {
                assert!(!err.contains(&bad[2..]), "the value leaked: {err}");
            }
        }
    }
}
