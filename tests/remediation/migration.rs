//! A store written by a keysentry from before typed incidents (schema 0004:
//! free-text states, Tatum's columns in the incident table) read by this one:
//! migration 0005 keeps every incident and what `incidents show|list` print.

use super::harness::{tatum_key, text, Workspace};
use keysentry::scan::Fingerprint;
use serde_json::Value;

/// The migrations a 0004 store had, as they were released.
const OLD_SCHEMA: &[&str] = &[
    include_str!("../../src/store/migrations/0001_remediation.sql"),
    include_str!("../../src/store/migrations/0002_daemon.sql"),
    include_str!("../../src/store/migrations/0003_webhook.sql"),
    include_str!("../../src/store/migrations/0004_incident_lifecycle.sql"),
];

const CONFIG: &str = "
remediation:
  mode: auto
providers:
  tatum:
    api_url: {sim}
";

/// A 0004 store with a Tatum incident waiting for a manual rotation (3
/// subscriptions and 2 virtual accounts bound, testnet) and a GitHub one
/// revoked and closed.
fn old_store(ws: &Workspace) {
    std::fs::create_dir_all(ws.path("state")).unwrap();
    let conn = rusqlite::Connection::open(ws.path("state/keysentry.db")).unwrap();
    for sql in OLD_SCHEMA {
        conn.execute_batch(sql).unwrap();
    }
    conn.pragma_update(None, "user_version", 4).unwrap();
    let tatum = Fingerprint::of(tatum_key("old").as_bytes());
    let github = Fingerprint::of(b"ghp_old");
    conn.execute(
        "INSERT INTO incidents (id, fingerprint, provider, rule_id, rule_name, redacted, state, \
         stage, action, reason, testnet, subscriptions, virtual_accounts) VALUES \
         (1, ?1, 'tatum', 'tatum.api-key', 'Tatum API key', 't-66…', 'waiting-manual', \
          'inventoried', 'regenerate', 'waiting for the owner', 1, 3, 2), \
         (2, ?2, 'github', 'github.pat', 'GitHub token', 'ghp_…', 'closed', 'closed', \
          'revoke', NULL, NULL, NULL, NULL)",
        [tatum.as_str(), github.as_str()],
    )
    .unwrap();
    conn.execute_batch(
        "INSERT INTO locations (incident_id, source, path, line, col, rule_id) VALUES \
           (1, 'file', 'tree/a.env', 1, 1, 'tatum.api-key'), \
           (2, 'file', 'tree/b.env', 4, 1, 'github.pat');
         INSERT INTO journal (incident_id, step, completed_at, outcome, http_status, detail) \
           VALUES (1, 'freeze', '2026-01-01T00:00:00.000Z', 'ok', 200, 'PUT freeze');",
    )
    .unwrap();
}

fn incidents(ws: &Workspace, args: &[&str]) -> std::process::Output {
    let config = ws.path("config.yaml").display().to_string();
    let mut all = vec!["incidents"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--config", &config]);
    ws.keysentry(&all)
}

#[test]
fn a_store_from_before_typed_incidents_keeps_its_incidents_and_their_tatum_data() {
    let ws = Workspace::new();
    ws.config(CONFIG);
    old_store(&ws);

    let shown = incidents(&ws, &["show", "1"]);
    assert_eq!(shown.status.code(), Some(0), "{}", text(&shown));
    let out = String::from_utf8_lossy(&shown.stdout);
    assert!(out.contains("state:       waiting-manual"), "{out}");
    assert!(out.contains("network:     testnet"), "{out}");
    assert!(
        out.contains("bound:       3 subscriptions, 2 virtual accounts"),
        "{out}"
    );
    assert!(out.contains("tree/a.env:1"), "{out}");

    let listed = incidents(&ws, &["list", "--json"]);
    assert_eq!(listed.status.code(), Some(0), "{}", text(&listed));
    let list: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let rows = list.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{list:#}");
    assert_eq!(
        (&rows[0]["state"], &rows[0]["stage"]),
        (&"waiting-manual".into(), &"inventoried".into())
    );
    assert_eq!(rows[0]["testnet"], true);
    assert_eq!(rows[0]["subscriptions"], 3);
    assert_eq!(rows[0]["virtual_accounts"], 2);
    assert_eq!(rows[0]["actions"], serde_json::json!(["freeze"]));
    assert_eq!(rows[1]["state"], "closed");
    assert!(rows[1].get("subscriptions").is_none(), "{:#}", rows[1]);

    // The filter takes the old spellings.
    let closed = incidents(&ws, &["list", "--state", "closed", "--json"]);
    let closed: Value = serde_json::from_slice(&closed.stdout).unwrap();
    assert_eq!(closed.as_array().map(Vec::len), Some(1), "{closed:#}");
}

/// The engine asks the incident's playbook whether it takes a key by hand;
/// only Tatum's does, and the command still says so in its own words.
#[test]
fn set_key_on_an_incident_whose_playbook_takes_no_key_names_the_provider() {
    let ws = Workspace::new();
    let config = ws.config(CONFIG).display().to_string();
    old_store(&ws);
    let new_key = tatum_key("new");
    let set = crate::support::keysentry()
        .args(["tatum", "set-key", "2", "--config", &config])
        .write_stdin(format!("{new_key}\n"))
        .output()
        .unwrap();
    assert_ne!(set.status.code(), Some(0), "{}", text(&set));
    let err = String::from_utf8_lossy(&set.stderr);
    assert!(
        err.contains("incident 2 is a github key; `tatum set-key` finishes Tatum rotations only"),
        "{err}"
    );
    assert!(!err.contains(&new_key), "{err}");
    assert_eq!(ws.sim.calls().len(), 0, "no provider call");
}
