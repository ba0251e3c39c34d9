//! Report formats as their consumers read them: SARIF as GitHub code
//! scanning's upload checks it, and stderr left to the summary when stderr is
//! not a terminal.

use crate::scan_cli::{rules_dir, scan, stderr, stdout, KEY, KEY2};
use crate::support::write;
use serde_json::Value;
use tempfile::TempDir;

fn sarif_of(dir: &TempDir, extra: &[&str]) -> (std::process::Output, Value) {
    let rules = rules_dir();
    let mut args = vec![dir.path().to_str().unwrap(), "--format", "sarif"];
    args.extend_from_slice(extra);
    let o = scan(rules.path(), &args);
    let doc = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("SARIF is not JSON ({e}): {}", stdout(&o)));
    (o, doc)
}

/// The parts of SARIF 2.1.0 that GitHub code scanning requires or uses to
/// place and deduplicate an alert.
fn assert_valid_sarif(doc: &Value) {
    assert_eq!(doc["version"], "2.1.0");
    let schema = doc["$schema"].as_str().expect("$schema");
    assert!(
        schema.contains("sarif") && schema.contains("2.1.0"),
        "{schema}"
    );
    let runs = doc["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 1);
    let run = &runs[0];
    let driver = &run["tool"]["driver"];
    assert_eq!(driver["name"], "keysentry");
    assert!(driver["version"].is_string());
    let rules = driver["rules"].as_array().expect("tool.driver.rules");
    let ids: Vec<&str> = rules
        .iter()
        .map(|r| r["id"].as_str().expect("every rule has an id"))
        .collect();
    for r in rules {
        assert!(r["shortDescription"]["text"].is_string(), "{r}");
        let severity = r["properties"]["security-severity"].as_str();
        assert!(severity.is_some_and(|s| s.parse::<f64>().is_ok()), "{r}");
    }
    for res in run["results"].as_array().expect("results") {
        let rule_id = res["ruleId"].as_str().expect("ruleId");
        let index = res["ruleIndex"].as_u64().expect("ruleIndex") as usize;
        assert_eq!(
            ids.get(index),
            Some(&rule_id),
            "ruleIndex points at its rule"
        );
        assert!(res["message"]["text"].is_string());
        let loc = &res["locations"][0]["physicalLocation"];
        let uri = loc["artifactLocation"]["uri"].as_str().expect("uri");
        assert!(!uri.starts_with('/') && !uri.contains('\\'), "{uri}");
        assert!(
            uri.bytes().all(|b| b.is_ascii_graphic() && b != b' '),
            "a URI, percent-encoded: {uri}"
        );
        assert!(loc["region"]["startLine"].as_u64().unwrap_or(0) >= 1);
        assert!(loc["region"]["startColumn"].as_u64().unwrap_or(0) >= 1);
        let fp = res["partialFingerprints"]
            .as_object()
            .expect("fingerprints");
        assert!(!fp.is_empty());
    }
}

#[test]
fn sarif_is_valid_and_places_each_result() {
    let dir = TempDir::new().unwrap();
    write(dir.path(), "src/app.py", &format!("\nKEY = \"{KEY}\"\n"));
    write(dir.path(), "deploy/prod.env", &format!("K={KEY2}\n"));
    let (o, doc) = sarif_of(&dir, &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_valid_sarif(&doc);
    let results = doc["runs"][0]["results"].as_array().unwrap();
    let ours: Vec<&Value> = results
        .iter()
        .filter(|r| r["ruleId"] == "testprov.ksq-key")
        .collect();
    assert_eq!(ours.len(), 2);
    let loc = &ours[1]["locations"][0]["physicalLocation"];
    assert_eq!(loc["artifactLocation"]["uri"], "src/app.py");
    assert_eq!(loc["region"]["startLine"], 2);
    assert_eq!(loc["region"]["startColumn"], 8);
    let rules = doc["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .unwrap();
    assert!(rules.iter().any(|r| r["id"] == "testprov.ksq-key"));
}

#[test]
fn sarif_without_findings_is_still_a_valid_log() {
    let dir = TempDir::new().unwrap();
    write(dir.path(), "a.txt", "nothing here\n");
    let (o, doc) = sarif_of(&dir, &[]);
    assert_eq!(o.status.code(), Some(0));
    assert_valid_sarif(&doc);
    assert_eq!(doc["runs"][0]["results"], Value::Array(vec![]));
}

#[test]
fn sarif_uris_are_percent_encoded() {
    let dir = TempDir::new().unwrap();
    write(dir.path(), "my docs/notes #1.txt", &format!("{KEY}\n"));
    let (_, doc) = sarif_of(&dir, &[]);
    assert_valid_sarif(&doc);
    let uri = &doc["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]
        ["uri"];
    assert_eq!(uri, "my%20docs/notes%20%231.txt");
}

#[test]
fn sarif_fingerprint_is_the_finding_fingerprint() {
    let dir = TempDir::new().unwrap();
    write(dir.path(), "a.txt", &format!("{KEY}\n"));
    let (_, doc) = sarif_of(&dir, &[]);
    let fp = keysentry::scan::Fingerprint::of(KEY.as_bytes());
    let result = &doc["runs"][0]["results"][0];
    let values: Vec<&Value> = result["partialFingerprints"]
        .as_object()
        .unwrap()
        .values()
        .collect();
    assert_eq!(values, [&Value::from(fp.as_str())]);
}

#[test]
fn stderr_holds_only_the_summary_when_not_a_terminal() {
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    for i in 0..50 {
        write(dir.path(), &format!("f{i}.txt"), "plain text\n");
    }
    let o = scan(rules.path(), &[dir.path().to_str().unwrap()]);
    let err = stderr(&o);
    assert!(
        !err.contains('\r') && !err.contains('\x1b'),
        "no progress bar: {err:?}"
    );
    assert_eq!(
        err.lines().collect::<Vec<_>>().len(),
        2,
        "a scan line and a findings line: {err}"
    );
    assert!(err.starts_with("scanned 50 files"), "{err}");
}
