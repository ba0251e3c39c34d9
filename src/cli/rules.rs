//! `keysentry rules list` and `keysentry rules check [DIR]`.

use anyhow::{Context, Result};
use clap::Subcommand;
use keysentry::rules::{check_rules, RuleSet};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum RulesCommand {
    /// List the rules in use (built-ins plus --rules directories).
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
            for r in set.rules() {
                let actions = [
                    ("verify", r.spec.verify.is_some()),
                    ("revoke", r.spec.revoke.is_some()),
                ]
                .iter()
                .filter(|(_, on)| *on)
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(",");
                println!(
                    "{:<32} {:<10} {:<8} {}",
                    r.spec.id,
                    r.spec.provider,
                    if actions.is_empty() { "-" } else { &actions },
                    r.spec.name
                );
            }
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
                println!("ok: {} rules, {} examples", set.len(), examples);
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("{} of {} examples failed", failures.len(), examples);
                Ok(ExitCode::from(1))
            }
        }
    }
}
