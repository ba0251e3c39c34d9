//! SARIF 2.1.0, as GitHub code scanning accepts it: one run, a rule per
//! rule id that fired, results with a physical location and a
//! partialFingerprint so re-uploads deduplicate.

use super::ReportOptions;
use crate::rules::RuleSet;
use crate::scan::Finding;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;

/// Where the tool's page is: the repository named in Cargo.toml.
const INFORMATION_URI: &str = env!("CARGO_PKG_REPOSITORY");

pub fn write(
    findings: &[Finding],
    rule_set: &RuleSet,
    opts: ReportOptions,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let mut rules: BTreeMap<&str, Value> = BTreeMap::new();
    for f in findings {
        rules.entry(&f.rule_id).or_insert_with(|| {
            let mut rule = json!({
                "id": &*f.rule_id,
                "name": &*f.rule_name,
                "shortDescription": {"text": format!("{} exposed", f.rule_name)},
                "fullDescription": {"text": format!("A {} was found in plain text. Rotate or revoke it, then remove it from the source.", f.rule_name)},
                "help": {"text": "Treat the key as compromised: revoke or regenerate it with its provider, update the services that use it, and remove it from the file (and from git history if committed)."},
                "properties": {"tags": ["security", "secret", &*f.provider], "security-severity": "9.0"},
                "defaultConfiguration": {"level": "error"}
            });
            let link = rule_set
                .get(&f.rule_id)
                .and_then(|r| r.spec.references.first());
            if let Some(link) = link {
                rule["helpUri"] = Value::from(link.as_str());
            }
            rule
        });
    }
    let rule_ids: Vec<&str> = rules.keys().copied().collect();
    let results: Vec<Value> = findings
        .iter()
        .map(|f| {
            let shown = if opts.show_secrets {
                f.secret.expose().to_string()
            } else {
                f.secret.redacted()
            };
            let mut message = format!("{} found: {shown}", f.rule_name);
            if let (Some(c), Some(a)) = (f.origin.commit(), f.origin.author_email()) {
                message.push_str(&format!(" (commit {c}, author {a})"));
            }
            json!({
                "ruleId": &*f.rule_id,
                "ruleIndex": rule_ids.iter().position(|r| *r == &*f.rule_id).unwrap_or(0),
                "level": "error",
                "message": {"text": message},
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": {"uri": uri_path(&f.origin.path())},
                        "region": {"startLine": f.line, "startColumn": f.column}
                    }
                }],
                "partialFingerprints": {"keysentry/v1": f.fingerprint.as_str()},
                "properties": properties(f)
            })
        })
        .collect();
    let doc = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "keysentry",
                "version": env!("CARGO_PKG_VERSION"),
                "semanticVersion": env!("CARGO_PKG_VERSION"),
                "informationUri": INFORMATION_URI,
                "rules": rules.into_values().collect::<Vec<_>>()
            }},
            "columnKind": "unicodeCodePoints",
            "results": results
        }]
    });
    serde_json::to_writer_pretty(&mut *out, &doc)?;
    writeln!(out)
}

fn properties(f: &Finding) -> Value {
    let mut p = json!({"provider": &*f.provider, "confidence": f.confidence.as_str()});
    for (key, value) in [
        ("commit", f.origin.commit()),
        ("author_email", f.origin.author_email()),
        ("repo", f.origin.repo()),
    ] {
        if let Some(v) = value {
            p[key] = Value::from(v);
        }
    }
    p
}

/// A relative path as a URI reference (RFC 3986): `/` kept, every byte
/// outside the unreserved set percent-encoded, so GitHub can place paths
/// with spaces, `#` or non-ASCII names.
pub fn uri_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for &b in path.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::uri_path;

    #[test]
    fn paths_become_uri_references() {
        assert_eq!(uri_path("src/main.rs"), "src/main.rs");
        assert_eq!(uri_path("my dir/a#1?.txt"), "my%20dir/a%231%3F.txt");
        assert_eq!(uri_path("clé.env"), "cl%C3%A9.env");
    }
}
