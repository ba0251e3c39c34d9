//! Incidents waiting for their owner (a Tatum key to regenerate in the
//! Dashboard) through the engine as the daemon drives it: `retry_pending`
//! passes poll them with a growing interval and remind the owner once per
//! `remediation.reminder_interval_secs`, not at every pass.

use super::harness::{tatum_key, Workspace};
use keysentry::config::Config;
use keysentry::remediate::Engine;
use keysentry::rules::RuleSet;
use keysentry::scan::{Allowlist, Chunk, Finding, Origin, Scanner};
use std::time::{Duration, Instant};

/// Tatum without management templates: the incident waits for the owner.
const MANUAL: &str = "
remediation:
  mode: auto
  backoff_ms: 10
  rate_limit: 1000
  {reminder}
providers:
  tatum:
    api_url: {sim}
    {poll}
";

fn open_engine(ws: &Workspace, reminder: &str, poll: &str) -> Engine {
    let path = ws.config(
        &MANUAL
            .replace("{reminder}", reminder)
            .replace("{poll}", poll),
    );
    let config = Config::load(&path).expect("config loads");
    Engine::open_with_rules(&config, RuleSet::load(&[]).unwrap()).expect("engine opens")
}

fn findings(ws: &Workspace, key: &str) -> Vec<Finding> {
    let rules = RuleSet::load(&[]).unwrap();
    let scanner = Scanner::new(&rules, Allowlist::new(&[], &[]).unwrap()).unwrap();
    let chunk = Chunk::whole(
        Origin::Log {
            path: ws.path("app.log"),
        },
        format!("boot: TATUM_API_KEY={key}\n").into_bytes(),
    );
    scanner.scan(&chunk)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn verifies(ws: &Workspace) -> usize {
    ws.sim.count("GET", "/v3/tatum/version")
}

#[test]
fn n_passes_over_a_waiting_incident_send_one_reminder_per_interval_not_n() {
    let ws = Workspace::new();
    let key = tatum_key("remind");
    ws.sim.add_tatum_key(&key, false, 0, 0);
    // Long enough that the first five passes fit in it on a loaded machine.
    let engine = open_engine(&ws, "reminder_interval_secs: 4", "poll_interval_secs: 0");
    let rt = runtime();
    let out = rt.block_on(engine.process(findings(&ws, &key))).unwrap();
    let alerted = Instant::now();
    assert_eq!(out[0].state, "waiting-manual");
    assert_eq!(ws.sink("owner").len(), 1, "the first alert");

    // Passes within the interval poll (the poll interval is 0) but remind
    // nobody.
    let polled = verifies(&ws);
    for _ in 0..5 {
        assert_eq!(
            rt.block_on(engine.retry_pending())[0].state,
            "waiting-manual"
        );
    }
    assert!(verifies(&ws) > polled, "the passes did poll");
    assert_eq!(ws.sink("owner").len(), 1, "no reminder within the interval");

    // One interval later: N passes, one reminder.
    std::thread::sleep(Duration::from_millis(4100).saturating_sub(alerted.elapsed()));
    for _ in 0..5 {
        rt.block_on(engine.retry_pending());
    }
    let sent = ws.sink("owner");
    assert_eq!(sent.len(), 2, "one reminder for five passes: {sent:#?}");
    let reminder: serde_json::Value = serde_json::from_str(&sent[1]).unwrap();
    assert_eq!(reminder["state"], "waiting-manual");
    assert!(
        reminder["actions"]
            .to_string()
            .contains("still waiting-manual"),
        "{reminder}"
    );
    assert!(
        reminder["next_steps"]
            .to_string()
            .contains("Tatum Dashboard"),
        "the reminder repeats what to do: {reminder}"
    );
    let id = out[0].incident_id;
    let kinds: Vec<String> = engine
        .store()
        .alerts(id)
        .unwrap()
        .into_iter()
        .map(|a| a.kind)
        .collect();
    assert_eq!(kinds, ["change", "reminder"]);

    // Restarted, the engine holds no copy of the key (and no consumer has
    // it), so it cannot poll; the owner is still reminded, on schedule.
    drop(engine);
    let restarted = open_engine(&ws, "reminder_interval_secs: 2", "poll_interval_secs: 0");
    let reminded = Instant::now();
    let polled = verifies(&ws);
    for _ in 0..3 {
        rt.block_on(restarted.retry_pending());
    }
    assert_eq!(
        ws.sink("owner").len(),
        2,
        "reminded again within the interval"
    );
    std::thread::sleep(Duration::from_millis(2100).saturating_sub(reminded.elapsed()));
    for _ in 0..3 {
        rt.block_on(restarted.retry_pending());
    }
    assert_eq!(ws.sink("owner").len(), 3, "one reminder after the restart");
    assert_eq!(verifies(&ws), polled, "polled without a copy of the key");
    drop(restarted);
    ws.assert_secrets_hidden(&[&key], &[]);
}

#[test]
fn polls_of_a_waiting_incident_back_off() {
    let ws = Workspace::new();
    let key = tatum_key("backoff");
    ws.sim.add_tatum_key(&key, false, 0, 0);
    // The default poll interval (60 s) and reminder interval (a day).
    let engine = open_engine(&ws, "", "");
    let rt = runtime();
    let out = rt.block_on(engine.process(findings(&ws, &key))).unwrap();
    assert_eq!(out[0].state, "waiting-manual");
    let id = out[0].incident_id;
    let store = engine.store();
    let wait_s = || {
        let row = store.incident(id).unwrap().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        (row.retry_at_ms.expect("a next poll") - now) as f64 / 1000.0
    };
    let near = |got: f64, want: f64| (want - 15.0..=want + 1.0).contains(&got);
    assert!(near(wait_s(), 60.0), "first poll after {}", wait_s());

    // Not due: a pass calls nothing.
    let calls = ws.sim.calls().len();
    rt.block_on(engine.retry_pending());
    assert_eq!(ws.sim.calls().len(), calls, "polled before it was due");

    // Each due poll that finds it still waiting doubles the next wait.
    for want in [120.0, 240.0, 480.0] {
        store
            .with_conn(|c| c.execute("UPDATE incidents SET retry_at_ms = 0 WHERE id = ?1", [id]))
            .unwrap();
        let before = verifies(&ws);
        let polled = rt.block_on(engine.retry_pending());
        assert_eq!(polled[0].state, "waiting-manual");
        assert_eq!(verifies(&ws), before + 1, "a due poll verifies once");
        let got = wait_s();
        assert!(
            near(got, want),
            "next poll after {got} s, expected {want} s"
        );
    }
    assert_eq!(
        ws.sink("owner").len(),
        1,
        "polls remind nobody within the day"
    );
}

#[test]
fn resolving_by_hand_stops_the_polls_and_drops_the_key_the_engine_held() {
    let ws = Workspace::new();
    let key = tatum_key("handled");
    ws.sim.add_tatum_key(&key, false, 0, 0);
    let engine = open_engine(&ws, "", "poll_interval_secs: 0");
    let rt = runtime();
    let out = rt.block_on(engine.process(findings(&ws, &key))).unwrap();
    assert_eq!(out[0].state, "waiting-manual");
    assert_eq!(engine.keys_held(), 1, "a waiting incident needs its key");

    let config = ws.path("config.yaml").display().to_string();
    let id = out[0].incident_id.to_string();
    let resolved = ws.keysentry(&[
        "incidents",
        "resolve",
        &id,
        "--note",
        "done in the Dashboard",
        "--config",
        &config,
    ]);
    assert_eq!(
        resolved.status.code(),
        Some(0),
        "{}",
        super::harness::text(&resolved)
    );

    let polled = verifies(&ws);
    assert!(
        rt.block_on(engine.retry_pending()).is_empty(),
        "a resolved incident was taken up"
    );
    assert_eq!(verifies(&ws), polled);
    assert_eq!(
        engine.keys_held(),
        0,
        "the key of a resolved incident stays in memory"
    );
    drop(engine);
    ws.assert_secrets_hidden(&[&key], &[&resolved]);
}
