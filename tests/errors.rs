//! Bad input: each case exits 2 with a message naming the cause (the file,
//! line, rule id or YAML path) — except an unreadable file inside a scanned
//! tree, which is a warning: the rest of the tree is still scanned.

use crate::scan_cli::{rules_dir, scan, stderr, stdout, KEY, RULES};
use crate::support::{keysentry, write};
use std::process::Output;
use tempfile::TempDir;

fn assert_error(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert!(err.starts_with("error: "), "{err}");
    for n in needles {
        assert!(err.contains(n), "`{n}` not in: {err}");
    }
    assert_eq!(stdout(o), "", "no report on an error");
}

/// A rules directory holding one file with `yaml`.
fn bad_rules(yaml: &str) -> TempDir {
    let dir = TempDir::new().unwrap();
    write(dir.path(), "broken.yaml", yaml);
    dir
}

fn scan_with_rules(rules: &TempDir) -> Output {
    let target = TempDir::new().unwrap();
    scan(rules.path(), &[target.path().to_str().unwrap()])
}

#[test]
fn missing_path() {
    let rules = rules_dir();
    let o = scan(rules.path(), &["/nonexistent/keysentry-test/dir"]);
    assert_error(&o, &["/nonexistent/keysentry-test/dir", "no such file"]);
}

#[test]
fn missing_rules_dir() {
    let target = TempDir::new().unwrap();
    let o = keysentry()
        .args(["scan", target.path().to_str().unwrap()])
        .args(["--rules", "/nonexistent/keysentry-rules"])
        .output()
        .unwrap();
    assert_error(&o, &["/nonexistent/keysentry-rules", "rules"]);
}

#[test]
fn rules_dir_without_rule_files() {
    let empty = TempDir::new().unwrap();
    write(empty.path(), "README.md", "no rules here\n");
    let o = scan_with_rules(&empty);
    assert_error(&o, &[empty.path().to_str().unwrap(), "*.yaml"]);
}

#[test]
fn unreadable_rule_file() {
    // A directory named like a rule file: reading it fails for root too.
    let rules = TempDir::new().unwrap();
    std::fs::create_dir(rules.path().join("dir.yaml")).unwrap();
    let o = scan_with_rules(&rules);
    assert_error(&o, &["dir.yaml", "cannot read"]);
}

#[test]
fn malformed_rule_yaml_names_file_and_line() {
    let rules = bad_rules("rules:\n  - id: a.b\n    name: [unclosed\n    provider: a\n");
    let o = scan_with_rules(&rules);
    assert_error(&o, &["broken.yaml:", "malformed rule YAML"]);
    let err = stderr(&o);
    let line = err
        .split("broken.yaml:")
        .nth(1)
        .and_then(|s| s.split(':').next())
        .and_then(|n| n.parse::<usize>().ok());
    assert!(line.is_some_and(|l| (3..=5).contains(&l)), "{err}");
}

#[test]
fn unknown_rule_field_names_file_line_and_field() {
    let yaml = RULES.replace("min_entropy:", "min_entropi:");
    let line = 1 + yaml
        .lines()
        .position(|l| l.contains("min_entropi"))
        .unwrap();
    let rules = bad_rules(&yaml);
    let o = scan_with_rules(&rules);
    assert_error(&o, &[&format!("broken.yaml:{line}:"), "min_entropi"]);
}

#[test]
fn invalid_regex_names_file_and_rule() {
    let rules = bad_rules(&RULES.replace(r"[0-9a-f]{32})", r"[0-9a-f{32})"));
    let o = scan_with_rules(&rules);
    assert_error(&o, &["broken.yaml", "testprov.ksq-key", "invalid pattern"]);
}

#[test]
fn pattern_without_secret_group() {
    let rules = bad_rules(&RULES.replace("(?P<secret>", "("));
    let o = scan_with_rules(&rules);
    assert_error(&o, &["broken.yaml", "testprov.ksq-key", "secret"]);
}

#[test]
fn duplicate_rule_id_names_both_files() {
    let rules = rules_dir();
    write(rules.path(), "zz-copy.yaml", RULES);
    let o = scan_with_rules(&rules);
    assert_error(
        &o,
        &[
            "duplicate rule id",
            "testprov.ksq-key",
            "testprov.yaml",
            "zz-copy.yaml",
        ],
    );
}

#[test]
fn duplicate_rule_id_across_rule_dirs() {
    let a = rules_dir();
    let b = rules_dir();
    let target = TempDir::new().unwrap();
    let o = keysentry()
        .args(["scan", target.path().to_str().unwrap(), "--rules"])
        .arg(a.path())
        .arg("--rules")
        .arg(b.path())
        .output()
        .unwrap();
    assert_error(&o, &["duplicate rule id", "testprov.ksq-key"]);
}

#[test]
fn rule_id_must_start_with_its_provider() {
    let rules = bad_rules(&RULES.replace("provider: testprov", "provider: other"));
    let o = scan_with_rules(&rules);
    assert_error(&o, &["broken.yaml", "testprov.ksq-key", "provider"]);
}

#[test]
fn rules_check_reports_load_errors_with_exit_2() {
    let rules = bad_rules(&RULES.replace(r"[0-9a-f]{32})", r"[0-9a-f{32})"));
    let o = keysentry()
        .args(["rules", "check"])
        .arg(rules.path())
        .output()
        .unwrap();
    assert_error(&o, &["broken.yaml", "testprov.ksq-key"]);
}

#[test]
fn bad_config_names_the_yaml_path() {
    let rules = rules_dir();
    let target = TempDir::new().unwrap();
    let cfg_dir = TempDir::new().unwrap();
    let cfg = cfg_dir.path().join("keysentry.yaml");
    std::fs::write(&cfg, "scan:\n  allowlist:\n    pathz: ['x']\n").unwrap();
    let o = scan(
        rules.path(),
        &[
            target.path().to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
        ],
    );
    assert_error(&o, &["keysentry.yaml", "scan.allowlist", "pathz"]);
}

#[test]
fn config_with_bad_allowlist_regex() {
    let rules = rules_dir();
    let target = TempDir::new().unwrap();
    let cfg_dir = TempDir::new().unwrap();
    let cfg = cfg_dir.path().join("keysentry.yaml");
    std::fs::write(&cfg, "scan:\n  allowlist:\n    secrets: ['ksq_(']\n").unwrap();
    let o = scan(
        rules.path(),
        &[
            target.path().to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
        ],
    );
    // Named by its path and cause; the regex itself may be a key.
    assert_error(&o, &["scan.allowlist.secrets[0]", "unclosed group"]);
    assert!(!stderr(&o).contains("ksq_("), "{}", stderr(&o));
}

#[test]
fn missing_config_file() {
    let rules = rules_dir();
    let target = TempDir::new().unwrap();
    let o = scan(
        rules.path(),
        &[
            target.path().to_str().unwrap(),
            "--config",
            "/nonexistent/keysentry.yaml",
        ],
    );
    assert_error(&o, &["/nonexistent/keysentry.yaml"]);
}

#[test]
fn missing_baseline_file() {
    let rules = rules_dir();
    let target = TempDir::new().unwrap();
    let o = scan(
        rules.path(),
        &[
            target.path().to_str().unwrap(),
            "--baseline",
            "/nonexistent/baseline.json",
        ],
    );
    assert_error(&o, &["/nonexistent/baseline.json", "baseline"]);
}

#[test]
fn baseline_that_is_not_a_report() {
    let rules = rules_dir();
    let target = TempDir::new().unwrap();
    for (name, text) in [
        ("text.json", "this is not json\n"),
        ("wrong-shape.json", "[{\"rule\": \"x\"}]"),
        ("bad-fp.json", "[{\"fingerprint\": \"abc\"}]"),
        ("sarif.json", "{\"version\": \"2.1.0\", \"runs\": []}"),
    ] {
        write(target.path(), name, text);
        let file = target.path().join(name);
        let o = scan(
            rules.path(),
            &[
                target.path().to_str().unwrap(),
                "--baseline",
                file.to_str().unwrap(),
            ],
        );
        assert_error(&o, &[name, "baseline", "--format json"]);
    }
}

#[test]
fn unwritable_output_file() {
    let rules = rules_dir();
    let target = TempDir::new().unwrap();
    let o = scan(
        rules.path(),
        &[
            target.path().to_str().unwrap(),
            "--output",
            "/nonexistent/dir/report.json",
        ],
    );
    assert_error(&o, &["/nonexistent/dir/report.json"]);
}

#[test]
fn unknown_format() {
    let rules = rules_dir();
    let target = TempDir::new().unwrap();
    let o = scan(
        rules.path(),
        &[target.path().to_str().unwrap(), "--format", "xml"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("xml"), "{}", stderr(&o));
}

/// Runs `keysentry scan DIR` in a fresh user namespace. There, even root
/// lacks the capability to bypass file permissions on files it owns, so a
/// mode-000 file is as unreadable as it is for an ordinary user — the honest
/// way to test "unreadable" when CI runs as root.
fn scan_in_user_namespace(rules: &TempDir, dir: &TempDir) -> Output {
    let bin = assert_cmd::cargo::cargo_bin("keysentry");
    std::process::Command::new("unshare")
        .arg("--user")
        .arg(bin)
        .args(["scan", dir.path().to_str().unwrap(), "--format", "json"])
        .arg("--rules")
        .arg(rules.path())
        .output()
        .expect("unshare (util-linux) runs")
}

fn chmod(path: &std::path::Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn unreadable_file_is_a_warning_and_the_scan_goes_on() {
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    write(dir.path(), "locked.env", &format!("{KEY}\n"));
    write(dir.path(), "open.env", &format!("{KEY}\n"));
    chmod(&dir.path().join("locked.env"), 0o000);
    let o = scan_in_user_namespace(&rules, &dir);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "the readable file's key: {err}");
    assert!(err.contains("warning: could not read locked.env"), "{err}");
    assert!(err.contains("ermission denied"), "{err}");
    assert!(err.contains("scanned 1 file,"), "{err}");
    let all: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(all[0]["path"], "open.env");
    chmod(&dir.path().join("locked.env"), 0o644);
}

#[test]
fn unreadable_directory_is_a_warning_and_the_scan_goes_on() {
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    write(dir.path(), "locked/inner.env", &format!("{KEY}\n"));
    write(dir.path(), "open/a.env", &format!("{KEY}\n"));
    chmod(&dir.path().join("locked"), 0o000);
    let o = scan_in_user_namespace(&rules, &dir);
    let err = stderr(&o);
    chmod(&dir.path().join("locked"), 0o755);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("warning: could not read locked"), "{err}");
    let all: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(all[0]["path"], "open/a.env");
}

#[test]
fn special_files_are_skipped_without_blocking() {
    // A FIFO with no writer would block a scanner that opened it forever.
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    write(dir.path(), "a.env", &format!("{KEY}\n"));
    let fifo = dir.path().join("pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    std::os::unix::fs::symlink("/nonexistent/target", dir.path().join("dangling")).unwrap();
    let o = scan(
        rules.path(),
        &[dir.path().to_str().unwrap(), "--format", "json"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("scanned 1 file,"), "{}", stderr(&o));
}

#[test]
fn an_env_file_given_as_rules_or_config_never_echoes_its_key() {
    let dir = TempDir::new().unwrap();
    write(dir.path(), "prod.env", &format!("TATUM_API_KEY={KEY}\n"));
    let env = dir.path().join("prod.env");
    let o = keysentry()
        .args(["scan", dir.path().to_str().unwrap(), "--rules"])
        .arg(&env)
        .output()
        .unwrap();
    assert_error(&o, &["prod.env", "malformed rule YAML"]);
    assert!(!stderr(&o).contains(KEY), "{}", stderr(&o));

    let o = keysentry()
        .args(["scan", dir.path().to_str().unwrap(), "--config"])
        .arg(&env)
        .output()
        .unwrap();
    assert_error(&o, &["prod.env"]);
    assert!(!stderr(&o).contains(KEY), "{}", stderr(&o));

    let o = keysentry()
        .args(["config", "check"])
        .arg(&env)
        .output()
        .unwrap();
    let out = format!("{}{}", stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(!out.contains(KEY), "{out}");
}
