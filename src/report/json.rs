//! The finding JSON contract, and reading a previous report as a baseline.

use super::ReportOptions;
use crate::scan::{Finding, Fingerprint};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One finding as the contract spells it (ARCHITECTURE.md, "Finding JSON").
/// `rule_name`, `offset`, `confidence` and `encoding` are additions; consumers ignore
/// keys they do not know.
#[derive(Debug, Serialize, Deserialize)]
pub struct FindingJson {
    pub rule_id: String,
    pub rule_name: String,
    pub provider: String,
    pub fingerprint: String,
    pub redacted: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub secret: Option<String>,
    pub source: String,
    pub path: String,
    pub line: u64,
    pub column: u64,
    pub offset: u64,
    pub confidence: String,
    /// `base64`, `url` or `json` when the key was found decoded.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub encoding: Option<String>,
    pub commit: Option<String>,
    pub author_email: Option<String>,
    pub repo: Option<String>,
}

impl FindingJson {
    pub fn new(f: &Finding, opts: ReportOptions) -> Self {
        FindingJson {
            rule_id: f.rule_id.to_string(),
            rule_name: f.rule_name.to_string(),
            provider: f.provider.to_string(),
            fingerprint: f.fingerprint.to_string(),
            redacted: f.secret.redacted(),
            secret: opts.show_secrets.then(|| f.secret.expose().to_string()),
            source: f.origin.kind().to_string(),
            path: f.origin.path(),
            line: f.line,
            column: f.column,
            offset: f.offset,
            confidence: f.confidence.as_str().to_string(),
            encoding: f.encoding.map(|e| e.as_str().to_string()),
            commit: f.origin.commit().map(str::to_string),
            author_email: f.origin.author_email().map(str::to_string),
            repo: f.origin.repo().map(str::to_string),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("cannot read baseline {path}: {source}; pass a report written by `keysentry scan --format json`")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("baseline {path} is not a keysentry JSON report: {message}; regenerate it with `keysentry scan --format json --output {path}`")]
    Parse { path: String, message: String },
}

/// Where and what kind of error, without serde's message: it quotes the
/// offending value, and a file passed as a baseline by mistake may hold keys.
fn describe(e: &serde_json::Error, line_offset: usize) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Data => {
            "expected an array of findings, each with a `fingerprint` string"
        }
        _ => "not valid JSON",
    };
    format!(
        "{what} (line {}, column {})",
        e.line() + line_offset,
        e.column()
    )
}

#[derive(Deserialize)]
struct BaselineEntry {
    fingerprint: String,
}

/// The fingerprints of a previous `--format json` (or `jsonl`) report.
pub fn read_baseline(path: &Path) -> Result<Vec<Fingerprint>, BaselineError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| BaselineError::Io {
        path: shown.clone(),
        source,
    })?;
    let parse_err = |message: String| BaselineError::Parse {
        path: shown.clone(),
        message,
    };
    let entries: Vec<BaselineEntry> = if text.trim_start().starts_with('[') {
        serde_json::from_str(&text).map_err(|e| parse_err(describe(&e, 0)))?
    } else {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| serde_json::from_str(l).map_err(|e| parse_err(describe(&e, i))))
            .collect::<Result<_, _>>()?
    };
    // The offending value is not echoed: a wrong file passed as a baseline
    // may hold anything, keys included.
    entries
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            Fingerprint::parse(&e.fingerprint).ok_or_else(|| {
                parse_err(format!(
                    "finding #{} has a fingerprint that is not 64 lowercase hex digits",
                    i + 1
                ))
            })
        })
        .collect()
}
