//! Sources that hang or flood, seen as a user would: the daemon's
//! `/healthz` and `/readyz`, what the simulator's provider and alert sink
//! received, and the daemon's log.

use super::*;

/// `/healthz` or `/readyz` as (status, JSON body).
fn health(port: u16, path: &str) -> (u16, serde_json::Value) {
    let (status, body) = http_get(port, path);
    let json = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("{path} is not JSON ({e}): {body:?}"));
    (status, json)
}

/// Puts a FIFO where `path` was, then for `how_long` keeps putting a fresh
/// regular file there and the FIFO back over it: what someone who can write
/// to a log directory can do. A tailer that `stat`s the path, sees a new
/// file and then `open`s it (without `O_NONBLOCK`) sooner or later opens the
/// FIFO and blocks until a writer comes: forever.
fn flip_to_fifo(dir: &Path, path: &Path, how_long: Duration) {
    let (fifo, fresh) = (dir.join("swap.fifo"), dir.join("swap.new"));
    let made = Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(made.success());
    std::fs::rename(&fifo, path).unwrap();
    let start = Instant::now();
    while start.elapsed() < how_long {
        std::fs::write(&fresh, "a new file\n").unwrap();
        std::fs::rename(path, &fifo).unwrap();
        std::fs::rename(&fresh, path).unwrap();
        std::fs::rename(&fifo, path).unwrap();
    }
}

/// Regression (issue 9.5): a log swapped for a FIFO blocked the tailer
/// thread for good, while `/healthz` said ok; a symlinked "log" was
/// followed wherever it pointed.
#[test]
fn a_log_swapped_for_a_fifo_or_a_symlink_is_skipped_and_the_others_are_read() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let (a, b) = (logs.join("a.log"), logs.join("b.log"));
    append(&a, "first line of a\n");
    append(&b, "first line of b\n");
    // A "log" that leads to a file outside the watched directory.
    let elsewhere = dir.path().join("elsewhere.txt");
    let hidden = key("behind a symlink");
    append(&elsewhere, &format!("x-api-key: {hidden}\n"));
    std::os::unix::fs::symlink(&elsewhere, logs.join("link.log")).unwrap();
    let cfg = write_config(dir.path(), &[logs.join("*.log")], "  from: start\n");
    let d = Daemon::start(&cfg);

    flip_to_fifo(&logs, &a, Duration::from_secs(3));
    let k = key("after the fifo");
    append(&b, &format!("x-api-key: {k}\n"));
    assert_eq!(d.wait_for_key(&k)[0].path, b.display().to_string());

    // Told once, naming the path and what it is; not a failure of the glob.
    d.wait_for("the FIFO warning", |l| {
        l.contains("not tailing") && l.contains("a.log") && l.contains("named pipe (FIFO)")
    });
    d.wait_for("the symlink warning", |l| {
        l.contains("not tailing") && l.contains("link.log") && l.contains("symbolic link")
    });
    let (status, body) = health(d.port(), "/healthz");
    assert_eq!(status, 200, "{body}");
    assert!(!body.to_string().contains("stuck"), "{body}");
    let glob = format!("log:{}", logs.join("*.log").display());
    assert_eq!(body["components"][&glob]["status"], "ok", "{body}");
    let warned = |what: &str| {
        d.lines()
            .iter()
            .filter(|l| l.contains("not tailing") && l.contains(what))
            .count()
    };
    // While it was being swapped the path came and went, and each time it
    // came back as a FIFO it was told again; once it stays, never again.
    let fifo_warnings = warned("named pipe");
    passes_later(&d, &logs.join("*.log"), &b, 4);
    assert_eq!(warned("named pipe"), fifo_warnings, "{}", d.text());
    assert_eq!(warned("symbolic link"), 1, "{}", d.text());
    assert!(d.reports_of(&hidden).is_empty(), "the symlink was followed");
    let (status, stderr) = d.terminate();
    assert!(status.success(), "{stderr}");
}

/// Regression (issue 9.5): a source that blocks (here every git process
/// hangs) was reported as merely "starting" forever.
#[test]
fn a_repository_whose_git_hangs_is_reported_stuck_by_healthz() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("README"), "hello\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "first"]);
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let wrapper = bin.join("git");
    std::fs::write(&wrapper, "#!/bin/sh\nexec sleep 20\n").unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let extra = format!(
        "  stuck_after: 2s\n  repos:\n    - path: {}\n      poll: 100ms\n      history: false\n",
        serde_json::to_string(&repo.display().to_string()).unwrap()
    );
    let cfg = write_config(dir.path(), &[dir.path().join("*.log")], &extra);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let d = Daemon::start_with(&cfg, &[("PATH", &path)]);
    let port = d.port();

    let start = Instant::now();
    let body = loop {
        let (status, body) = health(port, "/healthz");
        if status == 503 {
            break body;
        }
        assert!(start.elapsed() < DEADLINE, "never reported stuck: {body}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let name = format!("repo:{}", repo.display());
    assert_eq!(body["status"], "stuck", "{body}");
    assert_eq!(body["components"][&name]["status"], "stuck", "{body}");
    let why = body["components"][&name]["reason"].as_str().unwrap_or("");
    assert!(why.contains("no progress"), "{body}");
    // The log glob is alive: only the hung source is named.
    let glob = format!("log:{}", dir.path().join("*.log").display());
    assert_eq!(body["components"][&glob]["status"], "ok", "{body}");
    let (status, _) = health(port, "/readyz");
    assert_eq!(status, 503);
}

/// Regression (issue 9.6): 1,500 made-up keys in one log delayed the real
/// key's freeze behind all their verifications, and sent the owner 1,501
/// alerts.
#[test]
fn decoys_in_one_log_do_not_delay_a_real_key_in_another_and_are_told_in_one_digest() {
    const DECOYS: usize = 1500;
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let (flood, app) = (dir.path().join("access.log"), dir.path().join("app.log"));
    append(&flood, "start\n");
    append(&app, "start\n");
    let extra = format!(
        "remediation:\n  mode: auto\n  rate_limit: 400\n  policy: {{tatum: freeze}}\nproviders:\n  tatum:\n    api_url: {sim}\nalerts:\n  - {{type: webhook, url: '{sim}/_sink/webhook/owner'}}\n",
        sim = sim.url
    );
    let cfg = write_config(dir.path(), &[dir.path().join("*.log")], &extra);
    let d = Daemon::start(&cfg);
    let real = key("the real one");
    sim.add_live_key(&real);
    let decoys: Vec<String> = (0..DECOYS).map(|i| key(&format!("decoy {i}"))).collect();
    let text: String = decoys
        .iter()
        .map(|k| format!("GET / x-api-key: {k} 404\n"))
        .collect();
    append(&flood, &text);
    // The flood is with the engine before the real key is written.
    d.wait_for_key(&decoys[0]);
    append(&app, &format!("request x-api-key: {real}\n"));

    let port = d.port();
    wait_metric(
        port,
        "keysentry_incidents{state=\"not-live\"}",
        DECOYS as f64,
    );
    wait_metric(port, "keysentry_incidents{state=\"contained\"}", 1.0);
    let (_, body) = http(&sim.addr, "GET", "/_sim/calls", "");
    let calls: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    let decoy_fps: std::collections::HashSet<String> = decoys.iter().map(|k| fp(k)).collect();
    let last_decoy_verify = calls
        .iter()
        .rposition(|c| {
            c["path"] == "/v3/tatum/version"
                && decoy_fps.contains(c["key_fingerprint"].as_str().unwrap_or(""))
        })
        .expect("the decoys were verified");
    let freeze = calls
        .iter()
        .position(|c| c["path"] == "/v3/tatum/freeze" && c["key_fingerprint"] == fp(&real).as_str())
        .expect("the real key was frozen");
    assert!(
        freeze < last_decoy_verify,
        "the real key's freeze (call {freeze}) waited for the decoys (last verified at call {last_decoy_verify})"
    );

    // No alert per decoy; the digest goes out when its window ends, or at
    // the latest when the daemon stops.
    let (status, stderr) = d.terminate();
    assert!(status.success(), "{stderr}");
    let alerts = sim.sink("owner");
    let (digests, single): (Vec<&String>, Vec<&String>) =
        alerts.iter().partition(|a| a.contains("\"digest\""));
    assert_eq!(digests.len(), 1, "{} alerts", alerts.len());
    let digest: serde_json::Value = serde_json::from_str(digests[0]).unwrap();
    assert_eq!(digest["digest"]["count"], DECOYS, "{digest}");
    assert!(
        single.iter().all(|a| a.contains(&fp(&real))),
        "only the real key is alerted on its own: {single:?}"
    );
    assert!(!single.is_empty(), "the real key's alert");
    for k in decoys.iter().take(50).chain([&real]) {
        assert!(!digests[0].contains(&k[2..]), "a key in the digest");
        assert!(!stderr.contains(&k[2..]), "a key in the log");
    }
}

/// Issue 10.4: `/healthz` said 200 "ok" while remediation failed and no
/// alert reached anyone.
#[test]
fn readiness_fails_and_liveness_says_degraded_while_remediation_and_every_alert_channel_fail() {
    let sim = Sim::start();
    sim.fault(serde_json::json!({"path": "/v3/tatum/freeze", "status": 500, "count": 100}));
    let (status, resp) = http(
        &sim.addr,
        "PUT",
        "/_sim/sink/owner/behaviour",
        r#"{"status": 500}"#,
    );
    assert!(status < 300, "{resp}");
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "remediation:\n  mode: auto\n  max_attempts: 1\n  backoff_ms: 60000\n  policy: {{tatum: freeze}}\nproviders:\n  tatum:\n    api_url: {sim}\nalerts:\n  - {{type: webhook, url: '{sim}/_sink/webhook/owner'}}\n",
        sim = sim.url
    );
    let cfg = write_config(dir.path(), &[dir.path().join("*.log")], &extra);
    let d = Daemon::start(&cfg);
    let port = d.port();
    let start = Instant::now();
    while health(port, "/readyz").0 != 200 {
        assert!(start.elapsed() < DEADLINE, "never ready");
        std::thread::sleep(Duration::from_millis(50));
    }

    let k = key("cannot be frozen");
    sim.add_live_key(&k);
    append(&dir.path().join("app.log"), &format!("x-api-key: {k}\n"));
    let start = Instant::now();
    let ready = loop {
        let (status, body) = health(port, "/readyz");
        let alerts_failed = body["components"]["alerts"]["status"] == "failed";
        if status == 503 && alerts_failed {
            break body;
        }
        assert!(start.elapsed() < DEADLINE, "never degraded: {body}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(ready["status"], "degraded", "{ready}");
    let remediation = &ready["components"]["remediation"];
    assert_eq!(remediation["status"], "failed", "{ready}");
    assert!(
        remediation["reason"]
            .as_str()
            .unwrap_or("")
            .contains("freeze"),
        "says which step fails: {ready}"
    );
    let alerts = ready["components"]["alerts"]["reason"]
        .as_str()
        .unwrap_or("");
    assert!(alerts.contains("every alert channel fails"), "{ready}");
    assert!(alerts.contains("alerts[0]"), "names the channel: {ready}");
    // Alive: a restart would not make Tatum or the receiver answer.
    let (status, live) = health(port, "/healthz");
    assert_eq!(status, 200, "{live}");
    assert_eq!(live["status"], "degraded", "{live}");
    assert!(
        !live.to_string().contains(&k[2..]),
        "a key in the health body"
    );
}

/// The digest goes out when its window ends, not only at shutdown; a key
/// seen after that opens the next window.
#[test]
fn the_not_live_digest_is_sent_when_its_interval_ends() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "remediation:\n  mode: auto\n  policy: {{tatum: freeze}}\nproviders:\n  tatum:\n    api_url: {sim}\nalerts:\n  - {{type: webhook, url: '{sim}/_sink/webhook/owner'}}\nalert_digest:\n  interval_secs: 2\n",
        sim = sim.url
    );
    let cfg = write_config(dir.path(), &[dir.path().join("*.log")], &extra);
    let d = Daemon::start(&cfg);
    let log = dir.path().join("access.log");
    let decoys: Vec<String> = (0..3).map(|i| key(&format!("window {i}"))).collect();
    for k in &decoys {
        append(&log, &format!("x-api-key: {k}\n"));
    }
    let start = Instant::now();
    let digests = loop {
        let got: Vec<String> = sim
            .sink("owner")
            .into_iter()
            .filter(|a| a.contains("\"digest\""))
            .collect();
        if !got.is_empty() {
            break got;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "no digest: {:?}",
            sim.sink("owner")
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(digests.len(), 1);
    let digest: serde_json::Value = serde_json::from_str(&digests[0]).unwrap();
    assert_eq!(digest["digest"]["count"], 3, "{digest}");
    assert_eq!(digest["digest"]["interval_secs"], 2, "{digest}");
    for k in &decoys {
        let short = &fp(k)[..12];
        assert!(digests[0].contains(short), "lists {short}: {digest}");
        assert!(!digests[0].contains(&k[2..]), "a key in the digest");
    }
    assert_eq!(sim.sink("owner").len(), 1, "no alert per decoy");
    let (status, stderr) = d.terminate();
    assert!(status.success(), "{stderr}");
}
