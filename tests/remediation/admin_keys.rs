//! OpenAI and Anthropic keys removed with the owner's admin key
//! (`providers.<p>.admin_key_env`): the real binary scans a tree holding a
//! leaked key, finds the key's id in the simulated admin API's paged lists
//! by its redacted form, and deletes (OpenAI) or disables (Anthropic)
//! exactly that key — never one that only looks like it.

use super::harness::{fp, text, Workspace};
use serde_json::{json, Value};
use std::process::Output;

const LEAKED: &str = "sk-proj-qsR6RZ24lPoQj3oPUlieI2nVsbBi1RMar1jf3YZ4Zq0CVB8iY4qw2oF5WJKBT3BlbkFJQx4BOuPhw0MZOqSCJNViCRUCIlsmlHwqxDqMrz4iKFJpKp4mSxieBPO9DyaU";
const ADMIN: &str =
    "sk-admin-B73cojFZS1COqkUAV3q4WZwmT2OxHTQi5TMpUFn3T3BlbkFJNcLSLcwLUKvlsmkYRJh5okeBPMJZIScC0vPfHait";
const ANT_LEAKED: &str = "sk-ant-api03-hAt6rKMSe8EHx21cauvjFJIH0EoQnsZcyGT6kVjqBR02nqBLpwXpLsBnPwBcuzDfeWcM6aPXtmCEJyvdsHB8ij3dhx0knAA";
const ANT_ADMIN: &str = "sk-ant-admin01-ttMyscwigxFCL4LBcwIsi9Zduk54IVi5a5p63RjfE7xewqZ0ndTpQ07pHY6WCmKzNd1J5dhNi8IWZxIztj9Itqfxd7bkUAA";
const FILLER: [&str; 6] = [
    "agHTr3fvZOBkN1RTSs6WchgtzyEyrjYjCtaHbIqr",
    "vo7p9282xAk1WZEAqjDL59IDmXyTE1mbK5cE0Gli",
    "gaLitf45FKHU1dnTV6PSBb9IbX3Rjt1NjPdUGB7W",
    "qoFbMgpuHGaKC5W6vPoMdHSBp6GVagx6j7D0w1iR",
    "wUoQsLfqTiiUlMgdIPjNVGbXD4wyK0KFZKGAe72C",
    "H8rvyRh6nRuyLeXE7At07YbTCyAEK5VdfqnajIut",
];

const OPENAI_ENV: &str = "KS_TEST_OPENAI_ADMIN";
const ANTHROPIC_ENV: &str = "KS_TEST_ANTHROPIC_ADMIN";

/// `key` with its first `head` characters, then `middle`, then its last
/// `tail` characters (or `end` instead of them).
fn variant(key: &str, head: usize, middle: &str, tail: Option<usize>, end: &str) -> String {
    let t = tail.map_or(end.to_string(), |n| key[key.len() - n..].to_string());
    format!("{}{middle}{t}", &key[..head])
}

/// Same prefix as the leaked key, another suffix (and body).
fn lookalike(key: &str, n: usize) -> String {
    variant(key, 20, FILLER[n], None, "Zz9Q")
}

/// The same redacted form as the leaked key (prefix and last four), another
/// key.
fn twin(key: &str, keep: usize) -> String {
    variant(key, keep, FILLER[5], Some(4), "")
}

/// An unrelated key of the provider.
fn other(prefix: &str, n: usize) -> String {
    format!("{prefix}{}{}", FILLER[n], FILLER[(n + 1) % 6])
}

fn config(ws: &Workspace, openai: &str, anthropic: &str, extra: &str) {
    ws.config(&format!(
        "remediation:\n  mode: auto\n  backoff_ms: 10\n  rate_limit: 1000\n{extra}providers:\n  openai: {{api_url: '{{sim}}/openai'{openai}}}\n  anthropic: {{api_url: '{{sim}}/anthropic'{anthropic}}}\n"
    ));
}

fn with_admin_env(env: &str) -> String {
    format!(", admin_key_env: {env}")
}

/// Adds a key to the simulated provider; its id there.
fn add(ws: &Workspace, provider: &str, key: Value) -> String {
    let (status, body) =
        ws.sim
            .request("POST", &format!("/_sim/admin/{provider}/keys"), Some(&key));
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

fn state(ws: &Workspace, provider: &str, key: &str) -> Value {
    let path = format!("/_sim/admin/{provider}/keys/{}", fp(key));
    let (status, body) = ws.sim.request("GET", &path, None);
    assert_eq!(status, 200, "{provider}");
    body
}

/// `keysentry scan --remediate` with `env` in its environment (and
/// neither admin variable unless given).
fn scan(ws: &Workspace, env: &[(&str, &str)]) -> Output {
    let mut cmd = crate::support::keysentry();
    cmd.current_dir(ws.dir.path())
        .env("KEYSENTRY_LOG", "keysentry=debug")
        .env_remove(OPENAI_ENV)
        .env_remove(ANTHROPIC_ENV)
        .args(ws.scan_args());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run keysentry");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    out
}

fn calls(ws: &Workspace, method: &str, path: &str) -> usize {
    ws.sim.count(method, path)
}

fn changes(ws: &Workspace) -> Vec<Value> {
    ws.sim
        .calls()
        .into_iter()
        .filter(|c| c["method"] != "GET")
        .collect()
}

/// The OpenAI organisation of the first tests: three projects (two pages),
/// `proj_alpha` with two keys and a lookalike of the leaked key, `proj_beta`
/// with three keys, then the leaked one (its third page), then one more.
fn openai_org(ws: &Workspace) -> (String, Vec<String>) {
    add(
        ws,
        "openai",
        json!({"key": ADMIN, "admin": true, "name": "keysentry"}),
    );
    let mut keep = Vec::new();
    for n in 0..2 {
        let k = other("sk-proj-", n);
        add(ws, "openai", json!({"key": k, "project": "proj_alpha"}));
        keep.push(k);
    }
    let look = lookalike(LEAKED, 0);
    add(
        ws,
        "openai",
        json!({"key": look, "project": "proj_alpha", "name": "ci"}),
    );
    keep.push(look);
    for n in 2..5 {
        let k = other("sk-proj-", n);
        add(ws, "openai", json!({"key": k, "project": "proj_beta"}));
        keep.push(k);
    }
    let id = add(
        ws,
        "openai",
        json!({"key": LEAKED, "project": "proj_beta", "name": "web"}),
    );
    let last = other("sk-proj-", 5);
    add(ws, "openai", json!({"key": last, "project": "proj_beta"}));
    keep.push(last);
    let (status, _) = ws.sim.request(
        "POST",
        "/_sim/admin/openai/projects",
        Some(&json!({"id": "proj_gamma", "name": "Empty"})),
    );
    assert_eq!(status, 204);
    (id, keep)
}

#[test]
fn openai_deletes_exactly_the_leaked_key_across_projects_and_pages() {
    let ws = Workspace::new();
    let (id, keep) = openai_org(&ws);
    ws.write("tree/.env", &format!("OPENAI_API_KEY={LEAKED}\n"));
    config(&ws, &with_admin_env(OPENAI_ENV), "", "");

    let out = scan(&ws, &[(OPENAI_ENV, ADMIN)]);

    let s = state(&ws, "openai", LEAKED);
    assert_eq!(
        (&s["deleted"], &s["changes"]),
        (&json!(true), &json!(1)),
        "{s}\n{}",
        text(&out)
    );
    for k in &keep {
        let s = state(&ws, "openai", k);
        assert_eq!(s["deleted"], false, "a key that only looks like it: {s}");
    }
    let delete = format!("/openai/v1/organization/projects/proj_beta/api_keys/{id}");
    assert_eq!(changes(&ws).len(), 1, "{:?}", changes(&ws));
    assert_eq!(calls(&ws, "DELETE", &delete), 1);
    // Every page was read: projects (2 pages), beta's keys (3 pages).
    assert_eq!(calls(&ws, "GET", "/openai/v1/organization/projects"), 2);
    let beta = "/openai/v1/organization/projects/proj_beta/api_keys";
    assert_eq!(calls(&ws, "GET", beta), 3);
    let incident = ws.incident_by_fp(LEAKED);
    assert_eq!(incident["state"], "closed", "{incident}\n{}", text(&out));
    let alerts = ws.sink("owner").join("\n");
    assert!(alerts.contains("deleted at OpenAI"), "{alerts}");
    let look = lookalike(LEAKED, 0);
    ws.assert_secrets_hidden(&[LEAKED, ADMIN, &look], &[&out]);
}

#[test]
fn two_openai_keys_with_the_same_redacted_form_delete_nothing_and_ask_the_owner() {
    let ws = Workspace::new();
    add(&ws, "openai", json!({"key": ADMIN, "admin": true}));
    let leaked = add(
        &ws,
        "openai",
        json!({"key": LEAKED, "project": "proj_alpha", "name": "web"}),
    );
    let t = twin(LEAKED, 11);
    let twin_id = add(
        &ws,
        "openai",
        json!({"key": t, "project": "proj_beta", "name": "batch"}),
    );
    ws.write("tree/.env", &format!("OPENAI_API_KEY={LEAKED}\n"));
    config(&ws, &with_admin_env(OPENAI_ENV), "", "");

    let out = scan(&ws, &[(OPENAI_ENV, ADMIN)]);

    assert!(
        changes(&ws).is_empty(),
        "{:?}\n{}",
        changes(&ws),
        text(&out)
    );
    assert_eq!(state(&ws, "openai", LEAKED)["deleted"], false);
    assert_eq!(state(&ws, "openai", &t)["deleted"], false);
    let incident = ws.incident_by_fp(LEAKED);
    assert_eq!(incident["state"], "waiting-manual", "{incident}");
    let reason = incident["reason"].as_str().unwrap_or_default();
    for word in [
        leaked.as_str(),
        twin_id.as_str(),
        "proj_alpha",
        "proj_beta",
        "nothing was changed",
    ] {
        assert!(reason.contains(word), "{word} not in: {reason}");
    }
    let alerts = ws.sink("owner").join("\n");
    assert!(
        alerts.contains(&twin_id) && alerts.contains(&leaked),
        "{alerts}"
    );
    ws.assert_secrets_hidden(&[LEAKED, ADMIN, &t], &[&out]);
}

#[test]
fn anthropic_disables_exactly_the_leaked_key_and_leaves_the_lookalike_active() {
    let ws = Workspace::new();
    add(&ws, "anthropic", json!({"key": ANT_ADMIN, "admin": true}));
    let look = lookalike(ANT_LEAKED, 1);
    add(&ws, "anthropic", json!({"key": look, "name": "ci"}));
    let mut keep = vec![look.clone()];
    for n in 0..3 {
        let k = other("sk-ant-api03-", n);
        add(&ws, "anthropic", json!({"key": k}));
        keep.push(k);
    }
    let id = add(&ws, "anthropic", json!({"key": ANT_LEAKED, "name": "web"}));
    ws.write("tree/app.env", &format!("ANTHROPIC_API_KEY={ANT_LEAKED}\n"));
    config(&ws, "", &with_admin_env(ANTHROPIC_ENV), "");

    let out = scan(&ws, &[(ANTHROPIC_ENV, ANT_ADMIN)]);

    let s = state(&ws, "anthropic", ANT_LEAKED);
    assert_eq!(
        (&s["status"], &s["changes"]),
        (&json!("inactive"), &json!(1)),
        "{s}\n{}",
        text(&out)
    );
    for k in &keep {
        let s = state(&ws, "anthropic", k);
        assert_eq!(
            (&s["status"], &s["changes"]),
            (&json!("active"), &json!(0)),
            "{s}"
        );
    }
    assert_eq!(changes(&ws).len(), 1, "{:?}", changes(&ws));
    let path = format!("/anthropic/v1/organizations/api_keys/{id}");
    assert_eq!(calls(&ws, "POST", &path), 1);
    assert_eq!(calls(&ws, "GET", "/anthropic/v1/organizations/api_keys"), 3);
    let incident = ws.incident_by_fp(ANT_LEAKED);
    assert_eq!(incident["state"], "closed", "{incident}\n{}", text(&out));
    ws.assert_secrets_hidden(&[ANT_LEAKED, ANT_ADMIN, &look], &[&out]);
}

#[test]
fn without_an_admin_key_nothing_but_verify_is_called_and_the_owner_is_told_how() {
    let ws = Workspace::new();
    add(&ws, "openai", json!({"key": ADMIN, "admin": true}));
    add(&ws, "openai", json!({"key": LEAKED}));
    add(&ws, "anthropic", json!({"key": ANT_ADMIN, "admin": true}));
    add(&ws, "anthropic", json!({"key": ANT_LEAKED}));
    ws.write(
        "tree/.env",
        &format!("OPENAI_API_KEY={LEAKED}\nANTHROPIC_API_KEY={ANT_LEAKED}\n"),
    );
    // OpenAI has no admin key configured; Anthropic names a variable that
    // is not set.
    config(&ws, "", &with_admin_env(ANTHROPIC_ENV), "");

    let out = scan(&ws, &[]);

    let paths: Vec<String> = ws
        .sim
        .calls()
        .iter()
        .map(|c| format!("{} {}", c["method"], c["path"]).replace('"', ""))
        .collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["GET /anthropic/v1/models", "GET /openai/v1/models"],
        "only the verify calls\n{}",
        text(&out)
    );
    assert_eq!(state(&ws, "openai", LEAKED)["deleted"], false);
    assert_eq!(state(&ws, "anthropic", ANT_LEAKED)["status"], "active");
    let openai = ws.incident_by_fp(LEAKED);
    assert_eq!(openai["state"], "waiting-manual", "{openai}");
    let reason = openai["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("providers.openai.admin_key_env") && reason.contains("platform.openai.com"),
        "{reason}"
    );
    let anthropic = ws.incident_by_fp(ANT_LEAKED);
    assert_eq!(anthropic["state"], "waiting-manual", "{anthropic}");
    let reason = anthropic["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!("${ANTHROPIC_ENV}")) && reason.contains("not set"),
        "{reason}"
    );
    let alerts = ws.sink("owner").join("\n");
    assert!(
        alerts.contains("providers.openai.admin_key_env"),
        "{alerts}"
    );
    ws.assert_secrets_hidden(&[LEAKED, ANT_LEAKED], &[&out]);
}

#[test]
fn a_lost_answer_to_the_delete_is_verified_and_the_delete_never_sent_twice() {
    let ws = Workspace::new();
    add(&ws, "openai", json!({"key": ADMIN, "admin": true}));
    let id = add(
        &ws,
        "openai",
        json!({"key": LEAKED, "project": "proj_alpha"}),
    );
    ws.write("tree/.env", &format!("OPENAI_API_KEY={LEAKED}\n"));
    config(&ws, &with_admin_env(OPENAI_ENV), "", "  timeout_secs: 1\n");
    let delete = format!("/openai/v1/organization/projects/proj_alpha/api_keys/{id}");
    // OpenAI deletes the key, then its answer is held past the timeout.
    ws.sim
        .fault(json!({"path": delete, "method": "DELETE", "hang_ms": 3000}));

    let out = scan(&ws, &[(OPENAI_ENV, ADMIN)]);

    assert_eq!(calls(&ws, "DELETE", &delete), 1, "{}", text(&out));
    let s = state(&ws, "openai", LEAKED);
    assert_eq!(
        (&s["deleted"], &s["changes"]),
        (&json!(true), &json!(1)),
        "{s}"
    );
    // After the DELETE, verify with the leaked key, and nothing else sent.
    let calls = ws.sim.calls();
    let at = calls.iter().position(|c| c["method"] == "DELETE").unwrap();
    let after: Vec<&Value> = calls[at + 1..].iter().collect();
    assert!(
        !after.is_empty()
            && after
                .iter()
                .all(|c| c["path"] == "/openai/v1/models"
                    && c["key_fingerprint"] == fp(LEAKED).as_str()),
        "{after:?}"
    );
    let incident = ws.incident_by_fp(LEAKED);
    assert_eq!(incident["state"], "closed", "{incident}\n{}", text(&out));
    let (show, _) = ws.show(&incident["id"]);
    let journal = show["journal"].to_string();
    assert!(journal.contains("delete-key"), "{journal}");
    let alerts = ws.sink("owner").join("\n");
    assert!(
        alerts.contains("took effect although the answer was lost"),
        "{alerts}"
    );
    ws.assert_secrets_hidden(&[LEAKED, ADMIN], &[&out]);
}

#[test]
fn a_5xx_to_the_delete_is_verified_live_and_then_sent_again() {
    let ws = Workspace::new();
    add(&ws, "openai", json!({"key": ADMIN, "admin": true}));
    let id = add(
        &ws,
        "openai",
        json!({"key": LEAKED, "project": "proj_alpha"}),
    );
    ws.write("tree/.env", &format!("OPENAI_API_KEY={LEAKED}\n"));
    config(&ws, &with_admin_env(OPENAI_ENV), "", "");
    let delete = format!("/openai/v1/organization/projects/proj_alpha/api_keys/{id}");
    // Refused before OpenAI did anything.
    ws.sim
        .fault(json!({"path": delete, "method": "DELETE", "status": 502}));

    let out = scan(&ws, &[(OPENAI_ENV, ADMIN)]);

    let seq: Vec<String> = ws
        .sim
        .calls()
        .iter()
        .filter(|c| c["method"] == "DELETE" || c["path"] == "/openai/v1/models")
        .map(|c| format!("{} {}", c["method"], c["status"]).replace('"', ""))
        .collect();
    // verify (live), DELETE 502, verify (still live), DELETE 200, confirm.
    assert_eq!(
        seq,
        ["GET 200", "DELETE 502", "GET 200", "DELETE 200", "GET 401"],
        "{}",
        text(&out)
    );
    assert_eq!(state(&ws, "openai", LEAKED)["changes"], 1);
    assert_eq!(ws.incident_by_fp(LEAKED)["state"], "closed");
}

#[test]
fn a_refused_admin_key_fails_naming_its_variable_and_leaks_nowhere() {
    let ws = Workspace::new();
    add(&ws, "openai", json!({"key": ADMIN, "admin": true}));
    add(&ws, "openai", json!({"key": LEAKED}));
    ws.write("tree/.env", &format!("OPENAI_API_KEY={LEAKED}\n"));
    config(&ws, &with_admin_env(OPENAI_ENV), "", "");
    let wrong = other("sk-admin-", 3);

    let out = scan(&ws, &[(OPENAI_ENV, &wrong)]);

    assert!(changes(&ws).is_empty(), "{:?}", changes(&ws));
    let incident = ws.incident_by_fp(LEAKED);
    assert_eq!(incident["state"], "failed", "{incident}\n{}", text(&out));
    let reason = incident["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!("${OPENAI_ENV}"))
            && reason.contains("providers.openai.admin_key_env")
            && reason.contains("401"),
        "{reason}"
    );
    ws.assert_secrets_hidden(&[LEAKED, ADMIN, &wrong], &[&out]);
}

#[test]
fn a_restart_after_the_disable_was_sent_verifies_and_does_not_send_it_again() {
    let ws = Workspace::new();
    add(&ws, "anthropic", json!({"key": ANT_ADMIN, "admin": true}));
    let id = add(&ws, "anthropic", json!({"key": ANT_LEAKED}));
    ws.write("tree/app.env", &format!("ANTHROPIC_API_KEY={ANT_LEAKED}\n"));
    config(
        &ws,
        "",
        &with_admin_env(ANTHROPIC_ENV),
        "  timeout_secs: 120\n",
    );
    let path = format!("/anthropic/v1/organizations/api_keys/{id}");
    // Anthropic disables the key, then the answer hangs: keysentry dies
    // waiting for it.
    ws.sim
        .fault(json!({"path": path, "method": "POST", "hang_ms": 120000}));
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("keysentry"))
        .args(ws.scan_args())
        .current_dir(ws.dir.path())
        .env(ANTHROPIC_ENV, ANT_ADMIN)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    ws.sim.wait_for("Anthropic to disable the key", |_| {
        state(&ws, "anthropic", ANT_LEAKED)["status"] == "inactive"
    });
    child.kill().unwrap(); // SIGKILL: no cleanup of any kind
    child.wait().unwrap();

    let restart = scan(&ws, &[(ANTHROPIC_ENV, ANT_ADMIN)]);

    assert_eq!(calls(&ws, "POST", &path), 1, "{}", text(&restart));
    assert_eq!(state(&ws, "anthropic", ANT_LEAKED)["changes"], 1);
    // The restart looked nothing up again: verify said the key is dead.
    assert_eq!(calls(&ws, "GET", "/anthropic/v1/organizations/api_keys"), 1);
    let incident = ws.incident_by_fp(ANT_LEAKED);
    assert_eq!(
        incident["state"],
        "closed",
        "{incident}\n{}",
        text(&restart)
    );
    let alerts = ws.sink("owner").join("\n");
    assert!(alerts.contains("an earlier call took effect"), "{alerts}");
    ws.assert_secrets_hidden(&[ANT_LEAKED, ANT_ADMIN], &[&restart]);
}

#[test]
fn a_leaked_openai_admin_key_is_deleted_from_the_admin_keys_and_the_configured_one_kept() {
    let ws = Workspace::new();
    add(
        &ws,
        "openai",
        json!({"key": ADMIN, "admin": true, "name": "keysentry"}),
    );
    let leaked = format!("sk-admin-{}T3BlbkFJ{}", FILLER[1], FILLER[2]);
    let id = add(
        &ws,
        "openai",
        json!({"key": leaked, "admin": true, "name": "old"}),
    );
    ws.write("tree/.env", &format!("OPENAI_ADMIN_KEY={leaked}\n"));
    config(&ws, &with_admin_env(OPENAI_ENV), "", "");

    let out = scan(&ws, &[(OPENAI_ENV, ADMIN)]);

    let path = format!("/openai/v1/organization/admin_api_keys/{id}");
    assert_eq!(calls(&ws, "DELETE", &path), 1, "{}", text(&out));
    assert_eq!(changes(&ws).len(), 1);
    assert_eq!(state(&ws, "openai", &leaked)["deleted"], true);
    assert_eq!(state(&ws, "openai", ADMIN)["deleted"], false);
    assert_eq!(ws.incident_by_fp(&leaked)["state"], "closed");
    ws.assert_secrets_hidden(&[&leaked, ADMIN], &[&out]);
}

#[test]
fn dry_run_prints_the_plan_with_the_admin_key_and_calls_nothing() {
    let ws = Workspace::new();
    ws.write(
        "tree/.env",
        &format!("OPENAI_API_KEY={LEAKED}\nANTHROPIC_API_KEY={ANT_LEAKED}\n"),
    );
    config(&ws, &with_admin_env(OPENAI_ENV), "", "");
    let text_of = ws
        .read("config.yaml")
        .replace("mode: auto", "mode: dry-run");
    ws.write("config.yaml", &text_of);

    let out = scan(&ws, &[(OPENAI_ENV, ADMIN)]);

    assert!(ws.sim.calls().is_empty(), "{:?}", ws.sim.calls());
    let err = super::harness::stderr(&out);
    for line in [
        "plan: verify: GET",
        "plan: find: list the OpenAI admin API's keys (all pages, every project)",
        "plan: delete-key: that key",
        "providers.anthropic.admin_key_env",
    ] {
        assert!(err.contains(line), "{line} missing:\n{err}");
    }
    ws.assert_secrets_hidden(&[LEAKED, ANT_LEAKED, ADMIN], &[&out]);
}

#[test]
fn a_rate_limited_list_is_read_again_after_retry_after() {
    let ws = Workspace::new();
    add(&ws, "openai", json!({"key": ADMIN, "admin": true}));
    add(&ws, "openai", json!({"key": LEAKED}));
    ws.write("tree/.env", &format!("OPENAI_API_KEY={LEAKED}\n"));
    config(&ws, &with_admin_env(OPENAI_ENV), "", "");
    let list = "/openai/v1/organization/projects";
    ws.sim
        .fault(json!({"path": list, "status": 429, "retry_after": 1, "count": 1}));

    let out = scan(&ws, &[(OPENAI_ENV, ADMIN)]);

    let at: Vec<u64> = ws
        .sim
        .calls()
        .iter()
        .filter(|c| c["path"] == list)
        .map(|c| c["at_unix_ms"].as_u64().unwrap())
        .collect();
    assert_eq!(at.len(), 2, "{}", text(&out));
    assert!(at[1] - at[0] >= 1000, "waited for Retry-After: {at:?}");
    assert_eq!(state(&ws, "openai", LEAKED)["deleted"], true);
    assert_eq!(ws.incident_by_fp(LEAKED)["state"], "closed");
}
