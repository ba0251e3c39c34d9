//! `keysentry config check FILE`.

use super::harness::text;
use crate::support;

/// The config example from the remediation issue, verbatim: a contract.
const ISSUE_EXAMPLE: &str = r#"state_dir: /var/lib/keysentry
remediation:
  mode: auto                 # auto | dry-run (log the plan, call nothing) | off
  policy:
    tatum: regenerate        # regenerate | expire | freeze | revoke | notify
    github: revoke
providers:
  tatum:
    api_url: https://api.tatum.io
    management:              # Tatum publishes no key-management API: these are templates
      regenerate:
        method: POST
        url: https://keys.example.internal/tatum/regenerate
        headers: {content-type: application/json, authorization: "Bearer {{env.TATUM_MGMT_TOKEN}}"}
        body: '{"apiKey":"{{secret}}"}'
        ok: [200]
        new_key_pointer: /apiKey   # RFC 6901 pointer to the new key in the JSON response
      expire: {method: POST, url: https://keys.example.internal/tatum/expire, body: '{"apiKey":"{{secret}}"}', ok: [200, 204]}
    consumers:
      - name: kms
        env_file: /home/kms/.tatumrc/.env
        variable: TATUM_API_KEY
        restart: [systemctl, restart, tatum-kms]
alerts:
  - {type: webhook, url: https://hooks.example.internal/keysentry}
  - {type: slack, url_env: SLACK_WEBHOOK_URL}
  - {type: email, smtp: "smtp://127.0.0.1:25", from: keysentry@example.internal}
  - {type: github_issue, repo: acme/security}
owners:
  - {match: {provider: tatum}, email: payments@example.internal}
"#;

fn check(dir: &std::path::Path, yaml: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    support::write(dir, "config.yaml", yaml);
    let mut cmd = support::keysentry();
    cmd.args(["config", "check"]).arg(dir.join("config.yaml"));
    cmd.env_remove("TATUM_MGMT_TOKEN")
        .env_remove("SLACK_WEBHOOK_URL")
        .env_remove("GITHUB_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (out.status.code(), text(&out))
}

#[test]
fn the_issue_example_parses_and_only_the_machine_is_missing_things() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out) = check(dir.path(), ISSUE_EXAMPLE, &[]);
    assert_eq!(code, Some(2), "{out}");
    for want in [
        "providers.tatum.management.regenerate.headers.authorization: uses {{env.TATUM_MGMT_TOKEN}}",
        "providers.tatum.consumers[0].env_file: cannot read /home/kms/.tatumrc/.env",
        "alerts[1].url_env: environment variable SLACK_WEBHOOK_URL is not set",
    ] {
        assert!(out.contains(want), "{want} missing:\n{out}");
    }
    assert!(!out.contains("unknown field"), "{out}");
    assert!(
        !out.contains("alerts[0]") && !out.contains("alerts[2]") && !out.contains("owners"),
        "{out}"
    );
}

#[test]
fn a_good_config_is_ok() {
    let dir = tempfile::tempdir().unwrap();
    support::write(dir.path(), "kms.env", "TATUM_API_KEY=x\n");
    let yaml = ISSUE_EXAMPLE
        .replace(
            "/home/kms/.tatumrc/.env",
            &dir.path().join("kms.env").display().to_string(),
        )
        .replace("[systemctl, restart, tatum-kms]", "[sh, -c, 'true']");
    let (code, out) = check(
        dir.path(),
        &yaml,
        &[
            ("TATUM_MGMT_TOKEN", "t"),
            ("SLACK_WEBHOOK_URL", "https://hooks.example.internal/s"),
            ("GITHUB_TOKEN", "t"),
        ],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(": OK"), "{out}");
}

#[test]
fn every_problem_is_reported_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = r#"
remediation:
  mode: sometimes
  polcy: {tatum: regenerate}
providers:
  tatum:
    api_url: "not a url"
    consumers:
      - {name: kms, env_file: /nonexistent/kms.env, variable: TATUM_API_KEY, colour: red}
      - {name: other, env_file: /nonexistent/other.env, variable: TATUM_API_KEY}
  github: {api_url: "ftp://api.github.com", rate_limit: 0}
alerts:
  - {type: slack, url_env: KEYSENTRY_TEST_NO_SUCH_VAR}
  - {type: email, smtp: "mail.example.internal", from: keysentry@example.internal}
"#;
    let (code, out) = check(dir.path(), yaml, &[]);
    assert_eq!(code, Some(2), "{out}");
    for want in [
        "remediation.mode: unknown variant `sometimes`",
        "remediation.polcy: unknown field `polcy`",
        "providers.tatum.api_url: `not a url` is not a valid URL",
        "providers.tatum.consumers[0].colour: unknown field `colour`",
        "providers.tatum.consumers[0].env_file: cannot read /nonexistent/kms.env",
        "providers.tatum.consumers[1].env_file: cannot read /nonexistent/other.env",
        "providers.github.api_url: `ftp://api.github.com` must be an http:// or https:// URL",
        "providers.github.rate_limit: must be a positive number of calls per second",
        "alerts[0].url_env: environment variable KEYSENTRY_TEST_NO_SUCH_VAR is not set",
        "alerts[1].smtp:",
    ] {
        assert!(out.contains(want), "{want} missing:\n{out}");
    }
}

#[test]
fn the_daemons_watch_and_http_fields_are_checked_too() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("not-a-repo");
    std::fs::create_dir(&repo).unwrap();
    let yaml = format!(
        "watch:\n  logs: ['/var/log/[app.log']\n  from: middle\n  poll: soon\n  repos:\n    - {{path: {}, poll: 5 days}}\n    - {{path: {}/gone}}\nhttp:\n  listen: localhost\n",
        repo.display(),
        dir.path().display()
    );
    let (code, out) = check(dir.path(), &yaml, &[]);
    assert_eq!(code, Some(2), "{out}");
    for want in [
        "watch.logs: `/var/log/[app.log` is not a valid glob",
        "watch.from: `middle` is neither `start` nor `end`",
        "watch.poll: `soon` is not a duration",
        "watch.repos[0].poll: `5 days` has an unknown unit",
        "watch.repos[0].path: ",
        "not-a-repo is not a git repository",
        "watch.repos[1].path: ",
        "/gone does not exist",
        "http.listen: `localhost`",
    ] {
        assert!(out.contains(want), "{want} missing:\n{out}");
    }
}
