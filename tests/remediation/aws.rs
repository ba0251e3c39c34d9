//! AWS: a leaked access key id (with its secret next to it) is quarantined
//! and made Inactive through IAM with the owner's admin credentials, the
//! real binary against the simulated IAM (`/_aws`, SigV4 checked).

use super::harness::{text, Workspace};
use crate::support;
use serde_json::{json, Value};
use std::process::Output;

/// The leaked key and its secret.
const ID: &str = "AKIAQSLOJOLIENSB3IAR";
const SECRET: &str = "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";
/// Another key of the same user, which must be left alone.
const OTHER_ID: &str = "AKIA35YA3COJ74QK2QWM";
const OTHER_SECRET: &str = "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";
/// The owner's admin credentials (in keysentry's environment only).
const ADMIN_ID: &str = "AKIANSCYKJQ3NQ3PWPS3";
const ADMIN_SECRET: &str = "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";

const QUARANTINE: &str = "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV3";

fn config(ws: &Workspace, admin: bool, extra: &str) {
    let admin = if admin {
        ", admin_key_id_env: KS_TEST_AWS_ADMIN_ID, admin_key_env: KS_TEST_AWS_ADMIN_SECRET"
    } else {
        ""
    };
    ws.config(&format!(
        "
remediation:
  mode: auto
  backoff_ms: 10
  rate_limit: 1000
{extra}
providers:
  aws: {{api_url: '{{sim}}/_aws'{admin}}}
"
    ));
}

/// A user `ci` with the leaked key and another one; the admin may do
/// `allow` (every action when `None`).
fn account(ws: &Workspace, allow: Option<&[&str]>) {
    admin(ws, allow);
    let user = json!({"user": "ci", "keys": [
        {"id": ID, "secret": SECRET},
        {"id": OTHER_ID, "secret": OTHER_SECRET},
    ]});
    let (status, body) = ws.sim.request("POST", "/_sim/aws/users", Some(&user));
    assert_eq!(status, 204, "{body}");
}

fn admin(ws: &Workspace, allow: Option<&[&str]>) {
    let mut admin = json!({"key_id": ADMIN_ID, "secret": ADMIN_SECRET});
    if let Some(allow) = allow {
        admin["allow"] = json!(allow);
    }
    let (status, body) = ws.sim.request("POST", "/_sim/aws/admin", Some(&admin));
    assert_eq!(status, 204, "{body}");
}

fn leak(ws: &Workspace, with_secret: bool) {
    let mut creds = format!("[default]\naws_access_key_id = {ID}\n");
    if with_secret {
        creds.push_str(&format!("aws_secret_access_key = {SECRET}\n"));
    }
    ws.write("tree/deploy/credentials", &creds);
}

/// `keysentry scan tree --remediate` with the admin credentials in its
/// environment.
fn scan(ws: &Workspace) -> Output {
    let args = ws.scan_args();
    let out = support::keysentry()
        .current_dir(ws.dir.path())
        .env("KEYSENTRY_LOG", "keysentry=debug")
        .env("KS_TEST_AWS_ADMIN_ID", ADMIN_ID)
        .env("KS_TEST_AWS_ADMIN_SECRET", ADMIN_SECRET)
        .args(&args)
        .output()
        .expect("run keysentry");
    assert_eq!(
        out.status.code(),
        Some(1),
        "findings exit 1\n{}",
        text(&out)
    );
    out
}

fn state(ws: &Workspace) -> Value {
    ws.sim.request("GET", "/_sim/aws/state", None).1
}

fn key_status(ws: &Workspace, id: &str) -> Option<String> {
    state(ws)["users"]["ci"]["keys"]
        .as_array()?
        .iter()
        .find(|k| k["id"] == id)
        .map(|k| k["status"].as_str().unwrap_or_default().to_string())
}

fn calls(ws: &Workspace, action: &str) -> u64 {
    state(ws)["calls"][action].as_u64().unwrap_or(0)
}

fn policies(ws: &Workspace) -> Vec<Value> {
    state(ws)["users"]["ci"]["policies"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn hidden(ws: &Workspace, outs: &[&Output]) {
    ws.assert_secrets_hidden(&[ID, SECRET, ADMIN_ID, ADMIN_SECRET, OTHER_SECRET], outs);
}

#[test]
fn a_leaked_key_is_quarantined_and_made_inactive_with_the_admin_credentials() {
    let ws = Workspace::new();
    account(&ws, None);
    leak(&ws, true);
    config(&ws, true, "");

    let out = scan(&ws);

    let incident = ws.incident_by_fp(ID);
    assert_eq!(incident["state"], "contained", "{incident}\n{}", text(&out));
    assert_eq!(key_status(&ws, ID).as_deref(), Some("Inactive"));
    assert_eq!(
        key_status(&ws, OTHER_ID).as_deref(),
        Some("Active"),
        "only the leaked key"
    );
    assert_eq!(policies(&ws), [json!(QUARANTINE)]);
    assert_eq!(calls(&ws, "AttachUserPolicy"), 1);
    assert_eq!(calls(&ws, "UpdateAccessKey"), 1);
    assert_eq!(calls(&ws, "DeleteAccessKey"), 0, "freeze keeps the key");
    // The alert says what happened at AWS.
    let alerts = ws.sink("owner").join("\n");
    assert!(
        alerts.contains("AWSCompromisedKeyQuarantineV3 attached to IAM user ci"),
        "{alerts}"
    );
    assert!(alerts.contains("set Inactive"), "{alerts}");
    let (_, shown) = ws.show(&incident["id"]);
    assert!(
        shown.contains("IAM user") && shown.contains("key Inactive"),
        "{shown}"
    );

    // The leaked key is dead for AWS now: a second scan verifies nothing
    // new and sends no change again.
    let again = scan(&ws);
    assert_eq!(ws.incident_by_fp(ID)["state"], "contained");
    assert_eq!(calls(&ws, "UpdateAccessKey"), 1, "{}", text(&again));
    hidden(&ws, &[&out, &again]);
}

#[test]
fn without_admin_credentials_nothing_is_changed_and_the_owner_is_told_what_to_do() {
    let ws = Workspace::new();
    account(&ws, None);
    leak(&ws, true);
    config(&ws, false, "");

    let out = scan(&ws);

    let incident = ws.incident_by_fp(ID);
    assert_eq!(
        incident["state"],
        "waiting-manual",
        "{incident}\n{}",
        text(&out)
    );
    let reason = incident["reason"].as_str().unwrap_or_default();
    for needle in [
        "changed nothing",
        "AWSCompromisedKeyQuarantineV3",
        "Inactive",
        "providers.aws.admin_key_id_env",
    ] {
        assert!(reason.contains(needle), "{needle}: {reason}");
    }
    assert!(ws.sink("owner").join("\n").contains("IAM console"));
    assert_eq!(state(&ws)["calls"], json!({}), "no IAM call at all");
    assert_eq!(key_status(&ws, ID).as_deref(), Some("Active"));
    hidden(&ws, &[&out]);
}

#[test]
fn access_denied_fails_naming_the_permission_and_is_retried_later() {
    let ws = Workspace::new();
    let reads = [
        "GetAccessKeyLastUsed",
        "ListAccessKeys",
        "ListAttachedUserPolicies",
        "AttachUserPolicy",
    ];
    account(&ws, Some(&reads));
    leak(&ws, true);
    config(&ws, true, "");

    let out = scan(&ws);

    let incident = ws.incident_by_fp(ID);
    assert_eq!(incident["state"], "failed", "{incident}\n{}", text(&out));
    let reason = incident["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("iam:UpdateAccessKey"), "{reason}");
    assert!(
        !reason.contains("not authorized"),
        "IAM's own message is not repeated: {reason}"
    );
    assert_eq!(key_status(&ws, ID).as_deref(), Some("Active"));

    // The owner grants the permission; the next run finishes the job
    // without attaching the policy twice.
    admin(&ws, None);
    let again = scan(&ws);
    assert_eq!(
        ws.incident_by_fp(ID)["state"],
        "contained",
        "{}",
        text(&again)
    );
    assert_eq!(key_status(&ws, ID).as_deref(), Some("Inactive"));
    assert_eq!(calls(&ws, "AttachUserPolicy"), 1);
    assert_eq!(calls(&ws, "UpdateAccessKey"), 2, "one denied, one done");
    hidden(&ws, &[&out, &again]);
}

#[test]
fn a_lost_answer_to_update_access_key_is_checked_before_any_retry() {
    let ws = Workspace::new();
    account(&ws, None);
    leak(&ws, true);
    config(&ws, true, "  timeout_secs: 1");
    // IAM makes the key Inactive but the answer never arrives in time.
    let fault = json!({"action": "UpdateAccessKey", "hang_ms": 3000});
    assert_eq!(
        ws.sim.request("POST", "/_sim/aws/fault", Some(&fault)).0,
        204
    );

    let out = scan(&ws);

    let incident = ws.incident_by_fp(ID);
    assert_eq!(incident["state"], "contained", "{incident}\n{}", text(&out));
    assert_eq!(
        calls(&ws, "UpdateAccessKey"),
        1,
        "sent once\n{}",
        text(&out)
    );
    assert_eq!(key_status(&ws, ID).as_deref(), Some("Inactive"));
    let alerts = ws.sink("owner").join("\n");
    assert!(
        alerts.contains("set Inactive (took effect although the answer was lost)"),
        "{alerts}"
    );
    hidden(&ws, &[&out]);
}

#[test]
fn iam_throttling_is_retried_with_backoff() {
    let ws = Workspace::new();
    account(&ws, None);
    leak(&ws, true);
    config(&ws, true, "");
    let fault = json!({"action": "AttachUserPolicy", "code": "Throttling", "count": 2});
    assert_eq!(
        ws.sim.request("POST", "/_sim/aws/fault", Some(&fault)).0,
        204
    );

    let out = scan(&ws);

    assert_eq!(
        ws.incident_by_fp(ID)["state"],
        "contained",
        "{}",
        text(&out)
    );
    assert_eq!(calls(&ws, "AttachUserPolicy"), 3, "two throttled, one done");
    assert_eq!(policies(&ws), [json!(QUARANTINE)]);
}

#[test]
fn a_key_of_another_account_waits_for_its_owner() {
    let ws = Workspace::new();
    admin(&ws, None);
    // Only the id leaked: nothing to verify with, IAM does not know it.
    leak(&ws, false);
    config(&ws, true, "");

    let out = scan(&ws);

    let incident = ws.incident_by_fp(ID);
    assert_eq!(
        incident["state"],
        "waiting-manual",
        "{incident}\n{}",
        text(&out)
    );
    let reason = incident["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("not in the AWS account"), "{reason}");
    assert!(reason.contains("NoSuchEntity"), "{reason}");
    assert_eq!(
        calls(&ws, "AttachUserPolicy") + calls(&ws, "UpdateAccessKey"),
        0
    );
    hidden(&ws, &[&out]);
}

#[test]
fn policy_revoke_deletes_the_key_after_containment() {
    let ws = Workspace::new();
    account(&ws, None);
    leak(&ws, true);
    config(&ws, true, "  policy: {aws: revoke}");

    let out = scan(&ws);

    let incident = ws.incident_by_fp(ID);
    assert_eq!(incident["state"], "closed", "{incident}\n{}", text(&out));
    assert_eq!(key_status(&ws, ID), None, "deleted");
    assert_eq!(key_status(&ws, OTHER_ID).as_deref(), Some("Active"));
    assert_eq!(policies(&ws), [json!(QUARANTINE)]);
    assert_eq!(
        calls(&ws, "UpdateAccessKey"),
        1,
        "made Inactive before the delete"
    );
    assert_eq!(calls(&ws, "DeleteAccessKey"), 1);
    let alerts = ws.sink("owner").join("\n");
    assert!(alerts.contains("deleted (ok)"), "{alerts}");
    assert!(alerts.contains("STS rejects it"), "{alerts}");
    hidden(&ws, &[&out]);
}

/// `keysentry config init-escrow`: the `remediation.escrow` section and
/// the service's identity file (the test decrypts with it).
fn escrow(ws: &Workspace) -> (String, String) {
    let service = ws.path("escrow.key").display().to_string();
    let init = ws.keysentry(&["config", "init-escrow", "--identity-file", &service]);
    assert!(init.status.success(), "{}", text(&init));
    (
        format!("  escrow:\n    identity_file: {service}\n"),
        service,
    )
}

fn age_decrypt(identity: &str, armored: &[u8]) -> String {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("age")
        .args(["-d", "-i", identity])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("age (Debian package `age`) is installed");
    child.stdin.take().unwrap().write_all(armored).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const APP_ENV: &str =
    "AWS_REGION=eu-west-1\nAWS_ACCESS_KEY_ID={id}\nAWS_SECRET_ACCESS_KEY={secret}\n";

/// User `ci` with the leaked key (and `more` keys), a consumer env file
/// holding the pair, escrow, policy regenerate. Returns the service's
/// escrow identity file.
fn rotation(ws: &Workspace, more: &[Value], extra: &str) -> String {
    admin(ws, None);
    let mut keys = vec![json!({"id": ID, "secret": SECRET})];
    keys.extend(more.iter().cloned());
    let user = json!({"user": "ci", "keys": keys});
    assert_eq!(
        ws.sim.request("POST", "/_sim/aws/users", Some(&user)).0,
        204
    );
    leak(ws, true);
    ws.write(
        "app.env",
        &APP_ENV.replace("{id}", ID).replace("{secret}", SECRET),
    );
    let (section, identity) = escrow(ws);
    config(
        ws,
        true,
        &format!("  policy: {{aws: regenerate}}\n{extra}{section}"),
    );
    let cfg = ws.read("config.yaml").replace(
        "admin_key_env: KS_TEST_AWS_ADMIN_SECRET}",
        "admin_key_env: KS_TEST_AWS_ADMIN_SECRET, consumers: [{name: app, env_file: '{dir}/app.env', variable: AWS_ACCESS_KEY_ID, secret_variable: AWS_SECRET_ACCESS_KEY}]}",
    );
    ws.write(
        "config.yaml",
        &cfg.replace("{dir}", &ws.dir.path().display().to_string()),
    );
    identity
}

/// The user's only key, Active: (id, secret).
fn only_key(ws: &Workspace) -> (String, String) {
    let keys = state(ws)["users"]["ci"]["keys"].clone();
    let keys = keys.as_array().cloned().unwrap_or_default();
    assert_eq!(keys.len(), 1, "one key left: {keys:?}");
    assert_eq!(keys[0]["status"], "Active");
    (
        keys[0]["id"].as_str().unwrap().to_string(),
        keys[0]["secret"].as_str().unwrap().to_string(),
    )
}

#[test]
fn rotate_hands_the_new_pair_to_the_consumer_deletes_the_old_key_and_escrows_the_new_one() {
    let ws = Workspace::new();
    let identity = rotation(&ws, &[], "");

    let out = scan(&ws);

    let incident = ws.incident_by_fp(ID);
    assert_eq!(incident["state"], "closed", "{incident}\n{}", text(&out));
    let (new_id, new_secret) = only_key(&ws);
    assert_ne!(new_id, ID, "the old key is deleted");
    assert_eq!(calls(&ws, "CreateAccessKey"), 1);
    assert_eq!(calls(&ws, "DeleteAccessKey"), 1);
    assert_eq!(
        policies(&ws),
        [json!(QUARANTINE)],
        "quarantined before the rotation"
    );
    // The consumer holds the new pair, its other lines untouched.
    assert_eq!(
        ws.read("app.env"),
        APP_ENV
            .replace("{id}", &new_id)
            .replace("{secret}", &new_secret)
    );
    // Escrow holds the new pair, for `age -d`.
    let config = ws.path("config.yaml").display().to_string();
    let id = incident["id"].to_string();
    let sealed = ws.keysentry(&["incidents", "new-key", &id, "--config", &config]);
    assert!(sealed.status.success(), "{}", text(&sealed));
    assert_eq!(
        age_decrypt(&identity, &sealed.stdout),
        format!("AWS_ACCESS_KEY_ID={new_id}\nAWS_SECRET_ACCESS_KEY={new_secret}\n")
    );
    let alerts = ws.sink("owner").join("\n");
    assert!(alerts.contains("the new key pair went to app"), "{alerts}");
    assert!(
        alerts.contains("the old key is gone from IAM and the new one is Active"),
        "{alerts}"
    );
    ws.assert_secrets_hidden(
        &[ID, SECRET, ADMIN_SECRET, &new_secret, &new_id],
        &[&out, &sealed],
    );
}

#[test]
fn rotate_without_a_destination_contains_and_creates_nothing() {
    let ws = Workspace::new();
    account(&ws, None);
    leak(&ws, true);
    config(&ws, true, "  policy: {aws: regenerate}");

    let out = scan(&ws);

    let incident = ws.incident_by_fp(ID);
    assert_eq!(
        incident["state"],
        "waiting-manual",
        "{incident}\n{}",
        text(&out)
    );
    let reason = incident["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("did not create a new AWS key"), "{reason}");
    assert!(reason.contains("quarantined and Inactive"), "{reason}");
    assert_eq!(key_status(&ws, ID).as_deref(), Some("Inactive"));
    assert_eq!(calls(&ws, "CreateAccessKey"), 0);
    hidden(&ws, &[&out]);
}

#[test]
fn a_key_from_a_lost_create_answer_is_deleted_and_a_usable_one_handed_over() {
    let ws = Workspace::new();
    rotation(&ws, &[], "  timeout_secs: 1\n");
    // IAM creates the key but its answer, the only copy of the new
    // secret, never arrives.
    let fault = json!({"action": "CreateAccessKey", "hang_ms": 3000});
    assert_eq!(
        ws.sim.request("POST", "/_sim/aws/fault", Some(&fault)).0,
        204
    );
    let before = APP_ENV.replace("{id}", ID).replace("{secret}", SECRET);

    let first = scan(&ws);
    let incident = ws.incident_by_fp(ID);
    assert_eq!(incident["state"], "failed", "{incident}\n{}", text(&first));
    assert_eq!(ws.read("app.env"), before, "nothing written");

    let again = scan(&ws);

    assert_eq!(ws.incident_by_fp(ID)["state"], "closed", "{}", text(&again));
    assert_eq!(calls(&ws, "CreateAccessKey"), 2);
    // The useless key and the old one are deleted: the user ends with the
    // usable key only, which the consumer holds.
    assert_eq!(calls(&ws, "DeleteAccessKey"), 2);
    let (new_id, new_secret) = only_key(&ws);
    assert_eq!(
        ws.read("app.env"),
        APP_ENV
            .replace("{id}", &new_id)
            .replace("{secret}", &new_secret)
    );
    hidden(&ws, &[&first, &again]);
}

#[test]
fn a_user_at_the_two_key_limit_is_contained_and_told_why_there_is_no_new_key() {
    let ws = Workspace::new();
    rotation(&ws, &[json!({"id": OTHER_ID, "secret": OTHER_SECRET})], "");

    let out = scan(&ws);

    let incident = ws.incident_by_fp(ID);
    assert_eq!(
        incident["state"],
        "waiting-manual",
        "{incident}\n{}",
        text(&out)
    );
    let reason = incident["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("already has two access keys"), "{reason}");
    assert_eq!(key_status(&ws, ID).as_deref(), Some("Inactive"));
    assert_eq!(key_status(&ws, OTHER_ID).as_deref(), Some("Active"));
    assert_eq!(calls(&ws, "CreateAccessKey"), 1);
    assert_eq!(
        calls(&ws, "DeleteAccessKey"),
        0,
        "no key of the owner's is deleted"
    );
    hidden(&ws, &[&out]);
}

#[test]
fn dry_run_prints_the_iam_plan_and_calls_nothing() {
    let ws = Workspace::new();
    account(&ws, None);
    leak(&ws, true);
    config(&ws, true, "  policy: {aws: revoke}");
    let cfg = ws
        .read("config.yaml")
        .replace("mode: auto", "mode: dry-run");
    ws.write("config.yaml", &cfg);

    let out = scan(&ws);

    let err = super::harness::stderr(&out);
    for line in [
        "plan: verify: STS GetCallerIdentity",
        "plan: find the key's user: IAM GetAccessKeyLastUsed",
        "plan: quarantine: IAM AttachUserPolicy arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV3",
        "plan: deactivate: IAM UpdateAccessKey Status=Inactive",
        "plan: delete: IAM DeleteAccessKey",
    ] {
        assert!(err.contains(line), "{line} missing:\n{err}");
    }
    assert_eq!(state(&ws)["calls"], json!({}), "no IAM call");
    assert_eq!(key_status(&ws, ID).as_deref(), Some("Active"));
    hidden(&ws, &[&out]);
}

#[test]
fn admin_variables_that_are_not_set_fail_naming_the_variable() {
    let ws = Workspace::new();
    account(&ws, None);
    leak(&ws, true);
    config(&ws, true, "");

    // The config names the variables; this run's environment lacks them.
    let out = ws.keysentry(
        &ws.scan_args()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );

    let incident = ws.incident_by_fp(ID);
    assert_eq!(incident["state"], "failed", "{incident}\n{}", text(&out));
    let reason = incident["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("KS_TEST_AWS_ADMIN_ID") && reason.contains("not set"),
        "{reason}"
    );
    assert_eq!(state(&ws)["calls"], json!({}));
    hidden(&ws, &[&out]);
}
