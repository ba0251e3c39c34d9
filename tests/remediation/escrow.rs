//! A new key is never lost and never claimed where it did not go: no
//! regenerate without a destination, escrow with age (decrypted here with
//! the `age` CLI), a consumer failing while the others are written, and a
//! kill -9 between the rotate answer and the consumer writes.

use super::harness::{set_mode, tatum_key, text, Workspace};
use std::process::{Command, Output, Stdio};

/// Auto mode against the simulator's Tatum with a regenerate template; the
/// consumers and escrow come from each test (`{consumers}`, `{escrow}`).
const BASE: &str = "
remediation:
  mode: auto
  policy: {tatum: regenerate}
  backoff_ms: 10
  max_attempts: 3
  rate_limit: 1000
{escrow}providers:
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
{consumers}";

fn config(ws: &Workspace, escrow: &str, consumers: &[&str]) {
    let consumers: String = consumers.iter().map(|c| format!("      - {c}\n")).collect();
    ws.config(
        &BASE
            .replace("{escrow}", escrow)
            .replace("{consumers}", &consumers),
    );
}

/// A consumer `name` with an env file under `{dir}/name/.env` and a restart
/// that appends to `{dir}/name.restarts`.
fn consumer(name: &str) -> String {
    format!("{{name: {name}, env_file: '{{dir}}/{name}/.env', variable: TATUM_API_KEY, restart: [sh, -c, 'echo restarted >> {{dir}}/{name}.restarts']}}")
}

fn leaked(ws: &Workspace, seed: &str, subscriptions: u64, accounts: u64) -> String {
    let key = tatum_key(seed);
    ws.sim.add_tatum_key(&key, true, subscriptions, accounts);
    ws.write(
        &format!("tree/{seed}.env"),
        &format!("TATUM_API_KEY={key}\n"),
    );
    key
}

fn holds(ws: &Workspace, name: &str, key: &str) {
    let path = ws.write(&format!("{name}/.env"), &format!("TATUM_API_KEY={key}\n"));
    set_mode(&path, 0o600);
}

/// `keysentry config init-escrow` makes the service's identity; an owner
/// identity comes from `age-keygen`. Returns the `remediation.escrow`
/// section (recipient: the owner) and the owner's identity file.
fn escrow(ws: &Workspace) -> (String, String) {
    let service = ws.path("escrow.key").display().to_string();
    let init = ws.keysentry(&["config", "init-escrow", "--identity-file", &service]);
    assert!(init.status.success(), "{}", text(&init));
    let recipient = String::from_utf8_lossy(&init.stdout).trim().to_string();
    assert!(recipient.starts_with("age1"), "{}", text(&init));
    assert_eq!(super::harness::mode(&ws.path("escrow.key")), 0o600);
    let owner = ws.path("owner.key").display().to_string();
    let gen = Command::new("age-keygen")
        .args(["-o", &owner])
        .output()
        .expect("age-keygen (Debian package `age`) is installed");
    assert!(gen.status.success(), "{}", text(&gen));
    let public = Command::new("age-keygen")
        .args(["-y", &owner])
        .output()
        .unwrap();
    let public = String::from_utf8_lossy(&public.stdout).trim().to_string();
    (
        format!("  escrow:\n    identity_file: {service}\n    age_recipients: [{public}]\n"),
        owner,
    )
}

fn new_key_of(ws: &Workspace, id: &serde_json::Value) -> Output {
    let config = ws.path("config.yaml").display().to_string();
    ws.keysentry(&["incidents", "new-key", &id.to_string(), "--config", &config])
}

fn age_decrypt(identity: &str, armored: &[u8]) -> String {
    let mut child = Command::new("age")
        .args(["-d", "-i", identity])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("age (Debian package `age`) is installed");
    use std::io::Write;
    child.stdin.take().unwrap().write_all(armored).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8(out.stdout).unwrap()
}

fn replacement(ws: &Workspace, key: &str) -> String {
    ws.sim.tatum_key(key)["replacement_key"]
        .as_str()
        .expect("the simulator issued a new key")
        .to_string()
}

#[test]
fn no_destination_means_no_regenerate_and_the_owner_is_told_why() {
    let ws = Workspace::new();
    let key = leaked(&ws, "nowhere", 0, 0);
    // The one consumer holds some other key: nothing would receive the new one.
    holds(&ws, "kms", &tatum_key("unrelated"));
    config(&ws, "", &[&consumer("kms")]);

    let out = ws.scan();

    assert_eq!(
        ws.sim.count("POST", "/mgmt/tatum/regenerate"),
        0,
        "{}",
        text(&out)
    );
    assert_eq!(ws.sim.tatum_key(&key)["state"], "frozen", "contained");
    let incident = ws.incident_by_fp(&key);
    assert_eq!(incident["state"], "waiting-manual", "{incident}");
    let alerts = ws.sink("owner");
    let alert = alerts.last().expect("the owner was alerted");
    assert!(
        alert.contains("no consumer holds this key and no escrow is configured, so keysentry did not regenerate it"),
        "{alert}"
    );
    assert!(alert.contains("keysentry config init-escrow"), "{alert}");
    assert!(!alert.contains("handed"), "claims a hand-over: {alert}");
    assert_eq!(ws.read("kms.restarts"), "");
    ws.assert_secrets_hidden(&[&key], &[&out]);
}

#[test]
fn escrowed_key_decrypts_with_the_age_cli() {
    let ws = Workspace::new();
    let key = leaked(&ws, "sealed", 0, 0);
    let (section, owner) = escrow(&ws);
    // No consumer holds the key: escrow is the destination.
    config(&ws, &section, &[&consumer("kms")]);

    let out = ws.scan();

    assert_eq!(ws.sim.count("POST", "/mgmt/tatum/regenerate"), 1);
    let new = replacement(&ws, &key);
    let incident = ws.incident_by_fp(&key);
    assert_eq!(incident["state"], "closed", "{}", text(&out));
    let sealed = new_key_of(&ws, &incident["id"]);
    assert!(sealed.status.success(), "{}", text(&sealed));
    assert!(sealed
        .stdout
        .starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----"));
    assert_eq!(
        age_decrypt(&owner, &sealed.stdout),
        new,
        "the owner recovers it"
    );
    let service = ws.path("escrow.key").display().to_string();
    assert_eq!(age_decrypt(&service, &sealed.stdout), new);
    let alert = ws.sink("owner").last().cloned().unwrap_or_default();
    assert!(alert.contains("written to no consumer"), "{alert}");
    assert!(
        alert.contains(&format!("keysentry incidents new-key {}", incident["id"])),
        "{alert}"
    );
    let (_, shown) = ws.show(&incident["id"]);
    assert!(shown.contains("escrow:"), "{shown}");
    ws.assert_secrets_hidden(&[&key, &new], &[&out, &sealed]);
}

#[test]
fn a_consumer_that_fails_leaves_the_incident_failed_the_others_written_and_a_retry_finishes_from_escrow(
) {
    let ws = Workspace::new();
    let key = leaked(&ws, "halfway", 0, 0);
    let (section, _) = escrow(&ws);
    holds(&ws, "kms", &key);
    // `other` holds the key behind a symlink: keysentry refuses to write it.
    holds(&ws, "real", &key);
    std::fs::create_dir_all(ws.path("other")).unwrap();
    std::os::unix::fs::symlink(ws.path("real/.env"), ws.path("other/.env")).unwrap();
    config(&ws, &section, &[&consumer("kms"), &consumer("other")]);

    let first = ws.scan();

    let new = replacement(&ws, &key);
    let incident = ws.incident_by_fp(&key);
    assert_eq!(incident["state"], "failed", "{}", text(&first));
    assert_eq!(ws.read("kms/.env"), format!("TATUM_API_KEY={new}\n"));
    assert_eq!(ws.read("kms.restarts"), "restarted\n");
    assert_eq!(ws.read("real/.env"), format!("TATUM_API_KEY={key}\n"));
    let alert = ws.sink("owner").last().cloned().unwrap_or_default();
    assert!(
        alert.contains("kms: written, verified, restarted"),
        "{alert}"
    );
    assert!(alert.contains("other: FAILED ("), "{alert}");
    assert!(alert.contains("symbolic link"), "{alert}");
    let (show, shown) = ws.show(&incident["id"]);
    assert!(shown.contains("other: FAILED"), "{shown}");
    assert_eq!(show["incident"]["consumers"][0]["written"], true, "{show}");

    // The owner fixes the path; the next run writes it from escrow.
    std::fs::remove_file(ws.path("other/.env")).unwrap();
    holds(&ws, "other", &key);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let second = ws.scan();

    let incident = ws.incident_by_fp(&key);
    assert_eq!(incident["state"], "closed", "{}", text(&second));
    assert_eq!(ws.read("other/.env"), format!("TATUM_API_KEY={new}\n"));
    assert_eq!(ws.read("kms.restarts"), "restarted\n", "kms restarted once");
    assert_eq!(ws.read("other.restarts"), "restarted\n");
    assert_eq!(ws.sim.count("POST", "/mgmt/tatum/regenerate"), 1);
    let actions = incident["actions"].to_string();
    assert!(actions.contains("escrow:open"), "{actions}");
    let alert = ws.sink("owner").last().cloned().unwrap_or_default();
    assert!(
        alert.contains("kms: written, verified, restarted"),
        "{alert}"
    );
    assert!(
        alert.contains("other: written, verified, restarted"),
        "{alert}"
    );
    ws.assert_secrets_hidden(&[&key, &new], &[&first, &second]);
}

#[test]
fn kill_9_before_the_consumer_writes_finishes_from_escrow_with_one_regenerate() {
    let ws = Workspace::new();
    let key = leaked(&ws, "killed", 0, 0);
    let (section, _) = escrow(&ws);
    holds(&ws, "kms", &key);
    holds(&ws, "wallet", &key);
    // kms's restart hangs the first time: keysentry is killed there, after
    // the regenerate answer, before `wallet` is written.
    let hang = "{name: kms, env_file: '{dir}/kms/.env', variable: TATUM_API_KEY, restart: [sh, -c, 'if [ -e {dir}/hung ]; then echo restarted >> {dir}/kms.restarts; else touch {dir}/hung; sleep 30; fi']}";
    config(&ws, &section, &[hang, &consumer("wallet")]);
    let args = ws.scan_args();
    let mut child = Command::new(assert_cmd::cargo::cargo_bin("keysentry"))
        .args(&args)
        .current_dir(ws.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    ws.sim
        .wait_for("the hung restart", |_| ws.path("hung").exists());
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(ws.read("wallet/.env"), format!("TATUM_API_KEY={key}\n"));

    let restart = ws.scan();

    let new = replacement(&ws, &key);
    assert_eq!(
        ws.sim.count("POST", "/mgmt/tatum/regenerate"),
        1,
        "{}",
        text(&restart)
    );
    let incident = ws.incident_by_fp(&key);
    assert_eq!(incident["state"], "closed", "{}", text(&restart));
    assert_eq!(ws.read("wallet/.env"), format!("TATUM_API_KEY={new}\n"));
    assert_eq!(ws.read("kms/.env"), format!("TATUM_API_KEY={new}\n"));
    assert_eq!(ws.read("kms.restarts"), "restarted\n");
    let actions = incident["actions"].to_string();
    assert!(actions.contains("escrow:open"), "{actions}");
    let sealed = new_key_of(&ws, &incident["id"]);
    ws.assert_secrets_hidden(&[&key, &new], &[&restart, &sealed]);
}

#[test]
fn expire_of_a_bound_key_takes_force_per_incident() {
    let ws = Workspace::new();
    let key = leaked(&ws, "bound", 2, 1);
    config(&ws, "", &[&consumer("kms")]);
    ws.scan();
    let incident = ws.incident_by_fp(&key);
    assert_eq!(incident["state"], "waiting-manual");
    let id = incident["id"].to_string();
    let cfg = ws.path("config.yaml").display().to_string();

    let refused = ws.keysentry(&["incidents", "expire", &id, "--config", &cfg]);

    assert_eq!(refused.status.code(), Some(2), "{}", text(&refused));
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("1 virtual accounts and 2 notification subscriptions"),
        "{err}"
    );
    assert!(err.contains("--force"), "{err}");
    assert_eq!(ws.sim.tatum_key(&key)["expirations"], 0);

    let forced = ws.keysentry(&["incidents", "expire", &id, "--force", "--config", &cfg]);
    assert!(forced.status.success(), "{}", text(&forced));
    let out = ws.scan();

    let state = ws.sim.tatum_key(&key);
    assert_eq!(state["expirations"], 1, "{}", text(&out));
    assert_eq!(
        (state["subscriptions"].as_u64(), state["accounts"].as_u64()),
        (Some(0), Some(0)),
        "deleted with the key"
    );
    assert_eq!(ws.sim.count("POST", "/mgmt/tatum/regenerate"), 0);
    let incident = ws.incident_by_fp(&key);
    assert_eq!(
        (incident["state"].as_str(), incident["action"].as_str()),
        (Some("closed"), Some("expire"))
    );
}
