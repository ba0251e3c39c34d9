//! Alert channels against real receivers on 127.0.0.1: the `keysentry-sim`
//! webhook sinks and GitHub issue API, and an aiosmtpd SMTP server
//! (tests/smtp_sink.py). The alert is built from a real `Secret`, and no
//! delivered byte may contain the key.

mod receivers;

use keysentry::alert::{location, resolve_owner, ActionResult, Alert, Alerter, Bound, Delivery};
use keysentry::config::Config;
use keysentry::scan::{Confidence, Finding, Origin, Secret};
use receivers::{Sim, Smtp};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const KEY: &str = "t-66a8f1c2e4b0a1d2c3e4f5a6-0123abcd4567ef89ab01cd23";
const GH_TOKEN: &str = "ghp_test_token_for_the_simulator";
const SUBJECT: &str = "[keysentry] Tatum API key t-66…[51 chars] contained (incident 12)";

// ---- the alert -------------------------------------------------------------

fn finding(secret: &Secret, origin: Origin, line: u64) -> Finding {
    Finding {
        rule_id: "tatum.api-key".into(),
        rule_name: "Tatum API key".into(),
        provider: "tatum".into(),
        secret: secret.clone(),
        fingerprint: secret.fingerprint(),
        origin: Arc::new(origin),
        line,
        column: 17,
        offset: 0,
        confidence: Confidence::High,
        encoding: None,
    }
}

fn git(path: &str, author: Option<&str>) -> Origin {
    Origin::Git {
        repo: "acme/app".into(),
        commit: "1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a0b".into(),
        author_email: author.map(str::to_string),
        path: path.into(),
    }
}

/// Two sightings of the key: in git history under `deploy/`, and a file.
fn findings() -> Vec<Finding> {
    let secret = Secret::new(KEY);
    vec![
        finding(&secret, git("deploy/.env", Some("dev@example.internal")), 3),
        finding(
            &secret,
            Origin::File {
                path: "config/app.yaml".into(),
            },
            7,
        ),
    ]
}

/// The alert the engine would build for these findings: everything from the
/// `Secret` goes through its redacted form and fingerprint.
fn alert_for(config: &Config, findings: &[Finding]) -> Alert {
    let first = &findings[0];
    Alert {
        incident_id: 12,
        owner: resolve_owner(config, first),
        provider: first.provider.to_string(),
        rule_id: first.rule_id.to_string(),
        rule_name: first.rule_name.to_string(),
        redacted: first.secret.redacted(),
        fingerprint: first.fingerprint.to_string(),
        state: "contained".into(),
        locations: findings.iter().map(location).collect(),
        actions: vec![
            ActionResult {
                action: "verify".into(),
                result: "live (200, mainnet)".into(),
            },
            ActionResult {
                action: "freeze".into(),
                result: "ok (200)".into(),
            },
        ],
        bound: Some(Bound {
            subscriptions: 3,
            virtual_accounts: 2,
        }),
        next_steps: vec![
            "Regenerate the key: Tatum Dashboard → API Keys → Regenerate".into(),
            "Run `keysentry tatum set-key 12` with the new key on stdin".into(),
        ],
        digest: None,
    }
}

fn config(yaml: &str) -> Config {
    Config::parse(Path::new("keysentry.yaml"), yaml).expect("test config parses")
}

fn env(pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    move |name| map.get(name).cloned()
}

fn all_channels_config(sim: &Sim, smtp: &Smtp, extra: &str) -> Config {
    config(&format!(
        r#"
alerts:
  - {{type: webhook, url: "{sim}/_sink/webhook/generic"{extra}}}
  - {{type: slack, url_env: KS_TEST_SLACK_URL{extra}}}
  - {{type: email, smtp: "smtp://{smtp}", from: keysentry@example.internal, to: [secops@example.internal]}}
  - {{type: github_issue, repo: acme/security, api_url: "{sim}", token_env: KS_TEST_GH_TOKEN}}
owners:
  - {{match: {{provider: tatum, path: "deploy/**"}}, email: payments@example.internal}}
default_owner: security@example.internal
"#,
        sim = sim.url,
        smtp = smtp.addr,
    ))
}

fn alerter(config: &Config, sim: &Sim, slack_sink: &str) -> Alerter {
    let env = env(&[
        (
            "KS_TEST_SLACK_URL",
            format!("{}/_sink/webhook/{slack_sink}", sim.url),
        ),
        ("KS_TEST_GH_TOKEN", GH_TOKEN.to_string()),
    ]);
    Alerter::from_config_with_env(config, &env).expect("alerter builds")
}

/// No delivered text may hold the key, nor any 8 characters of it past the
/// prefix the redacted form shows.
fn assert_no_key(what: &str, text: &str) {
    let hidden = &KEY[4..];
    for i in 0..=hidden.len() - 8 {
        let piece = &hidden[i..i + 8];
        assert!(
            !text.contains(piece),
            "{what} contains part of the key ({piece}):\n{text}"
        );
    }
}

fn assert_delivered(deliveries: &[Delivery]) {
    for d in deliveries {
        assert!(d.is_ok(), "{} failed: {:?}", d.channel, d.result);
    }
}

// ---- tests -----------------------------------------------------------------

#[tokio::test]
async fn every_channel_receives_the_alert_and_never_the_key() {
    let (sim, smtp) = (Sim::start(), Smtp::start());
    let config = all_channels_config(&sim, &smtp, "");
    let alert = alert_for(&config, &findings());
    let fingerprint = Secret::new(KEY).fingerprint().to_string();

    let deliveries = alerter(&config, &sim, "slack").send(&alert).await;
    let channels: Vec<&str> = deliveries.iter().map(|d| d.channel.as_str()).collect();
    assert_eq!(
        channels,
        [
            "webhook (alerts[0])",
            "slack (alerts[1])",
            "email (alerts[2])",
            "github_issue (alerts[3])"
        ]
    );
    assert_delivered(&deliveries);

    // Generic webhook: the Alert as JSON, plus a text summary.
    let bodies = sim.sink_bodies("generic").await;
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_no_key("webhook body", &bodies[0]);
    let json: Value = serde_json::from_str(&bodies[0]).expect("webhook body is JSON");
    assert_eq!(json["incident_id"], 12);
    assert_eq!(json["owner"], "payments@example.internal");
    assert_eq!(json["provider"], "tatum");
    assert_eq!(json["rule_id"], "tatum.api-key");
    assert_eq!(json["redacted"], "t-66…[51 chars]");
    assert_eq!(json["fingerprint"], fingerprint.as_str());
    assert_eq!(json["state"], "contained");
    assert_eq!(
        json["locations"],
        serde_json::json!(["acme/app@1a2b3c4d5e6f:deploy/.env:3", "config/app.yaml:7"])
    );
    assert_eq!(json["actions"][1]["action"], "freeze");
    assert_eq!(json["actions"][1]["result"], "ok (200)");
    assert_eq!(json["bound"]["subscriptions"], 3);
    assert_eq!(json["bound"]["virtual_accounts"], 2);
    assert_eq!(json["next_steps"].as_array().map(Vec::len), Some(2));
    let text = json["text"].as_str().expect("text summary");
    assert!(
        text.contains("t-66…[51 chars]") && text.contains("incident 12"),
        "{text}"
    );

    // Slack: the incoming-webhook shape.
    let bodies = sim.sink_bodies("slack").await;
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_no_key("slack body", &bodies[0]);
    let slack: Value = serde_json::from_str(&bodies[0]).expect("slack body is JSON");
    assert!(
        slack["text"]
            .as_str()
            .is_some_and(|t| t.contains("incident 12")),
        "{slack}"
    );
    let blocks = slack["blocks"].as_array().expect("blocks");
    assert_eq!(blocks[0]["type"], "header");
    assert!(blocks.iter().all(|b| b["type"].is_string()), "{slack}");
    for needle in [
        fingerprint.as_str(),
        "deploy/.env:3",
        "3 subscription(s)",
        "freeze",
        "Regenerate the key",
    ] {
        assert!(
            bodies[0].contains(needle),
            "slack lacks {needle}: {}",
            bodies[0]
        );
    }

    // Email: to the owner from `owners`, not the commit author or fallback.
    let mail = smtp.messages(1);
    assert_eq!(mail.len(), 1, "{mail:?}");
    let mail = &mail[0];
    assert_eq!(
        mail["rcpt_tos"],
        serde_json::json!(["payments@example.internal"])
    );
    assert_eq!(mail["mail_from"], "keysentry@example.internal");
    assert_eq!(mail["subject"], SUBJECT);
    assert_eq!(mail["content_type"], "text/plain");
    let body = mail["body"].as_str().expect("body");
    for needle in [
        fingerprint.as_str(),
        "deploy/.env:3",
        "config/app.yaml:7",
        "freeze: ok (200)",
        "3 subscription(s), 2 virtual account(s)",
        "1. Regenerate the key",
    ] {
        assert!(body.contains(needle), "email lacks {needle}:\n{body}");
    }
    assert_no_key("email body", body);
    assert_no_key("raw email", mail["raw"].as_str().expect("raw"));

    // GitHub: one issue in the configured repo, labelled, with the token.
    let issues = sim.get_json("/_sim/github/issues").await;
    let issues = issues.as_array().expect("issues");
    assert_eq!(issues.len(), 1, "{issues:?}");
    let issue = &issues[0];
    assert_eq!(issue["repo"], "acme/security");
    assert_eq!(
        issue["labels"],
        serde_json::json!(["security", "keysentry"])
    );
    assert_eq!(issue["token"], GH_TOKEN);
    assert_eq!(issue["title"], SUBJECT.trim_start_matches("[keysentry] "));
    let body = issue["body"].as_str().expect("issue body");
    for needle in [
        fingerprint.as_str(),
        "deploy/.env:3",
        "payments@example.internal",
        "Regenerate the key",
    ] {
        assert!(body.contains(needle), "issue lacks {needle}:\n{body}");
    }
    assert_no_key("issue", &issue.to_string());
}

#[tokio::test]
async fn a_failing_or_silent_channel_does_not_stop_the_others() {
    let (sim, smtp) = (Sim::start(), Smtp::start());
    sim.behave(
        "/_sim/sink/generic/behaviour",
        serde_json::json!({"status": 500}),
    )
    .await;
    sim.behave(
        "/_sim/sink/silent/behaviour",
        serde_json::json!({"delay_ms": 60_000}),
    )
    .await;
    let config = all_channels_config(&sim, &smtp, ", timeout_secs: 1");
    let alert = alert_for(&config, &findings());

    let started = Instant::now();
    let deliveries = alerter(&config, &sim, "silent").send(&alert).await;
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "send waited for the silent sink"
    );

    let webhook = deliveries[0]
        .result
        .as_ref()
        .expect_err("webhook answered 500");
    assert!(webhook.starts_with("webhook (alerts[0]): "), "{webhook}");
    assert!(webhook.contains("500"), "{webhook}");
    let slack = deliveries[1]
        .result
        .as_ref()
        .expect_err("slack never answered");
    assert!(
        slack.starts_with("slack (alerts[1]): no answer within 1 s"),
        "{slack}"
    );
    // The Slack URL is a credential: errors name its variable, not its value.
    assert!(
        !slack.contains("/_sink/") && !webhook.contains("/_sink/"),
        "{slack} / {webhook}"
    );
    assert_delivered(&deliveries[2..]);

    assert_eq!(smtp.messages(1).len(), 1);
    let issues = sim.get_json("/_sim/github/issues").await;
    assert_eq!(issues.as_array().map(Vec::len), Some(1), "{issues}");
}

#[tokio::test]
async fn github_refusing_the_token_names_the_variable_to_fix() {
    let sim = Sim::start();
    sim.behave("/_sim/github/behaviour", serde_json::json!({"status": 401}))
        .await;
    let config = config(&format!(
        "alerts:\n  - {{type: github_issue, repo: acme/security, api_url: \"{}\", token_env: KS_TEST_GH_TOKEN}}\n",
        sim.url
    ));
    let alert = alert_for(&config, &findings());
    let deliveries = alerter(&config, &sim, "unused").send(&alert).await;
    let err = deliveries[0]
        .result
        .as_ref()
        .expect_err("GitHub answered 401");
    assert!(err.starts_with("github_issue (alerts[0]): "), "{err}");
    assert!(
        err.contains("401") && err.contains("KS_TEST_GH_TOKEN"),
        "{err}"
    );
    assert!(!err.contains(GH_TOKEN), "{err}");
}

#[tokio::test]
async fn email_without_an_owner_address_goes_to_the_fallback_list() {
    let (sim, smtp) = (Sim::start(), Smtp::start());
    let config = config(&format!(
        "alerts:\n  - {{type: email, smtp: \"smtp://{}\", from: keysentry@example.internal, \
         to: [secops@example.internal, oncall@example.internal]}}\n",
        smtp.addr
    ));
    let alerter = alerter(&config, &sim, "unused");
    let mut alert = alert_for(&config, &findings());
    for owner in [None, Some("@payments-team".to_string())] {
        alert.owner = owner;
        assert_delivered(&alerter.send(&alert).await);
    }
    let mail = smtp.messages(2);
    assert_eq!(mail.len(), 2, "{mail:?}");
    for m in &mail {
        assert_eq!(
            m["rcpt_tos"],
            serde_json::json!(["secops@example.internal", "oncall@example.internal"])
        );
    }
}

#[tokio::test]
async fn unreachable_receivers_fail_naming_the_address() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let config = config(&format!(
        "alerts:\n  - {{type: webhook, url: \"http://127.0.0.1:{port}/hook\"}}\n  \
         - {{type: email, smtp: \"smtp://127.0.0.1:{port}\", from: keysentry@example.internal}}\n\
         default_owner: security@example.internal\n"
    ));
    let alert = alert_for(&config, &findings());
    let deliveries = Alerter::from_config(&config)
        .expect("alerter")
        .send(&alert)
        .await;
    let addr = format!("127.0.0.1:{port}");
    for d in &deliveries {
        let err = d.result.as_ref().expect_err("nothing listens there");
        assert!(err.starts_with(&d.channel) && err.contains(&addr), "{err}");
    }
}

#[test]
fn missing_environment_variables_are_startup_errors_naming_them() {
    let cases = [
        (
            "alerts:\n  - {type: slack, url_env: KS_TEST_UNSET_SLACK_7F3A}\n",
            "alerts[0].url_env: environment variable KS_TEST_UNSET_SLACK_7F3A is not set",
        ),
        (
            "alerts:\n  - {type: github_issue, repo: acme/security, token_env: KS_TEST_UNSET_GH_7F3A}\n",
            "alerts[0].token_env: environment variable KS_TEST_UNSET_GH_7F3A is not set",
        ),
        (
            "alerts:\n  - {type: webhook}\n",
            "alerts[0]: no webhook URL; set `url` or `url_env`",
        ),
        (
            "alerts:\n  - {type: email, smtp: \"smtp://127.0.0.1:25\", from: not-an-address}\n",
            "alerts[0].from: \"not-an-address\" is not an email address",
        ),
        (
            "owners:\n  - {match: {path: \"deploy/[\"}, email: a@example.internal}\n",
            "owners[0].match.path: `deploy/[` is not a valid glob",
        ),
    ];
    for (yaml, expected) in cases {
        let err = Alerter::from_config(&config(yaml))
            .expect_err(yaml)
            .to_string();
        assert!(err.starts_with(expected), "{yaml}\n=> {err}");
    }
}

#[test]
fn config_problems_are_all_reported_at_once() {
    let config = config(
        "alerts:\n  - {type: slack, url_env: KS_TEST_UNSET_SLACK_7F3A}\n  \
         - {type: github_issue, repo: not-a-repo, token_env: KS_TEST_UNSET_GH_7F3A}\n\
         owners:\n  - {match: {path: \"a/[\"}, email: a@example.internal}\n",
    );
    let problems: Vec<String> = Alerter::problems(&config, &|_: &str| None)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(
        problems[0].starts_with("owners[0].match.path"),
        "{problems:#?}"
    );
    assert!(
        problems[1].starts_with("alerts[0].url_env"),
        "{problems:#?}"
    );
    assert!(problems[2].starts_with("alerts[1].repo"), "{problems:#?}");
}

#[test]
fn the_issue_example_alerts_section_builds() {
    let config = config(
        r#"
alerts:
  - {type: webhook, url: https://hooks.example.internal/keysentry}
  - {type: slack, url_env: SLACK_WEBHOOK_URL}
  - {type: email, smtp: "smtp://127.0.0.1:25", from: keysentry@example.internal}
  - {type: github_issue, repo: acme/security}
owners:
  - {match: {provider: tatum}, email: payments@example.internal}
"#,
    );
    let env = env(&[
        (
            "SLACK_WEBHOOK_URL",
            "https://hooks.example.internal/slack/T0/B0/x".into(),
        ),
        ("GITHUB_TOKEN", "t".into()),
    ]);
    let alerter = Alerter::from_config_with_env(&config, &env).expect("example builds");
    assert_eq!(alerter.channels().count(), 4);
}

#[test]
fn owner_is_the_first_matching_entry_then_the_author_then_the_default() {
    let config = config(
        r#"
owners:
  - {match: {provider: tatum, path: "deploy/**"}, email: deploy-owner@example.internal}
  - {match: {rule: tatum.api-key, repo: acme/app}, email: app-owner@example.internal}
  - {match: {provider: github}, email: never@example.internal}
default_owner: security@example.internal
"#,
    );
    let secret = Secret::new(KEY);
    let author = Some("dev@example.internal");
    let owner = |origin: Origin| resolve_owner(&config, &finding(&secret, origin, 1));

    // Both fields of the first entry match: it wins over the second and the author.
    assert_eq!(
        owner(git("deploy/.env", author)).as_deref(),
        Some("deploy-owner@example.internal")
    );
    // Path misses the first entry; rule and repo match the second.
    assert_eq!(
        owner(git("src/main.rs", author)).as_deref(),
        Some("app-owner@example.internal")
    );
    // No entry matches (other repo): the commit author.
    let other_repo = Origin::Git {
        repo: "acme/other".into(),
        commit: "ab".repeat(20),
        author_email: author.map(str::to_string),
        path: "src/main.rs".into(),
    };
    assert_eq!(owner(other_repo).as_deref(), author);
    // No entry, no author: the default.
    assert_eq!(
        owner(Origin::File {
            path: "src/main.rs".into()
        })
        .as_deref(),
        Some("security@example.internal")
    );
    // The path glob also matches plain files.
    assert_eq!(
        owner(Origin::File {
            path: "deploy/prod/.env".into()
        })
        .as_deref(),
        Some("deploy-owner@example.internal")
    );
}
