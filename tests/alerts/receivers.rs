//! The receivers alerts are delivered to, each a real process on
//! 127.0.0.1:0 that is killed when dropped: `keysentry-sim` (webhook sinks,
//! GitHub issues) and an aiosmtpd SMTP server (tests/smtp_sink.py).

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Reads a child's first stdout line (`listening on ...`), failing after a
/// deadline instead of hanging the test run.
fn first_line(child: &mut Child, what: &str) -> (String, ChildStdout) {
    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send((line, reader.into_inner()));
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok((line, stdout)) if line.starts_with("listening on ") => {
            (line["listening on ".len()..].trim().to_string(), stdout)
        }
        other => {
            let _ = child.kill();
            let mut stderr = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = e.read_to_string(&mut stderr);
            }
            let line = other.map(|(l, _)| l).unwrap_or_default();
            panic!("{what} did not start: first line {line:?}, stderr: {stderr}");
        }
    }
}

/// `keysentry-sim` on a free port, killed when dropped.
pub struct Sim {
    child: Child,
    pub url: String,
    _stdout: ChildStdout,
}

impl Sim {
    pub fn start() -> Sim {
        let mut child = Command::new(env!("CARGO_BIN_EXE_keysentry-sim"))
            .args(["--listen", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start keysentry-sim");
        let (url, stdout) = first_line(&mut child, "keysentry-sim");
        Sim {
            child,
            url,
            _stdout: stdout,
        }
    }

    pub async fn get(&self, path: &str) -> Value {
        let res = reqwest::get(format!("{}{path}", self.url))
            .await
            .expect("query the simulator");
        res.json().await.expect("simulator answers JSON")
    }

    pub async fn behave(&self, path: &str, behaviour: Value) {
        let res = reqwest::Client::new()
            .put(format!("{}{path}", self.url))
            .json(&behaviour)
            .send()
            .await
            .expect("configure the simulator");
        assert!(res.status().is_success(), "{path}: {}", res.status());
    }

    /// The raw bodies a webhook sink received.
    pub async fn sink_bodies(&self, name: &str) -> Vec<String> {
        let records = self.get(&format!("/_sim/sink/{name}")).await;
        let records = records.as_array().expect("a list").clone();
        records
            .iter()
            .map(|r| r["body"].as_str().expect("body text").to_string())
            .collect()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real SMTP server (aiosmtpd) on a free port, writing each received
/// message as a JSON line; killed when dropped.
pub struct Smtp {
    child: Child,
    pub addr: String,
    out: PathBuf,
    _dir: tempfile::TempDir,
    _stdout: ChildStdout,
}

impl Smtp {
    pub fn start() -> Smtp {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("mail.jsonl");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp_sink.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(&out)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run python3 ({e}): install Python 3, then run `python3 -m pip install aiosmtpd`")
            });
        let (url, stdout) = first_line(
            &mut child,
            "the SMTP test server (needs `python3 -m pip install aiosmtpd`)",
        );
        let addr = url.trim_start_matches("smtp://").to_string();
        Smtp {
            child,
            addr,
            out,
            _dir: dir,
            _stdout: stdout,
        }
    }

    /// The messages received so far, waiting up to 10 s for at least `n`.
    pub fn messages(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&self.out).unwrap_or_default();
            let messages: Vec<Value> = text
                .split_inclusive('\n')
                .filter(|l| l.ends_with('\n'))
                .map(|l| serde_json::from_str(l).expect("sink writes JSON lines"))
                .collect();
            if messages.len() >= n || Instant::now() > deadline {
                return messages;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
