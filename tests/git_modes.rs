//! `scan --staged` (pre-commit) and `scan --git --since REV` / `--range
//! A..B` (CI on a push or pull request), as a user runs them: the real
//! binary on a repository built with real git.

use crate::git_history::{Repo, Scan, GITHUB, TATUM, TATUM_2, TATUM_3};
use crate::support::fingerprint;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;

const TATUM_4: &str = "t-99aa88bb77cc66dd55ee44ff-0123456789abcdef01234567";

/// (path, line, secret's rule) of each finding, sorted.
fn places(scan: &Scan) -> Vec<(String, u64)> {
    let mut p: Vec<(String, u64)> = scan
        .findings
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap_or("").to_string(),
                f["line"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    p.sort();
    p
}

fn has_key(f: &Value, key: &str) -> bool {
    f["fingerprint"].as_str() == Some(fingerprint(key).as_str())
}

#[test]
fn staged_scan_reports_only_what_the_commit_adds_at_staged_line_numbers() {
    let mut repo = Repo::new();
    repo.write("config.env", &format!("# config\nOLD={TATUM}\n"));
    repo.commit("alice@example.com", "config");

    // Staged: a new key in an edited file, and a new file in a directory.
    repo.write(
        "config.env",
        &format!("# config\nOLD={TATUM}\n\nNEW={TATUM_2}\n"),
    );
    repo.write(
        "deploy/run.sh",
        &format!("#!/bin/sh\n\nexport T={TATUM_3}\n"),
    );
    repo.git(&["add", "config.env", "deploy/run.sh"]);
    // Not staged: a changed work tree after `git add`, and an untracked file.
    repo.write(
        "deploy/run.sh",
        &format!("#!/bin/sh\n# moved down\n\n\n\nexport T={TATUM_3}\n"),
    );
    repo.write("untracked.env", &format!("K={TATUM_4}\n"));

    let scan = repo.run(&["--staged"]);
    assert_eq!(scan.code, Some(1), "{}", scan.stderr);
    assert_eq!(
        places(&scan),
        vec![("config.env".into(), 4), ("deploy/run.sh".into(), 3)],
        "{}",
        scan.stdout
    );
    assert!(scan.stderr.contains("scanned 2 files"), "{}", scan.stderr);
    for f in &scan.findings {
        assert_eq!(f["source"], "file");
        assert!(f["commit"].is_null());
    }
    assert!(scan.findings.iter().any(|f| has_key(f, TATUM_2)));
    assert!(
        !scan.findings.iter().any(|f| has_key(f, TATUM)),
        "already committed"
    );
    assert!(
        !scan.findings.iter().any(|f| has_key(f, TATUM_4)),
        "not staged"
    );
    for key in [TATUM, TATUM_2, TATUM_3] {
        assert!(!scan.stdout.contains(key) && !scan.stderr.contains(key));
    }

    // The same from a subdirectory: paths stay relative to the repository.
    let out = crate::support::keysentry()
        .current_dir(repo.path().join("deploy"))
        .args(["scan", "--staged", "--format", "json", "--rules"])
        .arg(repo.rules_dir())
        .output()
        .expect("keysentry runs");
    let sub = Scan::new(out);
    assert_eq!(places(&sub), places(&scan), "{}", sub.stderr);

    // Once committed, nothing is staged: exit 0.
    repo.commit("alice@example.com", "deploy");
    let clean = repo.run(&["--staged"]);
    assert_eq!(clean.code, Some(0), "{}", clean.stderr);
    assert!(clean.findings.is_empty());
}

#[test]
fn staged_scan_works_before_the_first_commit_and_ignores_deletions() {
    let mut repo = Repo::new();
    repo.write("a.env", &format!("A={GITHUB}\n"));
    repo.git(&["add", "a.env"]);
    let first = repo.run(&["--staged"]);
    assert_eq!(first.code, Some(1), "{}", first.stderr);
    assert_eq!(places(&first), vec![("a.env".into(), 1)]);

    repo.commit("alice@example.com", "a");
    repo.git(&["rm", "-q", "a.env"]);
    let removed = repo.run(&["--staged"]);
    assert_eq!(removed.code, Some(0), "{}", removed.stderr);
}

#[test]
fn staged_scan_in_a_conflicted_merge_scans_what_is_staged() {
    let mut repo = Repo::new();
    repo.write("f.txt", "base\n");
    repo.commit("alice@example.com", "base");
    repo.git(&["checkout", "-q", "-b", "side"]);
    repo.write("f.txt", "side\n");
    repo.commit("bob@example.com", "side");
    repo.git(&["checkout", "-q", "main"]);
    repo.write("f.txt", "main\n");
    repo.commit("alice@example.com", "main");
    let merge = repo.run_git(&["merge", "-q", "side"], "alice@example.com", 1_700_000_000);
    assert!(!merge.status.success(), "the merge should conflict");
    repo.write("resolved.env", &format!("K={TATUM}\n"));
    repo.git(&["add", "resolved.env"]);
    let scan = repo.run(&["--staged"]);
    assert_eq!(scan.code, Some(1), "{}", scan.stderr);
    assert_eq!(places(&scan), vec![("resolved.env".into(), 1)]);
}

#[test]
fn staged_scan_runs_nothing_a_hostile_repository_configures() {
    let mut repo = Repo::new();
    let marker = repo.path().join("MARKER");
    let script = repo.path().join("evil.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\ntouch '{}'\n", marker.display()),
    )
    .expect("write");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let evil = script.display().to_string();
    repo.write("a.env", "A=1\n");
    repo.commit("alice@example.com", "a");
    for (key, value) in [
        ("core.fsmonitor", evil.as_str()),
        ("core.pager", evil.as_str()),
        ("diff.external", evil.as_str()),
        ("diff.env.textconv", evil.as_str()),
        ("filter.env.clean", evil.as_str()),
        ("core.hooksPath", repo.path().to_str().unwrap_or(".")),
    ] {
        repo.git(&["config", key, value]);
    }
    repo.write(".gitattributes", "*.env diff=env filter=env\n");
    repo.write("a.env", &format!("A={TATUM}\n"));
    // Staged with the hostile filter off; the scan sees the repo's config.
    repo.git(&[
        "-c",
        "filter.env.clean=cat",
        "add",
        "a.env",
        ".gitattributes",
    ]);
    std::fs::remove_file(&marker).ok();
    let scan = repo.run(&["--staged"]);
    assert_eq!(scan.code, Some(1), "{}", scan.stderr);
    assert_eq!(places(&scan), vec![("a.env".into(), 1)]);
    assert!(
        !marker.exists(),
        "a command from the repository's config ran"
    );
}

/// main: one commit with a key; feature: two more commits, each adding one.
fn branched() -> (Repo, [String; 3]) {
    let mut repo = Repo::new();
    repo.write("base.env", &format!("K={TATUM}\n"));
    let base = repo.commit("alice@example.com", "base");
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.write("one.env", &format!("# one\nK={TATUM_2}\n"));
    let one = repo.commit("bob@example.com", "one");
    repo.write("two.env", &format!("K={TATUM_3}\n"));
    let two = repo.commit("carol@example.com", "two");
    (repo, [base, one, two])
}

#[test]
fn range_scans_only_the_commits_a_pull_request_adds_attributed_to_each() {
    let (repo, [base, one, two]) = branched();
    let expect = |scan: &Scan| {
        assert_eq!(scan.code, Some(1), "{}", scan.stderr);
        let mut got: Vec<(String, String, String, u64)> = scan
            .findings
            .iter()
            .map(|f| {
                (
                    f["commit"].as_str().unwrap_or("").to_string(),
                    f["author_email"].as_str().unwrap_or("").to_string(),
                    f["path"].as_str().unwrap_or("").to_string(),
                    f["line"].as_u64().unwrap_or(0),
                )
            })
            .collect();
        got.sort_by_key(|g| g.2.clone());
        assert_eq!(
            got,
            vec![
                (one.clone(), "bob@example.com".into(), "one.env".into(), 2),
                (two.clone(), "carol@example.com".into(), "two.env".into(), 1),
            ],
            "{}",
            scan.stdout
        );
        assert!(scan.findings.iter().all(|f| f["source"] == "git"));
        assert!(!scan.stdout.contains(TATUM_2) && !scan.stderr.contains(TATUM_2));
    };
    expect(&repo.run(&[".", "--git", "--range", "main..feature"]));
    expect(&repo.run(&[".", "--git", "--range", &format!("{base}..{two}")]));
    // HEAD is feature.
    expect(&repo.run(&[".", "--git", "--since", "main"]));

    // A push that adds only the second commit.
    let push = repo.run(&[".", "--git", "--range", &format!("{one}..{two}")]);
    assert_eq!(push.code, Some(1), "{}", push.stderr);
    assert_eq!(places(&push), vec![("two.env".into(), 1)]);
    // Nothing new: the reverse range.
    let none = repo.run(&[".", "--git", "--range", "feature..main"]);
    assert_eq!(none.code, Some(0), "{}", none.stderr);
    assert!(none.findings.is_empty());
    // The whole history still has all three.
    assert_eq!(repo.run(&[".", "--git"]).findings.len(), 3);
}

#[test]
fn unknown_or_option_like_revisions_exit_2_naming_them() {
    let (repo, _) = branched();
    let dropped = repo.path().join("dropped");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec!["--range".into(), "nope..feature".into()], "\"nope\""),
        (
            vec!["--range".into(), "main..no-such-branch".into()],
            "\"no-such-branch\"",
        ),
        (vec!["--since".into(), "v9.9".into()], "\"v9.9\""),
        (
            vec![format!("--since=--output={}", dropped.display())],
            "cannot start with `-`",
        ),
        (vec!["--range=--all..HEAD".into()], "cannot start with `-`"),
        (vec!["--range".into(), "main...feature".into()], "A..B"),
        (vec!["--range".into(), "main".into()], "A..B"),
        // A tree is not a commit.
        (vec!["--since".into(), "HEAD:".into()], "\"HEAD:\""),
    ];
    for (args, named) in cases {
        let mut all = vec![".", "--git"];
        all.extend(args.iter().map(String::as_str));
        let scan = repo.run(&all);
        assert_eq!(scan.code, Some(2), "{args:?}: {}", scan.stderr);
        assert!(scan.stderr.contains(named), "{args:?}: {}", scan.stderr);
        assert!(scan.stdout.is_empty(), "{args:?}: {}", scan.stdout);
    }
    assert!(!dropped.exists(), "a revision became a git option");
    // --since and --range need --git.
    let without = repo.run(&[".", "--since", "main"]);
    assert_eq!(without.code, Some(2), "{}", without.stderr);
}
