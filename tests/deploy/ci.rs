//! The pre-commit hook and the GitHub Action, run the way pre-commit and the
//! Actions runner run them: the hook's entry with the staged file names, and
//! the action's scan step as bash with the event's values, in real git
//! repositories.

use super::{path_with_binary, read_repo_file, readme_section};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use tempfile::TempDir;

const TATUM: &str = "t-66a8f1c2e4b0a1d2c3e4f5a6-5f3e9b1c7d2a4e6f8b0c1d3e";
const ZEROS: &str = "0000000000000000000000000000000000000000";

/// A repository driven by the real `git`, with no system or global config.
struct Repo {
    dir: TempDir,
    clock: u64,
}

impl Repo {
    fn new() -> Repo {
        let repo = Repo {
            dir: TempDir::new().expect("temp dir"),
            clock: 1_600_000_000,
        };
        repo.git(&["init", "-q", "-b", "main"]);
        repo
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn git(&self, args: &[&str]) -> String {
        let date = format!("@{} +0000", self.clock);
        let out = Command::new("git")
            .args(["-c", "user.name=Dev", "-c", "user.email=dev@example.com"])
            .args(args)
            .current_dir(self.path())
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_DATE", &date)
            .output()
            .expect("run git");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn write(&self, rel: &str, content: &str) {
        crate::support::write(self.path(), rel, content);
    }

    /// Commits everything and returns the commit id.
    fn commit(&mut self, message: &str) -> String {
        self.clock += 60;
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }
}

#[derive(Deserialize)]
struct Hook {
    id: String,
    entry: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default = "yes")]
    pass_filenames: bool,
    language: String,
}

fn yes() -> bool {
    true
}

/// What pre-commit does for a commit: the hook's entry split on spaces, its
/// args, then the staged file names (added, copied, modified, renamed).
fn run_hook(repo: &Repo) -> Output {
    let hooks: Vec<Hook> =
        serde_yaml::from_str(&read_repo_file(".pre-commit-hooks.yaml")).expect("hook file parses");
    let hook = hooks
        .iter()
        .find(|h| h.id == "keysentry")
        .expect("hook id keysentry");
    assert!(
        ["rust", "system"].contains(&hook.language.as_str()),
        "language {}",
        hook.language
    );
    assert!(hook.pass_filenames, "the hook takes file names");
    let staged = repo.git(&[
        "diff",
        "--staged",
        "--name-only",
        "--no-ext-diff",
        "--diff-filter=ACMRTUXB",
    ]);
    let mut words = hook.entry.split(' ').filter(|w| !w.is_empty());
    let mut cmd = Command::new(words.next().expect("entry names a program"));
    cmd.args(words).args(&hook.args).args(staged.lines());
    cmd.current_dir(repo.path()).env("PATH", path_with_binary());
    cmd.output().expect("run the hook's entry")
}

#[test]
fn pre_commit_hook_blocks_a_staged_key_and_passes_clean_files() {
    let mut repo = Repo::new();
    repo.write("README.md", "# app\n");
    repo.commit("first");

    // Two staged files, the key in the second: every name must be scanned.
    repo.write("app.py", "print('hello')\n");
    repo.write("config/settings.env", &format!("TATUM_API_KEY={TATUM}\n"));
    repo.git(&["add", "app.py", "config/settings.env"]);
    let out = run_hook(&repo);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a staged key blocks the commit: {stdout}{stderr}"
    );
    assert!(
        stdout.contains("config/settings.env:1"),
        "the report names file and line: {stdout}"
    );
    assert!(
        !stdout.contains(TATUM) && !stderr.contains(TATUM),
        "the key is never printed"
    );

    // Clean staged files pass, whatever sits unstaged in the working tree.
    repo.git(&["rm", "-q", "--cached", "config/settings.env"]);
    repo.write("lib.py", "def f():\n    return 1\n");
    repo.git(&["add", "app.py", "lib.py"]);
    let out = run_hook(&repo);
    assert_eq!(
        out.status.code(),
        Some(0),
        "clean staged files pass: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[derive(Deserialize)]
struct Action {
    inputs: BTreeMap<String, Input>,
    runs: Runs,
}

#[derive(Deserialize)]
struct Input {
    description: String,
    #[serde(default)]
    default: String,
}

#[derive(Deserialize)]
struct Runs {
    using: String,
    steps: Vec<Step>,
}

#[derive(Deserialize)]
struct Step {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    uses: Option<String>,
    #[serde(default)]
    run: Option<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
}

fn action() -> Action {
    serde_yaml::from_str(&read_repo_file("action.yml")).expect("action.yml parses")
}

#[test]
fn action_inputs_are_documented_in_the_readme() {
    let action = action();
    assert_eq!(action.runs.using, "composite");
    assert!(
        action.runs.steps.iter().any(|s| s
            .uses
            .as_deref()
            .is_some_and(|u| u.starts_with("github/codeql-action/upload-sarif@"))),
        "the action uploads SARIF"
    );
    let ci = readme_section("CI and pre-commit");
    assert!(!action.inputs.is_empty());
    for (name, input) in &action.inputs {
        assert!(
            !input.description.is_empty(),
            "input {name} has a description"
        );
        assert!(
            ci.lines().any(|l| l.starts_with(&format!("| `{name}` |"))),
            "README \"CI and pre-commit\" does not document input `{name}`"
        );
    }
}

/// A GitHub event as the scan step sees it.
struct Event<'a> {
    name: &'a str,
    before: &'a str,
    sha: &'a str,
    pr_base: &'a str,
    pr_head: &'a str,
}

/// Runs the action's scan step as the runner does (`bash -e -o pipefail`),
/// its `${{ }}` values filled from `event` and the inputs' defaults; returns
/// the step's outputs and the SARIF report's results.
fn run_scan_step(repo: &Repo, event: &Event) -> (BTreeMap<String, String>, Vec<Value>) {
    let action = action();
    let step = action
        .runs
        .steps
        .iter()
        .find(|s| s.id.as_deref() == Some("scan"))
        .expect("step id scan");
    let work = TempDir::new().expect("temp dir");
    let output_file = work.path().join("github_output");
    std::fs::write(&output_file, "").expect("write");
    let sarif = work.path().join("report.sarif");
    let value = |expr: &str| -> String {
        match expr {
            "github.event_name" => event.name.to_string(),
            "github.event.before" => event.before.to_string(),
            "github.sha" => event.sha.to_string(),
            "github.event.pull_request.base.sha" => event.pr_base.to_string(),
            "github.event.pull_request.head.sha" => event.pr_head.to_string(),
            "inputs.sarif-file" => sarif.display().to_string(),
            _ => match expr
                .strip_prefix("inputs.")
                .and_then(|i| action.inputs.get(i))
            {
                Some(input) => input.default.clone(),
                None => panic!("the test does not know the expression {expr}"),
            },
        }
    };
    let mut cmd = Command::new("bash");
    cmd.args([
        "--noprofile",
        "--norc",
        "-eo",
        "pipefail",
        "-c",
        step.run.as_deref().expect("run"),
    ]);
    for (key, template) in &step.env {
        let expr = template
            .strip_prefix("${{")
            .and_then(|t| t.strip_suffix("}}"))
            .map(str::trim)
            .unwrap_or_else(|| panic!("env {key} is not one expression: {template}"));
        cmd.env(key, value(expr));
    }
    let out = cmd
        .current_dir(repo.path())
        .env("PATH", path_with_binary())
        .env("GITHUB_OUTPUT", &output_file)
        .output()
        .expect("run the scan step");
    assert!(
        out.status.success(),
        "scan step failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let outputs: BTreeMap<String, String> = std::fs::read_to_string(&output_file)
        .expect("read outputs")
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&sarif).expect("SARIF written"))
            .expect("SARIF is JSON");
    let results = report["runs"][0]["results"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    (outputs, results)
}

fn result_uris(results: &[Value]) -> Vec<String> {
    results
        .iter()
        .filter_map(|r| r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"].as_str())
        .map(str::to_string)
        .collect()
}

#[test]
fn action_scans_the_whole_history_for_a_new_branch_or_a_base_the_clone_lacks() {
    let mut repo = Repo::new();
    repo.write("old/settings.env", &format!("TATUM_API_KEY={TATUM}\n"));
    repo.commit("an old leak");
    repo.write("old/settings.env", "TATUM_API_KEY=\n");
    let head = repo.commit("removed again");

    for before in [ZEROS, "1234567890abcdef1234567890abcdef12345678"] {
        let event = Event {
            name: "push",
            before,
            sha: &head,
            pr_base: "",
            pr_head: "",
        };
        let (outputs, results) = run_scan_step(&repo, &event);
        assert_eq!(
            outputs.get("findings").map(String::as_str),
            Some("true"),
            "before {before}"
        );
        assert_eq!(
            result_uris(&results),
            ["old/settings.env"],
            "before {before}"
        );
        assert!(outputs
            .get("sarif-file")
            .is_some_and(|f| f.ends_with("report.sarif")));
    }
}

/// Needs `scan --git --range A..B` (the git-modes branch).
#[test]
fn action_scans_only_what_a_push_or_pull_request_adds() {
    let mut repo = Repo::new();
    repo.write("old/settings.env", &format!("TATUM_API_KEY={TATUM}\n"));
    let first = repo.commit("an old leak, before this push");
    repo.write("app.py", "print('clean')\n");
    let clean = repo.commit("a clean push");

    let push = Event {
        name: "push",
        before: &first,
        sha: &clean,
        pr_base: "",
        pr_head: "",
    };
    let (outputs, results) = run_scan_step(&repo, &push);
    assert_eq!(
        outputs.get("findings").map(String::as_str),
        Some("false"),
        "{results:?}"
    );
    assert!(
        results.is_empty(),
        "the old leak is outside the pushed range: {results:?}"
    );

    repo.write(
        "new/prod.env",
        &format!("KEY={}\n", TATUM.replace('6', "7")),
    );
    let leak = repo.commit("a new leak");
    let push = Event {
        name: "push",
        before: &clean,
        sha: &leak,
        pr_base: "",
        pr_head: "",
    };
    let (outputs, results) = run_scan_step(&repo, &push);
    assert_eq!(outputs.get("findings").map(String::as_str), Some("true"));
    assert_eq!(result_uris(&results), ["new/prod.env"]);

    let pr = Event {
        name: "pull_request",
        before: "",
        sha: "",
        pr_base: &first,
        pr_head: &leak,
    };
    let (outputs, results) = run_scan_step(&repo, &pr);
    assert_eq!(outputs.get("findings").map(String::as_str), Some("true"));
    assert_eq!(result_uris(&results), ["new/prod.env"], "base..head only");
}
