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

#[test]
fn sarif_names_the_tool_version_and_its_home() {
    let rules = rules_dir();
    write(
        rules.path(),
        "documented.yaml",
        r#"
rules:
  - id: docprov.key
    name: Documented provider key
    provider: docprov
    keywords: ["dpk_"]
    pattern: '\b(?P<secret>dpk_[0-9a-f]{32})\b'
    references: ["https://docs.example.com/keys/revoke"]
    examples: ['dpk_3f9c2a7e81d64b05c9e1f7a2d8b34c6e']
    negative_examples: ['dpk_xyz']
"#,
    );
    let dir = TempDir::new().unwrap();
    write(
        dir.path(),
        "a.env",
        "K=dpk_3f9c2a7e81d64b05c9e1f7a2d8b34c6e\n",
    );
    let o = scan(
        rules.path(),
        &[dir.path().to_str().unwrap(), "--format", "sarif"],
    );
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_valid_sarif(&doc);
    let driver = &doc["runs"][0]["tool"]["driver"];
    assert_eq!(driver["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(driver["semanticVersion"], env!("CARGO_PKG_VERSION"));
    let home = driver["informationUri"].as_str().unwrap_or("");
    assert_eq!(
        home,
        env!("CARGO_PKG_REPOSITORY"),
        "Cargo.toml's repository"
    );
    assert!(home.starts_with("https://github.com/"), "{home}");
    let rule = &driver["rules"][0];
    assert_eq!(rule["id"], "docprov.key");
    assert_eq!(rule["helpUri"], "https://docs.example.com/keys/revoke");
}

/// Each finding in the text report ends with what to do about it: the
/// rule's revocation page when it has one, `--remediate` when keysentry can
/// act on the provider; and its confidence says why.
#[test]
fn text_report_says_what_to_do_next_and_why_it_is_sure() {
    let rules = rules_dir();
    write(
        rules.path(),
        "documented.yaml",
        r#"
rules:
  - id: docprov.key
    name: Documented provider key
    provider: docprov
    keywords: ["dpk_"]
    pattern: '\b(?P<secret>dpk_[0-9a-f]{32})\b'
    references: ["https://docs.example.com/keys/revoke"]
    revoke: {method: POST, url: "https://api.example.com/revoke", body: "{{secret}}", ok: [200]}
    examples: ['dpk_3f9c2a7e81d64b05c9e1f7a2d8b34c6e']
    negative_examples: ['dpk_xyz']
"#,
    );
    let dir = TempDir::new().unwrap();
    write(
        dir.path(),
        "a.env",
        &format!("K=dpk_3f9c2a7e81d64b05c9e1f7a2d8b34c6e\nL={KEY}\n"),
    );
    let o = scan(rules.path(), &[dir.path().to_str().unwrap()]);
    let out = stdout(&o);
    let blocks: Vec<&str> = out.split("\n\n").filter(|b| !b.trim().is_empty()).collect();
    assert_eq!(blocks.len(), 2, "{out}");
    let documented = blocks[0];
    assert!(documented.starts_with("docprov.key"), "{out}");
    assert!(
        documented.contains("  confidence:  medium (pattern match)"),
        "{documented}"
    );
    assert!(
        documented.contains(
            "  next step:   revoke or rotate it (https://docs.example.com/keys/revoke), then remove it from the source"
        ),
        "{documented}"
    );
    assert!(
        documented.contains(
            "  remediate:   `keysentry scan --remediate --config FILE` can do it for you"
        ),
        "{documented}"
    );
    let plain = blocks[1];
    assert!(
        plain.contains(
            "  next step:   revoke or rotate it with testprov, then remove it from the source"
        ),
        "{plain}"
    );
    assert!(!plain.contains("remediate:"), "no revoke call: {plain}");
}

#[test]
fn a_checksummed_key_is_labelled_high_confidence() {
    use keysentry::scan::{base62_fixed, crc32};
    let body = "Zx8Qm2LpR4tV6yB1nC3dF5gH7jK9wE";
    let token = format!("ghp_{body}{}", base62_fixed(crc32(body.as_bytes()), 6));
    let dir = TempDir::new().unwrap();
    write(dir.path(), "ci.env", &format!("GH={token}\n"));
    let o = crate::support::keysentry()
        .arg("scan")
        .arg(dir.path())
        .output()
        .unwrap();
    let out = stdout(&o);
    assert!(
        out.contains("  confidence:  high (checksum verified)"),
        "{out}"
    );
    assert!(out.contains("(https://docs.github.com/"), "{out}");
    assert!(!out.contains(&token), "{out}");
}

/// The summary counts distinct keys besides findings, says what each filter
/// hid, and never shows a key.
#[test]
fn summary_counts_keys_and_what_the_filters_hid() {
    const KNOWN: &str = "ksq_7b2e9f4c1a8d3065e2f7c9b14a6d8e3f";
    const LISTED: &str = "ksq_aaaa1c9e3f7b2d5a8e0c4f6b9d1e7a2c";
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    write(dir.path(), "src/a.env", &format!("A={KEY}\nB={KEY}\n"));
    write(dir.path(), "src/b.env", &format!("C={KNOWN}\n"));
    write(
        dir.path(),
        "src/c.env",
        &format!("D={KEY2}  # keysentry:allow\n"),
    );
    write(dir.path(), "fixtures/x.env", &format!("{KEY2}\n"));
    write(dir.path(), "src/d.env", &format!("E={LISTED}\n"));
    let side = TempDir::new().unwrap();
    let baseline = side.path().join("baseline.json");
    let fp = keysentry::scan::Fingerprint::of(KNOWN.as_bytes());
    std::fs::write(
        &baseline,
        format!("[{{\"fingerprint\": \"{}\"}}]", fp.as_str()),
    )
    .unwrap();
    let cfg = side.path().join("keysentry.yaml");
    std::fs::write(
        &cfg,
        "scan:\n  allowlist:\n    paths: ['fixtures/**']\n    secrets: ['^ksq_aaaa']\n",
    )
    .unwrap();
    let o = scan(
        rules.path(),
        &[
            dir.path().to_str().unwrap(),
            "--baseline",
            baseline.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().collect();
    assert!(lines[0].starts_with("scanned 5 files, 2"), "{err}");
    assert!(lines[0].contains(" B in "), "{err}");
    assert_eq!(
        lines[1], "2 findings, 1 distinct key (testprov: 2)",
        "{err}"
    );
    assert_eq!(
        lines[2],
        "suppressed 4 findings: 1 by the baseline, 2 by the allowlist, 1 inline (keysentry:allow)",
        "{err}"
    );
    for key in [KEY, KEY2, KNOWN, LISTED] {
        assert!(!err.contains(key) && !stdout(&o).contains(key), "{key}");
    }
}
