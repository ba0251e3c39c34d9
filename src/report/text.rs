//! Human output: one block per finding, ending with what to do next. Every
//! string from a scanned tree (paths, authors, the key itself) goes through
//! [`escape`]: a file named `a\x1b[2J.env` must not drive the reader's
//! terminal.

use super::ReportOptions;
use crate::rules::RuleSet;
use crate::scan::{Confidence, Finding};
use std::borrow::Cow;
use std::io::Write;

/// `s` with control characters and bidirectional overrides written as
/// `\x1b` / `\u{202e}`, so what is shown is what is there.
pub fn escape(s: &str) -> Cow<'_, str> {
    let unsafe_char =
        |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if unsafe_char(c) && (c as u32) < 0x80 => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c if unsafe_char(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

pub fn write(
    findings: &[Finding],
    rules: &RuleSet,
    opts: ReportOptions,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let (bold, red, dim, reset) = if opts.color {
        ("\x1b[1m", "\x1b[31m", "\x1b[2m", "\x1b[0m")
    } else {
        ("", "", "", "")
    };
    for f in findings {
        writeln!(
            out,
            "{bold}{red}{}{reset} {bold}{}{reset}",
            escape(&f.rule_id),
            escape(&f.rule_name)
        )?;
        writeln!(
            out,
            "  location:    {}:{}:{}",
            escape(&f.origin.path()),
            f.line,
            f.column
        )?;
        if let Some(commit) = f.origin.commit() {
            let author = f.origin.author_email().unwrap_or("unknown");
            writeln!(
                out,
                "  commit:      {} by {}",
                escape(commit),
                escape(author)
            )?;
        }
        if let Some(repo) = f.origin.repo() {
            writeln!(out, "  repo:        {}", escape(repo))?;
        }
        if opts.show_secrets {
            writeln!(out, "  secret:      {}", escape(f.secret.expose()))?;
        } else {
            writeln!(out, "  secret:      {}", escape(&f.secret.redacted()))?;
        }
        writeln!(out, "  confidence:  {}", confidence_label(f.confidence))?;
        if let Some(e) = f.encoding {
            writeln!(out, "  encoding:    {} (found decoded)", e.as_str())?;
        }
        writeln!(out, "  fingerprint: {dim}{}{reset}", f.fingerprint)?;
        let (step, automatic) = next_steps(f, rules, opts);
        writeln!(out, "  next step:   {step}")?;
        if let Some(hint) = automatic {
            writeln!(out, "  remediate:   {hint}")?;
        }
        writeln!(out)?;
    }
    Ok(())
}

fn confidence_label(c: Confidence) -> String {
    let why = match c {
        Confidence::High => "checksum verified",
        Confidence::Medium => "pattern match",
    };
    format!("{} ({why})", c.as_str())
}

/// What the user does about the key (its provider's page when the rule
/// names one), and what `--remediate` does or would do about it.
fn next_steps(f: &Finding, rules: &RuleSet, opts: ReportOptions) -> (String, Option<String>) {
    let rule = rules.get(&f.rule_id);
    let how = match rule.and_then(|r| r.spec.references.first()) {
        Some(link) => format!("revoke or rotate it ({link})"),
        None => format!("revoke or rotate it with {}", f.provider),
    };
    let from = match f.origin.commit() {
        Some(_) => "the source and from git history",
        None => "the source",
    };
    // Tatum is a playbook (freeze, rotate, hand over); other providers are
    // remediable when their rule carries a revoke call.
    let automatic = f.provider.as_ref() == "tatum" || rule.is_some_and(|r| r.spec.revoke.is_some());
    let hint = match (automatic, opts.remediate) {
        (false, _) => None,
        (true, true) => Some("handed to the remediation engine (--remediate)".to_string()),
        (true, false) => {
            Some("`keysentry scan --remediate --config FILE` can do it for you".to_string())
        }
    };
    (format!("{how}, then remove it from {from}"), hint)
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn control_and_bidi_characters_are_escaped() {
        assert_eq!(escape("plain/path.env"), "plain/path.env");
        assert_eq!(escape("a\x1b[2Jb"), r"a\x1b[2Jb");
        assert_eq!(escape("x\ny\t\u{7f}"), r"x\ny\t\x7f");
        assert_eq!(escape("\u{202e}txt.exe"), r"\u{202e}txt.exe");
        assert_eq!(escape("\u{9b}"), r"\u{9b}");
    }
}
