//! Process hardening seen from outside. `scan` and `daemon` make themselves
//! non-dumpable at start-up (no core dump holds their keys); the kernel shows
//! it by giving the process's /proc files to root, so another process of the
//! service user can no longer read /proc/<pid>/environ or mem. Run as an
//! ordinary user (nobody, via setpriv) so the change of owner is visible.

use crate::scan_cli::KEY;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tempfile::TempDir;

const NOBODY: u32 = 65534;
const DEADLINE: Duration = Duration::from_secs(20);

fn as_nobody(args: &[&str]) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_keysentry"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("KEYSENTRY_LOG")
        .env_remove("NOTIFY_SOCKET");
    cmd
}

/// The owner of /proc/<pid>/environ once the process runs keysentry (setpriv
/// execs it in place), polled until it is root or the deadline passes.
fn proc_owner(child: &Child) -> u32 {
    let pid = child.id();
    let start = Instant::now();
    let mut owner = u32::MAX;
    while start.elapsed() < Duration::from_secs(5) {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmdline.starts_with(env!("CARGO_BIN_EXE_keysentry").as_bytes()) {
            if let Ok(m) = std::fs::metadata(format!("/proc/{pid}/environ")) {
                owner = m.uid();
                if owner == 0 {
                    break;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    owner
}

fn kill(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_scan_is_not_dumpable() {
    let mut child = as_nobody(&["scan", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("setpriv (util-linux) runs");
    let owner = proc_owner(&child);
    // Still running: stdin is open and holds a key.
    if let Some(stdin) = child.stdin.as_mut() {
        let _ = writeln!(stdin, "token = {KEY}");
    }
    kill(child);
    assert_eq!(
        owner, 0,
        "/proc/<pid> of a scan as uid {NOBODY} should be root's"
    );
}

/// The daemon as an ordinary user: non-dumpable, and its text log escapes a
/// watched file name carrying a terminal escape.
#[test]
fn the_daemon_is_not_dumpable_and_its_text_log_escapes_file_names() {
    let dir = TempDir::new().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o755)).unwrap();
    let yaml = format!(
        "state_dir: '{}/state'\nremediation:\n  mode: off\nwatch:\n  logs: ['{}/*.log']\n  poll: 200ms\n",
        dir.path().display(),
        logs.display()
    );
    let config = dir.path().join("keysentry.yaml");
    std::fs::write(&config, yaml).unwrap();
    let mut child = as_nobody(&["daemon", "--log-format", "text", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("setpriv (util-linux) runs");
    let stderr = child.stderr.take().expect("piped stderr");
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    let wait_for = |what: &str| {
        let start = Instant::now();
        while start.elapsed() < DEADLINE {
            if lines.lock().unwrap().iter().any(|l| l.contains(what)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    };
    let ready = wait_for("daemon ready");
    let owner = proc_owner(&child);
    write_log(&logs, "a\x1b[2Jb.log");
    let followed = wait_for("following new log file");
    kill(child);
    let log = lines.lock().unwrap().join("\n");
    assert!(ready && followed, "{log}");
    assert_eq!(
        owner, 0,
        "/proc/<pid> of the daemon should be root's: {log}"
    );
    assert!(!log.contains('\x1b'), "raw ESC in the text log: {log:?}");
    assert!(log.contains("a\\x1b[2Jb.log"), "{log}");
}

fn write_log(dir: &Path, name: &str) {
    let path = dir.join(name);
    std::fs::write(&path, "GET /health 200\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
}
