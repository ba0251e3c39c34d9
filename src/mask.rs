//! Masks for messages that may quote a key: a parser's error about a file
//! given by mistake, a provider's or GitHub's answer. A leaf module, so that
//! `rules` and `config` can use them without importing `scan` (which imports
//! `rules`); `scan` re-exports them.

/// A parser's message with every double-quoted value replaced by `"…"`.
/// YAML and JSON errors quote the text they choke on (`invalid type: string
/// "TATUM_API_KEY=t-…"`), and a rules or config file given by mistake may
/// be an `.env` full of keys; names in backticks (fields, variants) stay.
pub fn without_quoted_values(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut chars = message.chars();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '"' {
            continue;
        }
        let mut escaped = false;
        for q in chars.by_ref() {
            if escaped {
                escaped = false;
            } else if q == '\\' {
                escaped = true;
            } else if q == '"' {
                break;
            }
        }
        out.push_str("…\"");
    }
    out
}

/// `message` with every run of at least `min` characters for which `token`
/// holds replaced by `…`: what a key looks like, wherever it sits in a
/// message (config and rule errors, a provider's or GitHub's answer).
pub fn without_long_runs(message: &str, min: usize, token: impl Fn(char) -> bool) -> String {
    let mut out = String::with_capacity(message.len());
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        if run.len() >= min {
            out.push('…');
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in message.chars() {
        if token(c) {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_values_leave_parser_messages() {
        let m = r#"invalid type: string "TATUM_API_KEY=t-66a \"x\"", expected struct RuleFile at line 1"#;
        assert_eq!(
            without_quoted_values(m),
            r#"invalid type: string "…", expected struct RuleFile at line 1"#
        );
        assert_eq!(
            without_quoted_values("unknown field `colour`, expected `name`"),
            "unknown field `colour`, expected `name`"
        );
    }
}
