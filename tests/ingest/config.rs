//! `config check` on the new settings, and a listener that cannot bind.

use super::*;

fn check(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.yaml");
    std::fs::write(&path, text).unwrap();
    let out = keysentry()
        .args(["config", "check"])
        .arg(&path)
        .env("KEYSENTRY_INGEST_TOKEN", TOKEN)
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), all)
}

#[test]
fn config_check_names_bad_ingest_settings_and_the_fix() {
    let (ok, out) = check(
        "watch:\n  syslog:\n    - listen: 127.0.0.1:6514\n      protocol: relp\n    - listen: nowhere\n    - listen: 127.0.0.1:6515\n      protocol: tls\n    - listen: 127.0.0.1:6516\n      protocol: tls\n      tls_cert: /etc/hostname\n      tls_key: /no/such/syslog.key\n  http_ingest:\n    path: /metrics\n    token_env: KEYSENTRY_INGEST_TOKEN\nhttp:\n  listen: 127.0.0.1:9187\n",
    );
    assert!(!ok, "{out}");
    for want in [
        "watch.syslog[0].protocol",
        "tcp, udp or tls",
        "watch.syslog[1].listen",
        "127.0.0.1:6514",
        "watch.syslog[2].tls_cert",
        "watch.syslog[3].tls_key",
        "/no/such/syslog.key does not exist",
        "tls_key",
        "watch.http_ingest.path",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    let (ok, out) = check("watch:\n  http_ingest:\n    token_env: NO_SUCH_INGEST_TOKEN_VAR\n");
    assert!(!ok, "{out}");
    assert!(
        out.contains("http.listen") && out.contains("NO_SUCH_INGEST_TOKEN_VAR"),
        "{out}"
    );
    let (ok, out) = check(
        "watch:\n  syslog:\n    - listen: 127.0.0.1:6514\n    - listen: 127.0.0.1:6514\n      protocol: udp\n  http_ingest:\n    token_env: KEYSENTRY_INGEST_TOKEN\nhttp:\n  listen: 127.0.0.1:9187\n",
    );
    assert!(ok, "{out}");
}

#[test]
fn a_busy_port_is_an_error_naming_the_listener_and_the_fix() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap();
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keysentry.yaml");
    let watch = format!(
        "  syslog:\n    - listen: 127.0.0.1:0\n      protocol: udp\n    - listen: {addr}\n"
    );
    std::fs::write(&config, config_text(dir.path(), &sim, &watch, "")).unwrap();
    let mut d = Launch::new(&config).no_wait().start();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = d.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "the daemon did not exit:\n{}",
            d.text()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(100));
    let log = d.text();
    assert!(!status.success());
    assert!(
        log.contains(&format!(
            "cannot listen on {addr} (watch.syslog[1].listen, tcp)"
        )),
        "{log}"
    );
    assert!(log.contains("pick a free port"), "{log}");
    assert!(!log.contains("daemon ready"), "{log}");
}

#[test]
fn a_daemon_without_its_ingest_token_does_not_start_and_says_which_variable() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keysentry.yaml");
    let watch = "  http_ingest:\n    token_env: KEYSENTRY_TEST_UNSET_INGEST_TOKEN\n";
    std::fs::write(&config, config_text(dir.path(), &sim, watch, "")).unwrap();
    let mut d = Launch::new(&config).no_wait().start();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = d.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "the daemon did not exit:\n{}",
            d.text()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    std::thread::sleep(Duration::from_millis(100));
    let log = d.text();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("watch.http_ingest.token_env")
            && log.contains("KEYSENTRY_TEST_UNSET_INGEST_TOKEN"),
        "{log}"
    );
}
