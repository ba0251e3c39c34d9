//! `keysentry rules list` and `keysentry rules check [DIR]`.

use anyhow::{Context, Result};
use clap::Subcommand;
use keysentry::rules::RuleSet;
use keysentry::scan::check_rules;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum RulesCommand {
    /// List the rules in use (built-ins plus --rules directories): id,
    /// provider, checksum (`-` for none), verify/revoke, name.
    List {
        #[arg(long = "rules", value_name = "DIR")]
        rules: Vec<PathBuf>,
    },
    /// Validate rules and run every example and negative example.
    /// Without DIR, checks the built-in rules.
    Check { dir: Option<PathBuf> },
}

pub fn run(cmd: RulesCommand) -> Result<ExitCode> {
    match cmd {
        RulesCommand::List { rules } => {
            let set = RuleSet::load(&rules)?;
            for w in set.warnings() {
                eprintln!("warning: {w}");
            }
            let rows: Vec<[&str; 5]> = set
                .rules()
                .iter()
                .map(|r| {
                    let checksum = r.spec.checksum.map(|c| c.name()).unwrap_or("-");
                    let actions = match (r.spec.verify.is_some(), r.spec.revoke.is_some()) {
                        (true, true) => "verify,revoke",
                        (true, false) => "verify",
                        (false, true) => "revoke",
                        (false, false) => "-",
                    };
                    [
                        &r.spec.id,
                        &r.spec.provider,
                        checksum,
                        actions,
                        &r.spec.name,
                    ]
                })
                .collect();
            let mut out = super::stdout();
            for line in aligned(&rows) {
                writeln!(out, "{line}")?;
            }
            out.flush()?;
            eprintln!("{} rules", set.len());
            Ok(ExitCode::SUCCESS)
        }
        RulesCommand::Check { dir } => {
            let set = match &dir {
                Some(d) => RuleSet::from_dir(d)?,
                None => RuleSet::builtin()?,
            };
            let failures = check_rules(&set).context("building the scanner")?;
            let examples: usize = set
                .rules()
                .iter()
                .map(|r| r.spec.examples.len() + r.spec.negative_examples.len())
                .sum();
            for f in &failures {
                let source = set
                    .get(&f.rule_id)
                    .map(|r| r.source.display().to_string())
                    .unwrap_or_default();
                eprintln!(
                    "FAIL {source}: rule `{}` {} #{}: {}",
                    f.rule_id, f.kind, f.index, f.message
                );
            }
            if failures.is_empty() {
                let mut out = super::stdout();
                writeln!(out, "ok: {} rules, {} examples", set.len(), examples)?;
                out.flush()?;
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("{} of {} examples failed", failures.len(), examples);
                Ok(ExitCode::from(1))
            }
        }
    }
}

/// Rows as columns padded to their widest cell (counted in characters), the
/// last column unpadded.
fn aligned<const N: usize>(rows: &[[&str; N]]) -> Vec<String> {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    rows.iter()
        .map(|row| {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 == N {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<w$}  ", w = widths[i]));
                }
            }
            line
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::aligned;

    #[test]
    fn columns_line_up_whatever_the_widths() {
        let rows = [["a.very-long-rule-id", "p", "x"], ["b", "provider", "y"]];
        assert_eq!(
            aligned(&rows),
            [
                "a.very-long-rule-id  p         x",
                "b                    provider  y"
            ]
        );
    }
}
