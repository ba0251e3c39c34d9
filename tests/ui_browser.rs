//! The dashboard in a real browser: Debian's `chromium`, headless, driven by
//! `tests/browser/dashboard.mjs` (playwright-core over the DevTools
//! protocol) against the real `keysentry daemon` with `http.ui`. A person
//! signs in, finds the incident of a key planted in a watched log, opens
//! it, resolves it with a note and signs out, by keyboard where it counts;
//! what the browser received, the URLs it visited and its profile (history
//! included) never hold the key. Screenshots go to `target/ui-screenshots/`.
//!
//! Needs `node`, `/usr/bin/chromium` and `tests/browser/node_modules`
//! (`.ci/run` installs them); without them the test fails and says so.

use crate::daemon::{append, wait_metric, write_config};
use crate::support::daemon::Daemon;
use crate::support::sim::Sim;
use crate::support::{fingerprint, keysentry};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const TOKEN: &str = "browser-test-token-9f2c41d07a";
const NOTE: &str = "rotated by the owner; old key frozen at Tatum";
const FIX: &str = "run `.ci/run`: it installs Debian's chromium with apt-get and runs `npm ci` \
                   in tests/browser (or do both by hand)";

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

fn chromium() -> PathBuf {
    std::env::var_os("KS_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// Fails the test, naming the fix, unless node, chromium and the driver's
/// node_modules are there: a browser test that cannot run must not pass.
fn require_browser() {
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.as_ref().is_ok_and(|o| o.status.success()),
        "`node` does not run ({node:?}): {FIX}"
    );
    assert!(
        chromium().is_file(),
        "no chromium at {}: {FIX}",
        chromium().display()
    );
    let driver = browser_dir().join("node_modules/playwright-core/package.json");
    assert!(driver.is_file(), "{} is missing: {FIX}", driver.display());
}

/// `target/ui-screenshots/`, beside the binary under test's profile dir.
fn screenshot_dir() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_keysentry"));
    bin.parent()
        .and_then(Path::parent)
        .expect("the binary lives in target/PROFILE/")
        .join("ui-screenshots")
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// `node SCRIPT` in tests/browser with `env`.
fn node(script: &Path, env: &[(&str, String)]) -> Output {
    let mut cmd = Command::new("node");
    cmd.arg(script).current_dir(browser_dir());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run node")
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                todo.push(path);
            } else if std::fs::read(&path)
                .is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
            {
                hits.push(path);
            }
        }
    }
    hits
}

/// The URLs in chromium's own history (its `History` SQLite file).
fn history(profile: &Path) -> Vec<String> {
    let db = profile.join("Default/History");
    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap_or_else(|e| panic!("chromium wrote no history at {}: {e}", db.display()));
    let mut stmt = conn
        .prepare("SELECT url FROM urls")
        .expect("history has urls");
    let urls = stmt
        .query_map([], |r| r.get::<_, String>(0))
        .expect("read history")
        .collect::<Result<Vec<_>, _>>()
        .expect("history rows");
    urls
}

fn incidents_json(cfg: &Path, args: &[&str]) -> serde_json::Value {
    let out = keysentry()
        .arg("incidents")
        .args(args)
        .args(["--json", "--config"])
        .arg(cfg)
        .output()
        .expect("run keysentry incidents");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("incidents as JSON")
}

#[test]
fn a_person_signs_in_resolves_the_planted_incident_and_signs_out_in_chromium() {
    require_browser();
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let extra = format!(
        "remediation:\n  mode: auto\n  policy: {{tatum: freeze}}\nproviders:\n  tatum:\n    api_url: {}\n",
        sim.url
    );
    let cfg = write_config(dir.path(), &[dir.path().join("*.log")], &extra);
    // `http:` closes the config: the UI goes under it.
    append(&cfg, "  ui:\n    token_env: KEYSENTRY_UI_TOKEN\n");
    let d = Daemon::start_with(&cfg, &[("KEYSENTRY_UI_TOKEN", TOKEN)]);

    let key = crate::support::key("seen in chromium");
    sim.add_live_key(&key);
    append(&log, &format!("request x-api-key: {key}\n"));
    sim.wait_for_freeze(&key);
    wait_metric(d.port(), "keysentry_incidents{state=\"contained\"}", 1.0);
    let list = incidents_json(&cfg, &["list"]);
    let incident = list
        .as_array()
        .and_then(|l| l.iter().find(|i| i["fingerprint"] == fingerprint(&key)))
        .unwrap_or_else(|| panic!("no incident for the planted key: {list:#}"));
    let id = incident["id"].as_i64().expect("an id").to_string();
    let redacted = incident["redacted"].as_str().expect("a redacted form");

    let shots = screenshot_dir();
    let profile = dir.path().join("chromium-profile");
    let dump = dir.path().join("seen");
    let out = node(
        &browser_dir().join("dashboard.mjs"),
        &[
            ("KS_UI_URL", d.http_url()),
            ("KS_UI_TOKEN", TOKEN.to_string()),
            ("KS_INCIDENT_ID", id.clone()),
            ("KS_INCIDENT_SHOWS", redacted.to_string()),
            ("KS_NOTE", NOTE.to_string()),
            ("KS_SCREENSHOT_DIR", shots.display().to_string()),
            ("KS_PROFILE_DIR", profile.display().to_string()),
            ("KS_DUMP_DIR", dump.display().to_string()),
            ("KS_CHROMIUM", chromium().display().to_string()),
        ],
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{said}");
    assert!(
        out.status.success(),
        "the browser run failed (screenshots in {}):\n{said}\ndaemon:\n{}",
        shots.display(),
        d.text()
    );
    for shot in ["ui-list.png", "ui-incident.png"] {
        let png = std::fs::read(shots.join(shot)).expect("the screenshot was saved");
        assert!(png.starts_with(b"\x89PNG"), "{shot} is no PNG");
    }
    eprintln!("screenshots: {}", shots.display());

    // What the browser did is what the store holds.
    let shown = incidents_json(&cfg, &["show", &id]);
    assert_eq!(shown["incident"]["state"], "resolved", "{shown:#}");
    assert!(shown.to_string().contains(NOTE), "{shown:#}");

    // Never the key: not in a body, header or URL the browser saw, not in
    // its profile (history, cache, cookies), not in the daemon's log.
    let visited = history(&profile);
    assert!(
        visited
            .iter()
            .any(|u| u.ends_with(&format!("/ui/incidents/{id}"))),
        "the incident page is not in chromium's history: {visited:?}"
    );
    let urls = std::fs::read_to_string(dump.join("urls.txt")).expect("the URLs were recorded");
    assert!(urls.contains("POST "), "no form was posted:\n{urls}");
    for needle in [key.as_str(), &key[2..]] {
        assert!(
            visited.iter().all(|u| !u.contains(needle)),
            "the key is in chromium's history"
        );
        let seen = files_containing(&dump, needle);
        assert!(seen.is_empty(), "the key reached the browser: {seen:?}");
        let kept = files_containing(&profile, needle);
        assert!(
            kept.is_empty(),
            "the key is in chromium's profile: {kept:?}"
        );
    }
    let (status, log) = d.terminate();
    assert!(status.success(), "{log}");
    assert!(!log.contains(&key[2..]), "the key leaked into the log");
}

#[test]
fn the_driver_names_the_fix_when_chromium_is_missing() {
    require_browser();
    let dir = tempfile::tempdir().unwrap();
    let out = node(
        &browser_dir().join("dashboard.mjs"),
        &[
            ("KS_UI_URL", "http://127.0.0.1:9".into()),
            ("KS_UI_TOKEN", TOKEN.into()),
            ("KS_INCIDENT_ID", "1".into()),
            ("KS_INCIDENT_SHOWS", "-".into()),
            ("KS_NOTE", NOTE.into()),
            ("KS_SCREENSHOT_DIR", path(dir.path())),
            ("KS_PROFILE_DIR", path(&dir.path().join("p"))),
            ("KS_DUMP_DIR", path(&dir.path().join("d"))),
            ("KS_CHROMIUM", path(&dir.path().join("no-chromium"))),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("no chromium at") && err.contains(".ci/run"),
        "{err}"
    );
}

#[test]
fn the_driver_names_the_fix_when_its_node_modules_are_missing() {
    require_browser();
    // The driver's two files without node_modules beside them.
    let dir = tempfile::tempdir().unwrap();
    for f in ["dashboard.mjs", "chromium.mjs"] {
        std::fs::copy(browser_dir().join(f), dir.path().join(f)).unwrap();
    }
    let out = Command::new("node")
        .arg(dir.path().join("dashboard.mjs"))
        .current_dir(dir.path())
        .env_remove("NODE_PATH")
        .env("KS_UI_URL", "http://127.0.0.1:9")
        .env("KS_UI_TOKEN", TOKEN)
        .env("KS_INCIDENT_ID", "1")
        .env("KS_INCIDENT_SHOWS", "-")
        .env("KS_NOTE", NOTE)
        .env("KS_SCREENSHOT_DIR", dir.path())
        .env("KS_PROFILE_DIR", dir.path().join("p"))
        .env("KS_DUMP_DIR", dir.path().join("d"))
        .env("KS_CHROMIUM", chromium())
        .output()
        .expect("run node");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cannot load playwright-core") && err.contains("npm ci"),
        "{err}"
    );
}
