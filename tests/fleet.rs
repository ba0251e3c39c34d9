//! A fleet on one PostgreSQL store: several real daemons (each with its own
//! log, state directory and node name) against one simulator. The same key
//! seen by all of them is one incident and one freeze; a daemon killed
//! mid-freeze leaves the incident to another once its lease expires; a
//! store that goes away and comes back loses nothing.

use crate::daemon::{append, http_get, write_config};
use crate::support::daemon::Daemon;
use crate::support::postgres::fresh_database;
use crate::support::sim::Sim;
use crate::support::{fingerprint, key};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

struct Node {
    _dir: tempfile::TempDir,
    log: PathBuf,
    cfg: PathBuf,
}

/// A daemon's config: its own log and state directory, the shared store,
/// a freeze policy and a short lease.
fn node(name: &str, store: &str, sim: &Sim, extra: &str) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    std::fs::write(&log, "").unwrap();
    let text = format!(
        "node: {name}\nstore:\n  url: '{store}'\nremediation:\n  mode: auto\n  lease_secs: 3\n  \
         timeout_secs: 120\n  policy: {{tatum: freeze}}\nproviders:\n  tatum:\n    api_url: {}\n{extra}",
        sim.url
    );
    let cfg = write_config(dir.path(), &[dir.path().join("*.log")], &text);
    Node {
        _dir: dir,
        log,
        cfg,
    }
}

fn keysentry_json(cfg: &Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_keysentry"))
        .args(args)
        .arg("--json")
        .arg("--config")
        .arg(cfg)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "keysentry {args:?}: {e}\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn incidents(cfg: &Path) -> Vec<serde_json::Value> {
    match keysentry_json(cfg, &["incidents", "list"]) {
        serde_json::Value::Array(v) => v,
        other => panic!("incidents list: {other}"),
    }
}

fn wait_until(what: &str, limit: Duration, mut ok: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The nodes that recorded a location of the incident for `key`.
fn nodes_of(cfg: &Path, key: &str) -> Vec<String> {
    let fp = fingerprint(key);
    let Some(i) = incidents(cfg)
        .into_iter()
        .find(|i| i["fingerprint"] == fp.as_str())
    else {
        return Vec::new();
    };
    let id = i["id"].to_string();
    let show = keysentry_json(cfg, &["incidents", "show", &id]);
    let mut nodes: Vec<String> = show["locations"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|l| l["node"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    nodes.sort();
    nodes
}

#[test]
fn three_daemons_on_one_store_see_the_same_key_and_freeze_it_once() {
    let sim = Sim::start();
    let store = fresh_database();
    let alerts = format!(
        "alerts:\n  - {{type: webhook, url: '{}/_sink/webhook/owner'}}\n",
        sim.url
    );
    let nodes: Vec<Node> = ["web-1", "web-2", "web-3"]
        .iter()
        .map(|n| node(n, &store, &sim, &alerts))
        .collect();
    // Started together: they migrate the empty database at the same time.
    let daemons: Vec<Daemon> = std::thread::scope(|s| {
        let started: Vec<_> = nodes
            .iter()
            .map(|n| s.spawn(|| Daemon::start(&n.cfg)))
            .collect();
        started.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let k = key("one key on every node");
    sim.add_live_key(&k);
    for n in &nodes {
        append(&n.log, &format!("request x-api-key: {k}\n"));
    }
    sim.wait_for_freeze(&k);
    wait_until(
        "a location from every node",
        Duration::from_secs(30),
        || nodes_of(&nodes[0].cfg, &k) == ["web-1", "web-2", "web-3"],
    );
    // Every daemon has handed its finding on; a second freeze would have
    // been asked for by now. Give the slowest a moment more.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(sim.freezes_of(&k), 1, "one freeze for the whole fleet");
    let sent = sim.sink("owner");
    assert_eq!(sent.len(), 1, "one alert for the whole fleet: {sent:?}");
    assert!(!sent[0].contains(&k[2..]), "the alert holds the key");
    let all = incidents(&nodes[2].cfg);
    assert_eq!(all.len(), 1, "one incident: {all:?}");
    assert_eq!(all[0]["state"], "contained");
    for d in daemons {
        let (status, log) = d.terminate();
        assert!(status.success(), "{log}");
        assert!(!log.contains(&k[2..]), "the key leaked into a daemon's log");
    }
}

#[test]
fn a_daemon_killed_during_its_freeze_leaves_the_incident_to_another_after_the_lease() {
    let sim = Sim::start();
    let store = fresh_database();
    let a = node("first", &store, &sim, "");
    let b = node("second", &store, &sim, "");
    // Tatum freezes the key, then holds the answer: the first daemon is
    // killed while it waits.
    sim.fault(serde_json::json!({"path": "/v3/tatum/freeze", "hang_ms": 60000, "count": 1}));
    let mut first = Daemon::start(&a.cfg);
    let second = Daemon::start(&b.cfg);
    let k = key("killed mid-freeze");
    sim.add_live_key(&k);
    append(&a.log, &format!("request x-api-key: {k}\n"));
    sim.wait_for_freeze(&k);
    first.child.kill().unwrap(); // SIGKILL: no cleanup of any kind
    first.child.wait().unwrap();
    // The second daemon sees the key too; the incident is leased to the
    // dead one until the lease (3 s) expires.
    append(&b.log, &format!("retry x-api-key: {k}\n"));
    wait_until(
        "the second daemon to finish the incident",
        Duration::from_secs(60),
        || {
            incidents(&b.cfg)
                .first()
                .is_some_and(|i| i["state"] == "contained")
        },
    );
    // Freezing is idempotent and Tatum says nowhere whether a key is
    // frozen, so the interrupted call is sent once more; it changes
    // nothing. Calls that are not idempotent are never repeated (the
    // journal: see remediation::tatum's crash tests).
    assert_eq!(sim.freezes_of(&k), 2, "{:?}", sim.calls());
    assert_eq!(
        sim.tatum_key(&k)["state"],
        "frozen",
        "{}",
        sim.tatum_key(&k)
    );
    assert_eq!(nodes_of(&b.cfg, &k), ["first", "second"]);
    let (status, log) = second.terminate();
    assert!(status.success(), "{log}");
    assert!(!log.contains(&k[2..]), "the key leaked into the log");
}

/// A cluster of this test's own, so that stopping it disturbs no other
/// test: (URL, data directory, port). Stopped when the guard drops, also
/// when the test fails.
fn own_cluster() -> (String, String, u16, ClusterGuard) {
    own_cluster_with(None)
}

struct ClusterGuard(String);

impl Drop for ClusterGuard {
    fn drop(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/postgres.sh");
        let _ = Command::new("bash")
            .args([script, "stop", &self.0])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// As [`own_cluster`], serving TLS with `tls`'s `server.crt` and
/// `server.key` when given.
fn own_cluster_with(tls: Option<&Path>) -> (String, String, u16, ClusterGuard) {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/postgres.sh");
    let mut cmd = Command::new("bash");
    cmd.args([script, "start", &port.to_string()]);
    if let Some(dir) = tls {
        cmd.env("KEYSENTRY_PG_TLS_DIR", dir);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "start a PostgreSQL cluster: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let dir = std::fs::read_to_string(format!("/tmp/keysentry-pg-{port}.dir"))
        .unwrap()
        .trim()
        .to_string();
    let guard = ClusterGuard(dir.clone());
    (url, dir, port, guard)
}

fn cluster(cmd: &str, dir: &str, port: u16) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/.ci/postgres.sh");
    let st = Command::new("bash")
        .args([script, cmd, dir, &port.to_string()])
        .status()
        .unwrap();
    assert!(st.success(), "postgres.sh {cmd}");
}

#[test]
fn a_store_stopped_under_a_running_daemon_is_degraded_then_resumed_without_loss() {
    let sim = Sim::start();
    let (url, dir, port, _cluster) = own_cluster();
    let n = node("solo", &url, &sim, "");
    let d = Daemon::start(&n.cfg);
    let early = key("before the outage");
    sim.add_live_key(&early);
    append(&n.log, &format!("request x-api-key: {early}\n"));
    sim.wait_for_freeze(&early);

    cluster("stop", &dir, port);
    let late = key("during the outage");
    sim.add_live_key(&late);
    append(&n.log, &format!("request x-api-key: {late}\n"));
    wait_until("/healthz to say degraded", Duration::from_secs(30), || {
        let (_, body) = http_get(d.port(), "/healthz");
        body.contains("degraded")
    });
    // Nothing is lost while the store is away: more lines keep coming.
    for i in 0..200 {
        append(&n.log, &format!("GET /item/{i} 200\n"));
    }
    assert_eq!(
        sim.freezes_of(&late),
        0,
        "nothing is done before it is recorded"
    );

    cluster("resume", &dir, port);
    sim.wait_for_freeze(&late);
    let mut last = String::new();
    let start = Instant::now();
    loop {
        let (status, body) = http_get(d.port(), "/healthz");
        if status == 200 && !body.contains("degraded") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "/healthz stayed unhealthy: {last}"
        );
        last = body;
        std::thread::sleep(Duration::from_millis(200));
    }
    let all = incidents(&n.cfg);
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(sim.freezes_of(&early), 1);
    assert_eq!(sim.freezes_of(&late), 1);
    let (status, log) = d.terminate();
    assert!(status.success(), "{log}");
    cluster("stop", &dir, port);
    assert!(!log.contains(&late[2..]) && !log.contains(&early[2..]));
}

#[test]
fn config_check_and_a_daemon_name_a_bad_store_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let check = |text: &str| {
        let path = dir.path().join("k.yaml");
        std::fs::write(&path, text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_keysentry"))
            .args(["config", "check"])
            .arg(&path)
            .env_remove("KEYSENTRY_STORE_URL_UNSET")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, text) = check("store:\n  url: 'mysql://ks:s3cr3t-pw@db/k'\n");
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("store.url") && text.contains("postgres://USER@HOST"),
        "{text}"
    );
    assert!(
        !text.contains("s3cr3t-pw"),
        "the password is quoted: {text}"
    );
    let (code, text) = check("store:\n  url_env: KEYSENTRY_STORE_URL_UNSET\n");
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains("KEYSENTRY_STORE_URL_UNSET is not set"),
        "{text}"
    );
    let (code, text) = check("store:\n  url: 'postgres://a@h/k'\n  url_env: X\n");
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("not both"), "{text}");

    // A server that is not there: the daemon stops at once, names the store
    // (without the password) and says what to check.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let cfg = write_config(
        dir.path(),
        &[dir.path().join("*.log")],
        &format!("store:\n  url: 'postgres://ks:s3cr3t-pw@127.0.0.1:{port}/k?sslmode=disable'\n"),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_keysentry"))
        .args(["daemon", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(&format!("postgres://ks:***@127.0.0.1:{port}/k"))
            && text.contains("unreachable"),
        "{text}"
    );
    assert!(
        !text.contains("s3cr3t-pw"),
        "the password is in the error: {text}"
    );
}

/// A CA and a server certificate for `localhost` signed by it, made with
/// the openssl CLI; the key readable by the server's user only.
fn tls_files(dir: &Path) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl (CI installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=keysentry test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=DNS:localhost\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
    // PostgreSQL refuses a key others can read; it runs as `postgres`.
    for f in ["server.key", "server.crt"] {
        let st = Command::new("chown")
            .args(["postgres:postgres", f])
            .current_dir(dir)
            .status();
        let _ = st;
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        dir.join("server.key"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn the_store_speaks_tls_and_checks_the_servers_certificate() {
    let certs = tempfile::tempdir().unwrap();
    tls_files(certs.path());
    let (url, dir, port, _cluster) = own_cluster_with(Some(certs.path()));
    let base = url
        .replace("127.0.0.1", "localhost")
        .replace("?sslmode=disable", "");
    let ca = certs.path().join("ca.pem");
    let work = tempfile::tempdir().unwrap();
    let list = |store_url: &str| {
        let cfg = work.path().join("k.yaml");
        std::fs::write(&cfg, format!("store:\n  url: '{store_url}'\n")).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_keysentry"))
            .args(["incidents", "list", "--json", "--config"])
            .arg(&cfg)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    // TLS required, the server checked against the test CA: connects.
    let (ok, text) = list(&format!(
        "{base}?sslmode=require&sslrootcert={}",
        ca.display()
    ));
    assert!(ok, "{text}");
    assert!(text.trim_start().starts_with('['), "{text}");
    // Checked against the Mozilla roots, the test CA is unknown: refused,
    // and the error says so.
    let (ok, text) = list(&format!("{base}?sslmode=require"));
    assert!(!ok, "a certificate of an unknown CA was accepted: {text}");
    assert!(
        text.to_lowercase().contains("certificate")
            || text.to_lowercase().contains("unknownissuer"),
        "{text}"
    );
    cluster("stop", &dir, port);

    // A server without TLS and `sslmode=require`: no plain-text fallback.
    let (url, dir, port, _plain) = own_cluster();
    let (ok, text) = list(&format!(
        "{}&sslrootcert={}",
        url.replace("sslmode=disable", "sslmode=require"),
        ca.display()
    ));
    assert!(!ok, "connected without TLS: {text}");
    cluster("stop", &dir, port);
}

#[test]
fn three_daemons_regenerate_a_key_they_all_see_once_and_hand_it_to_kms_once() {
    let sim = Sim::start();
    let store = fresh_database();
    let shared = tempfile::tempdir().unwrap();
    let k = key("regenerate me once");
    sim.add_live_key(&k);
    let kms = shared.path().join("kms.env");
    std::fs::write(&kms, format!("TATUM_KMS_PASSWORD=pw\nTATUM_API_KEY={k}\n")).unwrap();
    let restarts = shared.path().join("restarts");
    let tatum = format!(
        "remediation:
  mode: auto
  lease_secs: 30
  policy: {{tatum: regenerate}}
providers:
  tatum:
    api_url: {sim}
    management:
      regenerate:
        method: POST
        url: {sim}/mgmt/tatum/regenerate
        headers: {{content-type: application/json}}
        body: '{{\"apiKey\":\"{{{{secret}}}}\"}}'
        ok: [200]
        new_key_pointer: /apiKey
    consumers:
      - {{name: kms, env_file: '{kms}', variable: TATUM_API_KEY, restart: [sh, -c, 'echo restarted >> {restarts}']}}
",
        sim = sim.url,
        kms = kms.display(),
        restarts = restarts.display()
    );
    let nodes: Vec<(tempfile::TempDir, PathBuf, PathBuf)> = ["kms-1", "kms-2", "kms-3"]
        .iter()
        .map(|n| {
            let dir = tempfile::tempdir().unwrap();
            let log = dir.path().join("app.log");
            std::fs::write(&log, "").unwrap();
            let cfg = write_config(
                dir.path(),
                &[dir.path().join("*.log")],
                &format!("node: {n}\nstore:\n  url: '{store}'\n{tatum}"),
            );
            (dir, log, cfg)
        })
        .collect();
    let daemons: Vec<Daemon> = nodes.iter().map(|(_, _, cfg)| Daemon::start(cfg)).collect();
    for (_, log, _) in &nodes {
        append(log, &format!("request x-api-key: {k}\n"));
    }
    wait_until("the new key in KMS", Duration::from_secs(60), || {
        std::fs::read_to_string(&kms).is_ok_and(|t| !t.contains(&k))
    });
    wait_until(
        "a location from every node",
        Duration::from_secs(30),
        || nodes_of(&nodes[0].2, &k) == ["kms-1", "kms-2", "kms-3"],
    );
    std::thread::sleep(Duration::from_secs(2));
    let state = sim.tatum_key(&k);
    assert_eq!(
        state["regenerations"], 1,
        "one rotation for the fleet: {state}"
    );
    let new_key = state["replacement_key"].as_str().unwrap().to_string();
    assert!(
        std::fs::read_to_string(&kms).unwrap().contains(&new_key),
        "KMS holds the new key"
    );
    assert_eq!(
        std::fs::read_to_string(&restarts).unwrap().lines().count(),
        1,
        "KMS restarted once"
    );
    assert_eq!(incidents(&nodes[1].2).len(), 1);
    for d in daemons {
        let (status, log) = d.terminate();
        assert!(status.success(), "{log}");
        assert!(
            !log.contains(&k[2..]) && !log.contains(&new_key[2..]),
            "a key is in a log"
        );
    }
}
