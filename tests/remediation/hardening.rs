//! Issue 9, points 2, 3 and 7: a consumer file, a provider answer or a URL
//! cannot turn remediation against the owner.

use super::harness::{fp, set_mode, stderr, tatum_key, text, Workspace};
use serde_json::json;

/// Auto regenerate through the simulator's management templates; one KMS
/// consumer whose restart appends to `restarts`.
const CONFIG: &str = "
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
    consumers:
      - {name: kms, env_file: '{dir}/kms/.env', variable: TATUM_API_KEY, restart: [sh, -c, 'echo restarted >> {dir}/restarts']}
";

const KMS_ENV: &str =
    "# Tatum KMS\nTATUM_KMS_PASSWORD=correct-horse\nexport TATUM_API_KEY=\"{key}\"\n";

/// A live leaked key in the scanned tree; `answer_key` is what the
/// management service answers when asked to regenerate it.
fn leaked(ws: &Workspace, seed: &str, answer_key: Option<&str>) -> String {
    let key = tatum_key(seed);
    let (status, _) = ws.sim.request(
        "POST",
        "/_sim/tatum/keys",
        Some(&json!({"key": key, "answer_key": answer_key})),
    );
    assert_eq!(status, 204);
    ws.write(
        &format!("tree/{seed}.env"),
        &format!("TATUM_API_KEY={key}\n"),
    );
    key
}

fn kms_env(key: &str) -> String {
    KMS_ENV.replace("{key}", key)
}

fn reason(ws: &Workspace, key: &str) -> String {
    ws.incident_by_fp(key)["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[cfg(unix)]
#[test]
fn a_symlinked_consumer_is_refused_and_the_link_target_is_untouched() {
    let ws = Workspace::new();
    let key = leaked(&ws, "symlink", None);
    // The file the link points at: someone else's, holding the leaked key.
    let victim = ws.write("victim/.env", &kms_env(&key));
    std::fs::create_dir_all(ws.path("kms")).unwrap();
    std::os::unix::fs::symlink(&victim, ws.path("kms/.env")).unwrap();
    ws.config(CONFIG);

    let out = ws.scan();

    assert_eq!(
        std::fs::read_to_string(&victim).unwrap(),
        kms_env(&key),
        "the symlink's target was written\n{}",
        text(&out)
    );
    assert!(std::fs::symlink_metadata(ws.path("kms/.env"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        ws.read("restarts"),
        "",
        "a refused consumer is not restarted"
    );
    let why = reason(&ws, &key);
    for want in [
        "consumer kms",
        "symbolic link",
        "name the real path in the config",
    ] {
        assert!(why.contains(want), "{want} missing from {why:?}");
    }
    // The only consumer cannot be read and no escrow is configured: the
    // key is not regenerated (the new key would go nowhere).
    assert_eq!(ws.sim.count("POST", "/mgmt/tatum/regenerate"), 0);
    ws.assert_secrets_hidden(&[&key], &[&out]);
}

#[cfg(unix)]
#[test]
fn a_consumer_in_a_group_writable_directory_is_refused() {
    let ws = Workspace::new();
    let key = leaked(&ws, "shared-dir", None);
    let kms = ws.write("kms/.env", &kms_env(&key));
    set_mode(&ws.path("kms"), 0o775);
    ws.config(CONFIG);

    let out = ws.scan();

    assert_eq!(ws.read("kms/.env"), kms_env(&key), "{}", text(&out));
    assert_eq!(ws.read("restarts"), "");
    let why = reason(&ws, &key);
    assert!(why.contains("consumer kms"), "{why}");
    assert!(why.contains("writable by group or others"), "{why}");
    assert!(why.contains(&kms.display().to_string()), "{why}");
}

#[cfg(unix)]
#[test]
fn config_check_names_refused_consumers_and_plain_http_urls() {
    let ws = Workspace::new();
    let victim = ws.write("victim/.env", "TATUM_API_KEY=x\n");
    std::fs::create_dir_all(ws.path("link")).unwrap();
    std::os::unix::fs::symlink(&victim, ws.path("link/.env")).unwrap();
    ws.write("shared/.env", "TATUM_API_KEY=x\n");
    set_mode(&ws.path("shared"), 0o777);
    ws.write("good/.env", "TATUM_API_KEY=x\n");
    let yaml = "
providers:
  tatum:
    api_url: http://example.invalid
    consumers:
      - {name: link, env_file: '{dir}/link/.env', variable: TATUM_API_KEY}
      - {name: shared, env_file: '{dir}/shared/.env', variable: TATUM_API_KEY}
      - {name: good, env_file: '{dir}/good/.env', variable: TATUM_API_KEY}
  github: {api_url: 'http://127.0.0.1:9'}
github: {api_url: 'http://example.invalid/api/v3'}
alerts:
  - {type: webhook, url: 'http://hooks.example.invalid/k'}
";
    let config = ws.config(yaml).display().to_string();

    let out = ws.keysentry(&["config", "check", &config]);

    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    for want in [
        "providers.tatum.consumers[0].env_file: keysentry will not write the new key there",
        "name the real path in the config",
        "providers.tatum.consumers[1].env_file: keysentry will not write the new key there",
        "writable by group or others (mode 0777)",
        "providers.tatum.api_url: plain http:// to example.invalid",
        "github.api_url: plain http:// to example.invalid",
        "alerts[0].url: plain http:// to hooks.example.invalid",
        "allow_insecure_http: true",
    ] {
        assert!(report.contains(want), "{want} missing:\n{report}");
    }
    for not in ["consumers[2]", "providers.github"] {
        assert!(!report.contains(not), "{not} reported:\n{report}");
    }

    // Trusting the network silences the URL problems, not the consumers.
    let config = ws
        .config(&format!("allow_insecure_http: true\n{yaml}"))
        .display()
        .to_string();
    let out = ws.keysentry(&["config", "check", &config]);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(!report.contains("plain http://"), "{report}");
    assert!(report.contains("consumers[1].env_file"), "{report}");
}

#[test]
fn remediation_refuses_to_start_with_a_plain_http_provider_url() {
    let ws = Workspace::new();
    let key = leaked(&ws, "insecure", None);
    ws.config(&CONFIG.replace(
        "    api_url: {sim}\n",
        "    api_url: http://example.invalid\n",
    ));

    let out = ws.keysentry(
        &ws.scan_args()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );

    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = stderr(&out);
    assert!(err.contains("providers.tatum.api_url"), "{err}");
    assert!(err.contains("allow_insecure_http"), "{err}");
    assert!(ws.sim.calls().is_empty());
    assert!(!err.contains(&key[6..]));
}

/// The regenerate happened at Tatum, but its answer is refused: the new key
/// is written nowhere, the old key is checked, and the owner is asked for
/// the new key.
fn assert_answer_refused(
    ws: &Workspace,
    key: &str,
    bad: &str,
    why: &str,
    out: &std::process::Output,
) {
    assert_eq!(ws.read("kms/.env"), kms_env(key), "{}", text(out));
    assert_eq!(ws.read("restarts"), "", "KMS not restarted");
    let incident = ws.incident_by_fp(key);
    assert_eq!(
        incident["state"],
        "waiting-manual",
        "{incident}\n{}",
        text(out)
    );
    assert!(reason(ws, key).contains("tatum set-key"), "{incident}");
    let (_, shown) = ws.show(&incident["id"]);
    assert!(shown.contains(why), "{why} missing from {shown}");
    assert_eq!(ws.sim.count("POST", "/mgmt/tatum/regenerate"), 1);
    // The old key was verified after the answer (it answers 401 now).
    let after: Vec<_> = ws
        .sim
        .calls()
        .into_iter()
        .skip_while(|c| c["path"] != "/mgmt/tatum/regenerate")
        .filter(|c| c["path"] == "/v3/tatum/version" && c["key_fingerprint"] == fp(key).as_str())
        .collect();
    assert!(!after.is_empty(), "the old key was not verified");
    assert!(
        !ws.sim
            .calls()
            .iter()
            .any(|c| c["key_fingerprint"] == fp(bad).as_str()),
        "the refused value was sent somewhere"
    );
    let new_key = ws.sim.tatum_key(key)["replacement_key"]
        .as_str()
        .unwrap()
        .to_string();
    ws.assert_secrets_hidden(&[key, &new_key, bad], &[out]);
}

#[test]
fn a_new_key_with_a_line_break_is_never_written() {
    let ws = Workspace::new();
    let bad = format!("{}\nLD_PRELOAD=/tmp/x.so", tatum_key("looks-fine"));
    let key = leaked(&ws, "injected", Some(&bad));
    ws.write("kms/.env", &kms_env(&key));
    ws.config(CONFIG);

    let out = ws.scan();

    assert!(!ws.read("kms/.env").contains("LD_PRELOAD"));
    assert_answer_refused(&ws, &key, &bad, "control character", &out);
    assert!(!text(&out).contains("LD_PRELOAD"), "{}", text(&out));
}

#[test]
fn a_regenerate_answering_the_leaked_key_is_not_trusted() {
    let ws = Workspace::new();
    let key = tatum_key("echoed");
    let key = leaked(&ws, "echoed", Some(&key));
    ws.write("kms/.env", &kms_env(&key));
    ws.config(CONFIG);

    let out = ws.scan();

    assert_eq!(ws.read("kms/.env"), kms_env(&key), "{}", text(&out));
    assert_eq!(ws.read("restarts"), "", "KMS not restarted");
    let incident = ws.incident_by_fp(&key);
    assert_eq!(incident["state"], "waiting-manual", "{}", text(&out));
    let (_, shown) = ws.show(&incident["id"]);
    assert!(shown.contains("leaked key itself"), "{shown}");
}

#[test]
fn a_regenerate_answering_something_that_is_no_tatum_key_is_not_trusted() {
    let ws = Workspace::new();
    let bad = "sk_live_not-a-tatum-key-at-all-1234567890";
    let key = leaked(&ws, "foreign", Some(bad));
    ws.write("kms/.env", &kms_env(&key));
    ws.config(CONFIG);

    let out = ws.scan();

    assert_answer_refused(&ws, &key, bad, "shape of a tatum key", &out);
}

#[test]
fn set_key_refuses_a_value_that_is_no_tatum_key_before_sending_it() {
    let ws = Workspace::new();
    let key = leaked(&ws, "manual-bad", None);
    ws.write("kms/.env", &kms_env(&key));
    // No management templates: the incident waits for the owner.
    let (a, b) = (
        CONFIG.find("    management:").unwrap(),
        CONFIG.find("    consumers:").unwrap(),
    );
    let config = ws
        .config(&format!("{}{}", &CONFIG[..a], &CONFIG[b..]))
        .display()
        .to_string();
    ws.scan();
    let id = ws.incident_by_fp(&key)["id"].to_string();
    let bad = "t-not-a-key-0123456789abcdef";

    let set = crate::support::keysentry()
        .args(["tatum", "set-key", &id, "--config", &config])
        .write_stdin(bad)
        .output()
        .unwrap();

    assert_eq!(set.status.code(), Some(2), "{}", text(&set));
    assert!(
        stderr(&set).contains("not usable as the new key")
            && stderr(&set).contains("shape of a tatum key"),
        "{}",
        text(&set)
    );
    assert!(!stderr(&set).contains(bad));
    assert_eq!(ws.read("kms/.env"), kms_env(&key));
    assert!(
        !ws.sim
            .calls()
            .iter()
            .any(|c| c["key_fingerprint"] == fp(bad).as_str()),
        "the value was sent to Tatum"
    );
}

#[test]
fn a_huge_provider_answer_fails_the_call_with_the_cap_named() {
    let ws = Workspace::new();
    let key = leaked(&ws, "huge", None);
    ws.config(CONFIG);
    // 50 MiB answers to every verify of the first run.
    ws.sim.fault(
        json!({"path": "/v3/tatum/version", "status": 200, "body_bytes": 50 << 20, "count": 3}),
    );

    let out = ws.scan();

    let incident = ws.incident_by_fp(&key);
    assert_eq!(incident["state"], "failed", "{}", text(&out));
    let why = reason(&ws, &key);
    assert!(why.contains("larger than 1 MiB"), "{why}");
    assert_eq!(
        ws.sim.state_changing_calls(),
        0,
        "nothing acted on a huge answer"
    );
    let (show, _) = ws.show(&incident["id"]);
    assert!(show["journal"].to_string().contains("1 MiB"), "{show}");
}

#[test]
fn a_verify_answer_that_is_not_json_proves_nothing() {
    let ws = Workspace::new();
    let key = leaked(&ws, "html", None);
    ws.config(CONFIG);
    // 200 with a text body, as a captive portal or a wrong api_url answers.
    ws.sim
        .fault(json!({"path": "/v3/tatum/version", "status": 200}));

    let out = ws.scan();

    assert_eq!(ws.incident_by_fp(&key)["state"], "failed", "{}", text(&out));
    assert!(
        reason(&ws, &key).contains("not with a JSON object"),
        "{}",
        reason(&ws, &key)
    );
    assert_eq!(
        ws.sim.state_changing_calls(),
        0,
        "no freeze on a non-answer"
    );
}

#[test]
fn a_management_answer_without_the_new_key_is_checked_before_it_is_sent_again() {
    let ws = Workspace::new();
    let key = leaked(&ws, "no-pointer", None);
    ws.write("kms/.env", &kms_env(&key));
    ws.config(CONFIG);
    // 200 with no JSON: the service did not regenerate (the old key works).
    ws.sim
        .fault(json!({"path": "/mgmt/tatum/regenerate", "status": 200}));

    let out = ws.scan();

    assert_eq!(ws.incident_by_fp(&key)["state"], "closed", "{}", text(&out));
    assert_eq!(ws.sim.count("POST", "/mgmt/tatum/regenerate"), 2);
    let state = ws.sim.tatum_key(&key);
    assert_eq!(state["regenerations"], 1);
    let new_key = state["replacement_key"].as_str().unwrap();
    assert_eq!(ws.read("kms/.env"), kms_env(new_key));
}

#[test]
fn template_values_arrive_intact_in_urls_headers_and_json_bodies() {
    let ws = Workspace::new();
    ws.write(
        "rules/echo.yaml",
        r#"rules:
  - id: echo.key
    name: Echo key
    provider: echo
    keywords: ["ECHO-"]
    pattern: '(?P<secret>ECHO-[A-Za-z0-9"&/=%+?#]{16,40})'
    verify:
      method: POST
      url: '{{api_url}}/mgmt/echo?apiKey={{secret}}&x=1'
      headers: {x-api-key: '{{secret}}', content-type: application/json}
      body: '{"apiKey":"{{secret}}"}'
      live: [200]
      dead: [401]
"#,
    );
    let secret = r#"ECHO-q7"Zx&k/9=%2F+m?4#Lw"#;
    ws.write("tree/app.conf", &format!("token {secret}\n"));
    ws.config(
        "scan: {rules: ['{dir}/rules']}\nremediation: {mode: auto, backoff_ms: 10, max_attempts: 1, rule_policy: {echo.key: notify}}\nproviders:\n  echo: {api_url: '{sim}'}\n",
    );

    let out = ws.scan();

    let echoes: Vec<_> = ws
        .sim
        .calls()
        .into_iter()
        .filter(|c| c["path"] == "/mgmt/echo")
        .collect();
    assert_eq!(echoes.len(), 1, "{echoes:?}\n{}", text(&out));
    assert_eq!(echoes[0]["key_fingerprint"], fp(secret).as_str());
    assert_eq!(
        echoes[0]["status"], 200,
        "the key arrived changed in the query or the body"
    );
    assert_eq!(ws.incident_by_fp(secret)["state"], "verified");
}
