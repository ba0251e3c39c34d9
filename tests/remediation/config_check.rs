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
        "remediation.mode: unknown variant, expected one of `auto`",
        "remediation.polcy: unknown field `polcy`",
        "providers.tatum.api_url: is not a valid URL",
        "providers.tatum.consumers[0].colour: unknown field `colour`",
        "providers.tatum.consumers[0].env_file: cannot read /nonexistent/kms.env",
        "providers.tatum.consumers[1].env_file: cannot read /nonexistent/other.env",
        "providers.github.api_url: must be an http:// or https:// URL",
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

/// What the runtime refuses or silently ignores, which `config check` used
/// to pass: each is reported, all at once, at its own path.
#[test]
fn what_the_runtime_would_refuse_is_reported_all_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = r#"
scan:
  allowlist:
    paths: ['docs/[examples']
    secrets: ['^ok$', 'example_(']
remediation:
  policy: {tatum: freeze, tatumm: revoke}
  rule_policy: {github.no-such-rule: notify, tatum.api-key: notify}
providers:
  githubb: {api_url: 'https://api.github.com'}
  gitlab: {api_url: 'https://gitlab.example.internal'}
owners:
  - {match: {path: 'src/[x'}, email: a@example.internal}
  - {match: {provider: tatum, rule: tatum.api-key}, email: b@example.internal}
"#;
    let (code, out) = check(dir.path(), yaml, &[]);
    assert_eq!(code, Some(2), "{out}");
    for want in [
        "scan.allowlist.paths[0]: `docs/[examples` is not a valid glob",
        "scan.allowlist.secrets[1]: invalid regex: unclosed group",
        "remediation.policy.tatumm: `tatumm` is not a provider of any loaded rule",
        "remediation.rule_policy.github.no-such-rule: `github.no-such-rule` is not the id of any loaded rule",
        "providers.githubb: `githubb` is not a provider of any loaded rule",
        "owners[0].match.path: `src/[x` is not a valid glob",
    ] {
        assert!(out.contains(want), "{want} missing:\n{out}");
    }
    for valid in [
        "secrets[0]",
        "policy.tatum:",
        "tatum.api-key",
        "providers.gitlab",
    ] {
        assert!(!out.contains(valid), "{valid} is fine:\n{out}");
    }
    assert!(!out.contains("owners[1]"), "{out}");
    assert!(out.contains("6 problems"), "{out}");
}

#[test]
fn a_problem_after_a_cut_element_keeps_its_index() {
    // alerts[0] is cut for its unknown type; the missing variable is still
    // reported at alerts[1], where it is in the file.
    let dir = tempfile::tempdir().unwrap();
    let yaml = "alerts:\n  - {type: pager, to: ops}\n  - {type: slack, url_env: KEYSENTRY_TEST_NO_SUCH_VAR}\n";
    let (code, out) = check(dir.path(), yaml, &[]);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("alerts[0].type: unknown variant"), "{out}");
    assert!(
        out.contains("alerts[1].url_env: environment variable KEYSENTRY_TEST_NO_SUCH_VAR"),
        "{out}"
    );
    assert!(!out.contains("alerts[0].url_env"), "{out}");
}

/// `--env-file`: the service's variables, not the admin's shell.
#[test]
fn env_names_are_checked_against_the_services_environment_file() {
    let dir = tempfile::tempdir().unwrap();
    let secret_url = "https://hooks.example.internal/services/T000/B000/s3cr3tv4lu3";
    support::write(
        dir.path(),
        "keysentry.env",
        &format!("# the unit's EnvironmentFile\nSLACK_WEBHOOK_URL={secret_url}\n"),
    );
    let yaml = "alerts:\n  - {type: slack, url_env: SLACK_WEBHOOK_URL}\n  - {type: webhook, url_env: KEYSENTRY_HOOK_URL}\n";
    support::write(dir.path(), "config.yaml", yaml);
    let run = |env_file: bool| {
        let mut cmd = support::keysentry();
        cmd.args(["config", "check"])
            .arg(dir.path().join("config.yaml"));
        if env_file {
            cmd.arg("--env-file").arg(dir.path().join("keysentry.env"));
        }
        // The admin's shell has the second variable, not the first.
        cmd.env_remove("SLACK_WEBHOOK_URL")
            .env("KEYSENTRY_HOOK_URL", "https://hooks.example.internal/x");
        let out = cmd.output().unwrap();
        (out.status.code(), text(&out))
    };
    let (code, out) = run(true);
    assert_eq!(code, Some(2), "{out}");
    assert!(!out.contains("alerts[0]"), "set in the file:\n{out}");
    assert!(
        out.contains("alerts[1].url_env: environment variable KEYSENTRY_HOOK_URL is not set")
            && out.contains("keysentry.env"),
        "only in the shell, not in the file:\n{out}"
    );
    assert!(!out.contains("s3cr3tv4lu3"), "{out}");
    let (code, out) = run(false);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("alerts[0].url_env"), "{out}");
    assert!(!out.contains("alerts[1]"), "{out}");
}

/// `scan --config` and the daemon refuse the file for the same problems,
/// all of them at once, before anything runs.
#[test]
fn scan_and_daemon_refuse_what_config_check_reports() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "state_dir: '{}/state'\nscan:\n  allowlist:\n    secrets: ['example_(']\nremediation:\n  mode: off\n  policy: {{tatumm: freeze}}\n",
        dir.path().display()
    );
    support::write(dir.path(), "config.yaml", &yaml);
    let cfg = dir.path().join("config.yaml");
    let target = tempfile::tempdir().unwrap();
    let scan = support::keysentry()
        .arg("scan")
        .arg(target.path())
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    let daemon = support::keysentry()
        .args(["daemon", "--config"])
        .arg(&cfg)
        .timeout(std::time::Duration::from_secs(20))
        .output()
        .unwrap();
    for (what, o) in [("scan", scan), ("daemon", daemon)] {
        let out = text(&o);
        assert_eq!(o.status.code(), Some(2), "{what}: {out}");
        for want in [
            "2 problems",
            "scan.allowlist.secrets[0]: invalid regex",
            "remediation.policy.tatumm: `tatumm` is not a provider",
        ] {
            assert!(out.contains(want), "{what}: {want} missing:\n{out}");
        }
    }
    assert!(
        !dir.path().join("state").exists(),
        "the daemon created nothing"
    );
}

#[test]
fn providers_of_rules_given_with_rules_are_known() {
    let dir = tempfile::tempdir().unwrap();
    let rules = crate::scan_cli::rules_dir();
    support::write(
        dir.path(),
        "config.yaml",
        "remediation:\n  policy: {testprov: notify}\n",
    );
    let run = |with_rules: bool| {
        let mut cmd = support::keysentry();
        cmd.args(["config", "check"])
            .arg(dir.path().join("config.yaml"));
        if with_rules {
            cmd.arg("--rules").arg(rules.path());
        }
        let out = cmd.output().unwrap();
        (out.status.code(), text(&out))
    };
    let (code, out) = run(false);
    assert_eq!(code, Some(2), "{out}");
    assert!(out.contains("remediation.policy.testprov"), "{out}");
    let (code, out) = run(true);
    assert_eq!(code, Some(0), "{out}");
}

#[test]
fn an_admin_credential_variable_that_is_not_set_is_reported_without_a_value() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "providers:\n  openai: {admin_key_env: KEYSENTRY_TEST_NO_ADMIN_KEY}\n  aws: {admin_key_id_env: KEYSENTRY_TEST_NO_ADMIN_ID, admin_key_env: KEYSENTRY_TEST_NO_ADMIN_SECRET}\n";
    let (code, out) = check(dir.path(), yaml, &[]);
    assert_eq!(code, Some(2), "{out}");
    for want in [
        "providers.openai.admin_key_env: environment variable KEYSENTRY_TEST_NO_ADMIN_KEY is not set",
        "providers.aws.admin_key_id_env: environment variable KEYSENTRY_TEST_NO_ADMIN_ID is not set",
        "providers.aws.admin_key_env: environment variable KEYSENTRY_TEST_NO_ADMIN_SECRET is not set",
    ] {
        assert!(out.contains(want), "{want} missing:\n{out}");
    }
}
