//! `keysentry daemon`: the real binary on a temp config, watched logs in a
//! temp directory, its JSON log on stderr and its HTTP endpoint as what a
//! user would see.

mod health;

use keysentry::scan::Fingerprint;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(15);

/// A distinct, valid-looking Tatum key per seed.
fn key(seed: &str) -> String {
    let hex = Fingerprint::of(seed.as_bytes()).as_str().to_string();
    format!("t-{}-{}", &hex[..24], &hex[24..48])
}

fn fp(key: &str) -> String {
    Fingerprint::of(key.as_bytes()).as_str().to_string()
}

fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log for append");
    f.write_all(text.as_bytes()).expect("append to log");
}

/// Writes a config watching `logs`, with the HTTP endpoint on a free port
/// and, unless `extra` configures it, remediation off (no provider call).
fn write_config(dir: &Path, logs: &[PathBuf], extra: &str) -> PathBuf {
    let logs: Vec<String> = logs
        .iter()
        .map(|l| serde_json::to_string(&l.display().to_string()).unwrap())
        .collect();
    // Remediation is off unless a test brings the simulator.
    let remediation = if extra.contains("remediation:") {
        ""
    } else {
        "remediation:\n  mode: off\n"
    };
    let text = format!(
        "state_dir: {state}\n{remediation}watch:\n  logs: [{logs}]\n  poll: 200ms\n{extra}http:\n  listen: 127.0.0.1:0\n",
        state = serde_json::to_string(&dir.join("state").display().to_string()).unwrap(),
        logs = logs.join(", "),
    );
    let path = dir.join("keysentry.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The daemon under test, killed when dropped.
struct Daemon {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

#[derive(Debug, Clone)]
struct Reported {
    fingerprint_short: String,
    path: String,
    line: u64,
    offset: u64,
}

impl Daemon {
    fn start(config: &Path) -> Daemon {
        Daemon::start_with(config, &[])
    }

    fn start_with(config: &Path, env: &[(&str, &str)]) -> Daemon {
        Daemon::spawn(Command::new(env!("CARGO_BIN_EXE_keysentry")), config, env)
    }

    /// In a fresh user namespace, where even root cannot read a mode-000
    /// file: "unreadable" as an ordinary service user meets it.
    fn start_unprivileged(config: &Path) -> Daemon {
        let mut unshare = Command::new("unshare");
        unshare.args(["--user", env!("CARGO_BIN_EXE_keysentry")]);
        Daemon::spawn(unshare, config, &[])
    }

    fn spawn(mut cmd: Command, config: &Path, env: &[(&str, &str)]) -> Daemon {
        let mut child = cmd
            .args(["daemon", "--log-format", "json", "--config"])
            .arg(config)
            .env_remove("RUST_LOG")
            .env_remove("KEYSENTRY_LOG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start keysentry daemon");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let d = Daemon { child, log };
        d.wait_for("the daemon to be ready", |l| l.contains("daemon ready"));
        d
    }

    fn lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    fn stderr(&self) -> String {
        self.lines().join("\n")
    }

    fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) {
        let start = Instant::now();
        while start.elapsed() < DEADLINE {
            if self.lines().iter().any(|l| pred(l)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "timed out waiting for {what}; daemon stderr:\n{}",
            self.stderr()
        );
    }

    /// Every `finding` the daemon logged.
    fn findings(&self) -> Vec<Reported> {
        self.lines()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["fields"]["message"] == "finding")
            .map(|v| {
                let f = &v["fields"];
                Reported {
                    fingerprint_short: f["fingerprint"].as_str().unwrap_or("").to_string(),
                    path: f["path"].as_str().unwrap_or("").to_string(),
                    line: f["line"].as_u64().unwrap_or(0),
                    offset: f["offset"].as_u64().unwrap_or(0),
                }
            })
            .collect()
    }

    fn reports_of(&self, key: &str) -> Vec<Reported> {
        let short = fp(key)[..12].to_string();
        self.findings()
            .into_iter()
            .filter(|r| r.fingerprint_short == short)
            .collect()
    }

    /// Waits until `key` has been reported, and returns its reports.
    fn wait_for_key(&self, key: &str) -> Vec<Reported> {
        let start = Instant::now();
        while start.elapsed() < DEADLINE {
            let found = self.reports_of(key);
            if !found.is_empty() {
                return found;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "timed out waiting for a finding of {}; daemon stderr:\n{}",
            &fp(key)[..12],
            self.stderr()
        );
    }

    fn port(&self) -> u16 {
        self.wait_for("the HTTP listener", |l| l.contains("listening on http://"));
        let lines = self.lines();
        let line = lines
            .iter()
            .find(|l| l.contains("listening on http://"))
            .unwrap();
        let at = line.find("127.0.0.1:").unwrap() + "127.0.0.1:".len();
        line[at..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect::<String>()
            .parse()
            .unwrap()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(ok.success());
    }

    /// Sends SIGTERM and waits (at most 10 s, the documented limit) for the
    /// exit.
    fn terminate(mut self) -> (ExitStatus, String) {
        self.signal("TERM");
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader thread drain the last lines.
                std::thread::sleep(Duration::from_millis(50));
                return (status, self.stderr());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "daemon did not stop within 10 s of SIGTERM:\n{}",
            self.stderr()
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.0 GET: (status, body).
fn http_get(port: u16, path: &str) -> (u16, String) {
    http(&format!("127.0.0.1:{port}"), "GET", path, "")
}

fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp[9..12].parse().unwrap();
    let body = resp.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    (status, body.to_string())
}

fn metric(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
}

/// Polls `/metrics` until `series` reads `value`; returns the page.
fn wait_metric(port: u16, series: &str, value: f64) -> String {
    let start = Instant::now();
    loop {
        let (_, body) = http_get(port, "/metrics");
        if metric(&body, series) == Some(value) {
            return body;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{series} never became {value}:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_key_appended_to_a_watched_log_is_reported_once_and_never_logged() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    append(&log, "started\n");
    let cfg = write_config(dir.path(), &[dir.path().join("*.log")], "");
    let d = Daemon::start(&cfg);
    let k = key("appended");
    append(&log, &format!("GET /v3/tatum/version x-api-key: {k} 200\n"));
    let found = d.wait_for_key(&k);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].path, log.display().to_string());
    assert_eq!(found[0].line, 2);
    assert_eq!(
        found[0].offset,
        8 + "GET /v3/tatum/version x-api-key: ".len() as u64
    );
    let (status, stderr) = d.terminate();
    assert!(status.success(), "{stderr}");
    assert!(
        !stderr.contains(&k[2..]),
        "the key leaked into the daemon's log"
    );
}

#[test]
fn existing_content_is_skipped_by_default_but_line_numbers_stay_right() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("big.log");
    let old = key("already there");
    append(&log, &format!("one\ntwo\nkey {old}\n"));
    let cfg = write_config(dir.path(), &[dir.path().join("*.log")], "");
    let d = Daemon::start(&cfg);
    let new = key("new line");
    append(&log, &format!("key {new}\n"));
    let found = d.wait_for_key(&new);
    assert_eq!(found[0].line, 4);
    assert!(
        d.reports_of(&old).is_empty(),
        "from: end must skip what was there"
    );
}

#[test]
fn from_start_reads_existing_content() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("old.log");
    let old = key("from start");
    append(&log, &format!("x\nkey {old}\n"));
    let cfg = write_config(dir.path(), &[dir.path().join("*.log")], "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("  poll: 200ms\n", "  poll: 200ms\n  from: start\n");
    std::fs::write(&cfg, text).unwrap();
    let d = Daemon::start(&cfg);
    assert_eq!(d.wait_for_key(&old)[0].line, 2);
}

#[test]
fn rename_rotation_finishes_the_old_file_and_follows_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let cfg = write_config(dir.path(), &[dir.path().join("*.log")], "");
    let d = Daemon::start(&cfg);
    let (k1, k2, k3) = (key("rot1"), key("rot2"), key("rot3"));
    append(&log, &format!("a {k1}\n"));
    d.wait_for_key(&k1);
    // logrotate: rename, then the application writes once more to its
    // still-open file before it reopens the new one.
    let rotated = dir.path().join("app.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    append(&rotated, &format!("b {k2}\n"));
    append(&log, &format!("c {k3}\n"));
    let late = d.wait_for_key(&k2);
    let fresh = d.wait_for_key(&k3);
    assert_eq!(late[0].line, 2);
    assert_eq!(fresh[0].path, log.display().to_string());
    assert_eq!(fresh[0].line, 1);
    let k4 = key("rot4");
    append(&log, &format!("d {k4}\n"));
    d.wait_for_key(&k4);
    for k in [&k1, &k2, &k3, &k4] {
        assert_eq!(d.reports_of(k).len(), 1, "reported twice: {}", d.stderr());
    }
}

#[test]
fn copytruncate_restarts_at_the_beginning() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let cfg = write_config(dir.path(), &[dir.path().join("*.log")], "");
    let d = Daemon::start(&cfg);
    let (k1, k2, k3) = (key("ct1"), key("ct2"), key("ct3"));
    append(
        &log,
        &format!("2024-01-01 padding padding padding padding\nfirst {k1}\n"),
    );
    d.wait_for_key(&k1);
    // Truncated and rewritten shorter than what was read.
    std::fs::File::create(&log).unwrap();
    append(&log, &format!("{k2}\n"));
    assert_eq!(d.wait_for_key(&k2)[0].line, 1);
    // Truncated and, before the daemon looks, rewritten longer.
    let mut f = std::fs::File::create(&log).unwrap();
    write!(
        f,
        "2025-02-02 other start\n{}\nthird {k3}\n",
        "z".repeat(200)
    )
    .unwrap();
    drop(f);
    assert_eq!(d.wait_for_key(&k3)[0].line, 3);
    assert_eq!(d.reports_of(&k1).len(), 1);
    assert_eq!(d.reports_of(&k2).len(), 1);
}

#[test]
fn a_file_created_after_start_is_read_from_its_beginning() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("later");
    let cfg = write_config(dir.path(), &[sub.join("*.log")], "");
    let d = Daemon::start(&cfg);
    // Its directory does not exist yet either.
    std::fs::create_dir(&sub).unwrap();
    let k = key("created later");
    std::fs::write(sub.join("new.log"), format!("hello\n{k}\n")).unwrap();
    let found = d.wait_for_key(&k);
    assert_eq!(found[0].line, 2);
    assert_eq!(found[0].offset, 6);
}

#[test]
fn a_partial_line_is_scanned_once_it_is_complete() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let cfg = write_config(dir.path(), &[dir.path().join("*.log")], "");
    let d = Daemon::start(&cfg);
    let port = d.port();
    let k = key("partial");
    let (head, tail) = k.split_at(20);
    append(&log, &format!("complete line\nkey={head}"));
    // The daemon has read the write that ends in the partial line once it
    // counts the complete line before it.
    let series = format!(
        "keysentry_scanned_lines_total{{source=\"log:{}\"}}",
        dir.path().join("*.log").display()
    );
    wait_metric(port, &series, 1.0);
    append(&log, &format!("{tail} ok\n"));
    let found = d.wait_for_key(&k);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].line, 2);
    assert_eq!(found[0].offset, 14 + 4);
}

#[test]
fn a_very_long_line_is_scanned_in_bounded_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let cfg = write_config(dir.path(), &[dir.path().join("*.log")], "");
    let d = Daemon::start(&cfg);
    let k = key("long line");
    let filler = "word ".repeat(700_000);
    append(&log, &format!("{filler}{k} {filler}\nnext\n"));
    let found = d.wait_for_key(&k);
    assert_eq!(found[0].line, 1);
    assert_eq!(found[0].offset, filler.len() as u64);
}

#[test]
fn sigterm_then_restart_neither_misses_nor_repeats_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let cfg = write_config(dir.path(), &[dir.path().join("*.log")], "");
    let d = Daemon::start(&cfg);
    let before = key("before stop");
    append(&log, &format!("first\nkey {before}\n"));
    d.wait_for_key(&before);
    let (status, stderr) = d.terminate();
    assert!(status.success(), "exit status {status:?}\n{stderr}");

    // Written while the daemon is down.
    let during = key("while stopped");
    append(&log, &format!("third\nkey {during}\n"));
    let d = Daemon::start(&cfg);
    let found = d.wait_for_key(&during);
    assert_eq!(found[0].line, 4);
    // The pipeline keeps file order: had the earlier line been read again,
    // it would have been reported before this one.
    assert!(
        d.reports_of(&before).is_empty(),
        "reported again after restart:\n{}",
        d.stderr()
    );
}

#[test]
fn a_rotation_while_stopped_finishes_the_old_file_and_reads_the_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let cfg = write_config(dir.path(), &[dir.path().join("*.log")], "");
    let d = Daemon::start(&cfg);
    let (k1, k2, k3) = (key("down1"), key("down2"), key("down3"));
    append(
        &log,
        &format!(
            "2024-01-01 start
{k1}
"
        ),
    );
    d.wait_for_key(&k1);
    let (status, stderr) = d.terminate();
    assert!(status.success(), "{stderr}");

    let rotated = dir.path().join("app.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    append(
        &rotated,
        &format!(
            "{k2}
"
        ),
    );
    append(
        &log,
        &format!(
            "2024-01-02 start
{k3}
"
        ),
    );
    let d = Daemon::start(&cfg);
    assert_eq!(d.wait_for_key(&k2)[0].line, 3);
    assert_eq!(d.wait_for_key(&k3)[0].line, 2);
    assert!(d.reports_of(&k1).is_empty(), "{}", d.stderr());
}

#[test]
fn an_unreadable_log_is_reported_once_and_the_others_are_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let locked = dir.path().join("locked.log");
    append(&locked, "private\n");
    std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    let cfg = write_config(dir.path(), &[dir.path().join("*.log")], "");
    let d = Daemon::start_unprivileged(&cfg);
    let k = key("next to a locked file");
    append(&dir.path().join("open.log"), &format!("x-api-key: {k}\n"));
    d.wait_for_key(&k);
    // Alive (a restart would not help) but not ready, naming the file.
    assert_eq!(http_get(d.port(), "/healthz").0, 200);
    let (status, body) = http_get(d.port(), "/readyz");
    assert_eq!(status, 503, "{body}");
    assert!(
        body.contains("cannot read") && body.contains("locked.log"),
        "{body}"
    );
    assert!(
        body.contains("ReadOnlyPaths="),
        "says how to fix it: {body}"
    );
    // Several polls later, still said once.
    std::thread::sleep(Duration::from_millis(1000));
    let warnings = d
        .lines()
        .iter()
        .filter(|l| l.contains("cannot read") && l.contains("locked.log"))
        .count();
    assert_eq!(warnings, 1, "{}", d.stderr());
    let (status, stderr) = d.terminate();
    assert!(status.success(), "{stderr}");
}

#[test]
fn sighup_keeps_running_on_a_broken_config_and_applies_a_good_one() {
    let dir = tempfile::tempdir().unwrap();
    let (one, two) = (dir.path().join("one"), dir.path().join("two"));
    std::fs::create_dir(&one).unwrap();
    std::fs::create_dir(&two).unwrap();
    let cfg = write_config(dir.path(), &[one.join("*.log")], "");
    let good = std::fs::read_to_string(&cfg).unwrap();
    let d = Daemon::start(&cfg);

    std::fs::write(&cfg, good.replace("poll: 200ms", "poll: sometimes")).unwrap();
    d.signal("HUP");
    d.wait_for("the reload error", |l| {
        l.contains("reload failed") && l.contains("watch.poll") && l.contains("sometimes")
    });
    let k1 = key("after broken reload");
    append(&one.join("a.log"), &format!("{k1}\n"));
    d.wait_for_key(&k1);

    let glob_two = serde_json::to_string(&two.join("*.log").display().to_string()).unwrap();
    let glob_one = serde_json::to_string(&one.join("*.log").display().to_string()).unwrap();
    std::fs::write(&cfg, good.replace(&glob_one, &glob_two)).unwrap();
    d.signal("HUP");
    d.wait_for("the reload", |l| l.contains("reloaded"));
    let k2 = key("after good reload");
    append(&two.join("b.log"), &format!("{k2}\n"));
    d.wait_for_key(&k2);
    let (status, stderr) = d.terminate();
    assert!(status.success(), "{stderr}");
}

#[test]
fn healthz_names_a_missing_source_and_metrics_count_what_was_scanned() {
    let dir = tempfile::tempdir().unwrap();
    let (here, missing) = (dir.path().join("here"), dir.path().join("missing"));
    std::fs::create_dir(&here).unwrap();
    let cfg = write_config(dir.path(), &[here.join("*.log"), missing.join("*.log")], "");
    let d = Daemon::start(&cfg);
    let port = d.port();

    let (status, body) = http_get(port, "/readyz");
    assert_eq!(status, 503, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let name = format!("log:{}", missing.join("*.log").display());
    assert_eq!(v["status"], "degraded", "{body}");
    assert_eq!(v["components"][&name]["status"], "failed", "{body}");
    assert!(body.contains("does not exist"), "{body}");
    assert_eq!(http_get(port, "/healthz").0, 200, "alive, only degraded");

    std::fs::create_dir(&missing).unwrap();
    let start = Instant::now();
    while http_get(port, "/readyz").0 != 200 {
        assert!(start.elapsed() < DEADLINE, "never healthy");
        std::thread::sleep(Duration::from_millis(50));
    }

    let k = key("metrics");
    append(&here.join("a.log"), &format!("line\n{k}\n"));
    d.wait_for_key(&k);
    let (status, body) = http_get(port, "/metrics");
    assert_eq!(status, 200);
    let src = format!("source=\"log:{}\"", here.join("*.log").display());
    assert_eq!(
        metric(&body, &format!("keysentry_scanned_lines_total{{{src}}}")),
        Some(2.0),
        "{body}"
    );
    assert_eq!(
        metric(&body, "keysentry_findings_total{provider=\"tatum\"}"),
        Some(1.0),
        "{body}"
    );
    assert!(body.contains("# TYPE keysentry_remediation_duration_seconds histogram"));
    assert!(body.contains("# TYPE keysentry_source_errors_total counter"));
}

/// What systemd would receive on its notify socket.
fn notify_messages(sock: &std::os::unix::net::UnixDatagram, until: &str) -> Vec<String> {
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while start.elapsed() < DEADLINE {
        if let Ok(n) = sock.recv(&mut buf) {
            got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            if got.last().is_some_and(|m| m.contains(until)) {
                return got;
            }
        }
    }
    panic!("no {until} from the daemon; got {got:?}");
}

#[test]
fn systemd_hears_ready_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    let cfg = write_config(dir.path(), &[dir.path().join("*.log")], "");
    let d = Daemon::start_with(
        &cfg,
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    let first = notify_messages(&sock, "READY=1");
    assert!(first.iter().all(|m| !m.contains("STOPPING")), "{first:?}");
    notify_messages(&sock, "WATCHDOG=1");
    let (status, stderr) = d.terminate();
    assert!(status.success(), "{stderr}");
    notify_messages(&sock, "STOPPING=1");
}

#[test]
fn a_broken_config_at_start_is_an_error_naming_it_and_never_ready() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("keysentry.yaml");
    std::fs::write(&cfg, "watch:\n  logs: [\"relative/*.log\"]\n").unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_nonblocking(true).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_keysentry"))
        .args(["daemon", "--config"])
        .arg(&cfg)
        .env("NOTIFY_SOCKET", &sock_path)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("watch.logs") && stderr.contains("relative/*.log"),
        "{stderr}"
    );
    let mut buf = [0u8; 512];
    let heard = sock
        .recv(&mut buf)
        .map(|n| String::from_utf8_lossy(&buf[..n]).into_owned());
    assert!(heard.is_err(), "notified {heard:?}");
}

/// keysentry-sim in-process on a free port, stopped when dropped.
struct Sim {
    _sim: keysentry_sim::Running,
    addr: String,
}

impl Sim {
    fn start() -> Sim {
        let sim = keysentry_sim::spawn().expect("start keysentry-sim");
        let addr = sim.addr.clone();
        Sim { _sim: sim, addr }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Makes `key` a live Tatum key.
    fn add_live_key(&self, key: &str) {
        let body = serde_json::json!({ "key": key }).to_string();
        let (status, resp) = http(&self.addr, "POST", "/_sim/tatum/keys", &body);
        assert_eq!(status, 204, "{resp}");
    }

    /// The bodies of the alerts the `name` webhook sink received.
    fn sink(&self, name: &str) -> Vec<String> {
        let (_, body) = http(&self.addr, "GET", &format!("/_sim/sink/{name}"), "");
        let got: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        got.iter()
            .map(|r| r["body"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    /// Queues a fault (`POST /_sim/fault`).
    fn fault(&self, body: &str) {
        let (status, resp) = http(&self.addr, "POST", "/_sim/fault", body);
        assert_eq!(status, 204, "{resp}");
    }

    fn freezes_of(&self, key: &str) -> usize {
        let (_, body) = http(&self.addr, "GET", "/_sim/calls", "");
        let calls: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
        calls
            .iter()
            .filter(|c| c["method"] == "PUT" && c["path"] == "/v3/tatum/freeze")
            .filter(|c| c["key_fingerprint"] == fp(key).as_str())
            .count()
    }

    fn wait_for_freeze(&self, key: &str) {
        let start = Instant::now();
        while self.freezes_of(key) == 0 {
            assert!(start.elapsed() < DEADLINE, "no freeze call for the key");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn a_key_appended_to_a_watched_log_is_contained_exactly_once() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let extra = format!(
        "remediation:\n  mode: auto\n  policy: {{tatum: freeze}}\nproviders:\n  tatum:\n    api_url: {}\n",
        sim.url()
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
    sim.fault(r#"{"path": "/v3/tatum/freeze", "status": 503, "hang_ms": 60000}"#);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let extra = format!(
        "remediation:\n  mode: auto\n  timeout_secs: 120\n  policy: {{tatum: freeze}}\nproviders:\n  tatum:\n    api_url: {}\n",
        sim.url()
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
        sim.fault(r#"{"path": "/v3/tatum/freeze", "status": 500}"#);
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        let extra = format!(
            "remediation:\n  mode: auto\n  max_attempts: 1\n  backoff_ms: {backoff_ms}\n  policy: {{tatum: freeze}}\nproviders:\n  tatum:\n    api_url: {sim}\nalerts:\n  - {{type: webhook, url: '{sim}/_sink/webhook/owner'}}\n",
            sim = sim.url()
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

fn git(repo: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["-c", "user.name=Dev", "-c", "user.email=dev@example.com"])
        .args(args)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

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
        d.stderr()
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
    // Many polls later: still one warning, and /healthz names it.
    std::thread::sleep(Duration::from_millis(1000));
    let said = |what: &str| d.lines().iter().filter(|l| l.contains(what)).count();
    assert_eq!(said("repository scan failed"), 1, "{}", d.stderr());
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
