//! `--rules FILE.toml`: a team's gitleaks rule pack runs as keysentry rules,
//! with its allowlists, and what keysentry does not act on is named.
//!
//! The keys are made up for these tests in a shape no built-in rule knows.

use crate::support::{keysentry, write};
use serde_json::Value;
use std::path::Path;
use tempfile::TempDir;

const PACK: &str = r#"
title = "acme team rules"

[extend]
useDefault = true

[[rules]]
id = "acme-api-key"
description = "Acme API key"
regex = '''acme_(?:live|test)_([A-Za-z0-9]{24})'''
keywords = ["acme_"]
entropy = 3.0
tags = ["acme"]
    [[rules.allowlists]]
    stopwords = ["sample"]
    [[rules.allowlists]]
    regexTarget = "line"
    regexes = ['''(?i)fixture''']

[[rules]]
id = "Zorp Pair"
description = "Zorp key id and key"
regex = '''zorp_id=(ZP[0-9]{6})&zorp_key=([a-f0-9]{40})'''
secretGroup = 2

[[rules]]
id = "quux-token"
regex = '''quuxtok-[0-9a-z]{30}'''
severity = "high"
    [rules.allowlist]
    condition = "AND"
    paths = ['''^docs/''']
    stopwords = ["0000"]

[[rules]]
id = "path-only"
path = '''\.pem$'''

[allowlist]
paths = ['''^vendor/''']
"#;

const ACME: &str = "acme_live_Q7mVx2KpR9tLw4Zb8NcYd3Hf";
const ACME_SAMPLE: &str = "acme_test_sampleR9tLw4Zb8NcYd3Hfqz";
const ACME_FIXTURE: &str = "acme_live_Jr5Tq8Wn2Xc6Vb9Mk3Lp7Hs4";
const ZORP_KEY: &str = "9c1e7a4f2b8d6e0a3c5f7b9d1e3a5c7e9f1b3d5a";
const QUUX: &str = "quuxtok-k3j9x2m7q4w8e1r5t6y0u3i9o2p7a4";
const QUUX_DOC: &str = "quuxtok-0000x2m7q4w8e1r5t6y0u3i9o2p7a4";

fn tree() -> TempDir {
    let dir = TempDir::new().expect("tempdir");
    write(dir.path(), "rules/acme.toml", PACK);
    write(
        dir.path(),
        "src/app.env",
        &format!("ACME={ACME}\nACME2={ACME_SAMPLE}\n"),
    );
    write(
        dir.path(),
        "src/test.env",
        &format!("ACME={ACME_FIXTURE} # fixture\n"),
    );
    write(
        dir.path(),
        "src/zorp.txt",
        &format!("https://api.zorp.test/v1?zorp_id=ZP123456&zorp_key={ZORP_KEY}\n"),
    );
    write(dir.path(), "src/quux.txt", &format!("t = {QUUX}\n"));
    // AND: both the path and the stopword match → suppressed; only one → kept.
    write(dir.path(), "docs/quux.md", &format!("t = {QUUX_DOC}\n"));
    write(dir.path(), "docs/other.md", &format!("t = {QUUX}\n"));
    write(dir.path(), "vendor/lib.env", &format!("ACME={ACME}\n"));
    dir
}

fn scan(dir: &Path) -> std::process::Output {
    keysentry()
        .current_dir(dir)
        .args([
            "scan",
            "src",
            "--format",
            "json",
            "--show-secrets",
            "--rules",
        ])
        .arg(dir.join("rules/acme.toml"))
        .output()
        .expect("run keysentry")
}

fn findings(out: &std::process::Output) -> Vec<(String, String, String)> {
    let all: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let mut v: Vec<(String, String, String)> = all
        .as_array()
        .expect("array")
        .iter()
        .filter(|f| f["provider"] == "gitleaks")
        .map(|f| {
            (
                f["rule_id"].as_str().unwrap_or_default().to_string(),
                f["path"].as_str().unwrap_or_default().to_string(),
                f["secret"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_gitleaks_pack_finds_its_keys_with_its_secret_groups() {
    let dir = tree();
    let out = scan(dir.path());
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got = findings(&out);
    let want = vec![
        (
            "gitleaks.acme-api-key".into(),
            "app.env".into(),
            "Q7mVx2KpR9tLw4Zb8NcYd3Hf".into(),
        ),
        ("gitleaks.quux-token".into(), "quux.txt".into(), QUUX.into()),
        (
            "gitleaks.zorp-pair".into(),
            "zorp.txt".into(),
            ZORP_KEY.into(),
        ),
    ];
    assert_eq!(got, want);
}

#[test]
fn rule_and_global_allowlists_apply_and_and_needs_every_criterion() {
    let dir = tree();
    // Scan the whole tree so that docs/ and vendor/ are read too.
    let out = keysentry()
        .current_dir(dir.path())
        .args(["scan", ".", "--format", "json", "--show-secrets", "--rules"])
        .arg(dir.path().join("rules/acme.toml"))
        .output()
        .expect("run keysentry");
    let got = findings(&out);
    let paths: Vec<&str> = got.iter().map(|(_, p, _)| p.as_str()).collect();
    // stopword "sample", line regex "fixture", global path ^vendor/, and the
    // AND allowlist (docs/ + stopword) each drop their finding.
    assert!(!got.iter().any(|(_, _, s)| s.contains("sample")), "{got:?}");
    assert!(!paths.contains(&"src/test.env"), "{got:?}");
    assert!(!paths.contains(&"vendor/lib.env"), "{got:?}");
    assert!(!paths.contains(&"docs/quux.md"), "{got:?}");
    // docs/other.md matches the path but not the stopword: AND keeps it.
    assert!(paths.contains(&"docs/other.md"), "{got:?}");
}

#[test]
fn what_keysentry_does_not_act_on_is_named_in_a_warning() {
    let dir = tree();
    let out = scan(dir.path());
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in [
        "`extend` is not supported",
        "rule `quux-token`: field `severity` is not supported",
        "rule `path-only` skipped: it has no `regex`",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in: {err}");
    }
    // The Zorp rule has no keywords but a literal prefix: it runs.
    assert!(!err.contains("Zorp Pair` skipped"), "{err}");
    assert!(!err.contains("`title`") && !err.contains("`tags`"), "{err}");
}

#[test]
fn a_malformed_pack_is_an_error_naming_file_and_line_never_the_value() {
    let dir = TempDir::new().expect("tempdir");
    let key = "t-66a8f1c2e4b0a1d2c3e4f5a6-5f3e9b1c7d2a4e6f8b0c1d3e";
    write(
        dir.path(),
        "bad.toml",
        &format!("[[rules]]\nid = \"x\"\nregex = \"{key}\" oops\n"),
    );
    write(dir.path(), "a.txt", "nothing here\n");
    let out = keysentry()
        .args(["scan"])
        .arg(dir.path().join("a.txt"))
        .arg("--rules")
        .arg(dir.path().join("bad.toml"))
        .output()
        .expect("run keysentry");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:3"), "{err}");
    assert!(err.contains("gitleaks TOML"), "{err}");
    assert!(!err.contains(key), "{err}");
}
