//! `keysentry::daemon::run` in-process: the test binds port 0 through
//! `Listeners::bind`, reads the port from the listener, stops the daemon by
//! firing its trigger and reloads it through its channel (waiting until the
//! reload is done), as the binary does on SIGTERM and SIGHUP. No log is
//! read: what is asserted is what `/metrics`, `/healthz` and `/readyz` show.

use super::*;
use crate::support::daemon::InProcess;

fn series_value(page: &str, series: &str) -> Option<f64> {
    metric(page, series)
}

/// Waits until the tailer of `glob` has made its first pass (what is in
/// its files now counts as already there): the event to wait for before
/// writing, instead of a sleep.
async fn running(d: &InProcess, glob: &Path) {
    let up = format!("keysentry_source_up{{source=\"log:{}\"}}", glob.display());
    d.until("the tailer to run", |p| series_value(p, &up) == Some(1.0))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_on_port_zero_scans_serves_and_stops_when_its_trigger_fires() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "started\n");
    let cfg = write_config(dir.path(), &[dir.path().join("*.log")], "");
    let d = InProcess::start(&cfg).await;
    assert_ne!(d.http.port(), 0, "the caller knows the real port");
    let (status, _) = d.get("/healthz").await;
    assert_eq!(status, 200);
    running(&d, &dir.path().join("*.log")).await;

    let k = key("in process");
    append(&log, &format!("x-api-key: {k}\n"));
    let findings = "keysentry_findings_total{provider=\"tatum\"}";
    let page = d
        .until("the finding", |p| series_value(p, findings) == Some(1.0))
        .await;
    assert!(!page.contains(&k[2..]), "the key is in /metrics");

    let addr = d.http;
    d.stop().await.expect("run returns Ok");
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still serving after the stop"
    );

    // The offset was persisted on the way out: a second run on the same
    // state reads only what is new.
    let again = key("after the stop");
    append(&log, &format!("x-api-key: {again}\n"));
    let d = InProcess::start(&cfg).await;
    running(&d, &dir.path().join("*.log")).await;
    let src = format!(
        "keysentry_scanned_lines_total{{source=\"log:{}\"}}",
        dir.path().join("*.log").display()
    );
    let page = d
        .until("the new line", |p| series_value(p, &src) == Some(1.0))
        .await;
    assert_eq!(series_value(&page, findings), Some(1.0), "{page}");
    d.stop().await.expect("run returns Ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_request_applies_a_good_config_and_keeps_running_on_a_broken_one() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    std::fs::create_dir(&one).unwrap();
    std::fs::create_dir(&two).unwrap();
    let cfg = write_config(dir.path(), &[one.join("*.log")], "");
    let good = std::fs::read_to_string(&cfg).unwrap();
    let mut d = InProcess::start(&cfg).await;
    running(&d, &one.join("*.log")).await;
    let lines = |glob: &Path| {
        format!(
            "keysentry_scanned_lines_total{{source=\"log:{}\"}}",
            glob.display()
        )
    };

    // A broken file: the running config stays, its source still reads.
    std::fs::write(&cfg, good.replace("poll: 200ms", "poll: sometimes")).unwrap();
    d.reload().await;
    append(
        &one.join("a.log"),
        &format!("{}\n", key("after broken reload")),
    );
    let src_one = lines(&one.join("*.log"));
    d.until("the first source to read", |p| {
        series_value(p, &src_one) == Some(1.0)
    })
    .await;

    let quoted = |p: &Path| serde_json::to_string(&p.display().to_string()).unwrap();
    let moved = good.replace(&quoted(&one.join("*.log")), &quoted(&two.join("*.log")));
    std::fs::write(&cfg, moved).unwrap();
    d.reload().await;
    running(&d, &two.join("*.log")).await;
    let src_two = lines(&two.join("*.log"));
    append(
        &two.join("b.log"),
        &format!("{}\n", key("after good reload")),
    );
    let page = d
        .until("the reloaded source to read", |p| {
            series_value(p, &src_two) == Some(1.0)
        })
        .await;
    assert_eq!(
        series_value(&page, "keysentry_findings_total{provider=\"tatum\"}"),
        Some(2.0),
        "{page}"
    );
    d.stop().await.expect("run returns Ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_names_a_missing_source_and_metrics_count_what_was_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let (here, missing) = (dir.path().join("here"), dir.path().join("missing"));
    std::fs::create_dir(&here).unwrap();
    let cfg = write_config(dir.path(), &[here.join("*.log"), missing.join("*.log")], "");
    let d = InProcess::start(&cfg).await;

    // Ready means watching: the missing directory is already named.
    let (status, body) = d.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let name = format!("log:{}", missing.join("*.log").display());
    assert_eq!(v["status"], "degraded", "{body}");
    assert_eq!(v["components"][&name]["status"], "failed", "{body}");
    assert!(body.contains("does not exist"), "{body}");
    assert_eq!(d.get("/healthz").await.0, 200, "alive, only degraded");

    std::fs::create_dir(&missing).unwrap();
    let start = Instant::now();
    while d.get("/readyz").await.0 != 200 {
        assert!(start.elapsed() < DEADLINE, "never healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let k = key("metrics");
    append(&here.join("a.log"), &format!("line\n{k}\n"));
    let findings = "keysentry_findings_total{provider=\"tatum\"}";
    d.until("the finding", |p| series_value(p, findings).is_some())
        .await;
    let (status, body) = d.get("/metrics").await;
    assert_eq!(status, 200);
    let src = format!("source=\"log:{}\"", here.join("*.log").display());
    assert_eq!(
        metric(&body, &format!("keysentry_scanned_lines_total{{{src}}}")),
        Some(2.0),
        "{body}"
    );
    assert_eq!(metric(&body, findings), Some(1.0), "{body}");
    assert!(body.contains("# TYPE keysentry_remediation_duration_seconds histogram"));
    assert!(body.contains("# TYPE keysentry_source_errors_total counter"));
    assert!(!body.contains(&k[2..]), "the key is in /metrics");
    d.stop().await.expect("run returns Ok");
}
