//! A hostile repository must not make keysentry's git run anything or fetch
//! anything: real partial clones served over `file://` whose promisor remote
//! runs a script (`remote.origin.uploadpack`) that leaves a marker file, a
//! ref to a commit the clone lacks, and a `git` wrapper first on PATH that
//! drops `GIT_NO_LAZY_FETCH` (as a git older than that variable ignores it)
//! and records the environment git was given. Also: damaged object stores
//! make a history scan exit 2 naming what it could not read.

use crate::daemon::{http_get, metric, wait_metric_at_least};
use crate::git_history::{Repo, TATUM, TATUM_2};
use crate::support::daemon::{Daemon, Launch};
use crate::support::keysentry;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tempfile::TempDir;

/// In the environment of every keysentry run here: no git child may see it.
const TOKEN: &str = "ghp_TokenInTheDaemonsEnvironment0000000";

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .args(["-c", "user.name=Dev", "-c", "user.email=dev@example.com"])
        .args(args)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn executable(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A bare `--filter=blob:none` clone of a repository holding a key: every
/// blob is missing and would come from the promisor remote, whose
/// `uploadpack` is a script that touches `marker` before serving.
struct Hostile {
    dir: TempDir,
    origin: PathBuf,
    clone: PathBuf,
    marker: PathBuf,
    /// A `git` that drops GIT_NO_LAZY_FETCH and appends its environment to
    /// `env_log`.
    wrapper_bin: PathBuf,
    env_log: PathBuf,
}

impl Hostile {
    fn new() -> Hostile {
        let dir = TempDir::new().expect("temp dir");
        let origin = dir.path().join("origin");
        std::fs::create_dir(&origin).expect("mkdir");
        git(&origin, &["init", "-q", "-b", "main"]);
        std::fs::write(origin.join("app.env"), format!("TATUM_API_KEY={TATUM}\n")).expect("write");
        git(&origin, &["add", "."]);
        git(&origin, &["commit", "-q", "-m", "key"]);
        git(&origin, &["config", "uploadpack.allowFilter", "true"]);
        git(
            &origin,
            &["config", "uploadpack.allowAnySHA1InWant", "true"],
        );
        let clone = dir.path().join("clone.git");
        let url = format!("file://{}", origin.display());
        let clone_arg = clone.display().to_string();
        git(
            dir.path(),
            &[
                "clone",
                "-q",
                "--bare",
                "--filter=blob:none",
                &url,
                &clone_arg,
            ],
        );
        let marker = dir.path().join("MARKER");
        let evil = dir.path().join("evil-upload-pack");
        executable(
            &evil,
            &format!(
                "#!/bin/sh\ntouch '{}'\nexec git-upload-pack \"$@\"\n",
                marker.display()
            ),
        );
        git(
            &clone,
            &[
                "config",
                "remote.origin.uploadpack",
                &evil.display().to_string(),
            ],
        );
        // Outranks a command line's `protocol.allow=never`.
        git(&clone, &["config", "protocol.file.allow", "always"]);

        let wrapper_bin = dir.path().join("bin");
        std::fs::create_dir(&wrapper_bin).expect("mkdir");
        let real = String::from_utf8(
            Command::new("sh")
                .args(["-c", "command -v git"])
                .output()
                .expect("sh runs")
                .stdout,
        )
        .expect("utf-8 path");
        let env_log = dir.path().join("git-env.log");
        executable(
            &wrapper_bin.join("git"),
            &format!(
                "#!/bin/sh\nenv >> '{}'\nunset GIT_NO_LAZY_FETCH\nexec '{}' \"$@\"\n",
                env_log.display(),
                real.trim()
            ),
        );
        Hostile {
            dir,
            origin,
            clone,
            marker,
            wrapper_bin,
            env_log,
        }
    }

    /// A new commit in the origin that the clone's `refs/heads/evil` names
    /// but the clone does not have: resolving the ref would fetch it.
    fn ref_to_a_missing_commit(&self) -> String {
        std::fs::write(self.origin.join("later.txt"), "later\n").expect("write");
        git(&self.origin, &["add", "."]);
        git(&self.origin, &["commit", "-q", "-m", "later"]);
        let sha = git(&self.origin, &["rev-parse", "HEAD"]);
        std::fs::write(self.clone.join("refs/heads/evil"), format!("{sha}\n")).expect("write ref");
        sha
    }

    /// PATH with the wrapper first, or the caller's PATH.
    fn path(&self, wrapped: bool) -> String {
        let path = std::env::var("PATH").unwrap_or_default();
        match wrapped {
            true => format!("{}:{path}", self.wrapper_bin.display()),
            false => path,
        }
    }

    fn scan(&self, wrapped: bool) -> Output {
        keysentry()
            .args(["scan", "--git", "--format", "json"])
            .arg(&self.clone)
            .env("PATH", self.path(wrapped))
            .env("KEYSENTRY_GITHUB_TOKEN", TOKEN)
            .output()
            .expect("keysentry runs")
    }

    fn assert_nothing_ran(&self, context: &str) {
        assert!(
            !self.marker.exists(),
            "{context}: the promisor remote's uploadpack ran (a lazy fetch)"
        );
        let seen = std::fs::read_to_string(&self.env_log).unwrap_or_default();
        assert!(
            !seen.contains(TOKEN),
            "{context}: git saw the token:\n{seen}"
        );
        let named = seen.lines().filter(|l| l.starts_with("KEYSENTRY_")).count();
        assert_eq!(named, 0, "{context}: keysentry's variables reached git");
    }
}

#[test]
fn scan_git_never_fetches_a_missing_blob_and_says_the_scan_is_incomplete() {
    let h = Hostile::new();
    for wrapped in [false, true] {
        let out = h.scan(wrapped);
        let stderr = String::from_utf8_lossy(&out.stderr);
        h.assert_nothing_ran(&format!("wrapped={wrapped}"));
        assert_eq!(out.status.code(), Some(2), "wrapped={wrapped}: {stderr}");
        // Exactly what is missing: the blob, its path and its commit.
        let blob = git(&h.origin, &["rev-parse", "HEAD:app.env"]);
        assert!(stderr.contains(&blob), "{stderr}");
        assert!(stderr.contains("app.env"), "{stderr}");
        assert!(!stderr.contains(TATUM), "{stderr}");
    }
    // The wrapper was used, so the test exercised a git that ignores
    // GIT_NO_LAZY_FETCH.
    assert!(h.env_log.exists(), "the git wrapper never ran");
}

#[test]
fn scan_git_never_fetches_a_commit_a_ref_points_to() {
    let h = Hostile::new();
    let sha = h.ref_to_a_missing_commit();
    for wrapped in [false, true] {
        let out = h.scan(wrapped);
        let stderr = String::from_utf8_lossy(&out.stderr);
        h.assert_nothing_ran(&format!("wrapped={wrapped}"));
        assert_eq!(out.status.code(), Some(2), "wrapped={wrapped}: {stderr}");
        // A git that ignores GIT_NO_LAZY_FETCH is refused the fetch of the
        // first missing blob, and the scan stops there, naming the blob.
        assert!(stderr.contains(&sha) || wrapped, "{stderr}");
    }
    assert!(h.env_log.exists(), "the git wrapper never ran");
}

/// `keysentry daemon` watching the hostile clone (the shared harness;
/// started without waiting: what it logs first is the point).
fn start_daemon(h: &Hostile, history: bool, wrapped: bool, name: &str) -> Daemon {
    let dir = h.dir.path().join(name);
    std::fs::create_dir(&dir).expect("mkdir");
    let quoted = |p: &Path| serde_json::to_string(&p.display().to_string()).expect("json");
    let config = dir.join("keysentry.yaml");
    std::fs::write(
        &config,
        format!(
            "state_dir: {}\nremediation:\n  mode: off\nwatch:\n  logs: [{}]\n  poll: 200ms\n  repos:\n    - path: {}\n      poll: 100ms\n      history: {history}\nhttp:\n  listen: 127.0.0.1:0\n",
            quoted(&dir.join("state")),
            quoted(&dir.join("*.log")),
            quoted(&h.clone),
        ),
    )
    .expect("write config");
    Launch::new(&config)
        .env("PATH", h.path(wrapped))
        .env("KEYSENTRY_GITHUB_TOKEN", TOKEN)
        .no_wait()
        .start()
}

/// Lets the watcher of the hostile clone finish `rounds` more polls, as
/// `/metrics` counts them.
fn polls_later(d: &Daemon, h: &Hostile, rounds: u32) {
    let series = format!(
        "keysentry_source_polls_total{{source=\"repo:{}\"}}",
        h.clone.display()
    );
    let (_, page) = http_get(d.port(), "/metrics");
    let now = metric(&page, &series).unwrap_or(0.0);
    wait_metric_at_least(d.port(), &series, now + f64::from(rounds));
}

/// Waits for a line with `what`, or for `marker`: a fetch that happened
/// must fail the test, not time it out.
fn wait_for(d: &Daemon, what: &str, marker: &Path) {
    d.wait_until(&format!("{what:?}"), |lines| {
        lines.iter().any(|l| l.contains(what)) || marker.exists()
    });
}

#[test]
fn a_watched_repository_never_fetches_with_or_without_history() {
    let h = Hostile::new();
    let sha = h.ref_to_a_missing_commit();
    for history in [false, true] {
        for wrapped in [false, true] {
            let name = format!("h{history}-w{wrapped}");
            let d = start_daemon(&h, history, wrapped, &name);
            // The commit reads as missing: the scan is incomplete, naming
            // it. Except where history is scanned by a git that ignores
            // GIT_NO_LAZY_FETCH: refused the fetch of the first missing blob,
            // the scan fails, naming the blob.
            let expected = match history && wrapped {
                true => "repository scan failed",
                false => sha.as_str(),
            };
            wait_for(&d, expected, &h.marker);
            // Not repeated on every 100 ms poll: said when it changes (the
            // first scan also misses the blobs, the next ones only the ref).
            polls_later(&d, &h, 5);
            let said = d.text().lines().filter(|l| l.contains(expected)).count();
            assert!(said <= 2, "{name}: said {said} times: {}", d.text());
            h.assert_nothing_ran(&name);
            assert!(!d.text().contains(TOKEN), "{name}: {}", d.text());
        }
    }
    assert!(h.env_log.exists(), "the git wrapper never ran");
}

#[test]
fn a_watched_partial_clone_says_its_scan_is_incomplete_without_fetching() {
    let h = Hostile::new();
    for wrapped in [false, true] {
        let d = start_daemon(&h, true, wrapped, &format!("w{wrapped}"));
        let blob = git(&h.origin, &["rev-parse", "HEAD:app.env"]);
        // A git that honours GIT_NO_LAZY_FETCH reads the blob as missing; one
        // that tries the fetch is refused it and the scan fails: either way
        // the log names the blob and nothing is fetched.
        wait_for(&d, &blob, &h.marker);
        h.assert_nothing_ran(&format!("wrapped={wrapped}"));
        assert!(d.text().contains("app.env"), "{}", d.text());
    }
}

/// A ref to a commit the repository lacks (a damaged or partial clone)
/// leaves the other refs scanned, and the scan says what it missed.
#[test]
fn a_ref_to_a_missing_commit_does_not_hide_the_other_refs() {
    let mut repo = Repo::new();
    repo.write("a.env", &format!("K={TATUM}\n"));
    repo.commit("alice@example.com", "a");
    let absent = "0123456789abcdef0123456789abcdef01234567";
    std::fs::write(
        repo.path().join(".git/refs/heads/gone"),
        format!("{absent}\n"),
    )
    .expect("write ref");
    let scan = repo.scan(".", &[]);
    assert_eq!(scan.code, Some(2), "{}", scan.stderr);
    assert_eq!(scan.only()["path"], "a.env");
    assert!(
        scan.stderr.contains("refs/heads/gone") && scan.stderr.contains(absent),
        "{}",
        scan.stderr
    );
}

/// A repository whose object store lost one blob and has another that no
/// longer decodes; a third file with a key is intact.
#[test]
fn missing_or_corrupt_blobs_make_a_history_scan_exit_2_naming_them() {
    let mut repo = Repo::new();
    repo.write("lost.env", "lost\n");
    repo.write("broken.env", "broken\n");
    repo.write("fine.env", &format!("KEY={TATUM_2}\n"));
    let commit = repo.commit("alice@example.com", "three files");
    let lost = repo.git(&["rev-parse", "HEAD:lost.env"]);
    let broken = repo.git(&["rev-parse", "HEAD:broken.env"]);
    let object = |id: &str| {
        repo.path()
            .join(".git/objects")
            .join(&id[..2])
            .join(&id[2..])
    };
    std::fs::remove_file(object(&lost)).expect("delete the object");
    let broken_file = object(&broken);
    std::fs::set_permissions(&broken_file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    std::fs::write(&broken_file, b"not zlib at all").expect("corrupt the object");

    let scan = repo.scan(".", &[]);
    assert_eq!(scan.code, Some(2), "{}", scan.stderr);
    for (id, path) in [(&lost, "lost.env"), (&broken, "broken.env")] {
        let named = scan
            .stderr
            .lines()
            .any(|l| l.contains(id.as_str()) && l.contains(path) && l.contains(&commit));
        assert!(named, "{id} ({path}) not named:\n{}", scan.stderr);
    }
    assert!(scan.stderr.contains("incomplete"), "{}", scan.stderr);
    // What could be read is still reported.
    assert_eq!(scan.only()["path"], "fine.env");
}

/// git refuses a repository another user owns; its advice (`git config
/// --global safe.directory`) would not help, since keysentry reads no
/// global git config, so the error must say what does.
#[test]
fn a_repository_owned_by_another_user_is_refused_with_advice_that_works() {
    let mut repo = Repo::new();
    repo.write("a.env", &format!("K={TATUM}\n"));
    repo.commit("alice@example.com", "a");
    // The tests run as root (as in CI); nobody owns the repository.
    let status = Command::new("chown")
        .args(["-R", "65534:65534"])
        .arg(repo.path())
        .status()
        .expect("run chown");
    assert!(status.success(), "chown needs root");
    let scan = repo.scan(".", &[]);
    assert_eq!(scan.code, Some(2), "{}", scan.stderr);
    assert!(
        scan.stderr.contains("belongs to another user") && !scan.stderr.contains("--global"),
        "{}",
        scan.stderr
    );
    assert!(scan.findings.is_empty());
}
