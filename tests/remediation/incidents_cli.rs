//! `keysentry incidents list|show|resolve|reopen` on a store made by a real
//! `scan --remediate` against the simulator, and the store lookup every
//! store-reading command shares (`--config`, `KEYSENTRY_CONFIG`, the
//! service's default config).

use super::harness::{fp, stderr, tatum_key, text, Workspace};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

/// Tatum without management templates (the owner rotates in the
/// Dashboard: the incident waits), and GitHub revoked by its rule.
const CONFIG: &str = "
remediation:
  mode: auto
  backoff_ms: 10
  rate_limit: 1000
providers:
  github: {api_url: '{sim}'}
  tatum:
    api_url: {sim}
";

const GITHUB: &str = "ghp_R8x2kQ7mZp4vN1cW9tY6bL3sD5fH0jKaPq2X";

/// A Tatum key the simulator knows, leaked in `tree/<seed>.env`.
fn leak_tatum(ws: &Workspace, seed: &str) -> String {
    let key = tatum_key(seed);
    ws.sim.add_tatum_key(&key, false, 0, 0);
    ws.write(
        &format!("tree/{seed}.env"),
        &format!("TATUM_API_KEY={key}\n"),
    );
    key
}

/// `keysentry incidents ARGS --config <the workspace's>`.
fn incidents(ws: &Workspace, args: &[&str]) -> Output {
    let config = ws.path("config.yaml").display().to_string();
    let mut all = vec!["incidents"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--config", &config]);
    ws.keysentry(&all)
}

fn json(out: &Output) -> Value {
    assert_eq!(out.status.code(), Some(0), "{}", text(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(out)))
}

fn ids(list: &Value) -> Vec<i64> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_i64().unwrap())
        .collect()
}

/// Calls the simulator received with `key`.
fn calls_with(ws: &Workspace, key: &str) -> usize {
    let f = fp(key);
    ws.sim
        .calls()
        .iter()
        .filter(|c| c["key_fingerprint"] == f.as_str())
        .count()
}

#[test]
fn list_filters_by_state_and_provider_in_aligned_columns() {
    let ws = Workspace::new();
    let tatum = leak_tatum(&ws, "listed");
    ws.write("tree/settings.py", &format!("GITHUB_TOKEN = '{GITHUB}'\n"));
    ws.config(CONFIG);
    let scan = ws.scan();
    let tatum_id = ws.incident_by_fp(&tatum)["id"].as_i64().unwrap();
    let github_id = ws.incident_by_fp(GITHUB)["id"].as_i64().unwrap();

    let waiting = incidents(&ws, &["list", "--state", "waiting-manual", "--json"]);
    assert_eq!(ids(&json(&waiting)), [tatum_id], "{}", text(&scan));
    let github = incidents(&ws, &["list", "--provider", "github", "--json"]);
    let github_list = json(&github);
    assert_eq!(ids(&github_list), [github_id]);
    assert_eq!(github_list[0]["state"], "closed");
    assert_eq!(github_list[0]["locations"][0], "settings.py:1");
    let none = incidents(
        &ws,
        &["list", "--state", "closed", "--provider", "tatum", "--json"],
    );
    assert_eq!(ids(&json(&none)), Vec::<i64>::new());

    let bogus = incidents(&ws, &["list", "--state", "frozen"]);
    assert_eq!(bogus.status.code(), Some(2), "{}", text(&bogus));
    for valid in ["waiting-manual", "closed", "failed", "resolved"] {
        assert!(
            stderr(&bogus).contains(valid),
            "{valid} not listed:\n{}",
            text(&bogus)
        );
    }

    let listed = incidents(&ws, &["list"]);
    assert_eq!(listed.status.code(), Some(0), "{}", text(&listed));
    let table = String::from_utf8_lossy(&listed.stdout).into_owned();
    let lines: Vec<Vec<char>> = table.lines().map(|l| l.chars().collect()).collect();
    assert_eq!(lines.len(), 3, "a header and two incidents:\n{table}");
    let header: String = lines[0].iter().collect();
    let columns = [
        "ID",
        "STATE",
        "PROVIDER",
        "RULE",
        "KEY",
        "FIRST SEEN",
        "LOCATIONS",
        "OWNER",
    ];
    let starts: Vec<usize> = columns
        .iter()
        .map(|c| {
            header
                .find(c)
                .unwrap_or_else(|| panic!("no {c} column:\n{table}"))
        })
        .collect();
    assert!(starts.windows(2).all(|w| w[0] < w[1]), "{table}");
    for row in &lines[1..] {
        for &at in &starts[1..] {
            assert!(
                row[at - 1] == ' ' && row.get(at).is_some_and(|c| *c != ' '),
                "a cell does not start under its header at column {at}:\n{table}"
            );
        }
    }
    assert!(
        table.contains("waiting-manual") && table.contains("tatum.api-key"),
        "{table}"
    );
    assert!(table.contains("settings.py:1"), "{table}");
    ws.assert_secrets_hidden(
        &[&tatum, GITHUB],
        &[&scan, &waiting, &github, &bogus, &listed],
    );
}

#[test]
fn show_prints_the_whole_timeline_in_order() {
    let ws = Workspace::new();
    let key = leak_tatum(&ws, "timeline");
    ws.config(CONFIG);
    let scan = ws.scan();
    let id = ws.incident_by_fp(&key)["id"].clone();

    let (shown, shown_text) = ws.show(&id);

    let timeline = shown["timeline"].as_array().expect("a timeline");
    let kinds: Vec<&str> = timeline
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.first(), Some(&"detected"), "{kinds:?}");
    for kind in ["call", "state", "alert"] {
        assert!(kinds.contains(&kind), "no {kind} in {kinds:?}");
    }
    let times: Vec<&str> = timeline.iter().map(|e| e["at"].as_str().unwrap()).collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "the timeline is in time order");
    let body = shown_text
        .split("timeline:")
        .nth(1)
        .expect("a timeline section");
    for line in [
        "detected  tatum.api-key",
        "timeline.env:1 (file)",
        "verify: ok 200 — GET ",
        "freeze: ok 200 — PUT ",
        "inventory:subscriptions: ok 200",
        "detected → verified",
        "verified → contained",
        "contained → waiting-manual: waiting for the owner to regenerate the key",
        "waiting-manual; ",
    ] {
        assert!(
            body.contains(line),
            "{line:?} missing from the timeline:\n{shown_text}"
        );
    }
    // Calls come before the state change they led to.
    let verify = body.find("verify: ok 200").unwrap();
    assert!(verify < body.find("detected → verified").unwrap(), "{body}");
    assert!(shown_text.contains("next check:"), "{shown_text}");
    ws.assert_secrets_hidden(&[&key], &[&scan]);
}

#[test]
fn resolve_stops_the_engine_and_reopen_hands_it_back() {
    let ws = Workspace::new();
    let key = leak_tatum(&ws, "resolved");
    ws.config(CONFIG);
    let first = ws.scan();
    let id = ws.incident_by_fp(&key)["id"].as_i64().unwrap().to_string();
    assert_eq!(
        ws.incident_by_fp(&key)["state"],
        "waiting-manual",
        "{}",
        text(&first)
    );

    // A note holding the key is refused, and the key is not echoed.
    let leaky = incidents(
        &ws,
        &["resolve", &id, "--note", &format!("old key was {key}")],
    );
    assert_eq!(leaky.status.code(), Some(2), "{}", text(&leaky));
    assert!(
        stderr(&leaky).contains("never stores keys"),
        "{}",
        text(&leaky)
    );
    assert_eq!(ws.incident_by_fp(&key)["state"], "waiting-manual");

    let note = "regenerated in the Dashboard, KMS updated by hand";
    let resolved = incidents(&ws, &["resolve", &id, "--note", note]);
    assert_eq!(resolved.status.code(), Some(0), "{}", text(&resolved));
    assert!(
        String::from_utf8_lossy(&resolved.stdout).contains("was waiting-manual"),
        "{}",
        text(&resolved)
    );
    let listed = json(&incidents(&ws, &["list", "--state", "resolved", "--json"]));
    assert_eq!(listed[0]["id"].to_string(), id);
    assert!(
        listed[0]["reason"].as_str().unwrap().contains(note),
        "{listed}"
    );

    // The engine's next pass, with the key seen again, calls no provider.
    let before = calls_with(&ws, &key);
    let again = ws.scan();
    assert_eq!(
        calls_with(&ws, &key),
        before,
        "a resolved incident was remediated again\n{}",
        text(&again)
    );
    assert_eq!(ws.incident_by_fp(&key)["state"], "resolved");
    let twice = incidents(&ws, &["resolve", &id, "--note", "again"]);
    assert_eq!(twice.status.code(), Some(2), "{}", text(&twice));
    assert!(
        stderr(&twice).contains("already resolved"),
        "{}",
        text(&twice)
    );

    let reopened = incidents(&ws, &["reopen", &id]);
    assert_eq!(reopened.status.code(), Some(0), "{}", text(&reopened));
    assert!(
        String::from_utf8_lossy(&reopened.stdout).contains("resolved → contained"),
        "{}",
        text(&reopened)
    );
    let third = ws.scan();
    assert!(
        calls_with(&ws, &key) > before,
        "the reopened incident was not retried\n{}",
        text(&third)
    );
    assert_eq!(ws.incident_by_fp(&key)["state"], "waiting-manual");

    let (_, shown) = ws.show(&serde_json::json!(id.parse::<i64>().unwrap()));
    let timeline = shown.split("timeline:").nth(1).unwrap();
    let note_line = format!("): {note}");
    for line in [
        "waiting-manual → resolved: resolved by hand (",
        note_line.as_str(),
        "resolved → contained: reopened by hand (",
        "contained → waiting-manual",
    ] {
        assert!(timeline.contains(line), "{line:?} missing:\n{shown}");
    }
    ws.assert_secrets_hidden(
        &[&key],
        &[&first, &leaky, &resolved, &again, &twice, &reopened, &third],
    );
}

#[test]
fn commands_read_the_store_of_keysentry_config() {
    let ws = Workspace::new();
    let key = leak_tatum(&ws, "envconfig");
    let config = ws.config(CONFIG);
    let scan = ws.scan();

    let mut list = crate::support::keysentry();
    let list = list
        .args(["incidents", "list", "--json"])
        .env("KEYSENTRY_CONFIG", &config)
        .output()
        .unwrap();
    let listed = json(&list);
    assert_eq!(listed[0]["fingerprint"], fp(&key).as_str(), "{listed}");

    let mut check = crate::support::keysentry();
    let check = check
        .args(["config", "check"])
        .env("KEYSENTRY_CONFIG", &config)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&check.stdout).contains(&config.display().to_string()),
        "config check did not read KEYSENTRY_CONFIG:\n{}",
        text(&check)
    );
    ws.assert_secrets_hidden(&[&key], &[&scan, &list, &check]);
}

/// Every file and directory under `dir`.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path.clone());
            }
            out.push(path);
        }
    }
    out.sort();
    out
}

#[test]
fn without_a_store_every_command_says_where_it_looked_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = dir.path().join("keysentry.yaml");
    std::fs::write(&config, format!("state_dir: {}\n", state.display())).unwrap();
    std::fs::create_dir(dir.path().join("home")).unwrap();
    let before = tree(dir.path());
    let db = state.join("keysentry.db").display().to_string();
    let cfg = config.display().to_string();

    let commands: [&[&str]; 6] = [
        &["incidents", "list"],
        &["incidents", "show", "1"],
        &["incidents", "resolve", "1", "--note", "done"],
        &["incidents", "reopen", "1"],
        &["tatum", "set-key", "1"],
        &["incidents", "list", "--json"],
    ];
    for args in commands {
        for by_env in [false, true] {
            let mut cmd = crate::support::keysentry();
            cmd.args(args)
                .write_stdin(format!("{}\n", tatum_key("new")));
            if by_env {
                cmd.env("KEYSENTRY_CONFIG", &config);
            } else {
                cmd.args(["--config", &cfg]);
            }
            let out = cmd.output().unwrap();
            assert_eq!(out.status.code(), Some(2), "{args:?}\n{}", text(&out));
            let err = stderr(&out);
            for needle in [db.as_str(), cfg.as_str(), "--config", "KEYSENTRY_CONFIG"] {
                assert!(err.contains(needle), "{args:?}: {needle} not named:\n{err}");
            }
        }
    }
    assert_eq!(
        tree(dir.path()),
        before,
        "a command without a store created files"
    );

    // No config anywhere: the default config path is named too. (Skipped on
    // a machine where the service is installed: that store is then read.)
    let home = dir.path().join("home");
    if Path::new("/etc/keysentry/keysentry.yaml").exists() {
        eprintln!("skipped: /etc/keysentry/keysentry.yaml exists here");
        return;
    }
    let mut cmd = crate::support::keysentry();
    let out = cmd
        .args(["incidents", "list"])
        .env_remove("KEYSENTRY_CONFIG")
        .env_remove("KEYSENTRY_STATE_DIR")
        .env_remove("XDG_STATE_HOME")
        .env("HOME", &home)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = stderr(&out);
    let default_db = home
        .join(".local/state/keysentry/keysentry.db")
        .display()
        .to_string();
    for needle in [
        "/etc/keysentry/keysentry.yaml",
        default_db.as_str(),
        "--config",
        "KEYSENTRY_CONFIG",
    ] {
        assert!(err.contains(needle), "{needle} not named:\n{err}");
    }
    assert_eq!(
        tree(dir.path()),
        before,
        "a command without a store created files"
    );

    // A named config that does not exist is an error naming it.
    let missing = dir.path().join("nope.yaml");
    let out = crate::support::keysentry()
        .args(["incidents", "list"])
        .env("KEYSENTRY_CONFIG", &missing)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).contains(&missing.display().to_string()),
        "{}",
        text(&out)
    );
    assert_eq!(tree(dir.path()), before);
}

#[test]
fn the_shipped_service_config_points_admin_commands_at_the_service_store() {
    let service_db = Path::new("/var/lib/keysentry/keysentry.db");
    if service_db.exists() {
        eprintln!("skipped: a keysentry service store exists on this machine");
        return;
    }
    let existed = Path::new("/var/lib/keysentry").exists();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/keysentry.yaml");
    let out = crate::support::keysentry()
        .args(["incidents", "list"])
        .env("KEYSENTRY_CONFIG", &example)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr(&out).contains("/var/lib/keysentry/keysentry.db"),
        "the service config does not lead to the service's store:\n{}",
        text(&out)
    );
    assert_eq!(
        Path::new("/var/lib/keysentry").exists(),
        existed,
        "looking for the store created the state directory"
    );
}
