//! Automatic containment through the rules' revoke templates, single calls
//! and multi-step (`revoke: {steps: …}`): the real binary scans a tree whose
//! keys the simulator issued, and the simulator shows each key revoked
//! exactly once — across lost answers, restarts, 429s and 5xx — and never a
//! key that only looks like the leaked one.

use super::harness::{text, Workspace};
use serde_json::{json, Value};
use std::process::Stdio;

const NPM: &str = "npm_pTSB9VRYHwaDRtBB2zsPeNdWtgHNpxToLcqx";
const SENDGRID: &str = "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";
const TWILIO_SID: &str = "SK3238763880e91f4ddf8f2291cc1fc8af";
const TWILIO_SECRET: &str = "jEspDhxBodUTfUbFlXreTVgyL9hUE9nb";
const TWILIO_ACCOUNT: &str = "AC1fdd11f4da5093c6cc5d5b0a66fd62aa";
const CLOUDFLARE: &str = "sz2V9eFjjCM_KSoBWnttFRj3s-nfoSBn-zqsO1_o";
const VERCEL: &str = "M1ixNVHdzN0X2CYuRkpShCs0";
const DOPPLER: &str = "dp.st.prd.Ws1VgX8bLJzyVHTExYAFsP9hE4oPipNBZE7DJDUj8al";
const BUILDKITE: &str = "bkua_88646886809aaa507b02051c2ebd4e31b3aeecf5";
const HEROKU: &str = "HRKU-AAlA0ZhSTJtOvvQ_o_4koWLNr5LF7blpt_3rapK9w6ki6I3lYMHN_FARrSXU";
const DIGITALOCEAN: &str =
    "dop_v1_d80ddf39f5aaef0c9e38095d34e82912004223897da06005d420c65e1f490f67";
const HUGGINGFACE: &str = "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";
const CRATESIO: &str = "ciou8jzPde0IgxLd6GncfBAepfJBd0Kh8oO";
const STRIPE: &str = "sk_live_bbaqeP1igsEJ8SFY0kkb9gE7";

const PROVIDERS: &[&str] = &[
    "npm",
    "sendgrid",
    "twilio",
    "cloudflare",
    "vercel",
    "doppler",
    "buildkite",
    "heroku",
    "digitalocean",
    "cratesio",
];

/// Remediation on, every provider's API on the simulator (Stripe and
/// Hugging Face verify through its generic `/_verify` endpoints).
fn config(ws: &Workspace, extra: &str) {
    let mut providers = String::new();
    for p in PROVIDERS {
        providers.push_str(&format!("  {p}: {{api_url: '{{sim}}'}}\n"));
    }
    ws.config(&format!(
        "remediation:\n  mode: auto\n  backoff_ms: 10\n  rate_limit: 1000\n{extra}providers:\n{providers}  stripe: {{api_url: '{{sim}}/_verify/stripe'}}\n  huggingface: {{api_url: '{{sim}}/_verify/huggingface'}}\n"
    ));
}

/// Gives `provider` the key (the simulator issued it): its id there.
fn issue(ws: &Workspace, provider: &str, key: Value) -> String {
    let (status, body) = ws
        .sim
        .request("POST", &format!("/_sim/keys/{provider}"), Some(&key));
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

/// The simulator's view of a key: `revoked`, `deletes`.
fn state(ws: &Workspace, provider: &str, key: &str) -> Value {
    let fp = super::harness::fp(key);
    let (status, body) = ws
        .sim
        .request("GET", &format!("/_sim/keys/{provider}/{fp}"), None);
    assert_eq!(status, 200, "{provider}");
    body
}

fn count(ws: &Workspace, method: &str, path: &str) -> usize {
    ws.sim
        .calls()
        .iter()
        .filter(|c| c["method"] == method && c["path"] == path)
        .count()
}

fn revoked_once(ws: &Workspace, provider: &str, key: &str, out: &std::process::Output) {
    let s = state(ws, provider, key);
    assert_eq!(
        (s["revoked"].as_bool(), s["deletes"].as_u64()),
        (Some(true), Some(1)),
        "{provider}: {s}\n{}",
        text(out)
    );
    let incident = ws.incident_by_fp(key);
    assert_eq!(incident["state"], "closed", "{provider}: {incident}");
}

#[test]
fn every_provider_with_a_revoke_api_revokes_its_key_exactly_once() {
    let ws = Workspace::new();
    // Three more npm tokens of the same user: the leaked one is on the
    // second page of the list.
    issue(&ws, "npm", json!({"key": NPM, "others": 3}));
    issue(&ws, "sendgrid", json!({"key": SENDGRID}));
    issue(
        &ws,
        "twilio",
        json!({"key": TWILIO_SECRET, "pair": TWILIO_SID, "id": TWILIO_ACCOUNT}),
    );
    let cf_id = issue(&ws, "cloudflare", json!({"key": CLOUDFLARE}));
    for (p, k) in [
        ("vercel", VERCEL),
        ("doppler", DOPPLER),
        ("buildkite", BUILDKITE),
        ("heroku", HEROKU),
        ("digitalocean", DIGITALOCEAN),
        ("cratesio", CRATESIO),
    ] {
        issue(&ws, p, json!({"key": k, "others": 1}));
    }
    for (p, k) in [("stripe", STRIPE), ("huggingface", HUGGINGFACE)] {
        let c = json!({"key": k, "shape": {"type": "bearer"}});
        ws.sim
            .request("POST", &format!("/_sim/verify/{p}"), Some(&c));
    }
    ws.write(
        "tree/.env",
        &format!(
            "NPM_TOKEN={NPM}\nSENDGRID_API_KEY={SENDGRID}\nTWILIO_API_KEY={TWILIO_SID}\nTWILIO_API_SECRET={TWILIO_SECRET}\nCLOUDFLARE_API_TOKEN={CLOUDFLARE}\nVERCEL_TOKEN={VERCEL}\nDOPPLER_TOKEN={DOPPLER}\nBUILDKITE_API_TOKEN={BUILDKITE}\nHEROKU_API_KEY={HEROKU}\nDIGITALOCEAN_TOKEN={DIGITALOCEAN}\nCARGO_REGISTRY_TOKEN={CRATESIO}\nHF_TOKEN={HUGGINGFACE}\nSTRIPE_SECRET_KEY={STRIPE}\n"
        ),
    );
    config(&ws, "");

    let out = ws.scan();

    for (p, k) in [
        ("npm", NPM),
        ("sendgrid", SENDGRID),
        ("twilio", TWILIO_SECRET),
        ("cloudflare", CLOUDFLARE),
        ("vercel", VERCEL),
        ("doppler", DOPPLER),
        ("buildkite", BUILDKITE),
        ("heroku", HEROKU),
        ("digitalocean", DIGITALOCEAN),
        ("cratesio", CRATESIO),
    ] {
        revoked_once(&ws, p, k, &out);
        let actions = ws.incident_by_fp(k)["actions"].to_string();
        assert!(actions.contains("revoke"), "{p}: {actions}");
    }
    // The list was followed to its second page; the other tokens live on.
    assert_eq!(count(&ws, "GET", "/-/npm/v1/tokens"), 2, "{}", text(&out));
    assert_eq!(
        count(&ws, "DELETE", &format!("/client/v4/user/tokens/{cf_id}")),
        1
    );
    assert_eq!(
        count(
            &ws,
            "DELETE",
            &format!("/2010-04-01/Accounts/{TWILIO_ACCOUNT}/Keys/{TWILIO_SID}.json")
        ),
        1
    );
    // No revoke API: the owner gets the provider's exact steps.
    for (k, words) in [(STRIPE, "Roll key"), (HUGGINGFACE, "Access Tokens")] {
        let incident = ws.incident_by_fp(k);
        assert_eq!(incident["state"], "waiting-manual", "{incident}");
        let alerts = ws.sink("owner").join("\n");
        assert!(
            alerts.contains(words),
            "{words} not in the alerts:\n{alerts}"
        );
    }
    let mut keys = vec![
        NPM,
        SENDGRID,
        TWILIO_SECRET,
        CLOUDFLARE,
        VERCEL,
        DOPPLER,
        BUILDKITE,
        HEROKU,
        DIGITALOCEAN,
        CRATESIO,
    ];
    keys.extend([HUGGINGFACE, STRIPE]);
    ws.assert_secrets_hidden(&keys, &[&out]);
}

#[test]
fn a_list_with_two_matching_entries_deletes_nothing_and_asks_the_owner() {
    let ws = Workspace::new();
    // A registry proxy that merges two lists shows the token twice.
    issue(&ws, "npm", json!({"key": NPM, "listed_twice": true}));
    ws.write("tree/.npmrc", &format!("//registry/:_authToken={NPM}\n"));
    config(&ws, "");

    let out = ws.scan();

    let deletes: Vec<Value> = ws
        .sim
        .calls()
        .into_iter()
        .filter(|c| c["method"] == "DELETE")
        .collect();
    assert!(deletes.is_empty(), "{deletes:?}\n{}", text(&out));
    assert_eq!(state(&ws, "npm", NPM)["revoked"], false);
    let incident = ws.incident_by_fp(NPM);
    assert_eq!(incident["state"], "waiting-manual", "{incident}");
    let reason = incident["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("found 2 entries") && reason.contains("exactly one"),
        "{reason}"
    );
    let alerts = ws.sink("owner").join("\n");
    assert!(alerts.contains("found 2 entries"), "{alerts}");
    ws.assert_secrets_hidden(&[NPM], &[&out]);
}

#[test]
fn a_restart_between_the_journaled_delete_and_its_answer_does_not_delete_again() {
    let ws = Workspace::new();
    issue(&ws, "sendgrid", json!({"key": SENDGRID}));
    ws.write("tree/app.env", &format!("SENDGRID_API_KEY={SENDGRID}\n"));
    config(&ws, "  timeout_secs: 120\n");
    let path = "/v3/api_keys/PW7lS1_uBY0_AzAJWktCG5";
    // SendGrid deletes the key, then the answer hangs: keysentry dies
    // waiting for it.
    ws.sim
        .fault(json!({"path": path, "method": "DELETE", "hang_ms": 120000}));
    let args = ws.scan_args();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("keysentry"))
        .args(&args)
        .current_dir(ws.dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    ws.sim.wait_for("SendGrid to delete the key", |_| {
        state(&ws, "sendgrid", SENDGRID)["revoked"] == true
    });
    child.kill().unwrap(); // SIGKILL: no cleanup of any kind
    child.wait().unwrap();

    let restart = ws.scan();

    assert_eq!(count(&ws, "DELETE", path), 1, "{}", text(&restart));
    revoked_once(&ws, "sendgrid", SENDGRID, &restart);
    let incident = ws.incident_by_fp(SENDGRID);
    let (show, _) = ws.show(&incident["id"]);
    let journal = show["journal"].to_string();
    assert!(journal.contains("revoke:delete-key"), "{journal}");
    assert!(journal.contains("interrupted"), "{journal}");
    let alerts = ws.sink("owner").join("\n");
    assert!(alerts.contains("an earlier call took effect"), "{alerts}");
    ws.assert_secrets_hidden(&[SENDGRID], &[&restart]);
}

#[test]
fn a_429_on_the_delete_is_retried_after_retry_after() {
    let ws = Workspace::new();
    let id = issue(&ws, "cloudflare", json!({"key": CLOUDFLARE}));
    ws.write(
        "tree/terraform.tfvars",
        &format!("cloudflare_api_token = \"{CLOUDFLARE}\"\n"),
    );
    config(&ws, "");
    let path = format!("/client/v4/user/tokens/{id}");
    ws.sim.fault(
        json!({"path": path, "method": "DELETE", "status": 429, "retry_after": 1, "count": 1}),
    );

    let out = ws.scan();

    let at: Vec<u64> = ws
        .sim
        .calls()
        .iter()
        .filter(|c| c["method"] == "DELETE" && c["path"] == path.as_str())
        .map(|c| c["at_unix_ms"].as_u64().unwrap())
        .collect();
    assert_eq!(at.len(), 2, "{}", text(&out));
    assert!(at[1] - at[0] >= 1000, "waited for Retry-After: {at:?}");
    revoked_once(&ws, "cloudflare", CLOUDFLARE, &out);
}

#[test]
fn a_5xx_on_the_delete_is_retried_and_the_incident_stays_recorded_until_it_works() {
    let ws = Workspace::new();
    issue(&ws, "npm", json!({"key": NPM}));
    ws.write("tree/.npmrc", &format!("//registry/:_authToken={NPM}\n"));
    config(&ws, "");
    let hash = {
        use sha2::{Digest, Sha512};
        Sha512::digest(NPM.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let path = format!("/-/npm/v1/tokens/token/{hash}");
    // More 500s than one run's attempts.
    ws.sim
        .fault(json!({"path": path, "method": "DELETE", "status": 500, "count": 4}));

    let first = ws.scan();

    assert_eq!(count(&ws, "DELETE", &path), 4, "{}", text(&first));
    assert_eq!(state(&ws, "npm", NPM)["revoked"], false);
    let incident = ws.incident_by_fp(NPM);
    assert_eq!(incident["state"], "failed", "{incident}");
    let reason = incident["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("500") && reason.contains("retry"),
        "{reason}"
    );
    std::thread::sleep(std::time::Duration::from_millis(400));

    let second = ws.scan();

    assert_eq!(count(&ws, "DELETE", &path), 5, "{}", text(&second));
    revoked_once(&ws, "npm", NPM, &second);
    ws.assert_secrets_hidden(&[NPM], &[&first, &second]);
}

#[test]
fn a_key_that_may_not_revoke_itself_fails_with_the_fix_and_leaks_nowhere() {
    let ws = Workspace::new();
    let id = issue(&ws, "cloudflare", json!({"key": CLOUDFLARE}));
    ws.write(
        "tree/terraform.tfvars",
        &format!("cloudflare_api_token = \"{CLOUDFLARE}\"\n"),
    );
    config(&ws, "");
    // A token without "API Tokens: Edit".
    let path = format!("/client/v4/user/tokens/{id}");
    ws.sim
        .fault(json!({"path": path, "method": "DELETE", "status": 403, "count": 1}));

    let out = ws.scan();

    assert_eq!(state(&ws, "cloudflare", CLOUDFLARE)["revoked"], false);
    let incident = ws.incident_by_fp(CLOUDFLARE);
    assert_eq!(incident["state"], "failed", "{incident}\n{}", text(&out));
    let reason = incident["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("revoke:delete-token")
            && reason.contains("403")
            && reason.contains("cloudflare's settings"),
        "{reason}"
    );
    let alerts = ws.sink("owner").join("\n");
    assert!(alerts.contains("403"), "{alerts}");
    ws.assert_secrets_hidden(&[CLOUDFLARE], &[&out]);
}

#[test]
fn rules_check_names_a_broken_step() {
    let dir = tempfile::tempdir().unwrap();
    let rule = r#"rules:
  - id: acme.token
    name: Acme token
    provider: acme
    keywords: ["acme_"]
    pattern: '\b(?P<secret>acme_[0-9a-z]{20})\b'
    examples: ['t = acme_k3j9x7q2m5v8w1z4r6t0']
    negative_examples: ['t = acme_xxxxxxxxxxxxxxxxxxxx']
    revoke:
      steps:
        - name: find
          method: GET
          url: "https://api.acme.example/keys"
          find: {list: /keys, where: {/hash: "{{hex(sha256(secret))}}"}, extract: {key_id: /id}}
        - name: delete
          method: DELETE
          url: "https://api.acme.example/keys/{{kid}}"
          ok: [204]
"#;
    std::fs::write(dir.path().join("acme.yaml"), rule).unwrap();
    let o = crate::support::keysentry()
        .args(["rules", "check"])
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("acme.token") && err.contains("step delete") && err.contains("kid"),
        "{err}"
    );
    let fixed = rule.replace("{{kid}}", "{{key_id}}");
    let fixed_no_ok = fixed.replace("          ok: [204]\n", "");
    std::fs::write(dir.path().join("acme.yaml"), &fixed_no_ok).unwrap();
    let o = crate::support::keysentry()
        .args(["rules", "check"])
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("needs `ok:`"), "{err}");
    std::fs::write(dir.path().join("acme.yaml"), &fixed).unwrap();
    let o = crate::support::keysentry()
        .args(["rules", "check"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn a_registry_token_without_an_api_base_is_left_to_the_owner_with_the_setting_to_add() {
    let ws = Workspace::new();
    issue(&ws, "cratesio", json!({"key": CRATESIO}));
    ws.write("tree/.env", &format!("CARGO_REGISTRY_TOKEN={CRATESIO}\n"));
    // The registry's base is the user's to name: none is configured.
    ws.config("remediation:\n  mode: auto\n  backoff_ms: 10\n  rate_limit: 1000\n");

    let out = ws.scan();

    assert!(
        ws.sim.calls().is_empty(),
        "nothing is called\n{}",
        text(&out)
    );
    let incident = ws.incident_by_fp(CRATESIO);
    assert_eq!(incident["state"], "waiting-manual", "{incident}");
    let alerts = ws.sink("owner").join("\n");
    assert!(alerts.contains("providers.cratesio.api_url"), "{alerts}");
    assert_eq!(state(&ws, "cratesio", CRATESIO)["revoked"], false);
    ws.assert_secrets_hidden(&[CRATESIO], &[&out]);
}
