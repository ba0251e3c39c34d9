//! The dashboard in the real daemon binary: a key in a watched log shows up
//! at `/ui/`, a resolve through its form is what `keysentry incidents show`
//! then prints; a Tatum hand-over through the form finishes the rotation;
//! no `/ui` without `http.ui`; a missing or short token is refused. The
//! router-level tests (auth, CSRF, headers, actions, no key anywhere) are in
//! `src/ui/tests.rs`.

use crate::daemon::{append, write_config};
use crate::support::daemon::Daemon;
use crate::support::sim::Sim;
use crate::support::{fingerprint, key, keysentry};
use std::io::{Read, Write};
use std::path::Path;

const TOKEN: &str = "e2e-dashboard-token-0123456789";

/// One HTTP/1.0 request with the dashboard's bearer token: (status, head,
/// body).
fn request(port: u16, method: &str, path: &str, form: &str) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(
        s,
        "{method} {path} HTTP/1.0\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
        form.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp[9..12].parse().unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    (status, head.to_string(), body.to_string())
}

/// A config watching `dir/*.log`, freezing Tatum keys at `sim`, with the
/// dashboard on.
fn dashboard_config(dir: &Path, sim: &Sim, tatum_extra: &str) -> std::path::PathBuf {
    let extra = format!(
        "remediation:\n  mode: auto\n  backoff_ms: 10\n  policy: {{tatum: freeze}}\nproviders:\n  tatum:\n    api_url: {}\n{tatum_extra}",
        sim.url
    );
    let cfg = write_config(dir, &[dir.join("*.log")], &extra);
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("  ui:\n    token_env: KEYSENTRY_UI_TOKEN\n");
    std::fs::write(&cfg, text).unwrap();
    cfg
}

fn show(cfg: &Path, id: &str) -> String {
    let out = keysentry()
        .args(["incidents", "show", id, "--config"])
        .arg(cfg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The id of the one incident row of a list page.
fn first_id(list: &str) -> String {
    let at = list.find("<tr data-id=\"").expect("an incident row") + 13;
    list[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect()
}

#[test]
fn a_logged_key_shows_on_the_dashboard_and_its_resolve_is_what_the_cli_shows() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dashboard_config(dir.path(), &sim, "");
    let d = Daemon::start_with(&cfg, &[("KEYSENTRY_UI_TOKEN", TOKEN)]);
    let leaked = key("shown on the dashboard");
    sim.add_live_key(&leaked);
    append(
        &dir.path().join("app.log"),
        &format!("x-api-key: {leaked}\n"),
    );
    sim.wait_for_freeze(&leaked);

    let (status, _, list) = request(d.port(), "GET", "/ui/", "");
    assert_eq!(status, 200, "{list}");
    assert!(list.contains(&fingerprint(&leaked)[..12]), "{list}");
    assert!(
        !list.contains(&leaked[2..]),
        "the key itself is on the page"
    );
    let id = first_id(&list);
    assert!(list.contains(&format!("<a href=\"/ui/incidents/{id}\">")));
    let (status, _, page) = request(d.port(), "GET", &format!("/ui/incidents/{id}"), "");
    assert_eq!(status, 200);
    assert!(page.contains("app.log:1"), "the location: {page}");
    assert!(
        page.contains("freeze"),
        "the timeline holds the provider call: {page}"
    );

    let (status, head, body) = request(
        d.port(),
        "POST",
        &format!("/ui/incidents/{id}/resolve"),
        "note=rotated+by+the+payments+team",
    );
    assert_eq!(status, 303, "{head}\n{body}");
    assert!(
        head.contains(&format!("location: /ui/incidents/{id}")),
        "{head}"
    );
    let shown = show(&cfg, &id);
    assert!(shown.contains("state:       resolved"), "{shown}");
    assert!(shown.contains("rotated by the payments team"), "{shown}");

    let (status, stderr) = d.terminate();
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains(&leaked[2..]), "a key in the daemon's log");
    assert!(!stderr.contains(TOKEN), "the token in the daemon's log");
}

/// The owner regenerated the key in the Tatum Dashboard and pastes the new
/// one into the incident page: the engine writes it to KMS and closes the
/// incident; the key is in no answer and no log line.
#[test]
fn a_tatum_hand_over_through_the_form_finishes_the_rotation() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let kms = dir.path().join("kms.env");
    let leaked = key("handed over on the dashboard");
    std::fs::write(&kms, format!("TATUM_API_KEY={leaked}\n")).unwrap();
    let consumers = format!(
        "    consumers:\n      - {{name: kms, env_file: '{}', variable: TATUM_API_KEY}}\n",
        kms.display()
    );
    let cfg = dashboard_config(dir.path(), &sim, &consumers);
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("policy: {tatum: freeze}", "policy: {tatum: regenerate}");
    std::fs::write(&cfg, text).unwrap();
    let d = Daemon::start_with(&cfg, &[("KEYSENTRY_UI_TOKEN", TOKEN)]);
    sim.add_tatum_key(&leaked, true, 0, 0);
    append(
        &dir.path().join("app.log"),
        &format!("x-api-key: {leaked}\n"),
    );
    sim.wait_for_freeze(&leaked);
    let start = std::time::Instant::now();
    let (id, page) = loop {
        let (_, _, list) = request(d.port(), "GET", "/ui/", "");
        if list.contains("<td class=\"state\">waiting-manual</td>") {
            let id = first_id(&list);
            let (_, _, page) = request(d.port(), "GET", &format!("/ui/incidents/{id}"), "");
            break (id, page);
        }
        assert!(start.elapsed() < crate::support::daemon::DEADLINE, "{list}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(page.contains("<form id=\"handover\""), "{page}");

    let (status, new) = sim.request(
        "POST",
        &format!("/_sim/tatum/keys/{}/regenerate", fingerprint(&leaked)),
        None,
    );
    assert_eq!(status, 200);
    let new_key = new["apiKey"].as_str().unwrap().to_string();
    let (status, head, body) = request(
        d.port(),
        "POST",
        &format!("/ui/incidents/{id}/handover"),
        &format!("new_key={new_key}"),
    );
    assert_eq!(status, 303, "{head}\n{body}");
    assert!(!head.contains(&new_key) && !body.contains(&new_key));
    assert_eq!(
        std::fs::read_to_string(&kms).unwrap(),
        format!("TATUM_API_KEY={new_key}\n")
    );
    let (_, _, page) = request(d.port(), "GET", &format!("/ui/incidents/{id}"), "");
    assert!(page.contains("<span id=\"state\">closed</span>"), "{page}");
    assert!(!page.contains(&new_key) && !page.contains(&leaked[2..]));
    let (_, _, api) = request(d.port(), "GET", &format!("/ui/api/incidents/{id}"), "");
    assert!(!api.contains(&new_key) && !api.contains(&leaked[2..]));
    let (status, stderr) = d.terminate();
    assert!(status.success(), "{stderr}");
    assert!(!stderr.contains(&new_key[2..]) && !stderr.contains(&leaked[2..]));
}

#[test]
fn without_http_ui_the_daemon_has_no_ui_route() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &[dir.path().join("*.log")], "");
    let d = Daemon::start_with(&cfg, &[("KEYSENTRY_UI_TOKEN", TOKEN)]);
    for path in [
        "/ui/",
        "/ui/login",
        "/ui/api/incidents",
        "/ui/static/app.js",
    ] {
        let (status, _, _) = request(d.port(), "GET", path, "");
        assert_eq!(status, 404, "{path}");
    }
    let (status, _, _) = request(d.port(), "GET", "/healthz", "");
    assert_eq!(status, 200);
}

#[test]
fn an_unset_or_short_token_is_refused_by_config_check_and_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), &[dir.path().join("*.log")], "");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("  ui:\n    token_env: KEYSENTRY_UI_TOKEN\n");
    std::fs::write(&cfg, text).unwrap();
    for (value, says) in [
        (None, "KEYSENTRY_UI_TOKEN is not set"),
        (Some("short-token"), "holds 11 characters"),
    ] {
        let mut check = keysentry();
        check
            .args(["config", "check"])
            .arg(&cfg)
            .env_remove("KEYSENTRY_UI_TOKEN");
        if let Some(v) = value {
            check.env("KEYSENTRY_UI_TOKEN", v);
        }
        let out = check.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{text}");
        assert!(
            text.contains("http.ui.token_env") && text.contains(says),
            "{text}"
        );
        assert!(
            !text.contains("short-token"),
            "the value is never quoted: {text}"
        );

        let mut daemon = keysentry();
        daemon
            .args(["daemon", "--config"])
            .arg(&cfg)
            .env_remove("KEYSENTRY_UI_TOKEN");
        if let Some(v) = value {
            daemon.env("KEYSENTRY_UI_TOKEN", v);
        }
        let out = daemon
            .timeout(std::time::Duration::from_secs(20))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains("http.ui.token_env"), "{err}");
        assert!(!err.contains("short-token"), "{err}");
    }
}

/// "Retry now" ends a failed incident's backoff (ten minutes here) and wakes
/// the daemon's retry loop (whose next tick is a minute away): the key is
/// contained at once.
#[test]
fn retry_now_contains_a_failed_incident_without_waiting_for_its_backoff() {
    let sim = Sim::start();
    sim.fault(serde_json::json!({"path": "/v3/tatum/freeze", "status": 500}));
    let dir = tempfile::tempdir().unwrap();
    let cfg = dashboard_config(dir.path(), &sim, "");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("backoff_ms: 10", "max_attempts: 1\n  backoff_ms: 600000");
    std::fs::write(&cfg, text).unwrap();
    let d = Daemon::start_with(&cfg, &[("KEYSENTRY_UI_TOKEN", TOKEN)]);
    let leaked = key("retried from the dashboard");
    sim.add_live_key(&leaked);
    append(
        &dir.path().join("app.log"),
        &format!("x-api-key: {leaked}\n"),
    );
    let state_of = |want: &str| {
        let start = std::time::Instant::now();
        loop {
            let (_, _, list) = request(d.port(), "GET", &format!("/ui/?state={want}"), "");
            if list.contains("<tr data-id=\"") {
                return first_id(&list);
            }
            assert!(
                start.elapsed() < crate::support::daemon::DEADLINE,
                "never {want}:\n{}",
                d.text()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let id = state_of("failed");
    assert_eq!(sim.freezes_of(&leaked), 1);

    let (status, head, body) = request(d.port(), "POST", &format!("/ui/incidents/{id}/retry"), "");
    assert_eq!(status, 303, "{head}\n{body}");
    assert_eq!(state_of("contained"), id);
    assert_eq!(sim.freezes_of(&leaked), 2);
    let (status, stderr) = d.terminate();
    assert!(status.success(), "{stderr}");
}
