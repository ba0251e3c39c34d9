//! Logs shipped to `keysentry daemon` (`watch.syslog`, `watch.http_ingest`):
//! the real binary, real senders (util-linux `logger`, Debian's `rsyslogd`,
//! a rustls client, raw HTTP), the simulator as Tatum. A key shipped in a
//! line is contained (one freeze), and the incident names the sender.

mod config;
mod http;
mod limits;
mod syslog;

pub use crate::support::daemon::{Daemon, Launch, DEADLINE};
pub use crate::support::sim::Sim;
pub use crate::support::{key, keysentry};
pub use serde_json::Value;
pub use std::io::{Read, Write};
pub use std::path::{Path, PathBuf};
pub use std::process::Command;
pub use std::time::{Duration, Instant};

/// What the tests put in the ingest token variable.
pub const TOKEN: &str = "ingest-token-0123456789abcdef";

/// A daemon with remediation on against `sim`, the listeners in `watch`
/// (YAML lines under `watch:`), `/metrics` on a free port.
pub struct Shipping {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub daemon: Daemon,
}

pub fn config_text(dir: &Path, sim: &Sim, watch: &str, extra: &str) -> String {
    let state = serde_json::to_string(&dir.join("state").display().to_string()).unwrap();
    format!(
        "state_dir: {state}\nremediation:\n  mode: auto\n  policy: {{tatum: freeze}}\nproviders:\n  tatum:\n    api_url: {}\nwatch:\n{watch}{extra}http:\n  listen: 127.0.0.1:0\n",
        sim.url
    )
}

impl Shipping {
    pub fn start(sim: &Sim, watch: &str) -> Shipping {
        Shipping::start_with(sim, watch, "")
    }

    pub fn start_with(sim: &Sim, watch: &str, extra: &str) -> Shipping {
        Shipping::start_edited(sim, watch, extra, |t| t)
    }

    /// As `start_with`, the config text passed through `edit` first.
    pub fn start_edited(
        sim: &Sim,
        watch: &str,
        extra: &str,
        edit: impl FnOnce(String) -> String,
    ) -> Shipping {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("keysentry.yaml");
        let text = edit(config_text(dir.path(), sim, watch, extra));
        std::fs::write(&config, text).unwrap();
        let daemon = Launch::new(&config)
            .env("KEYSENTRY_INGEST_TOKEN", TOKEN)
            .env("KEYSENTRY_UI_TOKEN", TOKEN)
            .start();
        Shipping {
            dir,
            config,
            daemon,
        }
    }

    /// Where the listener `protocol` really listens (logged at start).
    pub fn syslog_addr(&self, protocol: &str) -> String {
        let prefix = format!("syslog {protocol} listener on ");
        let text = self.daemon.text();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| {
                v["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(&prefix))
            })
            .and_then(|v| v["fields"]["addr"].as_str().map(str::to_string))
            .unwrap_or_else(|| panic!("no {protocol} listener logged:\n{text}"))
    }

    pub fn port_of(&self, protocol: &str) -> String {
        let addr = self.syslog_addr(protocol);
        addr.rsplit(':').next().unwrap().to_string()
    }

    /// `/metrics`.
    pub fn metrics(&self) -> String {
        http_request(self.daemon.port(), "GET", "/metrics", &[], b"").1
    }

    /// Polls `/metrics` until `series` is at least `value`.
    pub fn wait_metric(&self, series: &str, value: f64) -> String {
        let start = Instant::now();
        loop {
            let page = self.metrics();
            if metric(&page, series).is_some_and(|v| v >= value) {
                return page;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "{series} never reached {value}:\n{page}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The one incident's `incidents show --json` and its text form.
    pub fn show(&self, id: u64) -> (Value, String) {
        let config = self.config.display().to_string();
        let id = id.to_string();
        let json = keysentry()
            .args(["incidents", "show", &id, "--json", "--config", &config])
            .output()
            .unwrap();
        let txt = keysentry()
            .args(["incidents", "show", &id, "--config", &config])
            .output()
            .unwrap();
        assert!(
            json.status.success(),
            "{}",
            String::from_utf8_lossy(&json.stderr)
        );
        (
            serde_json::from_slice(&json.stdout).expect("show JSON"),
            String::from_utf8_lossy(&txt.stdout).into_owned(),
        )
    }

    /// Stops the daemon; fails if it does not exit cleanly or if any of
    /// `secrets` is in its log.
    pub fn stop(self, secrets: &[&str]) -> String {
        let (status, log) = self.daemon.terminate();
        assert!(status.success(), "{log}");
        for s in secrets {
            assert!(!log.contains(s), "a secret leaked into the daemon's log");
        }
        log
    }
}

pub fn metric(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(series))
        .and_then(|v| v.trim().parse().ok())
}

/// Incidents in the store, from `/metrics`.
pub fn incident_count(page: &str) -> f64 {
    page.lines()
        .filter(|l| l.starts_with("keysentry_incidents{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// One HTTP/1.1 request (`Connection: close`): (status, body).
pub fn http_request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[&str],
    body: &[u8],
) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
    let chunked = headers.iter().any(|h| h.starts_with("Transfer-Encoding"));
    if !chunked {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) and close before the body is all sent.
    let _ = s.write_all(body);
    let mut resp = Vec::new();
    let _ = s.read_to_end(&mut resp);
    let resp = String::from_utf8_lossy(&resp).into_owned();
    let status = resp
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|x| x.1)
        .unwrap_or("")
        .to_string();
    (status, body)
}

/// Runs `logger` (util-linux), failing the test if it fails.
pub fn logger(args: &[&str]) {
    let out = Command::new("logger")
        .args(args)
        .output()
        .expect("run logger");
    assert!(
        out.status.success(),
        "logger {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
