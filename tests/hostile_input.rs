//! Config and rule files as an attacker or a slip of the hand makes them:
//! a key pasted where a regex, URL or variant goes is never echoed (the
//! error still names the YAML path and the cause), and files too large or
//! too deeply nested are refused before a parser spends minutes on them.

use crate::scan_cli::{rules_dir, stderr, stdout, KEY, RULES};
use crate::support::{keysentry, write};
use std::path::Path;
use std::process::Output;
use std::time::Duration;
use tempfile::TempDir;

/// Only a guard against a hang: the old parser took a minute on 100k `[`.
const HANG: Duration = Duration::from_secs(20);

fn both(o: &Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

fn config_check(cfg: &Path) -> Output {
    keysentry()
        .args(["config", "check"])
        .arg(cfg)
        .timeout(HANG)
        .output()
        .unwrap()
}

fn scan_config(cfg: &Path, rules: &Path) -> Output {
    let target = TempDir::new().unwrap();
    keysentry()
        .arg("scan")
        .arg(target.path())
        .arg("--config")
        .arg(cfg)
        .arg("--rules")
        .arg(rules)
        .timeout(HANG)
        .output()
        .unwrap()
}

/// Exit 2, the key nowhere in the output, every needle present.
fn refused_without_key(what: &str, o: &Output, needles: &[&str]) {
    let out = both(o);
    assert_eq!(o.status.code(), Some(2), "{what}: {out}");
    assert!(!out.contains(KEY), "{what} echoed the key: {out}");
    assert!(
        !out.contains(&KEY[4..20]),
        "{what} echoed part of the key: {out}"
    );
    for n in needles {
        assert!(out.contains(n), "{what}: `{n}` not in: {out}");
    }
}

#[test]
fn config_errors_never_echo_a_planted_key() {
    let rules = rules_dir();
    let cases = [
        (
            format!("scan:\n  allowlist:\n    secrets: ['{KEY}(']\n"),
            vec!["scan.allowlist.secrets[0]", "unclosed group"],
        ),
        (
            format!("providers:\n  tatum: {{api_url: '{KEY} not a url'}}\n"),
            vec!["providers.tatum.api_url", "not a valid URL"],
        ),
        (
            format!("github: {{api_url: 'https://{KEY}:x@[::1'}}\n"),
            vec!["github.api_url", "not a valid URL"],
        ),
        (
            format!("remediation:\n  policy: {{tatum: {KEY}}}\n"),
            vec!["remediation.policy.tatum", "unknown variant"],
        ),
        (
            format!("remediation:\n  mode: {KEY}\n"),
            vec!["remediation.mode", "unknown variant"],
        ),
    ];
    for (yaml, needles) in cases {
        let dir = TempDir::new().unwrap();
        write(dir.path(), "keysentry.yaml", &yaml);
        let cfg = dir.path().join("keysentry.yaml");
        refused_without_key(
            &format!("config check {yaml}"),
            &config_check(&cfg),
            &needles,
        );
        let o = scan_config(&cfg, rules.path());
        refused_without_key(&format!("scan --config {yaml}"), &o, &needles);
        assert_eq!(stdout(&o), "", "no report on a bad config");
    }
}

#[test]
fn rule_pattern_errors_never_echo_a_planted_key() {
    let rules = TempDir::new().unwrap();
    let bad = RULES.replace(
        r"'\b(?P<secret>ksq_[0-9a-f]{32})\b'",
        &format!("'(?P<secret>{KEY}[a-)'"),
    );
    assert!(bad.contains(KEY));
    write(rules.path(), "broken.yaml", &bad);
    let needles = [
        "broken.yaml",
        "testprov.ksq-key",
        "invalid pattern",
        "character class",
    ];
    let target = TempDir::new().unwrap();
    let o = keysentry()
        .arg("scan")
        .arg(target.path())
        .arg("--rules")
        .arg(rules.path())
        .output()
        .unwrap();
    refused_without_key("scan --rules", &o, &needles);
    let o = keysentry()
        .args(["rules", "check"])
        .arg(rules.path())
        .output()
        .unwrap();
    refused_without_key("rules check", &o, &needles);
    // The same rules named by a config's scan.rules.
    let dir = TempDir::new().unwrap();
    let yaml = format!("scan:\n  rules: ['{}']\n", rules.path().display());
    write(dir.path(), "keysentry.yaml", &yaml);
    let o = config_check(&dir.path().join("keysentry.yaml"));
    refused_without_key("config check scan.rules", &o, &needles);
}

fn deep(n: usize) -> String {
    "[".repeat(n)
}

#[test]
fn deeply_nested_config_and_rules_are_refused_at_once() {
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    write(
        dir.path(),
        "deep.yaml",
        &format!("scan:\n  rules: {}\n", deep(100_000)),
    );
    let cfg = dir.path().join("deep.yaml");
    let needles = ["deep.yaml", "deeper than 64 levels", "flatten the YAML"];
    for o in [config_check(&cfg), scan_config(&cfg, rules.path())] {
        let out = both(&o);
        assert_eq!(o.status.code(), Some(2), "{out}");
        for n in needles {
            assert!(out.contains(n), "`{n}` not in: {out}");
        }
    }
    let deep_rules = TempDir::new().unwrap();
    write(
        deep_rules.path(),
        "deep.yaml",
        &format!("rules: {}\n", deep(100_000)),
    );
    let target = TempDir::new().unwrap();
    let scan = keysentry()
        .arg("scan")
        .arg(target.path())
        .arg("--rules")
        .arg(deep_rules.path())
        .timeout(HANG)
        .output()
        .unwrap();
    let check = keysentry()
        .args(["rules", "check"])
        .arg(deep_rules.path())
        .timeout(HANG)
        .output()
        .unwrap();
    for o in [scan, check] {
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{err}");
        for n in needles {
            assert!(err.contains(n), "`{n}` not in: {err}");
        }
    }
}

#[test]
fn oversized_config_and_rules_are_refused_naming_the_limit() {
    let dir = TempDir::new().unwrap();
    // Valid YAML (comments) just over the cap: only the size is wrong.
    let big = "# padding padding padding padding padding padding padding\n".repeat(80_000);
    assert!(big.len() > 4 << 20);
    write(dir.path(), "big.yaml", &big);
    let o = config_check(&dir.path().join("big.yaml"));
    let out = both(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    for n in ["big.yaml", "4 MiB limit", "right file"] {
        assert!(out.contains(n), "`{n}` not in: {out}");
    }
    let rules = TempDir::new().unwrap();
    write(
        rules.path(),
        "big.yaml",
        &format!("{RULES}{}", big.repeat(5)),
    );
    let o = keysentry()
        .args(["rules", "check"])
        .arg(rules.path())
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("big.yaml") && err.contains("16 MiB limit"),
        "{err}"
    );
}

/// A file name carrying a terminal escape (`ESC[2J` clears the screen) is
/// shown escaped in the text report: no raw control byte reaches stdout.
#[test]
fn control_characters_in_file_names_are_escaped_in_the_text_report() {
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    write(
        dir.path(),
        "a\x1b[2Jb\u{202e}.env",
        &format!("token = {KEY}\n"),
    );
    let o = keysentry()
        .arg("scan")
        .arg(dir.path())
        .arg("--rules")
        .arg(rules.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        !out.contains('\x1b') && !out.contains('\u{202e}'),
        "{out:?}"
    );
    assert!(out.contains(r"a\x1b[2Jb\u{202e}.env"), "{out}");
}
