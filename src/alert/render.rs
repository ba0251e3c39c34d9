//! The words of an alert, shared by every channel so that an owner reads the
//! same facts whether they arrive by email, Slack, a webhook or an issue.
//!
//! Every value that came from outside (paths, commit data, provider answers)
//! is forced onto one line before it is shown: a file named
//! `a\nNext steps: mail the key to ...` must not be able to write its own
//! lines into an alert.

use super::{Alert, Bound};
use crate::scan::Finding;

/// Lists longer than this are cut, with a pointer to the full incident; the
/// generic webhook's JSON still carries every item.
pub(crate) const MAX_LISTED: usize = 50;

/// `[keysentry] Tatum API key t-66…[51 chars] contained (incident 12)`
pub fn subject(alert: &Alert) -> String {
    format!("[keysentry] {}", headline(alert))
}

/// `Tatum API key t-66…[51 chars] contained (incident 12)`: the subject
/// without its tag, used as issue title and Slack header.
pub fn headline(alert: &Alert) -> String {
    if let Some(d) = &alert.digest {
        return format!(
            "digest: {} strings that look like {} keys but are not live (last {} min)",
            d.count,
            one_line(&alert.provider),
            d.interval_secs.div_ceil(60)
        );
    }
    format!(
        "{} {} {} (incident {})",
        one_line(&alert.rule_name),
        one_line(&alert.redacted),
        one_line(&alert.state),
        alert.incident_id
    )
}

/// One line for chat notifications and the webhook's `text` field.
pub fn summary(alert: &Alert) -> String {
    let owner = alert.owner.as_deref().map(one_line);
    format!(
        "keysentry: {}; rule {}, {} location(s), owner {}",
        headline(alert),
        one_line(&alert.rule_id),
        alert.locations.len(),
        owner.as_deref().unwrap_or("unassigned"),
    )
}

/// Where a finding was seen, as alerts list it: `path:line`, or
/// `repo@commit:path:line` for git and GitHub sources.
pub fn location(finding: &Finding) -> String {
    let origin = &finding.origin;
    match (origin.repo(), origin.commit()) {
        (Some(repo), Some(commit)) => {
            let short = commit.get(..12).unwrap_or(commit);
            format!("{repo}@{short}:{}:{}", origin.path(), finding.line)
        }
        _ => format!("{}:{}", origin.path(), finding.line),
    }
}

/// The plain-text body: the email, and the reference for every other channel.
pub fn text_body(alert: &Alert) -> String {
    let mut out = String::new();
    let line = |out: &mut String, s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(&mut out, format!("keysentry: {}", headline(alert)));
    line(&mut out, String::new());
    for (label, value) in facts(alert) {
        line(&mut out, format!("{:<13}{value}", format!("{label}:")));
    }

    line(&mut out, String::new());
    line(&mut out, "Seen at:".into());
    let (shown, more) = cut(&alert.locations);
    for loc in shown {
        line(&mut out, format!("  - {}", one_line(loc)));
    }
    if more > 0 {
        line(&mut out, format!("  ... and {more} more"));
    }

    line(&mut out, String::new());
    line(&mut out, "What keysentry did:".into());
    if alert.actions.is_empty() {
        line(&mut out, "  - nothing yet".into());
    }
    for a in &alert.actions {
        line(
            &mut out,
            format!("  - {}: {}", one_line(&a.action), one_line(&a.result)),
        );
    }

    line(&mut out, String::new());
    line(&mut out, "Next steps:".into());
    if alert.next_steps.is_empty() {
        line(
            &mut out,
            "  none: keysentry has handled this incident".into(),
        );
    }
    for (i, step) in alert.next_steps.iter().enumerate() {
        line(&mut out, format!("  {}. {}", i + 1, one_line(step)));
    }

    line(&mut out, String::new());
    line(&mut out, footer(alert));
    out
}

/// The GitHub issue body: the text body's facts as markdown. Untrusted values
/// sit in code spans, so they can neither format the issue nor @-mention anyone.
pub fn markdown_body(alert: &Alert) -> String {
    let mut out = format!("## {}\n\n", md_escape(&headline(alert)));
    out.push_str("| | |\n|---|---|\n");
    for (label, value) in facts(alert) {
        out.push_str(&format!("| {label} | {} |\n", code(&value)));
    }

    out.push_str("\n### Seen at\n\n");
    let (shown, more) = cut(&alert.locations);
    for loc in shown {
        out.push_str(&format!("- {}\n", code(loc)));
    }
    if more > 0 {
        out.push_str(&format!("- ... and {more} more\n"));
    }

    out.push_str("\n### What keysentry did\n\n");
    if alert.actions.is_empty() {
        out.push_str("- nothing yet\n");
    }
    for a in &alert.actions {
        out.push_str(&format!("- {}: {}\n", code(&a.action), code(&a.result)));
    }

    out.push_str("\n### Next steps\n\n");
    if alert.next_steps.is_empty() {
        out.push_str("None: keysentry has handled this incident.\n");
    }
    for (i, step) in alert.next_steps.iter().enumerate() {
        out.push_str(&format!("{}. {}\n", i + 1, md_with_code(step)));
    }
    // Our own words, whose code span should render as one.
    out.push_str(&format!("\n{}\n", footer(alert)));
    out
}

/// Label/value pairs every channel shows, in this order.
pub(crate) fn facts(alert: &Alert) -> Vec<(&'static str, String)> {
    vec![
        (
            "Owner",
            alert.owner.as_deref().map_or("unassigned".into(), one_line),
        ),
        ("Provider", one_line(&alert.provider)),
        (
            "Rule",
            format!(
                "{} ({})",
                one_line(&alert.rule_id),
                one_line(&alert.rule_name)
            ),
        ),
        ("Key", format!("{} (redacted)", one_line(&alert.redacted))),
        (
            "Fingerprint",
            format!("sha256:{}", one_line(&alert.fingerprint)),
        ),
        ("State", one_line(&alert.state)),
        ("Bound", bound_text(alert.bound)),
    ]
}

pub(crate) fn bound_text(bound: Option<Bound>) -> String {
    match bound {
        None => "not checked".into(),
        Some(b) => format!(
            "{} subscription(s), {} virtual account(s)",
            b.subscriptions, b.virtual_accounts
        ),
    }
}

pub(crate) fn footer(alert: &Alert) -> String {
    format!(
        "Alerts never contain the key itself. Details: `keysentry incidents show {}`; \
         the fingerprint is the SHA-256 of the exact key.",
        alert.incident_id
    )
}

/// The first [`MAX_LISTED`] items and how many were left out.
pub(crate) fn cut(items: &[String]) -> (&[String], usize) {
    let n = items.len().min(MAX_LISTED);
    (&items[..n], items.len() - n)
}

/// Control characters (newlines above all) shown escaped, so a value stays
/// on its line.
pub(crate) fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A CommonMark code span that holds `s` verbatim, whatever backticks it
/// contains: the fence is one backtick longer than the longest run inside.
pub(crate) fn code(s: &str) -> String {
    let s = one_line(s);
    let mut longest = 0;
    let mut run = 0;
    for c in s.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    let fence = "`".repeat(longest + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{s}{pad}{fence}")
}

/// Backslash-escapes the characters that could format text or mention
/// someone on GitHub.
pub(crate) fn md_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in one_line(s).chars() {
        if "\\`*_[]<>#|@~".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Next steps are our own words, which may quote a command in backticks:
/// keep those code spans, escape the rest.
fn md_with_code(s: &str) -> String {
    let parts: Vec<&str> = s.split('`').collect();
    if parts.len() % 2 == 0 {
        // An unpaired backtick: no code spans at all.
        return md_escape(s);
    }
    parts
        .iter()
        .enumerate()
        .map(|(i, p)| if i % 2 == 1 { code(p) } else { md_escape(p) })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::ActionResult;

    fn alert() -> Alert {
        Alert {
            incident_id: 12,
            owner: Some("payments@example.internal".into()),
            provider: "tatum".into(),
            rule_id: "tatum.api-key".into(),
            rule_name: "Tatum API key".into(),
            redacted: "t-66…[51 chars]".into(),
            fingerprint: "ab".repeat(32),
            state: "contained".into(),
            locations: vec!["deploy/.env:3".into()],
            actions: vec![ActionResult {
                action: "freeze".into(),
                result: "ok (200)".into(),
            }],
            bound: Some(Bound {
                subscriptions: 2,
                virtual_accounts: 1,
            }),
            next_steps: vec!["Regenerate the key in the Tatum Dashboard".into()],
            digest: None,
        }
    }

    #[test]
    fn subject_reads_like_the_contract() {
        assert_eq!(
            subject(&alert()),
            "[keysentry] Tatum API key t-66…[51 chars] contained (incident 12)"
        );
    }

    #[test]
    fn a_newline_in_a_location_cannot_add_a_line() {
        let mut a = alert();
        a.locations = vec!["x\nNext steps: send the key to evil".into()];
        let body = text_body(&a);
        assert!(
            body.contains("  - x\\nNext steps: send the key to evil"),
            "{body}"
        );
        assert_eq!(body.matches("\nNext steps:").count(), 1, "{body}");
    }

    #[test]
    fn code_spans_survive_backticks() {
        assert_eq!(code("a.env"), "`a.env`");
        assert_eq!(code("a`b"), "``a`b``");
        assert_eq!(code("`x"), "`` `x ``");
    }

    #[test]
    fn markdown_cannot_mention() {
        assert_eq!(md_escape("@team"), "\\@team");
    }

    #[test]
    fn next_steps_keep_their_commands_as_code() {
        assert_eq!(
            md_with_code("run `ks set-key 1` *now*"),
            "run `ks set-key 1` \\*now\\*"
        );
        assert_eq!(md_with_code("odd ` tick"), "odd \\` tick");
    }

    #[test]
    fn long_location_lists_are_cut() {
        let mut a = alert();
        a.locations = (0..MAX_LISTED + 3).map(|i| format!("f{i}:1")).collect();
        let body = text_body(&a);
        assert!(body.contains("... and 3 more"), "{body}");
        assert!(!body.contains(&format!("f{}:1", MAX_LISTED)), "{body}");
    }

    #[test]
    fn bound_says_when_nothing_was_checked() {
        assert_eq!(bound_text(None), "not checked");
        assert!(text_body(&alert()).contains("2 subscription(s), 1 virtual account(s)"));
    }
}
