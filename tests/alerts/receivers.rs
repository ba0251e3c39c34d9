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

pub use crate::support::sim::Sim;

/// A real SMTP server (aiosmtpd) on a free port, writing each received
/// message as a JSON line; killed when dropped.
pub struct Smtp {
    child: Child,
    pub addr: String,
    out: PathBuf,
    _dir: tempfile::TempDir,
    _stdout: ChildStdout,
}

const AIOSMTPD_FIX: &str =
    "install Debian's python3-aiosmtpd (or `python3 -m pip install aiosmtpd`)";

/// The first Python that can import aiosmtpd: `$KEYSENTRY_TEST_PYTHON`, the
/// `python3` on PATH, or Debian's `/usr/bin/python3` (where the
/// `python3-aiosmtpd` package installs it, even when PATH has another Python).
fn python_with_aiosmtpd() -> String {
    let candidates = std::env::var("KEYSENTRY_TEST_PYTHON")
        .into_iter()
        .chain(["python3".to_string(), "/usr/bin/python3".to_string()]);
    for python in candidates {
        let ok = Command::new(&python)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return python;
        }
    }
    "python3".to_string()
}

impl Smtp {
    pub fn start() -> Smtp {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("mail.jsonl");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp_sink.py");
        let python = python_with_aiosmtpd();
        let mut child = Command::new(&python)
            .arg(&script)
            .arg(&out)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {python} ({e}): {AIOSMTPD_FIX}"));
        let (url, stdout) = first_line(
            &mut child,
            &format!("the SMTP test server ({python} tests/smtp_sink.py; {AIOSMTPD_FIX})"),
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
