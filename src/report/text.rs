//! Human output: one block per finding, ending with what to do next.

use super::ReportOptions;
use crate::rules::RuleSet;
use crate::scan::{Confidence, Finding};
use std::io::Write;

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
            f.rule_id, f.rule_name
        )?;
        writeln!(
            out,
            "  location:    {}:{}:{}",
            f.origin.path(),
            f.line,
            f.column
        )?;
        if let Some(commit) = f.origin.commit() {
            let author = f.origin.author_email().unwrap_or("unknown");
            writeln!(out, "  commit:      {commit} by {author}")?;
        }
        if let Some(repo) = f.origin.repo() {
            writeln!(out, "  repo:        {repo}")?;
        }
        if opts.show_secrets {
            writeln!(out, "  secret:      {}", f.secret.expose())?;
        } else {
            writeln!(out, "  secret:      {}", f.secret.redacted())?;
        }
        writeln!(out, "  confidence:  {}", confidence_label(f.confidence))?;
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
