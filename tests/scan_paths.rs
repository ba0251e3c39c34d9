//! `keysentry scan PATH...` as pre-commit and CI call it: several roots,
//! named files never skipped for their size, and a summary that says when
//! the scan could not read everything.

use crate::scan_cli::{rules_dir, stderr, stdout, KEY, KEY2};
use crate::support::write;
use serde_json::Value;
use std::process::Output;
use tempfile::TempDir;

use crate::support::scan_json_in as scan_in;

/// (path, line) of every finding, in report order.
fn places(o: &Output) -> Vec<(String, u64)> {
    let all: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", stdout(o), stderr(o)));
    all.as_array()
        .expect("array")
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap_or("").to_string(),
                f["line"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

#[test]
fn several_paths_are_scanned_each_relative_to_its_root() {
    let rules = rules_dir();
    let top = TempDir::new().unwrap();
    write(top.path(), "app/src/a.env", &format!("K={KEY}\n"));
    write(top.path(), "ops/b.env", &format!("\nK={KEY2}\n"));
    write(top.path(), "hooks/c.txt", &format!("{KEY}\n"));
    write(top.path(), "unnamed/d.txt", &format!("{KEY2}\n"));
    let o = scan_in(top.path(), &rules, &["app", "ops", "hooks/c.txt"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(
        places(&o),
        [
            ("src/a.env".to_string(), 1),
            ("b.env".to_string(), 2),
            ("hooks/c.txt".to_string(), 1)
        ]
    );
    assert!(stderr(&o).contains("scanned 3 files,"), "{}", stderr(&o));
}

/// pre-commit passes the staged file names; two of them may hold the same
/// key at the same line, and both are reported.
#[test]
fn named_files_with_the_same_key_are_each_reported() {
    let rules = rules_dir();
    let top = TempDir::new().unwrap();
    write(top.path(), "one/x.env", &format!("{KEY}\n"));
    write(top.path(), "two/x.env", &format!("{KEY}\n"));
    let o = scan_in(top.path(), &rules, &["one", "two"]);
    assert_eq!(places(&o).len(), 2, "{}", stdout(&o));
    assert!(
        stderr(&o).contains("2 findings, 1 distinct key (testprov: 2)"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_root_named_twice_is_scanned_once() {
    let rules = rules_dir();
    let top = TempDir::new().unwrap();
    write(top.path(), "app/a.env", &format!("{KEY}\n"));
    let o = scan_in(top.path(), &rules, &["app", "./app", "app/"]);
    assert_eq!(places(&o), [("a.env".to_string(), 1)]);
}

#[test]
fn a_missing_path_among_several_is_an_error_that_names_it() {
    let rules = rules_dir();
    let top = TempDir::new().unwrap();
    write(top.path(), "a.env", &format!("{KEY}\n"));
    let o = scan_in(top.path(), &rules, &["a.env", "no-such.env"]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stdout(&o), "", "nothing half-reported");
    let err = stderr(&o);
    assert!(
        err.contains("no-such.env: no such file or directory"),
        "{err}"
    );
}

#[test]
fn stdin_dash_must_be_alone() {
    let rules = rules_dir();
    let top = TempDir::new().unwrap();
    let o = scan_in(top.path(), &rules, &["-", "."]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("`-` (stdin) cannot be combined with other paths"),
        "{}",
        stderr(&o)
    );
}

/// Regression: a file named on the command line over --max-file-size was
/// skipped like a file met in a walk. It is scanned (streamed in pieces),
/// with its real line numbers; the walk still skips it and says so.
#[test]
fn a_named_file_is_never_skipped_for_its_size() {
    let rules = rules_dir();
    let top = TempDir::new().unwrap();
    let filler = "a log line without any key in it at all\n".repeat(300);
    write(top.path(), "logs/big.log", &format!("{filler}k={KEY}\n"));
    let o = scan_in(
        top.path(),
        &rules,
        &["logs/big.log", "--max-file-size", "1000"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(places(&o), [("logs/big.log".to_string(), 301)]);
    assert!(!stderr(&o).contains("INCOMPLETE"), "{}", stderr(&o));

    let o = scan_in(top.path(), &rules, &["logs", "--max-file-size", "1000"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let err = stderr(&o);
    assert!(
        err.contains("warning: big.log not scanned: 11.8 KiB is over the 1000 B limit"),
        "{err}"
    );
    assert!(
        err.contains("INCOMPLETE: 1 file not scanned (1 too large) — see warnings above"),
        "{err}"
    );
}

/// The summary's last line says what was left out, counted by cause, after
/// the warnings that name each file. Runs in a user namespace so that the
/// unreadable file stays unreadable when the tests run as root.
#[test]
fn an_incomplete_scan_says_so_and_counts_what_was_left_out() {
    use std::os::unix::fs::PermissionsExt;
    let rules = rules_dir();
    let top = TempDir::new().unwrap();
    let big = format!("{KEY}\n{}", "padding\n".repeat(600));
    write(top.path(), "big1.txt", &big);
    write(top.path(), "big2.txt", &big);
    write(top.path(), "locked.env", &format!("{KEY2}\n"));
    write(top.path(), "ok.env", "nothing\n");
    let locked = top.path().join("locked.env");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    let o = std::process::Command::new("unshare")
        .arg("--user")
        .arg(assert_cmd::cargo::cargo_bin("keysentry"))
        .arg("scan")
        .arg(top.path())
        .args(["--max-file-size", "1024", "--rules"])
        .arg(rules.path())
        .output()
        .expect("unshare (util-linux) runs");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(
        lines.last().copied(),
        Some("INCOMPLETE: 3 files not scanned (2 too large, 1 unreadable) — see warnings above"),
        "{err}"
    );
    for name in ["big1.txt", "big2.txt", "locked.env"] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("warning: ") && l.contains(name)),
            "{name}: {err}"
        );
    }
    assert!(!err.contains(KEY) && !err.contains(KEY2), "{err}");
}

/// Regression: `keysentry scan <(cmd)` (a pipe named on the command line)
/// scanned nothing and exited 0: the walk skips special files.
#[test]
fn a_named_pipe_is_read() {
    let rules = rules_dir();
    let o = std::process::Command::new("bash")
        .args([
            "-c",
            r#""$0" scan <(printf 'first\nK=%s\n' "$1") --format jsonl --rules "$2""#,
        ])
        .arg(assert_cmd::cargo::cargo_bin("keysentry"))
        .arg(KEY)
        .arg(rules.path())
        .output()
        .expect("bash runs");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let f: Value = serde_json::from_str(stdout(&o).lines().next().unwrap_or("")).unwrap();
    assert!(
        f["path"]
            .as_str()
            .is_some_and(|p| p.starts_with("/dev/fd/")),
        "{f}"
    );
    assert_eq!(f["line"], 2);
}

/// A file name with terminal control characters cannot rewrite the screen
/// through a warning.
#[test]
fn warnings_escape_control_characters_in_names() {
    let rules = rules_dir();
    let top = TempDir::new().unwrap();
    write(top.path(), "evil\x1b[2J.log", &"x\n".repeat(2000));
    let o = scan_in(top.path(), &rules, &[".", "--max-file-size", "100"]);
    let err = stderr(&o);
    assert!(!err.contains('\x1b'), "{err:?}");
    assert!(
        err.contains("warning: evil\\u{1b}[2J.log not scanned"),
        "{err}"
    );
}
