//! `scan --git` and the incremental `source::git::scan_repo`, on repositories
//! built in a temp dir. Findings are filtered to this module's own rules
//! (`gittest.*`, passed with `--rules`), so the built-in rules can match the
//! same keys without changing what these tests count.

use crate::support::keysentry;
use keysentry::rules::RuleSet;
use keysentry::scan::{Allowlist, Finding, Scanner};
use keysentry::source::{git, ScanStats};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};
use tempfile::TempDir;

pub(crate) const TATUM: &str = "t-66a8f1c2e4b0a1d2c3e4f5a6-5f3e9b1c7d2a4e6f8b0c1d3e";
pub(crate) const TATUM_2: &str = "t-5f0c9a2b7d3e1f4a6b8c0d2e-8a1b3c5d7e9f0a2b4c6d8e0f";
pub(crate) const TATUM_3: &str = "t-0a9b8c7d6e5f4a3b2c1d0e9f-1f2e3d4c5b6a7f8e9d0c1b2a";
pub(crate) const GITHUB: &str = "ghp_R8kLm2Qx7ZpT4vWn9BcYd3Hf6Js1Ga5EuK0i";

const RULES: &str = r#"
rules:
  - id: gittest.tatum
    name: Tatum key (git history tests)
    provider: gittest
    keywords: ["t-"]
    pattern: '\b(?P<secret>t-[0-9a-f]{24}-[0-9a-f]{24})\b'
    examples: ["t-66a8f1c2e4b0a1d2c3e4f5a6-5f3e9b1c7d2a4e6f8b0c1d3e"]
    negative_examples: ["t-title"]
  - id: gittest.github
    name: GitHub token (git history tests)
    provider: gittest
    keywords: ["ghp_"]
    pattern: '\b(?P<secret>ghp_[A-Za-z0-9]{36})\b'
    examples: ["ghp_R8kLm2Qx7ZpT4vWn9BcYd3Hf6Js1Ga5EuK0i"]
    negative_examples: ["ghp_short"]
"#;

/// A repository in a temp dir, driven by the real `git` with no global or
/// system config, and commits one minute apart so history order is
/// unambiguous.
pub(crate) struct Repo {
    dir: TempDir,
    rules: TempDir,
    clock: u64,
}

impl Repo {
    pub(crate) fn new() -> Repo {
        let repo = Repo {
            dir: TempDir::new().expect("temp dir"),
            rules: TempDir::new().expect("temp dir"),
            clock: 1_600_000_000,
        };
        std::fs::write(repo.rules.path().join("gittest.yaml"), RULES).expect("write rules");
        repo.git(&["init", "-q", "-b", "main"]);
        repo
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// This module's `--rules` directory.
    pub(crate) fn rules_dir(&self) -> &Path {
        self.rules.path()
    }

    pub(crate) fn run_git(&self, args: &[&str], email: &str, date: u64) -> Output {
        let date = format!("{date} +0000");
        Command::new("git")
            .current_dir(self.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_NAME", "Test")
            .env("GIT_AUTHOR_EMAIL", email)
            .env("GIT_COMMITTER_NAME", "Test")
            .env("GIT_COMMITTER_EMAIL", email)
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_DATE", &date)
            .args(["-c", "commit.gpgsign=false", "-c", "tag.gpgsign=false"])
            .args(args)
            .output()
            .expect("git runs")
    }

    /// Runs git, panicking with its stderr on failure; returns stdout.
    pub(crate) fn git(&self, args: &[&str]) -> String {
        let out = self.run_git(args, "setup@example.com", self.clock);
        assert!(
            out.status.success(),
            "git {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub(crate) fn write(&self, rel: &str, content: &str) {
        crate::support::write(self.path(), rel, content);
    }

    /// Commits everything in the work tree as `email`; returns the sha.
    pub(crate) fn commit(&mut self, email: &str, message: &str) -> String {
        self.clock += 60;
        self.git(&["add", "-A"]);
        let out = self.run_git(
            &["commit", "-q", "--allow-empty", "-m", message],
            email,
            self.clock,
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.git(&["rev-parse", "HEAD"])
    }

    pub(crate) fn merge(&mut self, branch: &str, extra: &[&str]) {
        self.clock += 60;
        let mut args = vec!["merge", "-q", "--no-ff", "-m", "merge"];
        args.extend_from_slice(extra);
        args.push(branch);
        let out = self.run_git(&args, "merger@example.com", self.clock);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `keysentry scan --git --format json` on `path` (relative to the repo
    /// root), run from the repo root.
    pub(crate) fn scan(&self, path: &str, extra: &[&str]) -> Scan {
        let mut args = vec![path, "--git"];
        args.extend_from_slice(extra);
        self.run(&args)
    }

    /// `keysentry scan ARGS --format json` with this module's rules, run
    /// from the repo root.
    pub(crate) fn run(&self, args: &[&str]) -> Scan {
        let out = keysentry()
            .current_dir(self.path())
            .arg("scan")
            .args(args)
            .args(["--format", "json", "--rules"])
            .arg(self.rules.path())
            .output()
            .expect("keysentry runs");
        Scan::new(out)
    }

    pub(crate) fn scanner(&self) -> Scanner {
        let rules = RuleSet::from_dir(self.rules.path()).expect("test rules load");
        Scanner::new(&rules, Allowlist::new(&[], &[]).expect("empty allowlist")).expect("scanner")
    }
}

pub(crate) struct Scan {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    /// This module's findings only.
    pub(crate) findings: Vec<Value>,
}

impl Scan {
    pub(crate) fn new(out: Output) -> Scan {
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        let findings = match serde_json::from_str::<Value>(&stdout) {
            Ok(Value::Array(all)) => all
                .into_iter()
                .filter(|f| {
                    f["rule_id"]
                        .as_str()
                        .is_some_and(|r| r.starts_with("gittest."))
                })
                .collect(),
            _ => Vec::new(),
        };
        Scan {
            code: out.status.code(),
            stdout,
            stderr,
            findings,
        }
    }

    pub(crate) fn only(&self) -> &Value {
        assert_eq!(
            self.findings.len(),
            1,
            "expected one finding:\n{}\n{}",
            self.stdout,
            self.stderr
        );
        &self.findings[0]
    }
}

#[test]
fn key_deleted_later_is_found_once_at_the_commit_that_added_it() {
    let mut repo = Repo::new();
    repo.write("README.md", "hello\n");
    repo.commit("setup@example.com", "init");
    repo.write(
        "config/app.env",
        &format!("# app\nPORT=8080\nTATUM_API_KEY={TATUM}\n"),
    );
    let added = repo.commit("alice@example.com", "add config");
    // Editing another line makes a new blob that still holds the key: the
    // key was leaked once, by `added`, not again here.
    repo.write(
        "config/app.env",
        &format!("# app config\nPORT=8080\nTATUM_API_KEY={TATUM}\n"),
    );
    repo.commit("bob@example.com", "tweak");
    repo.write("config/app.env", "# app config\nPORT=8080\n");
    repo.commit("bob@example.com", "remove key");

    // The work tree is clean now; only history holds the key.
    let files = keysentry()
        .args(["scan", "--format", "json", "--rules"])
        .arg(repo.rules.path())
        .arg(repo.path().join("config"))
        .output()
        .expect("keysentry runs");
    assert!(Scan::new(files).findings.is_empty());

    let scan = repo.scan(".", &[]);
    assert_eq!(scan.code, Some(1), "{}", scan.stderr);
    let f = scan.only();
    assert_eq!(f["source"], "git");
    assert_eq!(f["rule_id"], "gittest.tatum");
    assert_eq!(f["commit"], added.as_str());
    assert_eq!(f["author_email"], "alice@example.com");
    assert_eq!(f["path"], "config/app.env");
    assert_eq!(f["line"], 3);
    assert_eq!(f["column"], 15);
    let root = repo.path().canonicalize().expect("canonical temp dir");
    assert_eq!(f["repo"], root.display().to_string().as_str());
    assert!(f.get("secret").is_none());
    assert!(!scan.stdout.contains(TATUM) && !scan.stderr.contains(TATUM));
    assert!(scan.stderr.contains("4 commits"), "{}", scan.stderr);
}

#[test]
fn repo_and_paths_are_the_same_whichever_directory_is_given() {
    let mut repo = Repo::new();
    repo.write("deploy/prod/secrets.yaml", &format!("tatum: {TATUM}\n"));
    repo.commit("alice@example.com", "add");
    let from_root = repo.scan(".", &[]);
    let from_subdir = repo.scan("deploy/prod", &[]);
    let (a, b) = (from_root.only(), from_subdir.only());
    assert_eq!(a["path"], "deploy/prod/secrets.yaml");
    assert_eq!(a["path"], b["path"]);
    assert_eq!(a["repo"], b["repo"]);
}

#[test]
fn keys_only_on_a_side_branch_or_behind_a_tag_are_found() {
    let mut repo = Repo::new();
    repo.write("README.md", "hello\n");
    repo.commit("setup@example.com", "init");
    repo.git(&["checkout", "-q", "-b", "feature"]);
    repo.write("ci.sh", &format!("export GITHUB_TOKEN={GITHUB}\n"));
    let on_branch = repo.commit("carol@example.com", "ci");
    repo.git(&["checkout", "-q", "main"]);
    repo.git(&["checkout", "-q", "--detach"]);
    repo.write("release.json", &format!("{{\"apiKey\": \"{TATUM}\"}}\n"));
    let tagged = repo.commit("dave@example.com", "release");
    repo.git(&["tag", "-a", "-m", "release", "v1.0"]);
    repo.git(&["checkout", "-q", "main"]);

    let scan = repo.scan(".", &[]);
    assert_eq!(scan.code, Some(1));
    let mut found: Vec<(&str, &str, &str)> = scan
        .findings
        .iter()
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap_or("");
            (s("rule_id"), s("commit"), s("path"))
        })
        .collect();
    found.sort();
    assert_eq!(
        found,
        vec![
            ("gittest.github", on_branch.as_str(), "ci.sh"),
            ("gittest.tatum", tagged.as_str(), "release.json"),
        ]
    );
}

#[test]
fn merged_side_branch_key_is_reported_once_for_the_side_commit() {
    let mut repo = Repo::new();
    repo.write("README.md", "hello\n");
    repo.commit("setup@example.com", "init");
    repo.git(&["checkout", "-q", "-b", "side"]);
    repo.write("src/client.py", &format!("KEY = \"{TATUM}\"\n"));
    let side = repo.commit("erin@example.com", "client");
    repo.git(&["checkout", "-q", "main"]);
    repo.write("docs/guide.md", "guide\n");
    repo.commit("setup@example.com", "docs");
    repo.merge("side", &[]);
    repo.write("docs/guide.md", "guide v2\n");
    repo.commit("setup@example.com", "after merge");

    let scan = repo.scan(".", &[]);
    let f = scan.only();
    assert_eq!(f["commit"], side.as_str());
    assert_eq!(f["author_email"], "erin@example.com");
    assert_eq!(f["path"], "src/client.py");
}

#[test]
fn key_written_in_the_merge_commit_itself_is_attributed_to_the_merge() {
    let mut repo = Repo::new();
    repo.write("app.env", "MODE=dev\n");
    repo.commit("setup@example.com", "init");
    repo.git(&["checkout", "-q", "-b", "side"]);
    repo.write("side.txt", "side\n");
    repo.commit("setup@example.com", "side");
    repo.git(&["checkout", "-q", "main"]);
    repo.merge("side", &["--no-commit"]);
    repo.write("app.env", &format!("MODE=dev\nTATUM={TATUM}\n"));
    repo.git(&["add", "-A"]);
    let merge = repo.commit("frank@example.com", "merge with a change");

    let scan = repo.scan(".", &[]);
    let f = scan.only();
    assert_eq!(f["commit"], merge.as_str());
    assert_eq!(f["author_email"], "frank@example.com");
    assert_eq!(f["line"], 2);
}

#[test]
fn the_same_blob_at_two_paths_is_scanned_once_for_the_earliest_commit() {
    let mut repo = Repo::new();
    let content = format!("token: {GITHUB}\n");
    repo.write("a/settings.yml", &content);
    let first = repo.commit("alice@example.com", "a");
    repo.write("b/settings.yml", &content);
    repo.commit("bob@example.com", "copy");

    let scan = repo.scan(".", &[]);
    let f = scan.only();
    assert_eq!(f["commit"], first.as_str());
    assert_eq!(f["path"], "a/settings.yml");
    assert!(
        scan.stderr.contains("scanned 1 blob, 2 commits, "),
        "{}",
        scan.stderr
    );
}

#[test]
fn binary_and_oversized_blobs_are_skipped_and_counted() {
    let mut repo = Repo::new();
    repo.write("blob.bin", &format!("\0\0binary {TATUM}\n"));
    repo.write("big.txt", &format!("{}\n{TATUM}\n", "x".repeat(4000)));
    repo.write("small.txt", "nothing here\n");
    repo.commit("alice@example.com", "files");

    let scan = repo.scan(".", &["--max-file-size", "1000"]);
    assert_eq!(scan.code, Some(0), "{}", scan.stdout);
    assert!(scan.findings.is_empty());
    assert!(
        scan.stderr.contains("skipped 1 binary")
            && scan
                .stderr
                .contains("INCOMPLETE: 1 blob not scanned (1 too large)"),
        "{}",
        scan.stderr
    );
}

#[test]
fn clean_and_empty_repositories_exit_0() {
    let mut repo = Repo::new();
    let empty = repo.scan(".", &[]);
    assert_eq!(empty.code, Some(0), "{}", empty.stderr);
    repo.write("main.rs", "fn main() { println!(\"t-title\"); }\n");
    repo.commit("alice@example.com", "code");
    let clean = repo.scan(".", &[]);
    assert_eq!(clean.code, Some(0), "{}", clean.stderr);
    assert!(clean.findings.is_empty());
}

#[test]
fn git_scan_of_a_plain_directory_exits_2_naming_it() {
    let dir = TempDir::new().expect("temp dir");
    let plain = dir.path().join("not-a-repo");
    std::fs::create_dir(&plain).expect("mkdir");
    let out = keysentry()
        .args(["scan", "--git"])
        .arg(&plain)
        .env("GIT_CEILING_DIRECTORIES", dir.path())
        .output()
        .expect("keysentry runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&plain.display().to_string()), "{stderr}");
    assert!(stderr.contains("is not a git repository"), "{stderr}");
}

fn secrets(findings: &[Finding]) -> Vec<String> {
    findings
        .iter()
        .map(|f| f.secret.expose().to_string())
        .collect()
}

#[test]
fn incremental_scan_sees_only_new_commits_and_survives_a_force_push() {
    let mut repo = Repo::new();
    repo.write("one.env", &format!("KEY={TATUM}\n"));
    let base = repo.commit("alice@example.com", "one");
    let scanner = repo.scanner();
    let scan = |repo: &Repo, since: &[String]| {
        let opts = git::GitOptions::default();
        git::scan_repo(repo.path(), &scanner, &opts, &ScanStats::default(), since)
            .expect("scan succeeds")
    };

    let first = scan(&repo, &[]);
    assert_eq!(secrets(&first.findings), vec![TATUM]);
    assert_eq!(first.tips, vec![base.clone()]);

    let unchanged = scan(&repo, &first.tips);
    assert!(unchanged.findings.is_empty());

    repo.write("two.env", &format!("KEY={TATUM_2}\n"));
    let second_commit = repo.commit("bob@example.com", "two");
    let second = scan(&repo, &first.tips);
    assert_eq!(secrets(&second.findings), vec![TATUM_2]);
    assert_eq!(
        second.findings[0].origin.commit(),
        Some(second_commit.as_str())
    );

    // Rewrite history: the commit in the cursor disappears entirely.
    repo.git(&["reset", "-q", "--hard", &base]);
    repo.write("three.env", &format!("KEY={TATUM_3}\n"));
    repo.commit("carol@example.com", "three");
    repo.git(&["reflog", "expire", "--expire=now", "--all"]);
    repo.git(&["gc", "-q", "--prune=now"]);
    let mut cursor = second.tips.clone();
    cursor.push("not-a-commit --output=/tmp/x".into());
    let after = scan(&repo, &cursor);
    let mut found = secrets(&after.findings);
    found.sort();
    assert_eq!(found, vec![TATUM_3, TATUM]);
}

#[test]
fn on_a_terminal_a_history_scan_shows_a_running_blob_count() {
    let mut repo = Repo::new();
    repo.write("a.txt", "plain\n");
    repo.commit("alice@example.com", "a");
    // `script` gives the scan a pseudo-terminal as stderr.
    let cmd = format!(
        "{} scan --git {}",
        env!("CARGO_BIN_EXE_keysentry"),
        repo.path().display()
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .expect("script (util-linux) runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let spinner = regex::Regex::new(r"scanned \d+ blobs \d+s").unwrap();
    assert!(spinner.is_match(&text), "no progress line in {text:?}");
    assert!(text.contains("scanned 1 blob, 1 commit, "), "{text:?}");
}
