//! Watched logs: appended, rotated, truncated, created late, partial and
//! very long lines, files rotated while the daemon was down, unreadable
//! files.

use super::*;

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
        assert_eq!(d.reports_of(k).len(), 1, "reported twice: {}", d.text());
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
    assert!(d.reports_of(&k1).is_empty(), "{}", d.text());
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
    passes_later(
        &d,
        &dir.path().join("*.log"),
        &dir.path().join("open.log"),
        5,
    );
    let warnings = d
        .lines()
        .iter()
        .filter(|l| l.contains("cannot read") && l.contains("locked.log"))
        .count();
    assert_eq!(warnings, 1, "{}", d.text());
    let (status, stderr) = d.terminate();
    assert!(status.success(), "{stderr}");
}
