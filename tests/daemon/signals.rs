//! The binary's process contract: SIGTERM and restart lose and repeat
//! nothing, SIGHUP reloads (or keeps the running config), systemd hears
//! READY/WATCHDOG/STOPPING, a broken config is exit 2 and never ready.

use super::*;

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
        d.text()
    );
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
