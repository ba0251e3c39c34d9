//! The redacted forms the admin APIs list keys by (OpenAI's
//! `redacted_value`, Anthropic's `partial_key_hint`): a prefix, a mask
//! (`...`, `…` or `*`s, possibly together) and the last characters.
//!
//! A listed key is the leaked one only when the leaked key starts with the
//! prefix, ends with the suffix, and has a non-empty middle the mask hid.
//! Neither provider's keys contain `.`, `*` or `…`, so the mask is never
//! mistaken for part of a key. A form without both a prefix and a suffix,
//! or with a second mask, matches nothing: a weaker comparison could pick a
//! key that only looks similar.

/// Whether `c` is part of a mask.
fn masked(c: char) -> bool {
    matches!(c, '.' | '*' | '…')
}

/// `hint` (as listed) is the redacted form of `key`.
pub(super) fn matches(hint: &str, key: &str) -> bool {
    let Some(start) = hint.find(masked) else {
        return false;
    };
    let rest = &hint[start..];
    let end = rest.find(|c| !masked(c)).unwrap_or(rest.len());
    let (prefix, suffix) = (&hint[..start], &rest[end..]);
    if prefix.is_empty() || suffix.is_empty() || suffix.contains(masked) {
        return false;
    }
    key.len() > prefix.len() + suffix.len() && key.starts_with(prefix) && key.ends_with(suffix)
}

#[cfg(test)]
mod tests {
    use super::matches;

    const KEY: &str = "sk-proj-abcDEF123ghiJKL456mnoPQR789wxyz";

    #[test]
    fn the_documented_forms_match_their_key() {
        for hint in [
            "sk-proj-abc...wxyz",
            "sk-proj-abc****wxyz",
            "sk-proj-abc****...wxyz",
            "sk-proj-abc…wxyz",
            "sk-...z",
        ] {
            assert!(matches(hint, KEY), "{hint}");
        }
        let ant = "sk-ant-api03-R2DxxxxxxxxxxxxxxxxigAA";
        assert!(matches("sk-ant-api03-R2D...igAA", ant));
    }

    #[test]
    fn a_lookalike_or_a_malformed_form_matches_nothing() {
        for hint in [
            // Same prefix, another suffix; same suffix, another prefix.
            "sk-proj-abc...wxyZ",
            "sk-proj-abd...wxyz",
            // No mask, no prefix, no suffix, two masks.
            KEY,
            "...wxyz",
            "sk-proj-abc...",
            "sk-proj-abc...45...wxyz",
            // Prefix and suffix overlap: nothing was hidden.
            "sk-proj-abcDEF123ghiJKL456mnoPQR789w...wxyz",
            "",
        ] {
            assert!(!matches(hint, KEY), "{hint}");
        }
    }
}
