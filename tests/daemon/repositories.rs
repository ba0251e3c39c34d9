//! Watched git repositories: new commits found once, history not scanned
//! again, a broken repository reported once and recovering.

use super::*;

#[test]
fn a_new_commit_in_a_watched_repository_is_found_once() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    let old = key("in history");
    std::fs::write(repo.join("config.env"), format!("TATUM_API_KEY={old}\n")).unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    let extra = format!(
        "  repos:\n    - path: {}\n      poll: 200ms\n",
        serde_json::to_string(&repo.display().to_string()).unwrap()
    );
    let cfg = write_config(dir.path(), &[dir.path().join("*.log")], &extra);
    let d = Daemon::start(&cfg);
    // First start: the whole history.
    assert_eq!(d.wait_for_key(&old)[0].path, "config.env");

    let new = key("new commit");
    std::fs::write(
        repo.join("deploy.sh"),
        format!("export TATUM_API_KEY={new}\n"),
    )
    .unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "second"]);
    let found = d.wait_for_key(&new);
    assert_eq!((found[0].path.as_str(), found[0].line), ("deploy.sh", 1));
    assert_eq!(d.reports_of(&old).len(), 1, "history scanned again");

    // A force-push that drops the commit must not break the cursor.
    git(&repo, &["reset", "-q", "--hard", "HEAD~1"]);
    let after = key("after rewrite");
    std::fs::write(repo.join("other.txt"), format!("{after}\n")).unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "rewritten"]);
    d.wait_for_key(&after);
    let (status, stderr) = d.terminate();
    assert!(status.success(), "{stderr}");

    // Restart: nothing scanned again.
    let d = Daemon::start(&cfg);
    let last = key("after restart");
    std::fs::write(repo.join("last.txt"), format!("{last}\n")).unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "last"]);
    d.wait_for_key(&last);
    assert!(
        d.reports_of(&old).is_empty() && d.reports_of(&after).is_empty(),
        "{}",
        d.text()
    );
}

#[test]
fn a_broken_repository_is_logged_once_and_recovers_when_it_becomes_a_repository() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("not-yet");
    std::fs::create_dir(&repo).unwrap();
    let extra = format!(
        "  repos:\n    - path: {}\n      poll: 100ms\n",
        serde_json::to_string(&repo.display().to_string()).unwrap()
    );
    let cfg = write_config(dir.path(), &[dir.path().join("*.log")], &extra);
    let d = Daemon::start(&cfg);
    d.wait_for("the first failed poll", |l| {
        l.contains("repository scan failed")
    });
    // Many polls later: still one warning, and /healthz names it. Every
    // failed poll counts one source error: wait for five more.
    let errors = format!(
        "keysentry_source_errors_total{{source=\"repo:{}\"}}",
        repo.display()
    );
    let (_, page) = http_get(d.port(), "/metrics");
    let seen = metric(&page, &errors).unwrap_or(0.0);
    wait_metric_at_least(d.port(), &errors, seen + 5.0);
    let said = |what: &str| d.lines().iter().filter(|l| l.contains(what)).count();
    assert_eq!(said("repository scan failed"), 1, "{}", d.text());
    let (status, body) = http_get(d.port(), "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("not-yet"), "{body}");

    git(&repo, &["init", "-q", "-b", "main"]);
    let k = key("after init");
    std::fs::write(repo.join("app.env"), format!("TATUM_API_KEY={k}\n")).unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    d.wait_for_key(&k);
    d.wait_for("the recovery", |l| l.contains("repository scans again"));
    assert_eq!(http_get(d.port(), "/readyz").0, 200);
}
