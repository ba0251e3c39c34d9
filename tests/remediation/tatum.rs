//! The Tatum playbook through `keysentry scan --remediate`.

use super::harness::{fp, mode, set_mode, stderr, tatum_key, text, Workspace};
use serde_json::json;
use std::process::Stdio;

/// Auto mode, fast retries, the simulator as Tatum with management
/// templates, and a KMS consumer whose restart appends to `restarts`.
const REGENERATE: &str = "
remediation:
  mode: auto
  policy: {tatum: regenerate}
  backoff_ms: 10
  max_attempts: 3
  rate_limit: 1000
providers:
  tatum:
    api_url: {sim}
    management:
      regenerate:
        method: POST
        url: {sim}/mgmt/tatum/regenerate
        headers: {content-type: application/json}
        body: '{\"apiKey\":\"{{secret}}\"}'
        ok: [200]
        new_key_pointer: /apiKey
      expire: {method: POST, url: '{sim}/mgmt/tatum/expire', body: '{\"apiKey\":\"{{secret}}\"}', ok: [200, 204]}
    consumers:
      - {name: kms, env_file: '{dir}/kms/.env', variable: TATUM_API_KEY, restart: [sh, -c, 'echo restarted >> {dir}/restarts']}
      - {name: other, env_file: '{dir}/other/.env', variable: TATUM_API_KEY, restart: [sh, -c, 'echo restarted >> {dir}/other-restarts']}
";

/// [`REGENERATE`] with `remediation.timeout_secs`.
fn regenerate_with_timeout(secs: u64) -> String {
    REGENERATE.replace(
        "backoff_ms: 10",
        &format!("backoff_ms: 10\n  timeout_secs: {secs}"),
    )
}

const KMS_ENV: &str = "# Tatum KMS\nTATUM_KMS_PASSWORD=correct-horse\nexport TATUM_API_KEY=\"{key}\"\nTATUM_KMS_DEBUG=0\n";

/// A leaked key in the scanned tree, held by KMS; another consumer holds an
/// unrelated key.
fn leaked(ws: &Workspace, seed: &str, subscriptions: u64, accounts: u64) -> String {
    let key = tatum_key(seed);
    ws.sim.add_tatum_key(&key, true, subscriptions, accounts);
    ws.write(
        &format!("tree/{seed}.env"),
        &format!("TATUM_API_KEY={key}\n"),
    );
    key
}

fn with_kms(ws: &Workspace, key: &str) {
    let kms = ws.write("kms/.env", &KMS_ENV.replace("{key}", key));
    set_mode(&kms, 0o644);
    ws.write(
        "other/.env",
        &format!("TATUM_API_KEY={}\n", tatum_key("unrelated")),
    );
}

#[test]
fn regenerate_propagates_the_new_key_to_kms_and_restarts_it_once() {
    let ws = Workspace::new();
    let key = leaked(&ws, "leak", 2, 1);
    with_kms(&ws, &key);
    let other_before = ws.read("other/.env");
    ws.config(REGENERATE);

    let out = ws.scan();

    let state = ws.sim.tatum_key(&key);
    assert_eq!(state["state"], "dead", "the leaked key no longer works");
    assert_eq!(state["regenerations"], 1);
    let new_key = state["replacement_key"]
        .as_str()
        .expect("regenerated")
        .to_string();
    assert_eq!(
        ws.read("kms/.env"),
        KMS_ENV.replace("{key}", &new_key),
        "only the key changed in the KMS env file"
    );
    assert_eq!(mode(&ws.path("kms/.env")), 0o600);
    assert_eq!(
        ws.read("restarts"),
        "restarted\n",
        "KMS restarted exactly once"
    );
    assert_eq!(
        ws.read("other/.env"),
        other_before,
        "a consumer holding another key is left alone"
    );
    assert_eq!(ws.read("other-restarts"), "");
    let calls = |m, p| ws.sim.count(m, p);
    assert_eq!(calls("PUT", "/v3/tatum/freeze"), 1);
    assert_eq!(calls("GET", "/v3/subscription/count"), 1);
    assert_eq!(calls("GET", "/v3/ledger/account/count"), 1);
    assert_eq!(calls("POST", "/mgmt/tatum/regenerate"), 1);
    assert_eq!(calls("POST", "/mgmt/tatum/expire"), 0);
    // Confirmed with both keys: old answers 401, new answers 200.
    let confirm_new = ws.sim.calls().into_iter().filter(|c| {
        c["path"] == "/v3/tatum/version"
            && c["key_fingerprint"] == fp(&new_key).as_str()
            && c["status"] == 200
    });
    assert_eq!(confirm_new.count(), 1);

    let incident = ws.incident_by_fp(&key);
    assert_eq!(incident["state"], "closed", "{}", text(&out));
    assert_eq!(incident["testnet"], true);
    assert_eq!(incident["subscriptions"], 2);
    let actions = incident["actions"].to_string();
    for step in [
        "verify",
        "freeze",
        "regenerate",
        "propagate:kms",
        "restart:kms",
        "confirm:new",
    ] {
        assert!(actions.contains(step), "{step} in {actions}");
    }
    let (show, _) = ws.show(&incident["id"]);
    let alert = show["alerts"][0]["body"]
        .as_str()
        .expect("an alert was recorded");
    assert!(alert.contains("\"state\":\"closed\""), "{alert}");
    assert!(alert.contains("\"subscriptions\":2"), "{alert}");
    assert!(
        show["alerts"][0]["deliveries"]
            .as_str()
            .unwrap()
            .contains("ok"),
        "{show}"
    );
    let delivered = ws.sink("owner");
    assert_eq!(delivered.len(), 1, "one alert for one pass");
    assert!(delivered[0].contains(&fp(&key)), "{}", delivered[0]);
    assert_eq!(ws.sink("slack").len(), 1);
    ws.assert_secrets_hidden(&[&key, &new_key], &[&out]);
}

#[test]
fn a_second_scan_of_the_same_tree_calls_no_provider() {
    let ws = Workspace::new();
    let key = leaked(&ws, "again", 0, 0);
    with_kms(&ws, &key);
    ws.config(REGENERATE);
    ws.scan();
    let before = ws.sim.calls().len();
    assert!(before > 0);

    let out = ws.scan();

    assert_eq!(
        ws.sim.calls().len(),
        before,
        "no call at all for a closed incident\n{}",
        text(&out)
    );
    assert_eq!(ws.read("restarts"), "restarted\n");
    assert_eq!(ws.incidents().len(), 1);
}

#[test]
fn expire_happens_only_when_nothing_is_bound() {
    let ws = Workspace::new();
    let free = leaked(&ws, "free", 0, 0);
    let bound = leaked(&ws, "bound", 3, 0);
    // KMS holds the bound key: its regenerate has somewhere to go.
    with_kms(&ws, &bound);
    ws.config(&REGENERATE.replace("policy: {tatum: regenerate}", "policy: {tatum: expire}"));

    ws.scan();

    let free_state = ws.sim.tatum_key(&free);
    assert_eq!(free_state["expirations"], 1);
    assert_eq!(free_state["regenerations"], 0);
    let bound_state = ws.sim.tatum_key(&bound);
    assert_eq!(
        bound_state["expirations"], 0,
        "an expire would stop 3 subscriptions"
    );
    assert_eq!(bound_state["regenerations"], 1);
    assert_eq!(ws.sim.count("POST", "/mgmt/tatum/expire"), 1);
    assert_eq!(ws.sim.count("POST", "/mgmt/tatum/regenerate"), 1);
    let i = ws.incident_by_fp(&free);
    assert_eq!(
        (i["state"].as_str(), i["action"].as_str()),
        (Some("closed"), Some("expire"))
    );
    let i = ws.incident_by_fp(&bound);
    assert_eq!(
        (i["state"].as_str(), i["action"].as_str()),
        (Some("closed"), Some("regenerate"))
    );
    let (_, shown) = ws.show(&i["id"]);
    assert!(shown.contains("3 subscriptions"), "{shown}");
}

#[test]
fn force_expire_expires_even_with_bound_resources() {
    let ws = Workspace::new();
    let bound = leaked(&ws, "forced", 1, 4);
    ws.config(
        &REGENERATE
            .replace("policy: {tatum: regenerate}", "policy: {tatum: expire}")
            .replace(
                "    api_url: {sim}\n",
                "    api_url: {sim}\n    force_expire: true\n",
            ),
    );

    ws.scan();

    assert_eq!(ws.sim.tatum_key(&bound)["expirations"], 1);
    assert_eq!(ws.sim.count("POST", "/mgmt/tatum/regenerate"), 0);
    assert_eq!(ws.incident_by_fp(&bound)["state"], "closed");
}

/// No management templates: the owner regenerates in the Dashboard and
/// hands the new key to `tatum set-key`.
const MANUAL: &str = "
remediation:
  mode: auto
  backoff_ms: 10
  rate_limit: 1000
providers:
  tatum:
    api_url: {sim}
    consumers:
      - {name: kms, env_file: '{dir}/kms/.env', variable: TATUM_API_KEY, restart: [sh, -c, 'echo restarted >> {dir}/restarts']}
";

#[test]
fn manual_rotation_is_finished_by_tatum_set_key() {
    let ws = Workspace::new();
    let key = leaked(&ws, "manual", 0, 0);
    with_kms(&ws, &key);
    let config = ws.config(MANUAL).display().to_string();

    let scan = ws.scan();

    let incident = ws.incident_by_fp(&key);
    assert_eq!(incident["state"], "waiting-manual", "{}", text(&scan));
    assert_eq!(ws.sim.tatum_key(&key)["state"], "frozen");
    let (_, shown) = ws.show(&incident["id"]);
    for step in [
        "Tatum Dashboard",
        "API Keys",
        "starts with `t-",
        "Regenerate",
        "keysentry tatum set-key",
    ] {
        assert!(
            shown.contains(step),
            "{step} missing from the next steps:\n{shown}"
        );
    }
    assert_eq!(ws.read("restarts"), "", "nothing to propagate yet");

    // The owner clicks Regenerate in the Dashboard.
    let (status, new) = ws.sim.request(
        "POST",
        &format!("/_sim/tatum/keys/{}/regenerate", fp(&key)),
        None,
    );
    assert_eq!(status, 200);
    let new_key = new["apiKey"].as_str().unwrap().to_string();
    let mut set_key = crate::support::keysentry();
    let id = incident["id"].to_string();
    let set = set_key
        .args(["tatum", "set-key", &id, "--config", &config])
        .env("KEYSENTRY_LOG", "keysentry=debug")
        .write_stdin(format!("{new_key}\n"))
        .output()
        .unwrap();

    assert_eq!(set.status.code(), Some(0), "{}", text(&set));
    assert_eq!(ws.read("kms/.env"), KMS_ENV.replace("{key}", &new_key));
    assert_eq!(mode(&ws.path("kms/.env")), 0o600);
    assert_eq!(ws.read("restarts"), "restarted\n");
    assert_eq!(ws.incident_by_fp(&key)["state"], "closed");
    assert_eq!(ws.sim.count("POST", "/mgmt/tatum/regenerate"), 0);
    ws.assert_secrets_hidden(&[&key, &new_key], &[&scan, &set]);
}

#[test]
fn set_key_refuses_a_key_tatum_does_not_accept() {
    let ws = Workspace::new();
    let key = leaked(&ws, "refused", 0, 0);
    with_kms(&ws, &key);
    let config = ws.config(MANUAL).display().to_string();
    ws.scan();
    let id = ws.incident_by_fp(&key)["id"].to_string();
    let wrong = tatum_key("never-issued");

    let set = crate::support::keysentry()
        .args(["tatum", "set-key", &id, "--config", &config])
        .write_stdin(wrong.clone())
        .output()
        .unwrap();

    assert_eq!(set.status.code(), Some(2), "{}", text(&set));
    assert!(
        stderr(&set).contains("Tatum refused the new key"),
        "{}",
        text(&set)
    );
    assert_eq!(
        ws.read("kms/.env"),
        KMS_ENV.replace("{key}", &key),
        "KMS keeps the working key"
    );
    ws.assert_secrets_hidden(&[&key, &wrong], &[&set]);
}

#[test]
fn a_dead_key_is_recorded_not_live_without_freeze() {
    let ws = Workspace::new();
    // Never issued: Tatum answers 401.
    let key = tatum_key("dead");
    ws.write("tree/dead.env", &format!("TATUM_API_KEY={key}\n"));
    ws.config(REGENERATE);

    let out = ws.scan();

    let incident = ws.incident_by_fp(&key);
    assert_eq!(incident["state"], "not-live", "{}", text(&out));
    assert_eq!(ws.sim.count("GET", "/v3/tatum/version"), 1);
    assert_eq!(ws.sim.state_changing_calls(), 0, "no freeze, no rotation");
    let (show, _) = ws.show(&incident["id"]);
    let alert = show["alerts"][0]["body"]
        .as_str()
        .expect("informational alert");
    assert!(alert.contains("already rejects this key"), "{alert}");
}

#[test]
fn an_outage_fails_the_incident_and_the_next_run_recovers() {
    let ws = Workspace::new();
    let key = leaked(&ws, "outage", 0, 0);
    with_kms(&ws, &key);
    ws.config(REGENERATE);
    // Tatum is down for exactly the three attempts of the first run.
    ws.sim
        .fault(json!({"path": "/v3/tatum/version", "status": 500, "count": 3}));

    let first = ws.scan();

    let incident = ws.incident_by_fp(&key);
    assert_eq!(incident["state"], "failed", "{}", text(&first));
    assert!(
        incident["reason"].as_str().unwrap().contains("500"),
        "{incident}"
    );
    assert_eq!(
        ws.sim.count("GET", "/v3/tatum/version"),
        3,
        "bounded retries"
    );
    assert_eq!(ws.sim.state_changing_calls(), 0);
    let (show, _) = ws.show(&incident["id"]);
    assert!(show["alerts"][0]["body"]
        .as_str()
        .unwrap()
        .contains("\"state\":\"failed\""));

    // Recovery; the freeze is rate-limited once and must honour Retry-After.
    ws.sim
        .fault(json!({"path": "/v3/tatum/freeze", "status": 429, "retry_after": 1}));
    let second = ws.scan();

    assert_eq!(
        ws.incident_by_fp(&key)["state"],
        "closed",
        "{}",
        text(&second)
    );
    assert_eq!(ws.sim.tatum_key(&key)["regenerations"], 1);
    let freezes: Vec<u64> = ws
        .sim
        .calls()
        .iter()
        .filter(|c| c["path"] == "/v3/tatum/freeze")
        .map(|c| c["at_unix_ms"].as_u64().unwrap())
        .collect();
    assert_eq!(freezes.len(), 2);
    assert!(
        freezes[1] - freezes[0] >= 1000,
        "waited for Retry-After: {freezes:?}"
    );
}

#[test]
fn a_crash_during_regenerate_never_regenerates_twice() {
    let ws = Workspace::new();
    let key = leaked(&ws, "crash", 0, 0);
    with_kms(&ws, &key);
    ws.config(&regenerate_with_timeout(120));
    // Tatum regenerates, then the answer hangs: keysentry dies waiting.
    ws.sim
        .fault(json!({"path": "/mgmt/tatum/regenerate", "hang_ms": 120000}));
    let args = ws.scan_args();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("keysentry"))
        .args(&args)
        .current_dir(ws.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    ws.sim.wait_for("the regenerate call", |calls| {
        calls.iter().any(|c| c["path"] == "/mgmt/tatum/regenerate")
    });
    ws.sim.wait_for("Tatum to regenerate", |_| {
        ws.sim.tatum_key(&key)["regenerations"] == 1
    });
    child.kill().unwrap(); // SIGKILL: no cleanup of any kind
    child.wait().unwrap();
    assert_eq!(
        ws.incident_by_fp(&key)["state"],
        "contained",
        "the incident survived the crash"
    );

    let restart = ws.scan();

    assert_eq!(
        ws.sim.count("POST", "/mgmt/tatum/regenerate"),
        1,
        "{}",
        text(&restart)
    );
    assert_eq!(ws.sim.tatum_key(&key)["regenerations"], 1);
    let incident = ws.incident_by_fp(&key);
    // The new key died with the process: the owner is asked for it.
    assert_eq!(incident["state"], "waiting-manual", "{}", text(&restart));
    assert!(
        incident["reason"]
            .as_str()
            .unwrap()
            .contains("tatum set-key"),
        "{incident}"
    );
    let (show, _) = ws.show(&incident["id"]);
    let journal = show["journal"].to_string();
    assert!(journal.contains("interrupted"), "{journal}");

    // Finishing with the key from the Dashboard closes it.
    let new_key = ws.sim.tatum_key(&key)["replacement_key"]
        .as_str()
        .unwrap()
        .to_string();
    let config = ws.path("config.yaml").display().to_string();
    let set = crate::support::keysentry()
        .args([
            "tatum",
            "set-key",
            &incident["id"].to_string(),
            "--config",
            &config,
        ])
        .write_stdin(new_key.clone())
        .output()
        .unwrap();
    assert_eq!(set.status.code(), Some(0), "{}", text(&set));
    assert_eq!(ws.read("kms/.env"), KMS_ENV.replace("{key}", &new_key));
    assert_eq!(ws.sim.count("POST", "/mgmt/tatum/regenerate"), 1);
    ws.assert_secrets_hidden(&[&key, &new_key], &[&restart, &set]);
}

#[test]
fn dry_run_prints_the_plan_and_calls_nothing() {
    let ws = Workspace::new();
    let key = leaked(&ws, "dry", 0, 0);
    with_kms(&ws, &key);
    ws.config(&REGENERATE.replace("mode: auto", "mode: dry-run"));

    let out = ws.scan();

    assert!(
        ws.sim.calls().is_empty(),
        "dry-run called {:?}",
        ws.sim.calls()
    );
    let err = stderr(&out);
    for line in [
        "plan: verify: GET",
        "plan: freeze: PUT",
        "plan: regenerate: POST",
        "plan: propagate: write the new key to",
        "plan: leave consumer other alone",
    ] {
        assert!(err.contains(line), "{line} missing:\n{err}");
    }
    assert_eq!(ws.read("kms/.env"), KMS_ENV.replace("{key}", &key));
    assert_eq!(ws.read("restarts"), "");
    assert_eq!(ws.incident_by_fp(&key)["state"], "detected");
}

#[test]
fn policy_per_rule_wins_over_the_provider_policy() {
    let ws = Workspace::new();
    let key = leaked(&ws, "notify", 0, 0);
    ws.config(&REGENERATE.replace(
        "policy: {tatum: regenerate}",
        "policy: {tatum: regenerate}\n  rule_policy: {tatum.api-key: notify}",
    ));

    let out = ws.scan();

    assert_eq!(
        ws.incident_by_fp(&key)["state"],
        "verified",
        "{}",
        text(&out)
    );
    assert_eq!(ws.sim.state_changing_calls(), 0);
}

#[test]
fn mode_off_records_and_alerts_but_calls_no_provider() {
    let ws = Workspace::new();
    let key = leaked(&ws, "off", 0, 0);
    ws.config(&REGENERATE.replace("mode: auto", "mode: off"));

    let out = ws.scan();

    assert_eq!(
        ws.incident_by_fp(&key)["state"],
        "detected",
        "{}",
        text(&out)
    );
    let provider_calls = ws.sim.calls();
    assert!(provider_calls.is_empty(), "{provider_calls:?}");
    assert_eq!(ws.sink("owner").len(), 1, "the owner is still told");
}

#[test]
fn a_manual_expire_is_noticed_by_the_next_run_and_closed() {
    let ws = Workspace::new();
    let key = leaked(&ws, "manual-expire", 0, 0);
    ws.config(&MANUAL.replace(
        "  mode: auto\n",
        "  mode: auto\n  policy: {tatum: expire}\n",
    ));
    ws.scan();
    let incident = ws.incident_by_fp(&key);
    assert_eq!(incident["state"], "waiting-manual");
    let (_, shown) = ws.show(&incident["id"]);
    assert!(shown.contains("Click Expire"), "{shown}");

    // The owner clicks Expire in the Dashboard; the next run polls verify.
    let (status, _) = ws.sim.request(
        "POST",
        &format!("/_sim/tatum/keys/{}/expire", fp(&key)),
        None,
    );
    assert_eq!(status, 204);
    let out = ws.scan();

    let incident = ws.incident_by_fp(&key);
    assert_eq!(incident["state"], "closed", "{}", text(&out));
    assert_eq!(incident["action"], "expire");
    assert_eq!(
        ws.sim.state_changing_calls(),
        1,
        "only the freeze: the owner expired it"
    );
}

#[test]
fn a_verify_timeout_is_retried() {
    let ws = Workspace::new();
    let key = leaked(&ws, "slow", 0, 0);
    with_kms(&ws, &key);
    ws.config(&regenerate_with_timeout(1));
    ws.sim
        .fault(json!({"path": "/v3/tatum/version", "hang_ms": 5000, "status": 200}));

    let out = ws.scan();

    assert_eq!(ws.incident_by_fp(&key)["state"], "closed", "{}", text(&out));
    let verifies =
        ws.sim.calls().into_iter().filter(|c| {
            c["path"] == "/v3/tatum/version" && c["key_fingerprint"] == fp(&key).as_str()
        });
    // The timed-out one, the retry, and the confirmation.
    assert_eq!(verifies.count(), 3);
    // The journal says what happened and which setting bounds it.
    let (_, shown) = ws.show(&ws.incident_by_fp(&key)["id"]);
    assert!(
        shown.contains("no answer within 1 s (remediation.timeout_secs)"),
        "{shown}"
    );
}

#[test]
fn a_regenerate_answered_500_is_verified_before_it_is_sent_again() {
    let ws = Workspace::new();
    let key = leaked(&ws, "flaky", 0, 0);
    with_kms(&ws, &key);
    ws.config(REGENERATE);
    // Refused without effect: the old key still works, so it is sent again.
    ws.sim
        .fault(json!({"path": "/mgmt/tatum/regenerate", "status": 500}));

    let out = ws.scan();

    assert_eq!(ws.incident_by_fp(&key)["state"], "closed", "{}", text(&out));
    assert_eq!(ws.sim.count("POST", "/mgmt/tatum/regenerate"), 2);
    assert_eq!(ws.sim.tatum_key(&key)["regenerations"], 1);
}

#[test]
fn a_regenerate_whose_answer_is_lost_is_not_sent_again() {
    let ws = Workspace::new();
    let key = leaked(&ws, "lost", 0, 0);
    with_kms(&ws, &key);
    ws.config(&regenerate_with_timeout(1));
    // Tatum regenerates, but the answer never arrives in time.
    ws.sim
        .fault(json!({"path": "/mgmt/tatum/regenerate", "hang_ms": 5000}));

    let out = ws.scan();

    assert_eq!(
        ws.sim.count("POST", "/mgmt/tatum/regenerate"),
        1,
        "{}",
        text(&out)
    );
    assert_eq!(ws.sim.tatum_key(&key)["regenerations"], 1);
    let incident = ws.incident_by_fp(&key);
    assert_eq!(incident["state"], "waiting-manual");
    assert!(
        incident["reason"]
            .as_str()
            .unwrap()
            .contains("tatum set-key"),
        "{incident}"
    );
    assert_eq!(
        ws.read("kms/.env"),
        KMS_ENV.replace("{key}", &key),
        "KMS untouched until set-key"
    );
}

#[test]
fn tatum_calls_keep_to_providers_tatum_rate_limit() {
    let ws = Workspace::new();
    let key = leaked(&ws, "paced", 0, 0);
    with_kms(&ws, &key);
    // remediation.rate_limit stays 1000/s; Tatum's own plan allows 5/s.
    ws.config(&REGENERATE.replace(
        "    api_url: {sim}\n",
        "    api_url: {sim}\n    rate_limit: 5\n",
    ));

    let out = ws.scan();

    assert_eq!(ws.incident_by_fp(&key)["state"], "closed", "{}", text(&out));
    let tatum: Vec<u64> = ws
        .sim
        .calls()
        .iter()
        .filter(|c| c["path"].as_str().is_some_and(|p| p.starts_with("/v3/")))
        .map(|c| c["at_unix_ms"].as_u64().unwrap())
        .collect();
    assert!(tatum.len() >= 5, "{tatum:?}");
    // 5 calls/s: sent at least 200 ms apart. They are timed where the
    // simulator receives them, so one call delayed on a loaded machine can
    // land close to the next; the pace shows over spans of calls instead
    // (unpaced, they all land within a few milliseconds).
    let n = tatum.len() as u64;
    let span = tatum[tatum.len() - 1] - tatum[0];
    assert!(span >= 200 * (n - 1) - 150, "calls too close: {tatum:?}");
    for w in tatum.windows(3) {
        assert!(w[2] - w[0] >= 300, "calls too close: {tatum:?}");
    }
}
