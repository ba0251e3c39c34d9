//! What every command's output looks like from a shell: a reader that goes
//! away early (`| head -1`), colour (`--color`, `NO_COLOR`), errors said
//! once, aligned `rules list` columns.

use crate::scan_cli::{rules_dir, stderr, stdout, KEY, KEY2};
use crate::support::{keysentry, write};
use std::process::{Output, Stdio};
use tempfile::TempDir;

/// Runs `keysentry ARGS` with stdout a pipe whose reading end is closed
/// right after the start, long before the command has loaded its rules: its
/// first write fails with EPIPE, as after `| head` exits.
fn with_closed_stdout(args: &[&str]) -> Output {
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("keysentry"))
        .args(args)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run keysentry");
    drop(child.stdout.take());
    child.wait_with_output().expect("wait for keysentry")
}

fn assert_quiet(o: &Output, what: &str) {
    let err = stderr(o);
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe") && !err.contains("error"),
        "{what}: {err}"
    );
}

/// A tree with many findings, so the report is far larger than a pipe's
/// buffer.
fn many_findings() -> TempDir {
    let dir = TempDir::new().unwrap();
    for i in 0..300 {
        write(
            dir.path(),
            &format!("f{i}.env"),
            &format!("A={KEY}\nB={KEY2}\n"),
        );
    }
    dir
}

/// Regression: `keysentry scan . | head -1` ended with "error: cannot write
/// the report to stdout: Broken pipe" and status 2, and `rules list | head`
/// panicked. Now the scan keeps its status (1: findings) and says nothing.
#[test]
fn a_closed_stdout_ends_every_command_quietly_with_its_status() {
    let rules = rules_dir();
    let dir = many_findings();
    let (d, r) = (dir.path().to_str().unwrap(), rules.path().to_str().unwrap());
    for format in ["text", "json", "jsonl", "sarif"] {
        let o = with_closed_stdout(&["scan", d, "--rules", r, "--format", format]);
        assert_eq!(o.status.code(), Some(1), "scan {format}: {}", stderr(&o));
        assert_quiet(&o, format);
        assert!(stderr(&o).contains("600 findings"), "{}", stderr(&o));
    }
    let clean = TempDir::new().unwrap();
    write(clean.path(), "a.txt", "nothing\n");
    let o = with_closed_stdout(&["scan", clean.path().to_str().unwrap(), "--rules", r]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));

    for args in [
        &["rules", "list"][..],
        &["rules", "check"],
        &["--help"],
        &["scan", "--help"],
    ] {
        let o = with_closed_stdout(args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert_quiet(&o, &format!("{args:?}"));
    }

    // Commands that still print with `println!` end as a tool stopped by
    // SIGPIPE does (141), without a panic message.
    let cfg_dir = TempDir::new().unwrap();
    let cfg = cfg_dir.path().join("keysentry.yaml");
    std::fs::write(&cfg, format!("state_dir: {}\n", cfg_dir.path().display())).unwrap();
    let cfg = cfg.to_str().unwrap();
    // `incidents` reads an existing store (it never creates one): make it
    // the way a user does.
    let leak = TempDir::new().unwrap();
    write(
        leak.path(),
        "a.env",
        &format!("K={}\n", crate::scan_cli::KEY),
    );
    let made = crate::support::keysentry()
        .args([
            "scan",
            leak.path().to_str().unwrap(),
            "--rules",
            r,
            "--remediate",
            "--config",
            cfg,
        ])
        .output()
        .unwrap();
    assert!(
        cfg_dir.path().join("keysentry.db").exists(),
        "{}",
        stderr(&made)
    );
    for args in [
        &["incidents", "--config", cfg, "list", "--json"][..],
        &["config", "check", cfg],
    ] {
        let o = with_closed_stdout(args);
        assert!(
            matches!(o.status.code(), Some(0) | Some(141)),
            "{args:?}: {:?} {}",
            o.status,
            stderr(&o)
        );
        assert_quiet(&o, &format!("{args:?}"));
    }
}

/// The same through a shell pipeline into `head -1`, as a user types it.
#[test]
fn scan_into_head_keeps_the_scan_status() {
    let rules = rules_dir();
    let dir = many_findings();
    let o = std::process::Command::new("bash")
        .args([
            "-c",
            r#"set -o pipefail; "$0" scan "$1" --rules "$2" | head -1"#,
        ])
        .arg(assert_cmd::cargo::cargo_bin("keysentry"))
        .arg(dir.path())
        .arg(rules.path())
        .output()
        .expect("bash runs");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 1);
    assert_quiet(&o, "scan | head -1");
}

fn text_scan(extra_env: &[(&str, &str)], args: &[&str]) -> Output {
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    write(dir.path(), "a.env", &format!("{KEY}\n"));
    let mut cmd = keysentry();
    cmd.env_remove("NO_COLOR");
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.args(args)
        .arg("scan")
        .arg(dir.path())
        .arg("--rules")
        .arg(rules.path())
        .output()
        .unwrap()
}

#[test]
fn color_flag_forces_or_forbids_colour() {
    let o = text_scan(&[], &["--color", "always"]);
    assert!(stdout(&o).contains("\x1b[31m"), "{}", stdout(&o));
    // An explicit flag wins over the environment (no-color.org).
    let o = text_scan(&[("NO_COLOR", "1")], &["--color", "always"]);
    assert!(stdout(&o).contains("\x1b["), "{}", stdout(&o));
    let o = text_scan(&[], &["--color", "never"]);
    assert!(!stdout(&o).contains('\x1b'), "{}", stdout(&o));
    // The flag is accepted after the subcommand too.
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    write(dir.path(), "a.env", &format!("{KEY}\n"));
    let o = keysentry()
        .arg("scan")
        .arg(dir.path())
        .args(["--color", "always", "--rules"])
        .arg(rules.path())
        .output()
        .unwrap();
    assert!(stdout(&o).contains("\x1b[31m"), "{}", stderr(&o));
    let o = text_scan(&[], &["--color", "sometimes"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("always"), "{}", stderr(&o));
}

/// On a terminal (`script` gives the scan a pty), colour is on unless
/// NO_COLOR is set to a non-empty value.
#[test]
fn no_color_turns_colour_off_on_a_terminal() {
    let rules = rules_dir();
    let dir = TempDir::new().unwrap();
    write(dir.path(), "a.env", &format!("{KEY}\n"));
    let run = |no_color: Option<&str>| -> String {
        let cmd = format!(
            "{} scan {} --rules {}",
            assert_cmd::cargo::cargo_bin("keysentry").display(),
            dir.path().display(),
            rules.path().display()
        );
        let mut c = std::process::Command::new("script");
        c.args(["-qec", &cmd, "/dev/null"]).env_remove("NO_COLOR");
        if let Some(v) = no_color {
            c.env("NO_COLOR", v);
        }
        let out = c.output().expect("script (util-linux) runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let coloured = run(None);
    assert!(coloured.contains("\x1b[31m"), "{coloured:?}");
    assert!(coloured.contains("testprov.ksq-key"), "{coloured:?}");
    let plain = run(Some("1"));
    assert!(plain.contains("testprov.ksq-key"), "{plain:?}");
    assert!(!plain.contains("\x1b[31m"), "{plain:?}");
    let empty = run(Some(""));
    assert!(
        empty.contains("\x1b[31m"),
        "an empty NO_COLOR is unset: {empty:?}"
    );
}

/// Regression: core errors carry their cause in their message and as their
/// source, and the CLI printed both: `… Address already in use (os error
/// 98); pick a free port or address: Address already in use (os error 98)`.
#[test]
fn an_error_says_its_cause_once() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = TempDir::new().unwrap();
    let cfg = dir.path().join("keysentry.yaml");
    std::fs::write(
        &cfg,
        format!(
            "state_dir: {}\nhttp:\n  listen: 127.0.0.1:{port}\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let o = keysentry()
        .args(["daemon", "--config"])
        .arg(&cfg)
        .timeout(std::time::Duration::from_secs(30))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let err = stderr(&o);
    let line = err
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line: {err}"));
    assert_eq!(line.matches("Address already in use").count(), 1, "{line}");
    assert!(line.contains("pick a free port"), "{line}");

    let o = keysentry()
        .args(["scan", ".", "--baseline", "/nonexistent/base.json"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert!(
        err.contains("cannot read baseline /nonexistent/base.json"),
        "{err}"
    );
}

/// Regression: `rules list` padded ids to 32 characters, so a longer id
/// pushed its row's columns out of line.
#[test]
fn rules_list_columns_line_up() {
    let rules = rules_dir();
    write(
        rules.path(),
        "long.yaml",
        r#"
rules:
  - id: longprovidername.a-rather-long-rule-identifier-indeed
    name: Long one
    provider: longprovidername
    keywords: ["lpn_"]
    pattern: '\b(?P<secret>lpn_[0-9a-f]{32})\b'
    examples: ['lpn_3f9c2a7e81d64b05c9e1f7a2d8b34c6e']
    negative_examples: ['lpn_xyz']
"#,
    );
    let o = keysentry()
        .args(["rules", "list", "--rules"])
        .arg(rules.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    // Where each column starts: after the run of spaces that follows a cell.
    let starts = |line: &str| -> Vec<usize> {
        let b = line.as_bytes();
        (1..b.len())
            .filter(|&i| b[i] != b' ' && b[i - 1] == b' ' && i >= 2 && b[i - 2] == b' ')
            .collect()
    };
    let first = starts(out.lines().next().unwrap());
    assert_eq!(first.len(), 4, "{out}");
    for line in out.lines() {
        assert_eq!(starts(line)[..4], first[..], "{out}");
    }
    assert!(out.contains("longprovidername.a-rather-long-rule-identifier-indeed  longprovidername"));
}
