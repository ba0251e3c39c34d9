//! A true rotate beside Tatum's: a GitLab token rotated through the rule's
//! `rotate:` template (`personal_access_tokens/self/rotate`, which kills the
//! old token and answers with a new one), handed to every consumer kind,
//! confirmed; never rotated when the new token would go nowhere; and a
//! daemon killed with -9 between the rotate answer and the consumer writes
//! finishes from escrow after its restart, with one rotate call.

use super::harness::{fp, text, Workspace};
use crate::support::daemon::Daemon;
use crate::support::openbao::OpenBao;
use serde_json::{json, Value};
use std::process::Output;
use std::time::{Duration, Instant};

const ROTATE: &str = "/api/v4/personal_access_tokens/self/rotate";
const SELF: &str = "/api/v4/personal_access_tokens/self";
const GH_TOKEN: &str = "ghp_simSIMsimSIMsimSIMsimSIMsimSIMsim0";
const K8S_TOKEN: &str = "k8s-sim-bearer-token-0123456789";

const POLICY: &str = "
remediation:
  mode: auto
  policy: {gitlab: regenerate}
  backoff_ms: 10
  max_attempts: 3
  rate_limit: 1000
";

/// A GitLab token (legacy shape: 20 characters) made from `seed`.
fn token(seed: &str) -> String {
    let body: String = fp(seed)
        .chars()
        .zip("RkmWxQvLpTnBcYzHjDsF".chars())
        .map(|(h, c)| if h.is_ascii_digit() { h } else { c })
        .take(20)
        .collect();
    format!("glpat-{body}")
}

fn env_file(ws: &Workspace, name: &str, key: &str) {
    ws.write(&format!("{name}/.env"), &format!("GITLAB_TOKEN={key}\n"));
}

/// The token an env file holds now.
fn held(ws: &Workspace, name: &str) -> String {
    ws.read(&format!("{name}/.env"))
        .trim()
        .trim_start_matches("GITLAB_TOKEN=")
        .to_string()
}

/// What GitLab (the simulator) answers for `key`.
fn gitlab_status(ws: &Workspace, key: &str) -> u16 {
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H"])
        .arg(format!("PRIVATE-TOKEN: {key}"))
        .arg(format!("{}{SELF}", ws.sim.url))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0)
}

fn run_with_env(ws: &Workspace, args: &[String], vault: &str) -> Output {
    crate::support::keysentry()
        .current_dir(ws.dir.path())
        .env("KEYSENTRY_LOG", "keysentry=debug")
        .env("KS_VAULT_TOKEN", vault)
        .env("KS_GH_TOKEN", GH_TOKEN)
        .env("KS_K8S_TOKEN", K8S_TOKEN)
        .args(args)
        .output()
        .expect("run keysentry")
}

#[test]
fn a_gitlab_token_is_rotated_into_every_consumer_kind_and_confirmed() {
    let ws = Workspace::new();
    let bao = OpenBao::start();
    let key = token("every kind");
    ws.write("tree/ci.env", &format!("GITLAB_TOKEN={key}\n"));
    env_file(&ws, "deployer", &key);
    bao.put("gitlab/deployer", json!({"token": key, "user": "kept"}));
    let sim = |m: &str, p: &str, b: Value| {
        let (status, v) = ws.sim.request(m, p, Some(&b));
        assert_eq!(status, 204, "{p}: {v}");
    };
    sim("POST", "/_sim/actions/tokens", json!({"token": GH_TOKEN}));
    sim("POST", "/_sim/actions/scopes", json!({"scope": "acme/api"}));
    sim(
        "POST",
        "/_sim/k8s/tokens",
        json!({"token": K8S_TOKEN, "verbs": ["get", "update", "patch"]}),
    );
    sim(
        "PUT",
        "/_sim/k8s/secrets/ci/gitlab",
        json!({"data": {"token": key}}),
    );
    ws.config(&format!(
        "{POLICY}providers:
  gitlab:
    api_url: {{sim}}
    consumers:
      - {{name: deployer, env_file: '{{dir}}/deployer/.env', variable: GITLAB_TOKEN, restart: [sh, -c, 'echo restarted >> {{dir}}/deployer.restarts']}}
      - name: vault
        vault: {{addr: '{}', mount: secret, path: gitlab/deployer, field: token, token_env: KS_VAULT_TOKEN}}
      - name: ci
        github_actions: {{repo: acme/api, name: GITLAB_TOKEN, api_url: '{{sim}}', token_env: KS_GH_TOKEN}}
      - name: cluster
        kubernetes: {{api_url: '{{sim}}', namespace: ci, secret: gitlab, key: token, token_env: KS_K8S_TOKEN}}
",
        bao.addr
    ));

    let out = run_with_env(&ws, &ws.scan_args(), &bao.root);

    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(ws.sim.count("POST", ROTATE), 1, "{}", text(&out));
    assert_eq!(ws.sim.count("DELETE", SELF), 0, "rotated, not revoked");
    let new = held(&ws, "deployer");
    assert!(new.starts_with("glpat-") && new != key, "{new}");
    assert_eq!(gitlab_status(&ws, &key), 401, "the old token is dead");
    assert_eq!(gitlab_status(&ws, &new), 200, "the new token works");
    assert_eq!(ws.read("deployer.restarts"), "restarted\n");
    assert_eq!(
        bao.get("gitlab/deployer"),
        (json!({"token": new, "user": "kept"}), 2)
    );
    let (_, secrets) = ws.sim.request("GET", "/_sim/actions/secrets", None);
    let ci = secrets
        .as_array()
        .and_then(|s| s.iter().find(|s| s["scope"] == "acme/api"))
        .cloned()
        .expect("an Actions secret");
    assert_eq!(ci["value"], new.as_str(), "the sealed box opened to it");
    let (_, k8s) = ws.sim.request("GET", "/_sim/k8s/secrets/ci/gitlab", None);
    assert_eq!(k8s["data"], json!({"token": new}));
    let incident = ws.incident_by_fp(&key);
    assert_eq!(
        (incident["state"].as_str(), incident["action"].as_str()),
        (Some("closed"), Some("regenerate")),
        "{incident}"
    );
    let actions = incident["actions"].to_string();
    for step in ["rotate", "propagate:vault", "confirm:old", "confirm:new"] {
        assert!(actions.contains(step), "{step} in {actions}");
    }
    let alert = ws.sink("owner").join("\n");
    assert!(alert.contains("rotated at gitlab"), "{alert}");
    for consumer in [
        "deployer: written, verified, restarted",
        "vault: written, verified",
        "ci: written",
        "cluster: written, verified",
    ] {
        assert!(alert.contains(consumer), "{consumer} in:\n{alert}");
    }
    let (_, shown) = ws.show(&incident["id"]);
    assert!(
        shown.contains("deployer: written, verified, restarted"),
        "{shown}"
    );
    ws.assert_secrets_hidden(&[&key, &new], &[&out]);
}

#[test]
fn no_destination_means_no_rotate_the_token_is_revoked_and_the_owner_told_why() {
    let ws = Workspace::new();
    let key = token("nowhere");
    ws.write("tree/ci.env", &format!("GITLAB_TOKEN={key}\n"));
    // The one consumer holds another token: nothing would get the new one.
    env_file(&ws, "deployer", &token("another"));
    ws.config(&format!(
        "{POLICY}providers:
  gitlab:
    api_url: {{sim}}
    consumers:
      - {{name: deployer, env_file: '{{dir}}/deployer/.env', variable: GITLAB_TOKEN}}
"
    ));

    let out = ws.scan();

    assert_eq!(ws.sim.count("POST", ROTATE), 0, "{}", text(&out));
    assert_eq!(ws.sim.count("DELETE", SELF), 1, "contained by a revoke");
    assert_eq!(gitlab_status(&ws, &key), 401);
    assert_eq!(held(&ws, "deployer"), token("another"), "left alone");
    let incident = ws.incident_by_fp(&key);
    assert_eq!(
        (incident["state"].as_str(), incident["action"].as_str()),
        (Some("closed"), Some("revoke")),
        "{incident}"
    );
    let alert = ws.sink("owner").join("\n");
    assert!(alert.contains("did not rotate the key"), "{alert}");
    assert!(alert.contains("init-escrow"), "{alert}");
    assert!(
        !alert.contains("handed over"),
        "no hand-over claimed:\n{alert}"
    );
    ws.assert_secrets_hidden(&[&key], &[&out]);
}

/// The incident of `key` as `incidents list` shows it, once `pred` holds
/// (polled while a daemon runs).
fn wait_incident(ws: &Workspace, key: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let found = ws
            .incidents()
            .into_iter()
            .find(|i| i["fingerprint"] == fp(key).as_str());
        match found {
            Some(i) if pred(&i) => return i,
            other if start.elapsed() > Duration::from_secs(60) => {
                panic!("timed out; the incident is {other:?}")
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

#[test]
fn a_daemon_killed_between_the_rotate_answer_and_the_consumer_writes_finishes_from_escrow() {
    let ws = Workspace::new();
    let key = token("killed daemon");
    let service = ws.path("escrow.key").display().to_string();
    let init = ws.keysentry(&["config", "init-escrow", "--identity-file", &service]);
    assert!(init.status.success(), "{}", text(&init));
    env_file(&ws, "deployer", &key);
    env_file(&ws, "runner", &key);
    let log = ws.path("logs/app.log");
    // The deployer's restart hangs the first time: the daemon is killed
    // there, after the rotate answer, before `runner` is written.
    ws.config(&format!(
        "{POLICY}  escrow: {{identity_file: {service}}}
watch:
  logs: ['{{dir}}/logs/*.log']
  poll: 100ms
http:
  listen: 127.0.0.1:0
providers:
  gitlab:
    api_url: {{sim}}
    consumers:
      - {{name: deployer, env_file: '{{dir}}/deployer/.env', variable: GITLAB_TOKEN, restart: [sh, -c, 'if [ -e {{dir}}/hung ]; then echo restarted >> {{dir}}/deployer.restarts; else touch {{dir}}/hung; sleep 30; fi']}}
      - {{name: runner, env_file: '{{dir}}/runner/.env', variable: GITLAB_TOKEN}}
"
    ));
    let cfg = ws.path("config.yaml");
    let mut d = Daemon::start(&cfg);
    ws.write(
        "logs/app.log",
        &format!("GET /api/v4/projects PRIVATE-TOKEN: {key}\n"),
    );
    let start = Instant::now();
    while !ws.path("hung").exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the deployer's restart never ran:\n{}",
            d.text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    d.child.kill().unwrap(); // SIGKILL: no cleanup of any kind
    d.child.wait().unwrap();
    assert_eq!(ws.sim.count("POST", ROTATE), 1);
    assert_eq!(held(&ws, "runner"), key, "killed before the runner's write");
    assert!(log.exists());

    let d = Daemon::start(&cfg);
    let incident = wait_incident(&ws, &key, |i| i["state"] == "closed");

    assert_eq!(ws.sim.count("POST", ROTATE), 1, "{}", d.text());
    let new = held(&ws, "deployer");
    assert!(new.starts_with("glpat-") && new != key, "{new}");
    assert_eq!(held(&ws, "runner"), new);
    assert_eq!(ws.read("deployer.restarts"), "restarted\n");
    assert_eq!(gitlab_status(&ws, &new), 200);
    let actions = incident["actions"].to_string();
    assert!(actions.contains("escrow:open"), "{actions}");
    let (status, stderr) = d.terminate();
    assert!(status.success(), "{stderr}");
    assert!(
        !stderr.contains(&key[6..]) && !stderr.contains(&new[6..]),
        "a token leaked into the daemon's log"
    );
    ws.assert_secrets_hidden(&[&key, &new], &[]);
}
