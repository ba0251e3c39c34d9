//! Masks for messages that may quote a key. A config or rules file given by
//! mistake may be an `.env` full of keys, and a parser, a provider or GitHub
//! quotes what it chokes on: every error path that shows such text runs it
//! through one of these first. The lowest module of the crate: it depends on
//! nothing of keysentry's, so every stage can use it.

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

/// A serde/YAML message without the values it quotes: double-quoted values
/// and the variant in `unknown variant `…`` are text from the file and may
/// be a key. Field names stay: they say what to fix.
pub fn safe_message(message: &str) -> String {
    let message = without_quoted_values(message);
    let message = match message.split_once("unknown variant `") {
        Some((before, after)) => match after.split_once('`') {
            Some((_, rest)) => format!("{before}unknown variant{rest}"),
            None => message,
        },
        None => message,
    };
    without_key_like_runs(&message)
}

/// Letters and digits in a row beyond which a word is taken for a key.
/// Keys are long runs of them (`ksq_` + 32 hex digits, `ghp_` + 36); field
/// names, variable names (`SLACK_WEBHOOK_URL`), paths and durations in a
/// message break far earlier.
const KEY_LIKE_RUN: usize = 16;

/// `message` with every run of [`KEY_LIKE_RUN`] or more ASCII letters and
/// digits replaced by `…`: whatever a config or rule error quotes from the
/// file (a duration, a listen address, a field name), a key pasted there
/// does not come out.
pub fn without_key_like_runs(message: &str) -> String {
    without_long_runs(message, KEY_LIKE_RUN, |c| c.is_ascii_alphanumeric())
}

/// Why a regex does not compile, without the pattern text that
/// `regex::Error`'s message repeats.
pub fn regex_cause(pattern: &str, e: &regex::Error) -> String {
    match regex_syntax::Parser::new().parse(pattern) {
        Err(regex_syntax::Error::Parse(e)) => e.kind().to_string(),
        Err(regex_syntax::Error::Translate(e)) => e.kind().to_string(),
        _ => match e {
            regex::Error::CompiledTooBig(limit) => {
                format!("compiles to more than the {limit}-byte size limit")
            }
            _ => "not a valid regular expression".to_string(),
        },
    }
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
