//! Human output: one block per finding.

use super::ReportOptions;
use crate::scan::Finding;
use std::io::Write;

pub fn write(
    findings: &[Finding],
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
            "{bold}{red}{}{reset} {bold}{}{reset} ({})",
            f.rule_id,
            f.rule_name,
            f.confidence.as_str()
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
        writeln!(out, "  fingerprint: {dim}{}{reset}", f.fingerprint)?;
        writeln!(out)?;
    }
    Ok(())
}
