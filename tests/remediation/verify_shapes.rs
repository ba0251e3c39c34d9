//! The shipped rules' `verify` templates, one per credential shape, run end
//! to end (`scan --remediate`, policy notify) against the simulator's
//! generic `/_verify/{provider}` endpoints: a live key is `verified`, a
//! revoked, wrong or badly signed one `not-live`.

use super::harness::{text, Workspace};
use serde_json::{json, Value};
use std::process::Output;

/// `scan --remediate` of `files` with `provider`'s API at the simulator and
/// its policy notify (verify, then tell the owner), after registering
/// `creds` with the simulator.
fn verify_run(provider: &str, creds: &[Value], files: &[(&str, String)]) -> (Workspace, Output) {
    let ws = Workspace::new();
    for c in creds {
        let (status, body) = ws
            .sim
            .request("POST", &format!("/_sim/verify/{provider}"), Some(c));
        assert_eq!(status, 204, "register {c}: {body}");
    }
    for (name, content) in files {
        ws.write(&format!("tree/{name}"), content);
    }
    ws.config(&format!(
        "
remediation:
  mode: auto
  backoff_ms: 10
  rate_limit: 1000
  policy: {{{provider}: notify}}
providers:
  {provider}: {{api_url: '{{sim}}/_verify/{provider}'}}
"
    ));
    let out = ws.scan();
    (ws, out)
}

fn state(ws: &Workspace, key: &str) -> String {
    ws.incident_by_fp(key)["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Calls that reached the simulated provider.
fn verify_calls(ws: &Workspace, provider: &str) -> Vec<Value> {
    let prefix = format!("/_verify/{provider}/");
    ws.sim
        .calls()
        .into_iter()
        .filter(|c| c["path"].as_str().is_some_and(|p| p.starts_with(&prefix)))
        .collect()
}

fn assert_live_and_dead(ws: &Workspace, out: &Output, live: &str, dead: &[&str]) {
    assert_eq!(state(ws, live), "verified", "{}", text(out));
    for key in dead {
        assert_eq!(state(ws, key), "not-live", "{}", text(out));
    }
}

#[test]
fn a_custom_header_key_is_verified_datadog() {
    const LIVE: &str = "643acebd5e0174807046a7812d40efc4";
    const REVOKED: &str = "800925e73413e8d5bf1b26c43860793a";
    let shape = json!({"type": "header", "name": "dd-api-key"});
    let (ws, out) = verify_run(
        "datadog",
        &[
            json!({"key": LIVE, "shape": shape, "live_body": {"valid": true}}),
            json!({"key": REVOKED, "shape": shape, "live": false, "dead_status": 403, "dead_body": {"errors": ["Forbidden"]}}),
        ],
        &[
            ("a.env", format!("DD_API_KEY={LIVE}\n")),
            ("b.env", format!("DD_API_KEY={REVOKED}\n")),
        ],
    );
    assert_live_and_dead(&ws, &out, LIVE, &[REVOKED]);
    let calls = verify_calls(&ws, "datadog");
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(calls
        .iter()
        .all(|c| c["path"] == "/_verify/datadog/api/v1/validate" && c["method"] == "GET"));
    ws.assert_secrets_hidden(&[LIVE, REVOKED], &[&out]);
}

#[test]
fn a_bearer_token_is_verified_huggingface() {
    const LIVE: &str = "hf_xOXvgZNowM8AXncEdCkX0pXPRUuYGDwBpI";
    const UNKNOWN: &str = "hf_xM8GQ8gaRZWZkJLigBWEvmqEE1J461anIN";
    let (ws, out) = verify_run(
        "huggingface",
        &[json!({"key": LIVE, "shape": {"type": "bearer"}})],
        &[(
            "a.py",
            format!("HF_TOKEN = '{LIVE}'\nOTHER = '{UNKNOWN}'\n"),
        )],
    );
    // A token the provider does not know is answered 401 like a revoked one.
    assert_live_and_dead(&ws, &out, LIVE, &[UNKNOWN]);
    ws.assert_secrets_hidden(&[LIVE, UNKNOWN], &[&out]);
}

#[test]
fn a_basic_auth_key_is_verified_mailgun() {
    const LIVE: &str = "key-93a008f57dbd8b2bf1a8b82ad624d26c";
    const REVOKED: &str = "key-b0c18e6e61c766a4a9bb08bf90b38074";
    let shape = json!({"type": "basic", "user": "api", "password": "{key}"});
    let (ws, out) = verify_run(
        "mailgun",
        &[
            json!({"key": LIVE, "shape": shape}),
            json!({"key": REVOKED, "shape": shape, "live": false}),
        ],
        &[
            ("a.env", format!("MAILGUN_API_KEY={LIVE}\n")),
            ("b.env", format!("MAILGUN_API_KEY={REVOKED}\n")),
        ],
    );
    assert_live_and_dead(&ws, &out, LIVE, &[REVOKED]);
    ws.assert_secrets_hidden(&[LIVE, REVOKED], &[&out]);
}

/// Etherscan takes the key as `?apikey=` and answers 200 either way; the
/// body's `"status":"1"` says the key worked.
#[test]
fn a_query_parameter_key_is_verified_etherscan() {
    const LIVE: &str = "02CSNMDQTNUGK6PBWHO8LW6FNBBDGV1BZ6";
    const REVOKED: &str = "SGHGG9181L8NY0OQZD874VLQXGE1W12889";
    let shape = json!({"type": "query", "name": "apikey"});
    let ok = json!({"status": "1", "message": "OK", "result": "120000000"});
    let notok = json!({"status": "0", "message": "NOTOK", "result": "Invalid API Key"});
    let (ws, out) = verify_run(
        "etherscan",
        &[
            json!({"key": LIVE, "shape": shape, "live_body": ok}),
            json!({"key": REVOKED, "shape": shape, "live": false, "dead_status": 200, "dead_body": notok}),
        ],
        &[
            ("a.env", format!("ETHERSCAN_API_KEY={LIVE}\n")),
            ("b.env", format!("ETHERSCAN_API_KEY={REVOKED}\n")),
        ],
    );
    assert_live_and_dead(&ws, &out, LIVE, &[REVOKED]);
    ws.assert_secrets_hidden(&[LIVE, REVOKED], &[&out]);
}

/// Twilio's auth token works only with its account SID: the rule's `pair:`
/// finds the SID next to the token and basic auth sends both.
#[test]
fn a_key_and_its_partner_are_verified_together_twilio() {
    const SID: &str = "AC67c556caac683d727ddccfe91f120fa6";
    const LIVE: &str = "17f834147d0679b1b7711ac27c5b9549";
    const WRONG: &str = "88d22dc3c8fa6169a1de9bd83f88ad9b";
    const ALONE: &str = "260081a1ff2abdaba29548a971168bc4";
    let shape = json!({"type": "basic", "user": "{pair}", "password": "{key}"});
    let (ws, out) = verify_run(
        "twilio",
        &[json!({"key": LIVE, "pair": SID, "shape": shape})],
        &[
            (
                "live.env",
                format!("TWILIO_ACCOUNT_SID={SID}\nTWILIO_AUTH_TOKEN={LIVE}\n"),
            ),
            (
                "wrong.env",
                format!("TWILIO_ACCOUNT_SID={SID}\nTWILIO_AUTH_TOKEN={WRONG}\n"),
            ),
            (
                "alone.env",
                format!("# twilio\nTWILIO_AUTH_TOKEN={ALONE}\n"),
            ),
        ],
    );
    assert_live_and_dead(&ws, &out, LIVE, &[WRONG]);
    let calls = verify_calls(&ws, "twilio");
    let path = format!("/_verify/twilio/2010-04-01/Accounts/{SID}.json");
    assert!(
        calls.iter().all(|c| c["path"] == path.as_str()),
        "{calls:?}"
    );
    // Without its SID the token cannot be checked, and nothing is sent.
    assert_eq!(calls.len(), 2, "{calls:?}");
    let alone = ws.incident_by_fp(ALONE);
    assert_eq!(alone["state"], "failed", "{alone}");
    assert!(
        alone.to_string().contains("no partner key"),
        "{alone}\n{}",
        text(&out)
    );
    ws.assert_secrets_hidden(&[SID, LIVE, WRONG, ALONE], &[&out]);
}

/// Binance signs the query with the secret (HMAC-SHA256, hex) and refuses a
/// call whose signature does not match the key's secret.
#[test]
fn an_hmac_signed_call_is_verified_binance() {
    const KEY: &str = "1fZpcHjE36pPg0bduEWmiCRY5fDTSP0zTB6x2yMtdnpAXXWExpz1kLheVlp9ucpS";
    const SECRET: &str = "Jehs87uLIKMW3At0Hs6GbBdyXcPDCSt4JknSPl9WLKEpC8X8xK3VawkWGKJppoOz";
    const REVOKED: &str = "k5YjhuICla8TEIoFVdnX9iIIqRhPEMXxKuhEyV9EZe3X1mTW3yLSm4tlynf6Jh7K";
    const FORGED: &str = "TO115IXVR2Vio713P4efolP66WyzghuhbE4rrJL47H1Mo0Nddi7QJJNohqslusM7";
    const OTHER_SECRET: &str = "EJGkCIYdNUA6lSFbp0eyLApf4O7S2rAVZDAsggFwHkeDIgkS2qJCbc71Pli6yWo8";
    let shape = json!({"type": "hmac_query", "key_header": "X-MBX-APIKEY"});
    let pair_file = |k: &str, s: &str| format!("BINANCE_API_KEY={k}\nBINANCE_API_SECRET={s}\n");
    let (ws, out) = verify_run(
        "binance",
        &[
            json!({"key": KEY, "pair": SECRET, "shape": shape}),
            json!({"key": REVOKED, "pair": SECRET, "shape": shape, "live": false}),
            // The file pairs FORGED with SECRET; its real secret is another.
            json!({"key": FORGED, "pair": OTHER_SECRET, "shape": shape}),
        ],
        &[
            ("live.env", pair_file(KEY, SECRET)),
            ("revoked.env", pair_file(REVOKED, SECRET)),
            ("forged.env", pair_file(FORGED, SECRET)),
        ],
    );
    assert_live_and_dead(&ws, &out, KEY, &[REVOKED, FORGED]);
    let calls = verify_calls(&ws, "binance");
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert!(calls
        .iter()
        .all(|c| c["path"] == "/_verify/binance/api/v3/account"));
    ws.assert_secrets_hidden(&[KEY, SECRET, REVOKED, FORGED], &[&out]);
}

/// AWS: the access key id with its secret signs STS GetCallerIdentity
/// (Signature Version 4); a wrong secret is refused with 403.
#[test]
fn an_aws_sigv4_call_is_verified() {
    const ID: &str = "AKIA33TGVY2EWHUUQY52";
    const SECRET: &str = "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";
    const ID2: &str = "AKIAXMQ5J27B6AJ6KQR7";
    const WRONG: &str = "s7+83Vl4+YY3b3YQS1zXoQmubynF6AdKtk4I892f";
    let shape = json!({"type": "aws_sigv4"});
    let creds = |id: &str, secret: &str| {
        format!("[default]\naws_access_key_id = {id}\naws_secret_access_key = {secret}\n")
    };
    let (ws, out) = verify_run(
        "aws",
        &[
            json!({"key": ID, "pair": SECRET, "shape": shape, "dead_status": 403}),
            json!({"key": ID2, "pair": SECRET, "shape": shape, "dead_status": 403}),
        ],
        &[
            ("a/credentials", creds(ID, SECRET)),
            ("b/credentials", creds(ID2, WRONG)),
        ],
    );
    assert_live_and_dead(&ws, &out, ID, &[ID2]);
    let calls = verify_calls(&ws, "aws");
    assert_eq!(calls.len(), 2, "{calls:?}");
    ws.assert_secrets_hidden(&[SECRET, WRONG], &[&out]);
}

/// `rules list` marks every rule with a verify template; at least 100
/// providers have one (issue 12). The same count by hand:
/// `keysentry rules list | awk '$4 ~ /verify/ {print $2}' | sort -u | wc -l`
/// (columns: id, provider, checksum, actions, name)
#[test]
fn at_least_100_providers_ship_a_verify_template() {
    let out = crate::support::keysentry()
        .args(["rules", "list", "--color", "never"])
        .output()
        .expect("run keysentry");
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let providers: std::collections::BTreeSet<&str> = stdout
        .lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols.len() > 3 && cols[3].contains("verify")).then(|| cols[1])
        })
        .collect();
    assert!(
        providers.len() >= 100,
        "{} providers: {providers:?}",
        providers.len()
    );
}

/// `rules check DIR` refuses a template it could not run, naming the rule
/// and what to fix, before any call is made.
#[test]
fn rules_check_names_a_bad_template() {
    let rule = |extra: &str| {
        format!(
            "rules:\n  - id: acme.key\n    name: Acme key\n    provider: acme\n    keywords: [acme_]\n    pattern: '(?P<secret>acme_[a-z0-9]{{16}})'\n    examples: ['acme_k1k1k1k1k1k1k1k1']\n{extra}"
        )
    };
    let verify = |url: &str, header: &str| {
        format!("    verify:\n      method: GET\n      url: '{url}'\n      headers: {{authorization: '{header}'}}\n      live: [200]\n      dead: [401]\n")
    };
    let cases = [
        (
            verify("https://api.acme.example/me", "Bearer {{token}}"),
            "unknown placeholder `token`",
        ),
        (
            verify(
                "https://api.acme.example/me",
                "{{hex(hmac_sha256(secret))}}",
            ),
            "hmac_sha256() takes 2 argument(s), not 1",
        ),
        (
            verify("https://api.acme.example/me?{{query}}", "Bearer {{secret}}"),
            "`query` describes the request being built",
        ),
        (
            verify(
                "https://api.acme.example/me",
                "Basic {{basic(secret, pair)}}",
            ),
            "uses {{pair}} but the rule has no `pair:`",
        ),
        (
            format!(
                "    pair: {{rule: acme.secret, within: 5}}\n{}",
                verify(
                    "https://api.acme.example/me",
                    "Basic {{basic(secret, pair)}}"
                )
            ),
            "pair names rule `acme.secret`, which is not loaded",
        ),
    ];
    for (extra, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        crate::support::write(dir.path(), "acme.yaml", &rule(&extra));
        let out = crate::support::keysentry()
            .args(["rules", "check"])
            .arg(dir.path())
            .output()
            .expect("run keysentry");
        let all = text(&out);
        assert!(!out.status.success(), "accepted:\n{extra}\n{all}");
        assert!(
            all.contains("acme.key") && all.contains(want),
            "want `{want}`:\n{all}"
        );
    }
}

/// A tenant-hosted provider's verify (Okta: the org's own host) names no
/// base. Without `providers.okta.api_url` the incident goes on as if the
/// rule had no verify, instead of failing; with it the key is checked there.
#[test]
fn a_tenant_hosted_verify_runs_once_its_base_is_configured_okta() {
    const TOKEN: &str = "00Sd5Z0nV8OWpPh8VprIGWvGFq72VqDxGfLlyyBNsC";
    let shape = json!({"type": "header", "name": "authorization"});
    let cred = json!({"key": format!("SSWS {TOKEN}"), "shape": shape});
    let file = ("a.env", format!("OKTA_API_TOKEN={TOKEN}\n"));

    let (ws, out) = verify_run("okta", &[cred], std::slice::from_ref(&file));
    assert_eq!(state(&ws, TOKEN), "verified", "{}", text(&out));
    assert_eq!(verify_calls(&ws, "okta").len(), 1);

    let ws = Workspace::new();
    ws.write("tree/a.env", &file.1);
    ws.config("remediation:\n  mode: auto\n  backoff_ms: 10\n  policy: {okta: notify}\n");
    let out = ws.scan();
    let incident = ws.incident_by_fp(TOKEN);
    // Past verify (skipped), waiting for its owner: not failed.
    assert_eq!(incident["stage"], "verified", "{incident}\n{}", text(&out));
    assert_eq!(incident["state"], "detected", "{incident}");
    assert!(ws.sim.calls().is_empty());
    ws.assert_secrets_hidden(&[TOKEN], &[&out]);
}
