//! `keysentry daemon`: the real binary on a temp config, watched logs in a
//! temp directory, its JSON log on stderr and its HTTP endpoint as what a
//! user would see; and `keysentry::daemon::run` in-process on port 0 where
//! no process is needed. One file per area; the harnesses are
//! `support::daemon` and `support::sim`.

mod health;
mod in_process;
mod logs;
mod remediation;
mod repositories;
mod signals;

pub use crate::support::daemon::{Daemon, DEADLINE};
pub use crate::support::sim::Sim;
pub use crate::support::{fingerprint as fp, key};
pub use std::io::{Read, Write};
pub use std::path::{Path, PathBuf};
pub use std::process::Command;
pub use std::time::{Duration, Instant};

pub fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log for append");
    f.write_all(text.as_bytes()).expect("append to log");
}

/// Writes a config watching `logs`, with the HTTP endpoint on a free port
/// and, unless `extra` configures it, remediation off (no provider call).
pub fn write_config(dir: &Path, logs: &[PathBuf], extra: &str) -> PathBuf {
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

/// A plain HTTP/1.0 GET: (status, body).
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    http(&format!("127.0.0.1:{port}"), "GET", path, "")
}

pub fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
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

pub fn metric(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
}

/// Polls `/metrics` until `series` reads `value`; returns the page.
pub fn wait_metric(port: u16, series: &str, value: f64) -> String {
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

/// Runs git in `repo`, failing the test if it fails.
pub fn git(repo: &Path, args: &[&str]) {
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

/// Lets the tailer of `glob` make at least `rounds` more passes, seen from
/// outside: each round appends a line to `log` (a file under `glob`) and
/// waits until `/metrics` counts it. What a fixed sleep guessed at ("several
/// polls later"), without depending on how loaded the machine is.
pub fn passes_later(d: &Daemon, glob: &Path, log: &Path, rounds: u32) {
    let series = format!(
        "keysentry_scanned_lines_total{{source=\"log:{}\"}}",
        glob.display()
    );
    for _ in 0..rounds {
        let (_, page) = http_get(d.port(), "/metrics");
        let now = metric(&page, &series).unwrap_or(0.0);
        append(log, "a line that counts a pass\n");
        wait_metric(d.port(), &series, now + 1.0);
    }
}

/// Polls `/metrics` until `series` reads at least `value` (a counter that
/// may step past it between two looks); returns the page.
pub fn wait_metric_at_least(port: u16, series: &str, value: f64) -> String {
    let start = Instant::now();
    loop {
        let (_, body) = http_get(port, "/metrics");
        if metric(&body, series).is_some_and(|v| v >= value) {
            return body;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{series} never reached {value}:\n{body}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
