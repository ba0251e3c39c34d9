//! Checks on what arrives from GitHub, or from anyone holding the webhook
//! secret, before it reaches an API path or an error message.
//!
//! A value that fails is never echoed: a payload may carry a key anywhere,
//! and errors end up in logs and the store. The error says which rule the
//! value broke instead.

/// Why `name` is not a ref name git would accept, by the rules of
/// `git check-ref-format` (a full name: `refs/heads/main`); `None` if it is
/// one. Besides git's rules, at most 1,024 bytes.
pub fn ref_name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        return Some("is empty");
    }
    if name.len() > 1024 {
        return Some("is longer than 1024 bytes");
    }
    if name == "@" {
        return Some("is `@`");
    }
    if name.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Some("contains a control character");
    }
    if let Some(c) = name
        .chars()
        .find(|c| matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\'))
    {
        return Some(match c {
            ' ' => "contains a space",
            '\\' => "contains `\\`",
            _ => "contains one of ~ ^ : ? * [",
        });
    }
    if name.contains("..") {
        return Some("contains `..`");
    }
    if name.contains("@{") {
        return Some("contains `@{`");
    }
    if name.starts_with('/') || name.ends_with('/') || name.contains("//") {
        return Some("has an empty path component");
    }
    if name.ends_with('.') {
        return Some("ends with `.`");
    }
    for part in name.split('/') {
        if part.starts_with('.') {
            return Some("has a component starting with `.`");
        }
        if part.ends_with(".lock") {
            return Some("has a component ending with `.lock`");
        }
    }
    None
}

/// As [`ref_name_problem`], for a full ref that must be under `refs/`.
pub fn full_ref_problem(name: &str) -> Option<&'static str> {
    match name.strip_prefix("refs/") {
        None | Some("") => Some("does not start with `refs/`"),
        Some(_) => ref_name_problem(name),
    }
}

/// As [`ref_name_problem`], for a branch's short name (`main`).
pub fn branch_problem(branch: &str) -> Option<&'static str> {
    ref_name_problem(&format!("refs/heads/{branch}"))
}

/// `None` for 40 or 64 hex digits (SHA-1 and SHA-256 object names).
pub fn sha_problem(sha: &str) -> Option<&'static str> {
    let ok = matches!(sha.len(), 40 | 64) && sha.bytes().all(|b| b.is_ascii_hexdigit());
    (!ok).then_some("is not 40 or 64 hex digits")
}

/// `None` for `owner/name`, nothing that could step outside `/repos/`.
pub fn repo_problem(repo: &str) -> Option<&'static str> {
    let ok_part = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    };
    match repo.split_once('/') {
        Some((owner, name)) if ok_part(owner) && ok_part(name) => None,
        _ => Some("is not owner/name (letters, digits, `-`, `_`, `.`)"),
    }
}

/// What is wrong with a JSON document, without quoting it: serde_json's own
/// messages quote the offending value ("invalid type: string \"…\""). Field
/// names come from keysentry's types, so a missing one is named.
pub fn json_problem(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let at = format!("at line {}, column {}", e.line(), e.column());
    let what = match e.classify() {
        Category::Io => "cannot be read",
        Category::Syntax => "is not valid JSON",
        Category::Eof => "ends too early",
        Category::Data => {
            let msg = e.to_string();
            if msg.starts_with("missing field `") || msg.starts_with("duplicate field `") {
                let field = msg.split(" at line ").next().unwrap_or(&msg);
                return format!("{field} {at}");
            }
            "has a value of the wrong type or out of range"
        }
    };
    format!("{what} {at}")
}

/// An error message from an API answer, fit for a log line: one line, at
/// most 200 characters, and any long run of token characters (what a key
/// looks like, wherever it sits in a word) replaced by `…`. GitHub's own
/// messages ("Not Found", "Bad credentials") pass unchanged.
pub fn tame(message: &str) -> String {
    const LONG_RUN: usize = 20;
    let token = |c: char| c.is_ascii_alphanumeric() || "-_+/=.".contains(c);
    // Whitespace and control characters end a run, so masking first and
    // folding them after gives the same text.
    let masked = crate::mask::without_long_runs(message, LONG_RUN, token);
    let mut out = String::with_capacity(masked.len());
    for c in masked.chars() {
        if c.is_whitespace() {
            if !out.ends_with(' ') && !out.is_empty() {
                out.push(' ');
            }
        } else if !c.is_control() {
            out.push(c);
        }
    }
    let out = out.trim_end();
    if out.chars().count() > 200 {
        return out.chars().take(200).chain(['…']).collect();
    }
    out.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_names_follow_git_check_ref_format() {
        for ok in [
            "refs/heads/main",
            "refs/heads/feature/x-1",
            "refs/tags/v1.0",
            "refs/heads/a@b",
            "refs/heads/ünï",
        ] {
            assert_eq!(full_ref_problem(ok), None, "{ok}");
        }
        for bad in [
            "refs/heads/../../../x",
            "refs/heads/a..b",
            "refs/heads/.hidden",
            "refs/heads/x.lock",
            "refs/heads/x.",
            "refs/heads//x",
            "refs/heads/x/",
            "refs/heads/a b",
            "refs/heads/a~1",
            "refs/heads/a^",
            "refs/heads/a:b",
            "refs/heads/a?",
            "refs/heads/a*",
            "refs/heads/a[",
            "refs/heads/a\\b",
            "refs/heads/a@{1}",
            "refs/heads/a\u{7f}",
            "refs/heads/a\nb",
            "refs/",
            "heads/main",
            "@",
        ] {
            assert!(full_ref_problem(bad).is_some(), "{bad:?}");
        }
        assert_eq!(branch_problem("main"), None);
        assert!(branch_problem("../..").is_some());
        assert!(branch_problem("").is_some());
        assert!(branch_problem("@").is_none(), "refs/heads/@ is a valid ref");
    }

    #[test]
    fn shas_and_repos() {
        assert_eq!(sha_problem(&"a".repeat(40)), None);
        assert_eq!(sha_problem(&"A".repeat(64)), None);
        for bad in ["", "../x", &"a".repeat(41), &"g".repeat(40)] {
            assert!(sha_problem(bad).is_some(), "{bad}");
        }
        assert_eq!(repo_problem("acme/app.js"), None);
        for bad in ["acme", "../x", "acme/..", "a/b/c", "a/b?x"] {
            assert!(repo_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn json_problems_never_quote_the_input() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct T {
            id: u64,
        }
        let key = "t-0123456789abcdef01234567-0123456789abcdef01234567";
        for doc in [
            format!(r#"{{"id": "{key}"}}"#),
            format!(r#"{{"id": 1, "{key}"#),
            format!(r#"["{key}"]"#),
        ] {
            let e = serde_json::from_str::<T>(&doc).unwrap_err();
            let said = json_problem(&e);
            assert!(!said.contains(key), "{said}");
            assert!(said.contains("line 1"), "{said}");
        }
        let e = serde_json::from_str::<T>("{}").unwrap_err();
        assert_eq!(json_problem(&e), "missing field `id` at line 1, column 2");
    }

    #[test]
    fn tamed_messages_keep_words_and_drop_tokens() {
        assert_eq!(tame("Not Found"), "Not Found");
        let key = "t-0123456789abcdef01234567-0123456789abcdef01234567";
        assert_eq!(tame(&format!("bad key {key}\n!")), "bad key … !");
        // Found by the property test: a key glued to other text.
        assert_eq!(
            tame(&format!("({}{{{}Not Found)", &key[..26], &key[27..])),
            "(…{… Found)"
        );
        assert!(tame(&"word ".repeat(100)).chars().count() <= 201);
    }
}
