//! The one daemon harness, two ways to run it:
//!
//! - [`Daemon`]: the real `keysentry daemon` binary, for what only a process
//!   shows (signals, exit status, systemd notify, its log on stderr). Its
//!   stderr is collected line by line; addresses are read from its
//!   `listening on` lines.
//! - [`InProcess`]: `keysentry::daemon::run` on a runtime in the test, its
//!   sockets bound on port 0 by the test (so the port is known without
//!   reading a log), stopped by firing its trigger and reloaded through
//!   its channel, as the binary does on SIGTERM and SIGHUP; it says when it
//!   is ready, so no test waits on a guess.

use super::fingerprint;
use keysentry::daemon::{Control, DaemonError, Listeners, Loaded, Remote};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a `wait_*` waits for the daemon before it fails the test.
pub const DEADLINE: Duration = Duration::from_secs(15);
/// The documented stop limit, plus the slack a loaded machine needs.
const STOP_WITHIN: Duration = Duration::from_secs(10);

/// How to start the binary; [`Daemon::start`] covers the usual case.
pub struct Launch {
    cmd: Command,
    json: bool,
    wait_ready: bool,
}

impl Launch {
    /// `keysentry daemon --config CONFIG` with a clean environment (no
    /// systemd, no log filter) and a JSON log.
    pub fn new(config: &Path) -> Launch {
        Launch::wrapped(Command::new(env!("CARGO_BIN_EXE_keysentry")), config)
    }

    /// As `new`, run through `cmd` (which already names the binary: e.g.
    /// `unshare --user keysentry`).
    pub fn wrapped(mut cmd: Command, config: &Path) -> Launch {
        cmd.args(["daemon", "--config"])
            .arg(config)
            .env_remove("RUST_LOG")
            .env_remove("KEYSENTRY_LOG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC");
        Launch {
            cmd,
            json: true,
            wait_ready: true,
        }
    }

    pub fn env(mut self, name: &str, value: impl AsRef<std::ffi::OsStr>) -> Launch {
        self.cmd.env(name, value);
        self
    }

    /// The human log format instead of JSON.
    pub fn text_log(mut self) -> Launch {
        self.json = false;
        self
    }

    /// Returns at once instead of waiting for "daemon ready" (for daemons
    /// that may never get there, or that the test waits on otherwise).
    pub fn no_wait(mut self) -> Launch {
        self.wait_ready = false;
        self
    }

    pub fn start(mut self) -> Daemon {
        if self.json {
            self.cmd.args(["--log-format", "json"]);
        }
        let mut child = self
            .cmd
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
                sink.lock().expect("log lock").push(line);
            }
        });
        let d = Daemon { child, log };
        if self.wait_ready {
            d.wait_for("the daemon to be ready", |l| l.contains("daemon ready"));
        }
        d
    }
}

/// The daemon binary under test, killed when dropped.
pub struct Daemon {
    pub child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

/// One `finding` line of the JSON log.
#[derive(Debug, Clone)]
pub struct Reported {
    pub fingerprint_short: String,
    pub path: String,
    pub line: u64,
    pub offset: u64,
}

impl Daemon {
    /// Started on `config` with a JSON log; returns once it is ready.
    pub fn start(config: &Path) -> Daemon {
        Launch::new(config).start()
    }

    /// As `start`, with more environment.
    pub fn start_with(config: &Path, env: &[(&str, &str)]) -> Daemon {
        env.iter()
            .fold(Launch::new(config), |l, (k, v)| l.env(k, v))
            .start()
    }

    /// In a fresh user namespace, where even root cannot read a mode-000
    /// file: "unreadable" as an ordinary service user meets it.
    pub fn start_unprivileged(config: &Path) -> Daemon {
        let mut unshare = Command::new("unshare");
        unshare.args(["--user", env!("CARGO_BIN_EXE_keysentry")]);
        Launch::wrapped(unshare, config).start()
    }

    pub fn lines(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }

    /// Everything logged so far.
    pub fn text(&self) -> String {
        self.lines().join("\n")
    }

    /// Waits for a logged line that satisfies `pred`.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) {
        self.wait_until(what, |lines| lines.iter().any(|l| pred(l)));
    }

    /// Waits until `cond` holds for the log so far.
    pub fn wait_until(&self, what: &str, cond: impl Fn(&[String]) -> bool) {
        let start = Instant::now();
        while start.elapsed() < DEADLINE {
            if cond(&self.lines()) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "timed out waiting for {what}; daemon stderr:\n{}",
            self.text()
        );
    }

    /// Every `finding` the daemon logged.
    pub fn findings(&self) -> Vec<Reported> {
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

    pub fn reports_of(&self, key: &str) -> Vec<Reported> {
        let short = fingerprint(key)[..12].to_string();
        self.findings()
            .into_iter()
            .filter(|r| r.fingerprint_short == short)
            .collect()
    }

    /// Waits until `key` has been reported, and returns its reports.
    pub fn wait_for_key(&self, key: &str) -> Vec<Reported> {
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
            &fingerprint(key)[..12],
            self.text()
        );
    }

    /// The address one of its servers logged: the webhook's own (when
    /// `webhook` and it has one) or `/healthz`'s.
    fn address(&self, webhook: bool) -> String {
        self.wait_for("the daemon to listen", |l| l.contains("daemon ready"));
        let text = self.text();
        let marker = "listening on http://";
        let servers: Vec<(bool, usize)> = text
            .match_indices(marker)
            .map(|(i, _)| (text[..i].ends_with("GitHub webhook "), i + marker.len()))
            .collect();
        let (_, at) = *servers
            .iter()
            .find(|(is_webhook, _)| *is_webhook == webhook)
            .or(servers.first())
            .expect("listening line");
        text[at..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
            .collect()
    }

    /// `http://ADDR` of `/healthz` and `/metrics`.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.address(false))
    }

    /// `http://ADDR` of the webhook (the `/healthz` server when they share
    /// one).
    pub fn webhook_url(&self) -> String {
        format!("http://{}", self.address(true))
    }

    /// The port of `/healthz`.
    pub fn port(&self) -> u16 {
        let addr = self.address(false);
        addr.rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a port")
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(ok.success());
    }

    /// Sends SIGTERM and waits (at most 10 s, the documented limit) for the
    /// exit; returns its status and everything it logged.
    pub fn terminate(mut self) -> (ExitStatus, String) {
        self.signal("TERM");
        let start = Instant::now();
        while start.elapsed() < STOP_WITHIN {
            if let Some(status) = self.child.try_wait().expect("wait for the daemon") {
                // Let the reader thread drain the last lines.
                std::thread::sleep(Duration::from_millis(50));
                return (status, self.text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "daemon did not stop within 10 s of SIGTERM:\n{}",
            self.text()
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `keysentry::daemon::run` in this process, on the test's runtime.
pub struct InProcess {
    /// Where `/healthz`, `/readyz` and `/metrics` answer.
    pub http: SocketAddr,
    /// The webhook's own socket, when it has one.
    pub webhook: Option<SocketAddr>,
    remote: Remote,
    task: tokio::task::JoinHandle<Result<(), DaemonError>>,
}

impl InProcess {
    /// Loads `config` (whose `http.listen` should be port 0), binds it and
    /// runs the daemon. Returns once it is ready (its sources run).
    pub async fn start(config: &Path) -> InProcess {
        let loaded = Loaded::from_file(config).expect("the config loads");
        let listeners = Listeners::bind(&loaded).await.expect("the sockets bind");
        let http = listeners.http_addr().expect("http.listen is set");
        let webhook = listeners.webhook_addr();
        let (mut remote, control) = Control::channel();
        let path: PathBuf = config.to_path_buf();
        let task =
            tokio::spawn(
                async move { keysentry::daemon::run(&path, loaded, listeners, control).await },
            );
        let ready = tokio::time::timeout(DEADLINE, remote.ready()).await;
        assert!(
            matches!(ready, Ok(true)),
            "the daemon never became ready: {ready:?}"
        );
        InProcess {
            http,
            webhook,
            remote,
            task,
        }
    }

    /// `GET path`: (status, body).
    pub async fn get(&self, path: &str) -> (u16, String) {
        let res = reqwest::get(format!("http://{}{path}", self.http))
            .await
            .expect("the daemon answers");
        let status = res.status().as_u16();
        (status, res.text().await.unwrap_or_default())
    }

    /// Polls `/metrics` until `cond` holds for the page; returns it.
    pub async fn until(&self, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            if let Ok(res) = reqwest::get(format!("http://{}/metrics", self.http)).await {
                let page = res.text().await.unwrap_or_default();
                if cond(&page) {
                    return page;
                }
            }
            assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Asks for a reload, as SIGHUP does, and waits until it is done
    /// (applied or refused).
    pub async fn reload(&mut self) {
        let done = tokio::time::timeout(DEADLINE, self.remote.reload()).await;
        assert!(matches!(done, Ok(true)), "the reload never ended: {done:?}");
    }

    /// Fires the shutdown, as SIGTERM does; returns what `run` returned,
    /// failing the test unless it returned within the stop limit.
    pub async fn stop(self) -> Result<(), DaemonError> {
        self.remote.trigger.fire();
        tokio::time::timeout(STOP_WITHIN, self.task)
            .await
            .expect("run returns within the stop limit")
            .expect("run does not panic")
    }
}
