//! Simple providers driven by the rule YAML's `verify`/`revoke` templates.

use super::harness::{fp, stderr, text, Workspace};

const CONFIG: &str = "
remediation:
  mode: auto
  backoff_ms: 10
  rate_limit: 1000
  rule_policy: {github.oauth-token: notify}
providers:
  github: {api_url: '{sim}'}
  slack: {api_url: '{sim}'}
  gitlab: {api_url: '{sim}'}
";

const GITHUB: &str = "ghp_R8x2kQ7mZp4vN1cW9tY6bL3sD5fH0jKaPq2X";
const GITHUB_OAUTH: &str = "gho_T4m9Qx2Lr7Vb1Nc8Zw3Ks6Hd0Pf5Jy2Ga7Ue";
const SLACK: &str = "xoxb-2837465019-9182736450-Qw8Er7Ty6Ui5Op4As3Df2Gh1";
const GITLAB: &str = "glpat-Vq7Lm2Xz9Rk4Tn8Wp3Jc";

fn calls_with_key(ws: &Workspace, method: &str, path: &str, key: &str) -> usize {
    ws.sim
        .calls()
        .iter()
        .filter(|c| {
            c["method"] == method && c["path"] == path && c["key_fingerprint"] == fp(key).as_str()
        })
        .count()
}

#[test]
fn github_slack_and_gitlab_keys_are_revoked_through_rule_templates() {
    let ws = Workspace::new();
    ws.write(
        "tree/settings.py",
        &format!("GITHUB_TOKEN = '{GITHUB}'\nSLACK = '{SLACK}'\nGITLAB = '{GITLAB}'\nOAUTH = '{GITHUB_OAUTH}'\n"),
    );
    ws.config(CONFIG);

    let out = ws.scan();

    assert_eq!(
        calls_with_key(&ws, "POST", "/credentials/revoke", GITHUB),
        1,
        "{}",
        text(&out)
    );
    assert_eq!(calls_with_key(&ws, "POST", "/api/auth.revoke", SLACK), 1);
    assert_eq!(
        calls_with_key(&ws, "DELETE", "/api/v4/personal_access_tokens/self", GITLAB),
        1
    );
    for key in [GITHUB, SLACK, GITLAB] {
        let incident = ws.incident_by_fp(key);
        assert_eq!(incident["state"], "closed", "{incident}\n{}", text(&out));
        assert!(
            incident["actions"].to_string().contains("revoke"),
            "{incident}"
        );
    }
    // Revoked means revoked: each provider now refuses its key.
    let (status, _) = ws.sim.request("GET", "/user", None);
    assert_eq!(status, 401);
    // The rule whose policy is notify is verified and left alone.
    assert_eq!(ws.incident_by_fp(GITHUB_OAUTH)["state"], "verified");
    assert_eq!(
        calls_with_key(&ws, "POST", "/credentials/revoke", GITHUB_OAUTH),
        0
    );
    assert_eq!(calls_with_key(&ws, "GET", "/user", GITHUB_OAUTH), 1);
    ws.assert_secrets_hidden(&[GITHUB, SLACK, GITLAB, GITHUB_OAUTH], &[&out]);
}

#[test]
fn an_already_revoked_token_is_not_live_and_not_revoked_again() {
    let ws = Workspace::new();
    ws.write("tree/a.txt", &format!("token {GITHUB}\n"));
    ws.config(CONFIG);
    let body = serde_json::json!({"credentials": [GITHUB]});
    assert_eq!(
        ws.sim.request("POST", "/credentials/revoke", Some(&body)).0,
        202
    );
    let before = ws.sim.calls().len();

    let out = ws.scan();

    assert_eq!(
        ws.incident_by_fp(GITHUB)["state"],
        "not-live",
        "{}",
        text(&out)
    );
    assert_eq!(ws.sim.calls().len(), before + 1, "one verify call only");
    assert!(!stderr(&out).contains(&GITHUB[6..]));
}
