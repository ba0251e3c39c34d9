//! Report formats. Every format follows the finding JSON contract and shows
//! secrets only when the user passed `--show-secrets`.

mod json;
mod sarif;
mod text;

pub use json::{read_baseline, FindingJson};
pub use sarif::uri_path;
pub use text::escape;

use crate::rules::RuleSet;
use crate::scan::Finding;
use std::io::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Jsonl,
    Sarif,
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            "jsonl" => Ok(Format::Jsonl),
            "sarif" => Ok(Format::Sarif),
            _ => Err(format!(
                "unknown format `{s}`; use text, json, jsonl or sarif"
            )),
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ReportOptions {
    pub show_secrets: bool,
    /// ANSI colour in the text format (`--color`, `NO_COLOR`).
    pub color: bool,
    /// The scan runs with `--remediate`: the report says the engine takes
    /// over instead of suggesting it.
    pub remediate: bool,
}

/// `rules` are the rules the scan ran with: the text report and SARIF take
/// each finding's references and remediation support from its rule.
pub fn write_report(
    format: Format,
    findings: &[Finding],
    rules: &RuleSet,
    opts: ReportOptions,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    match format {
        Format::Text => text::write(findings, rules, opts, out),
        Format::Json => {
            let all: Vec<FindingJson> =
                findings.iter().map(|f| FindingJson::new(f, opts)).collect();
            serde_json::to_writer_pretty(&mut *out, &all)?;
            writeln!(out)
        }
        Format::Jsonl => {
            for f in findings {
                serde_json::to_writer(&mut *out, &FindingJson::new(f, opts))?;
                writeln!(out)?;
            }
            Ok(())
        }
        Format::Sarif => sarif::write(findings, rules, opts, out),
    }
}
