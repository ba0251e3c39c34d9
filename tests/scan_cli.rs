//! `keysentry scan` over files and stdin, as a user runs it: exit codes, the
//! finding JSON contract, `--output`, baselines, allowlists, what the walk
//! includes and skips, and the summary on stderr.
//!
//! The tests bring their own rule (`--rules DIR`) and keys of a shape no
//! built-in rule knows, so they hold with or without the built-in rules; the
//! texts avoid the words built-in rules key on (`token`, `secret`, `api_key`).

use crate::support::{keysentry, write};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::Path;
use tempfile::TempDir;

pub const RULES: &str = r#"
rules:
  - id: testprov.ksq-key
    name: Test provider key
    provider: testprov
    keywords: ["ksq_"]
    pattern: '\b(?P<secret>ksq_[0-9a-f]{32})\b'
    min_entropy: 3.0
    examples: ['credential = ksq_3f9c2a7e81d64b05c9e1f7a2d8b34c6e']
    negative_examples: ['credential = ksq_00000000000000000000000000000000']
"#;

pub const KEY: &str = "ksq_3f9c2a7e81d64b05c9e1f7a2d8b34c6e";
pub const KEY2: &str = "ksq_9d41be07c3a85f26e1d0c47b93a8f512";

/// A directory holding the test rule.
pub fn rules_dir() -> TempDir {
    let dir = TempDir::new().expect("tempdir");
    write(dir.path(), "testprov.yaml", RULES);
    dir
}

/// `keysentry scan ARGS --rules <test rules>`.
pub fn scan(rules: &Path, args: &[&str]) -> std::process::Output {
    keysentry()
        .arg("scan")
        .args(args)
        .arg("--rules")
        .arg(rules)
        .output()
        .expect("run keysentry")
}

pub fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The findings of our test rule in a `--format json` report.
pub fn json_findings(o: &std::process::Output) -> Vec<Value> {
    let all: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", stdout(o)));
    all.as_array()
        .expect("a JSON array")
        .iter()
        .filter(|f| f["rule_id"] == "testprov.ksq-key")
        .cloned()
        .collect()
}

fn path_of(dir: &TempDir) -> &str {
    dir.path().to_str().expect("utf-8 temp path")
}

#[test]
fn clean_tree_exits_0_and_says_so() {
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    write(
        dir.path(),
        "src/main.py",
        "print('hello')\ncredential = load()\n",
    );
    let o = scan(rules.path(), &[path_of(&dir)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "");
    assert!(stderr(&o).contains("no findings"), "{}", stderr(&o));
    assert!(stderr(&o).contains("scanned 1 file,"), "{}", stderr(&o));
}

#[test]
fn json_finding_follows_the_contract() {
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    write(
        dir.path(),
        "config/app/settings.env",
        &format!("# settings\nNAME=demo\nCREDENTIAL={KEY}\n"),
    );
    let o = scan(rules.path(), &[path_of(&dir), "--format", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let found = json_findings(&o);
    assert_eq!(found.len(), 1, "{}", stdout(&o));
    let f = found[0].as_object().unwrap();
    let keys: BTreeSet<&str> = f.keys().map(String::as_str).collect();
    // The contract's fields, plus three documented additions.
    let expected: BTreeSet<&str> = [
        "rule_id",
        "provider",
        "fingerprint",
        "redacted",
        "source",
        "path",
        "line",
        "column",
        "commit",
        "author_email",
        "repo",
        "rule_name",
        "offset",
        "confidence",
    ]
    .into();
    assert_eq!(keys, expected);
    assert_eq!(f["provider"], "testprov");
    assert_eq!(f["source"], "file");
    assert_eq!(f["path"], "config/app/settings.env");
    assert_eq!(f["line"], 3);
    assert_eq!(f["column"], 12, "1-based: `CREDENTIAL=` is 11 characters");
    assert_eq!(f["offset"], "# settings\nNAME=demo\nCREDENTIAL=".len());
    assert_eq!(f["commit"], Value::Null);
    assert_eq!(f["author_email"], Value::Null);
    assert_eq!(f["repo"], Value::Null);
    let fp = f["fingerprint"].as_str().unwrap();
    assert_eq!(fp.len(), 64);
    assert!(fp
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    assert!(f["redacted"].as_str().unwrap().contains("[36 chars]"));
}

#[test]
fn columns_count_characters_not_bytes() {
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    write(dir.path(), "i18n.txt", &format!("clé = «{KEY}»\n"));
    let o = scan(rules.path(), &[path_of(&dir), "--format", "json"]);
    let found = json_findings(&o);
    assert_eq!(found[0]["column"], 8, "{}", stdout(&o));
}

/// A named file reports the path as given (relative to the current
/// directory when given absolute under it), not just its file name.
#[test]
fn a_named_file_reports_the_path_as_given() {
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    write(dir.path(), "deep/er/one.txt", &format!("{KEY}\n"));
    // getcwd() gives the resolved path: compare with the same.
    let absolute = dir.path().canonicalize().unwrap().join("deep/er/one.txt");
    for given in [
        "deep/er/one.txt",
        "./deep/er/one.txt",
        absolute.to_str().unwrap(),
    ] {
        let o = keysentry()
            .current_dir(dir.path())
            .args(["scan", given, "--format", "jsonl", "--rules"])
            .arg(rules.path())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{given}: {}", stderr(&o));
        let f: Value = serde_json::from_str(stdout(&o).lines().next().unwrap()).unwrap();
        assert_eq!(f["path"], "deep/er/one.txt", "{given}");
        assert_eq!(
            (f["line"].as_u64(), f["column"].as_u64()),
            (Some(1), Some(1))
        );
    }
}

#[test]
fn every_format_exits_1_on_findings() {
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    write(dir.path(), "a.txt", &format!("x {KEY}\n"));
    for format in ["text", "json", "jsonl", "sarif"] {
        let o = scan(rules.path(), &[path_of(&dir), "--format", format]);
        assert_eq!(o.status.code(), Some(1), "{format}: {}", stderr(&o));
        let out = stdout(&o);
        assert!(out.contains("testprov.ksq-key"), "{format}: {out}");
        assert!(out.contains("a.txt"), "{format}: {out}");
        assert!(
            stderr(&o).contains("1 finding, 1 distinct key (testprov: 1)"),
            "{format}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn text_format_names_rule_location_and_fingerprint() {
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    write(
        dir.path(),
        "src/lib.rs",
        &format!("\n\nconst C: &str = \"{KEY}\";\n"),
    );
    let o = scan(rules.path(), &[path_of(&dir)]);
    let out = stdout(&o);
    assert!(out.contains("testprov.ksq-key"), "{out}");
    assert!(out.contains("src/lib.rs:3:18"), "{out}");
    let fp = keysentry::scan::Fingerprint::of(KEY.as_bytes());
    assert!(out.contains(fp.as_str()), "{out}");
    assert!(
        !out.contains('\x1b'),
        "no colour when stdout is not a terminal: {out}"
    );
}

#[test]
fn jsonl_prints_one_object_per_line() {
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    write(dir.path(), "a.txt", &format!("{KEY}\n{KEY2}\n"));
    let o = scan(rules.path(), &[path_of(&dir), "--format", "jsonl"]);
    let lines: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is a JSON object"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["line"], 1);
    assert_eq!(lines[1]["line"], 2);
}

#[test]
fn output_flag_writes_the_report_to_a_file() {
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    write(dir.path(), "a.txt", &format!("{KEY}\n"));
    let out_dir = TempDir::new().unwrap();
    let report = out_dir.path().join("report.json");
    let o = scan(
        rules.path(),
        &[
            path_of(&dir),
            "--format",
            "json",
            "--output",
            report.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(stdout(&o), "", "the report goes to the file, not stdout");
    let all: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(all[0]["rule_id"], "testprov.ksq-key");
}

#[test]
fn stdin_is_scanned_with_dash() {
    let rules = rules_dir();
    let o = keysentry()
        .args(["scan", "-", "--format", "json", "--rules"])
        .arg(rules.path())
        .write_stdin(format!("first line\nsecond {KEY}\n"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let found = json_findings(&o);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["source"], "stdin");
    assert_eq!(found[0]["path"], "-");
    assert_eq!(found[0]["line"], 2);
    assert_eq!(found[0]["column"], 8);
}

#[test]
fn stdin_larger_than_one_read_piece_keeps_line_numbers() {
    let rules = rules_dir();
    // Past the 8 MiB piece the stdin source reads at a time.
    let filler = "0123 filler text of a log line that has no key in it\n".repeat(200_000);
    let lines = filler.lines().count();
    let o = keysentry()
        .args(["scan", "-", "--format", "json", "--rules"])
        .arg(rules.path())
        .write_stdin(format!("{filler}{KEY}\n"))
        .output()
        .unwrap();
    let found = json_findings(&o);
    assert_eq!(found.len(), 1, "{}", stderr(&o));
    assert_eq!(found[0]["line"], lines as u64 + 1);
    assert_eq!(found[0]["offset"], filler.len() as u64);
}

#[test]
fn baseline_suppresses_known_fingerprints_only() {
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    write(dir.path(), "a.txt", &format!("{KEY}\n"));
    let out_dir = TempDir::new().unwrap();
    let baseline = out_dir.path().join("baseline.json");
    let o = scan(
        rules.path(),
        &[
            path_of(&dir),
            "--format",
            "json",
            "--output",
            baseline.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(1));

    let o = scan(
        rules.path(),
        &[path_of(&dir), "--baseline", baseline.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));

    // The known key moved to another file is still known; a new key is not.
    write(dir.path(), "b.txt", &format!("{KEY}\n{KEY2}\n"));
    let o = scan(
        rules.path(),
        &[
            path_of(&dir),
            "--format",
            "json",
            "--baseline",
            baseline.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(1));
    let found = json_findings(&o);
    assert_eq!(found.len(), 1, "{}", stdout(&o));
    assert_eq!(
        found[0]["fingerprint"],
        keysentry::scan::Fingerprint::of(KEY2.as_bytes()).as_str()
    );
}

#[test]
fn jsonl_report_works_as_a_baseline_too() {
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    write(dir.path(), "a.txt", &format!("{KEY}\n{KEY2}\n"));
    let o = scan(rules.path(), &[path_of(&dir), "--format", "jsonl"]);
    let out_dir = TempDir::new().unwrap();
    let baseline = out_dir.path().join("baseline.jsonl");
    std::fs::write(&baseline, &o.stdout).unwrap();
    let o = scan(
        rules.path(),
        &[path_of(&dir), "--baseline", baseline.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

#[test]
fn inline_allow_marker_silences_its_line_only() {
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    write(
        dir.path(),
        "fixtures.py",
        &format!("FIXTURE = \"{KEY}\"  # keysentry:allow\nREAL = \"{KEY2}\"\n"),
    );
    let o = scan(rules.path(), &[path_of(&dir), "--format", "json"]);
    let found = json_findings(&o);
    assert_eq!(found.len(), 1, "{}", stdout(&o));
    assert_eq!(found[0]["line"], 2);
}

#[test]
fn config_allowlist_skips_path_globs_and_secret_regexes() {
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    write(dir.path(), "tests/fixtures/keys.txt", &format!("{KEY2}\n"));
    write(dir.path(), "src/a.txt", &format!("{KEY}\n"));
    write(dir.path(), "src/b.txt", &format!("{KEY2}\n"));
    let cfg_dir = TempDir::new().unwrap();
    let cfg = cfg_dir.path().join("keysentry.yaml");
    std::fs::write(
        &cfg,
        "scan:\n  allowlist:\n    paths: ['tests/fixtures/**']\n    secrets: ['^ksq_3f9c']\n",
    )
    .unwrap();
    let o = scan(
        rules.path(),
        &[
            path_of(&dir),
            "--format",
            "json",
            "--config",
            cfg.to_str().unwrap(),
        ],
    );
    let found = json_findings(&o);
    let paths: Vec<&str> = found.iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["src/b.txt"], "{}", stdout(&o));
}

#[test]
fn config_rules_dirs_are_loaded() {
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    write(dir.path(), "a.txt", &format!("{KEY}\n"));
    let cfg_dir = TempDir::new().unwrap();
    let cfg = cfg_dir.path().join("keysentry.yaml");
    std::fs::write(
        &cfg,
        format!("scan:\n  rules: ['{}']\n", rules.path().display()),
    )
    .unwrap();
    let o = keysentry()
        .args(["scan", path_of(&dir), "--format", "json", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(json_findings(&o).len(), 1, "{}", stderr(&o));
}

#[test]
fn gitignored_files_are_scanned_and_dot_git_is_not() {
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    let git = std::process::Command::new("git")
        .args(["init", "-q"])
        .current_dir(dir.path())
        .status()
        .expect("git is installed");
    assert!(git.success());
    write(dir.path(), ".gitignore", ".env\nbuild/\n");
    write(dir.path(), ".env", &format!("CREDENTIAL={KEY}\n"));
    write(dir.path(), "build/out.txt", &format!("{KEY2}\n"));
    write(dir.path(), ".git/leftover.txt", &format!("{KEY}\n"));
    write(dir.path(), "sub/.git/config", &format!("{KEY}\n"));
    let o = scan(rules.path(), &[path_of(&dir), "--format", "json"]);
    let mut paths: Vec<String> = json_findings(&o)
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect();
    paths.sort();
    assert_eq!(paths, [".env", "build/out.txt"], "{}", stdout(&o));
}

#[test]
fn binary_and_oversized_files_are_skipped_and_counted() {
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    let mut binary = b"\x7fELF\x00\x01\x02".to_vec();
    binary.extend_from_slice(KEY.as_bytes());
    std::fs::write(dir.path().join("tool.bin"), binary).unwrap();
    let big = format!("{KEY}\n{}", "padding line\n".repeat(1000));
    write(dir.path(), "big.log", &big);
    write(dir.path(), "small.txt", &format!("{KEY2}\n"));
    let o = scan(
        rules.path(),
        &[path_of(&dir), "--format", "json", "--max-file-size", "4096"],
    );
    let found = json_findings(&o);
    assert_eq!(found.len(), 1, "{}", stdout(&o));
    assert_eq!(found[0]["path"], "small.txt");
    let err = stderr(&o);
    assert!(err.contains("scanned 1 file,"), "{err}");
    assert!(err.contains("; skipped 1 binary"), "{err}");
    assert!(
        err.contains("INCOMPLETE: 1 file not scanned (1 too large)"),
        "{err}"
    );
}

#[test]
fn max_file_size_comes_from_config_too() {
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    write(
        dir.path(),
        "big.log",
        &format!("{KEY}\n{}", "x\n".repeat(5000)),
    );
    let cfg_dir = TempDir::new().unwrap();
    let cfg = cfg_dir.path().join("keysentry.yaml");
    std::fs::write(&cfg, "scan:\n  max_file_size: 1000\n").unwrap();
    let o = scan(
        rules.path(),
        &[path_of(&dir), "--config", cfg.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stderr(&o).contains("1 too large"), "{}", stderr(&o));
}

#[test]
fn findings_are_deduplicated_per_rule_key_and_location() {
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    // Many keyword hits around one key: still one finding. The same key on
    // another line, or in another file, is another finding.
    write(
        dir.path(),
        "a.txt",
        &format!("ksq_ ksq_x {KEY} ksq_ ksq_\n{KEY}\n"),
    );
    write(dir.path(), "b.txt", &format!("ksq_ {KEY} ksq_\n"));
    let o = scan(rules.path(), &[path_of(&dir), "--format", "json"]);
    let found: Vec<(String, u64)> = json_findings(&o)
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["line"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            ("a.txt".to_string(), 1),
            ("a.txt".to_string(), 2),
            ("b.txt".to_string(), 1)
        ]
    );
}

#[test]
fn two_rules_matching_the_same_key_report_it_once_each() {
    let rules = rules_dir();
    write(
        rules.path(),
        "other.yaml",
        r#"
rules:
  - id: otherprov.key
    name: Other provider key
    provider: otherprov
    keywords: ["ksq_3"]
    pattern: '(?P<secret>ksq_3[0-9a-f]{31})'
    examples: ['ksq_3f9c2a7e81d64b05c9e1f7a2d8b34c6e']
    negative_examples: ['ksq_9d41be07c3a85f26e1d0c47b93a8f512']
"#,
    );
    let dir = TempDir::new().unwrap();
    write(dir.path(), "a.txt", &format!("{KEY}\n"));
    let o = scan(rules.path(), &[path_of(&dir), "--format", "json"]);
    let all: Value = serde_json::from_slice(&o.stdout).unwrap();
    let ids: BTreeSet<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["otherprov.key", "testprov.ksq-key"].into());
    assert!(
        stderr(&o).contains("2 findings, 1 distinct key (otherprov: 1, testprov: 1)"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn keys_inside_a_long_minified_line_are_found() {
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    // A single 200 KB line: the engine must not need whole lines around a hit.
    let filler = "var a=1;".repeat(25_000);
    write(
        dir.path(),
        "app.min.js",
        &format!("{filler}k=\"{KEY}\";{filler}\n"),
    );
    let o = scan(rules.path(), &[path_of(&dir), "--format", "json"]);
    let found = json_findings(&o);
    assert_eq!(found.len(), 1, "{}", stderr(&o));
    assert_eq!(found[0]["column"], filler.len() as u64 + 4);
}

#[test]
fn summary_reports_bytes_and_time() {
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    write(dir.path(), "a.txt", &"some text\n".repeat(200_000));
    let o = scan(rules.path(), &[path_of(&dir)]);
    let err = stderr(&o);
    assert!(err.contains("scanned 1 file, 1.9 MiB in "), "{err}");
}

#[test]
fn default_path_is_the_current_directory() {
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    write(dir.path(), "nested/a.txt", &format!("{KEY}\n"));
    let o = keysentry()
        .current_dir(dir.path())
        .args(["scan", "--format", "json", "--rules"])
        .arg(rules.path())
        .output()
        .unwrap();
    let found = json_findings(&o);
    assert_eq!(found.len(), 1, "{}", stderr(&o));
    assert_eq!(found[0]["path"], "nested/a.txt");
}

/// Runs every built-in rule's examples and negative examples. The built-in
/// set must cover the providers the issue lists: at least 25 rules, each with
/// both kinds of examples.
#[test]
fn builtin_rules_pass_their_own_examples() {
    let set = keysentry::rules::RuleSet::builtin().expect("built-in rules load");
    assert!(set.len() >= 25, "only {} built-in rules", set.len());
    for rule in set.rules() {
        assert!(
            !rule.spec.examples.is_empty(),
            "{} has no examples",
            rule.id()
        );
        assert!(
            !rule.spec.negative_examples.is_empty(),
            "{} has no negative examples",
            rule.id()
        );
    }
    let o = keysentry().args(["rules", "check"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).starts_with(&format!("ok: {} rules", set.len())));
    let o = keysentry().args(["rules", "list"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), set.len(), "{}", stdout(&o));
}

#[test]
fn rules_list_includes_extra_rule_dirs() {
    let rules = rules_dir();
    let o = keysentry()
        .args(["rules", "list", "--rules"])
        .arg(rules.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let line = stdout(&o)
        .lines()
        .find(|l| l.starts_with("testprov.ksq-key"))
        .map(str::to_string);
    assert!(
        line.as_deref().is_some_and(|l| l.contains("testprov")),
        "{}",
        stdout(&o)
    );
}

#[test]
fn rules_check_dir_runs_examples_and_fails_on_a_bad_one() {
    let rules = rules_dir();
    let o = keysentry()
        .args(["rules", "check"])
        .arg(rules.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "ok: 1 rules, 2 examples");

    write(
        rules.path(),
        "testprov.yaml",
        &RULES.replace(
            "negative_examples: ['credential = ksq_00000000000000000000000000000000']",
            "negative_examples: ['credential = ksq_1a2b3c4d5e6f708192a3b4c5d6e7f809']",
        ),
    );
    let o = keysentry()
        .args(["rules", "check"])
        .arg(rules.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("testprov.yaml"), "{err}");
    assert!(
        err.contains("rule `testprov.ksq-key` negative_example #1"),
        "{err}"
    );
}

/// A multi-line key cut by the end of a streamed piece (8 MiB) is found
/// once, at its line and column, whether the large file is named (over
/// `--max-file-size`, so it is streamed) or piped to stdin; the pieces are
/// scanned on every core.
#[test]
fn a_key_straddling_a_streamed_piece_is_found_once_in_a_file_and_on_stdin() {
    const BLOCK_RULE: &str = r#"
rules:
  - id: testprov.ksq-block
    name: Test provider block key
    provider: testprov
    keywords: ["BEGIN KSQ BLOCK"]
    pattern: '(?P<secret>BEGIN KSQ BLOCK\n[0-9a-f\n]{64,4000}?\nEND KSQ BLOCK)'
    window: 8192
"#;
    let rules = TempDir::new().unwrap();
    write(rules.path(), "block.yaml", BLOCK_RULE);
    let lines: Vec<String> = (0..40u32)
        .map(|i| format!("{:08x}{:08x}", i.wrapping_mul(2654435761), i ^ 0x5bd1e995))
        .collect();
    let block = format!("BEGIN KSQ BLOCK\n{}\nEND KSQ BLOCK\n", lines.join("\n"));
    let filler = format!("{}\n", "log line, nothing to see here ".repeat(2));
    let piece = 8usize << 20;
    // The block starts 300 bytes before the first piece's end.
    let before = (piece - 300) / filler.len();
    let mut text = filler.repeat(before);
    let line = before as u64 + 1;
    text.push_str("    ");
    text.push_str(&block);
    text.push_str(&filler.repeat(40_000));
    let dir = TempDir::new().unwrap();
    write(dir.path(), "big.log", &text);
    let file = dir.path().join("big.log");

    let named = keysentry()
        .args([
            "scan",
            "--format",
            "json",
            "--max-file-size",
            "1048576",
            "--rules",
        ])
        .arg(rules.path())
        .arg(&file)
        .output()
        .unwrap();
    let piped = keysentry()
        .args(["scan", "-", "--format", "json", "--rules"])
        .arg(rules.path())
        .pipe_stdin(&file)
        .unwrap()
        .output()
        .unwrap();

    for (what, out) in [("named file", named), ("stdin", piped)] {
        assert_eq!(
            out.status.code(),
            Some(1),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let found: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        let at: Vec<(u64, u64)> = found
            .iter()
            .map(|f| (f["line"].as_u64().unwrap(), f["column"].as_u64().unwrap()))
            .collect();
        assert_eq!(at, vec![(line, 5)], "{what}: found once, at its place");
    }
}
