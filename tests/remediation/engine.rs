//! The engine as the daemon and the webhook use it: `Engine` in an `Arc`,
//! `process` from concurrent tasks, `retry_pending` as the poller.

use super::harness::{fp, tatum_key, Workspace};
use keysentry::config::Config;
use keysentry::remediate::Engine;
use keysentry::rules::RuleSet;
use keysentry::scan::{Allowlist, Chunk, Finding, Origin, Scanner};
use keysentry::store::State;
use std::sync::Arc;

const CONFIG: &str = "
remediation:
  mode: auto
  backoff_ms: 10
  rate_limit: 1000
providers:
  tatum:
    api_url: {sim}
    management:
      regenerate: {method: POST, url: '{sim}/mgmt/tatum/regenerate', body: '{\"apiKey\":\"{{secret}}\"}', new_key_pointer: /apiKey}
    consumers:
      - {name: kms, env_file: '{dir}/kms/.env', variable: TATUM_API_KEY, restart: [sh, -c, 'echo restarted >> {dir}/restarts']}
";

fn engine(ws: &Workspace, config: &str) -> Engine {
    let path = ws.config(config);
    let config = Config::load(&path).expect("config loads");
    let rules = RuleSet::load(&[]).expect("rules load");
    Engine::open_with_rules(&config, rules).expect("engine opens")
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
    let found = scanner.scan(&chunk);
    assert!(!found.is_empty());
    found
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn concurrent_sightings_of_one_key_regenerate_it_once() {
    let ws = Workspace::new();
    let key = tatum_key("concurrent");
    ws.sim.add_tatum_key(&key, false, 0, 0);
    ws.write("kms/.env", &format!("TATUM_API_KEY={key}\n"));
    let engine = Arc::new(engine(&ws, CONFIG));

    let states = runtime().block_on(async {
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let engine = engine.clone();
            let found = findings(&ws, &key);
            tasks.push(tokio::spawn(async move { engine.process(found).await }));
        }
        let mut states = Vec::new();
        for t in tasks {
            states.push(t.await.unwrap().unwrap()[0].state);
        }
        states
    });

    assert!(states.contains(&State::Closed), "{states:?}");
    assert_eq!(ws.sim.count("POST", "/mgmt/tatum/regenerate"), 1);
    assert_eq!(ws.sim.count("PUT", "/v3/tatum/freeze"), 1);
    assert_eq!(ws.read("restarts"), "restarted\n");
}

#[test]
fn retry_pending_polls_a_manual_rotation_even_after_a_restart() {
    let ws = Workspace::new();
    let key = tatum_key("poll");
    ws.sim.add_tatum_key(&key, false, 0, 0);
    ws.write("kms/.env", &format!("TATUM_API_KEY={key}\n"));
    let manual = CONFIG.replace(
        "    management:\n      regenerate: {method: POST, url: '{sim}/mgmt/tatum/regenerate', body: '{\"apiKey\":\"{{secret}}\"}', new_key_pointer: /apiKey}\n",
        "    poll_interval_secs: 0\n",
    );
    let rt = runtime();
    let first = engine(&ws, &manual);
    let out = rt.block_on(first.process(findings(&ws, &key))).unwrap();
    assert_eq!(out[0].state, "waiting-manual");
    // Nothing changed yet: the poll leaves it waiting.
    let polled = rt.block_on(first.retry_pending());
    assert_eq!(polled[0].state, "waiting-manual");
    drop(first);

    // The owner regenerates; a restarted daemon (no key in memory: it reads
    // the leaked key back from the KMS file) polls and asks for the new key.
    let (_, new) = ws.sim.request(
        "POST",
        &format!("/_sim/tatum/keys/{}/regenerate", fp(&key)),
        None,
    );
    let new_key = keysentry::scan::Secret::new(new["apiKey"].as_str().unwrap());
    let second = engine(&ws, &manual);
    let polled = rt.block_on(second.retry_pending());
    assert_eq!(polled.len(), 1);
    assert_eq!(polled[0].state, "waiting-manual");
    assert!(
        polled[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("tatum set-key"),
        "{polled:?}"
    );

    let done = rt
        .block_on(second.hand_over_key(polled[0].incident_id, new_key.clone()))
        .unwrap();
    assert_eq!(done.state, "closed", "{done:?}");
    assert_eq!(
        ws.read("kms/.env"),
        format!("TATUM_API_KEY={}\n", new_key.expose())
    );
    assert!(
        rt.block_on(second.retry_pending()).is_empty(),
        "nothing left to do"
    );
}
