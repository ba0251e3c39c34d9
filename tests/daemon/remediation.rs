//! Remediation inside the daemon, against the simulator: contained once,
//! stopped in time during a hung call, failed incidents retried after a
//! restart or a reload.

use super::*;

#[test]
fn a_key_appended_to_a_watched_log_is_contained_exactly_once() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let extra = format!(
        "remediation:\n  mode: auto\n  policy: {{tatum: freeze}}\nproviders:\n  tatum:\n    api_url: {}\n",
        sim.url
    );
    let cfg = write_config(dir.path(), &[dir.path().join("*.log")], &extra);
    let d = Daemon::start(&cfg);
    let (k1, k2) = (key("contain me"), key("and me"));
    sim.add_live_key(&k1);
    sim.add_live_key(&k2);
    append(&log, &format!("request x-api-key: {k1}\n"));
    sim.wait_for_freeze(&k1);
    // The same key again, then another: once the second is contained, any
    // second freeze of the first would have happened.
    append(
        &log,
        &format!("retry x-api-key: {k1}\nother x-api-key: {k2}\n"),
    );
    sim.wait_for_freeze(&k2);
    assert_eq!(sim.freezes_of(&k1), 1);
    assert_eq!(sim.freezes_of(&k2), 1);
    // Frozen under a freeze policy, the incidents need no more calls: the
    // daemon keeps neither key in memory.
    let metrics = wait_metric(d.port(), "keysentry_remediation_keys_held", 0.0);
    let incidents: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("keysentry_incidents{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(incidents, 2.0, "{metrics}");
    let (status, stderr) = d.terminate();
    assert!(status.success(), "{stderr}");
    assert!(
        !stderr.contains(&k1[2..]) && !stderr.contains(&k2[2..]),
        "a key leaked into the log"
    );
}

#[test]
fn sigterm_during_a_hung_provider_call_stops_in_time_and_the_restart_contains_the_key() {
    let sim = Sim::start();
    // Tatum takes a minute to answer the freeze (then refuses it).
    sim.fault(serde_json::json!({"path": "/v3/tatum/freeze", "status": 503, "hang_ms": 60000}));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let extra = format!(
        "remediation:\n  mode: auto\n  timeout_secs: 120\n  policy: {{tatum: freeze}}\nproviders:\n  tatum:\n    api_url: {}\n",
        sim.url
    );
    let cfg = write_config(dir.path(), &[dir.path().join("*.log")], &extra);
    let d = Daemon::start(&cfg);
    let k = key("hung freeze");
    sim.add_live_key(&k);
    append(&log, &format!("request x-api-key: {k}\n"));
    sim.wait_for_freeze(&k);
    // `terminate` fails the test unless the daemon exits within 10 s.
    let (status, stderr) = d.terminate();
    assert!(status.success(), "{stderr}");

    // The line's offset was not saved while its key was in flight: the next
    // start reads it again and contains the key.
    let d = Daemon::start(&cfg);
    wait_metric(d.port(), "keysentry_incidents{state=\"contained\"}", 1.0);
    assert_eq!(sim.freezes_of(&k), 2);
    let (status, again) = d.terminate();
    assert!(status.success(), "{again}");
    for log in [&stderr, &again] {
        assert!(!log.contains(&k[2..]), "the key leaked into the log");
    }
}

/// `keysentry incidents list --json` for the daemon's state directory.
fn incidents(cfg: &Path) -> Vec<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_keysentry"))
        .args(["incidents", "list", "--json", "--config"])
        .arg(cfg)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).expect("incidents as JSON")
}

/// A daemon (remediation auto, freeze policy, one attempt per pass, alerts
/// to the simulator's `owner` sink) whose first containment of a fresh key
/// failed: Tatum answered the freeze 500. The next pass waits `backoff_ms`
/// (doubled).
struct FailedContainment {
    sim: Sim,
    _dir: tempfile::TempDir,
    cfg: PathBuf,
    log: PathBuf,
    daemon: Option<Daemon>,
    key: String,
}

impl FailedContainment {
    fn start(seed: &str, backoff_ms: u64) -> FailedContainment {
        let sim = Sim::start();
        sim.fault(serde_json::json!({"path": "/v3/tatum/freeze", "status": 500}));
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        let extra = format!(
            "remediation:\n  mode: auto\n  max_attempts: 1\n  backoff_ms: {backoff_ms}\n  policy: {{tatum: freeze}}\nproviders:\n  tatum:\n    api_url: {sim}\nalerts:\n  - {{type: webhook, url: '{sim}/_sink/webhook/owner'}}\n",
            sim = sim.url
        );
        let cfg = write_config(dir.path(), &[dir.path().join("*.log")], &extra);
        let daemon = Daemon::start(&cfg);
        let key = key(seed);
        sim.add_live_key(&key);
        append(&log, &format!("request x-api-key: {key}\n"));
        wait_metric(daemon.port(), "keysentry_incidents{state=\"failed\"}", 1.0);
        assert_eq!(sim.freezes_of(&key), 1);
        FailedContainment {
            sim,
            _dir: dir,
            cfg,
            log,
            daemon: Some(daemon),
            key,
        }
    }

    fn daemon(&self) -> &Daemon {
        self.daemon.as_ref().expect("the daemon runs")
    }

    /// SIGTERM: exit 0 within 10 s, and the key never in its log.
    fn stop(&mut self) {
        if let Some(d) = self.daemon.take() {
            let (status, log) = d.terminate();
            assert!(status.success(), "{log}");
            assert!(!log.contains(&self.key[2..]), "the key leaked into the log");
        }
    }

    /// A new daemon on the same config and state.
    fn restart(&mut self) {
        self.stop();
        self.daemon = Some(Daemon::start(&self.cfg));
    }

    /// The key written to the log again; waits until it is contained.
    fn seen_again(&self) {
        append(&self.log, &format!("again x-api-key: {}\n", self.key));
        self.contained();
    }

    /// Contained by a second freeze call, and the key no longer in memory.
    fn contained(&self) {
        let port = self.daemon().port();
        wait_metric(port, "keysentry_incidents{state=\"contained\"}", 1.0);
        wait_metric(port, "keysentry_remediation_keys_held", 0.0);
        assert_eq!(self.sim.freezes_of(&self.key), 2);
    }
}

#[test]
fn after_a_restart_a_failed_incident_says_it_waits_for_the_key() {
    let mut f = FailedContainment::start("failed before restart", 10);
    // The restarted daemon retries at once but has no copy of the key.
    f.restart();
    let start = Instant::now();
    let reason = loop {
        let reason = incidents(&f.cfg)[0]["reason"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if reason.contains("holds no copy of the key") {
            break reason;
        }
        assert!(start.elapsed() < DEADLINE, "reason stayed {reason:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        reason.contains("keysentry scan PATH --remediate"),
        "{reason}"
    );
    assert_eq!(incidents(&f.cfg)[0]["state"], "failed");
    assert_eq!(f.sim.freezes_of(&f.key), 1, "no call without the key");
    // The owner is told, once, without the key.
    let told = |alerts: &[String]| {
        alerts
            .iter()
            .filter(|a| a.contains("holds no copy of the key"))
            .count()
    };
    let start = Instant::now();
    while told(&f.sim.sink("owner")) == 0 {
        assert!(
            start.elapsed() < DEADLINE,
            "no alert: {:#?}",
            f.sim.sink("owner")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let alerts = f.sim.sink("owner");
    assert_eq!(told(&alerts), 1, "{alerts:#?}");
    assert!(
        alerts.iter().all(|a| !a.contains(&f.key[2..])),
        "a key in an alert"
    );
    f.seen_again();
    f.stop();
}

#[test]
fn a_reload_keeps_the_keys_of_failed_incidents_and_retries_them_at_once() {
    // A 10-minute backoff: only the reload can explain a retry now.
    let mut f = FailedContainment::start("failed before reload", 600_000);
    wait_metric(f.daemon().port(), "keysentry_remediation_keys_held", 1.0);
    // Tatum is back; the operator reloads. The key is not seen again, yet
    // the incident is contained at once: the reloaded engine kept the key
    // and did not wait out the backoff.
    f.daemon().signal("HUP");
    f.daemon()
        .wait_for("the reload", |l| l.contains("reloaded"));
    f.contained();
    f.stop();
}

#[test]
fn a_failed_containment_keeps_the_key_until_it_succeeds() {
    let mut f = FailedContainment::start("tatum is down", 10);
    // Answered 500: the incident is failed and its key stays in memory for
    // the retry.
    wait_metric(f.daemon().port(), "keysentry_remediation_keys_held", 1.0);
    // Seen again once the backoff has passed: contained, and the key is let go.
    std::thread::sleep(Duration::from_millis(200));
    f.seen_again();
    f.stop();
}
