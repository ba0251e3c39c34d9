//! Where new keys go: a Tatum regenerate (in the simulator) hands the new
//! key to every consumer kind — an env file, a real OpenBao dev server's KV
//! v2 secret, a GitHub Actions secret and a Kubernetes Secret (both in the
//! simulator, which opens the sealed box and checks resourceVersions) —
//! through the real binary, and each reads it back.

use super::harness::{fp, tatum_key, text, Workspace};
use crate::support::openbao::OpenBao;
use serde_json::{json, Value};
use std::process::Output;

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
      - {name: kms, env_file: '{dir}/kms/.env', variable: TATUM_API_KEY}
      - name: kms-vault
        vault: {addr: '{bao}', mount: secret, path: tatum/kms, field: api_key, token_env: KS_VAULT_TOKEN}
      - name: vault-other
        vault: {addr: '{bao}', mount: secret, path: tatum/other, field: api_key, token_env: KS_VAULT_TOKEN}
      - name: ci
        github_actions: {repo: acme/payments, name: TATUM_API_KEY, api_url: '{sim}', token_env: KS_GH_TOKEN}
      - name: ci-prod
        github_actions: {repo: acme/payments, environment: prod, name: TATUM_API_KEY, api_url: '{sim}', token_env: KS_GH_TOKEN}
      - name: cluster
        kubernetes: {api_url: '{sim}', namespace: pay, secret: tatum, key: api-key, token_env: KS_K8S_TOKEN, restart_deployments: [kms]}
";

const GH_TOKEN: &str = "ghp_simSIMsimSIMsimSIMsimSIMsimSIMsim0";
const K8S_TOKEN: &str = "k8s-sim-bearer-token-0123456789";

struct Setup {
    ws: Workspace,
    bao: OpenBao,
    key: String,
    other: String,
    vault_token: String,
}

/// A leaked Tatum key held by the env file, the Vault secret and the
/// Kubernetes Secret; `tatum/other` holds another key.
fn setup(seed: &str) -> Setup {
    setup_via(seed, |bao| bao.addr.clone())
}

/// [`setup`] with keysentry reaching Vault at `addr(bao)`.
fn setup_via(seed: &str, addr: impl FnOnce(&OpenBao) -> String) -> Setup {
    let ws = Workspace::new();
    let bao = OpenBao::start();
    let key = tatum_key(seed);
    let other = tatum_key(&format!("{seed}-other"));
    ws.sim.add_tatum_key(&key, true, 0, 0);
    ws.write("tree/leak.env", &format!("TATUM_API_KEY={key}\n"));
    ws.write("kms/.env", &format!("TATUM_API_KEY={key}\n"));
    bao.put(
        "tatum/kms",
        json!({"api_key": key, "password": "kept-as-is"}),
    );
    bao.put("tatum/other", json!({"api_key": other}));
    let sim = |m: &str, p: &str, b: Value| {
        let (status, v) = ws.sim.request(m, p, Some(&b));
        assert_eq!(status, 204, "{p}: {v}");
    };
    sim("POST", "/_sim/actions/tokens", json!({"token": GH_TOKEN}));
    sim(
        "POST",
        "/_sim/actions/scopes",
        json!({"scope": "acme/payments"}),
    );
    sim(
        "POST",
        "/_sim/actions/scopes",
        json!({"scope": "acme/payments:prod"}),
    );
    sim(
        "POST",
        "/_sim/k8s/tokens",
        json!({"token": K8S_TOKEN, "verbs": ["get", "update", "patch"]}),
    );
    sim(
        "PUT",
        "/_sim/k8s/secrets/pay/tatum",
        json!({"data": {"api-key": key, "db": "postgres://kept"}}),
    );
    sim(
        "POST",
        "/_sim/k8s/deployments",
        json!({"namespace": "pay", "name": "kms"}),
    );
    ws.config(&CONFIG.replace("{bao}", &addr(&bao)));
    let vault_token = bao.root.clone();
    Setup {
        ws,
        bao,
        key,
        other,
        vault_token,
    }
}

impl Setup {
    fn scan(&self) -> Output {
        let args = self.ws.scan_args();
        let out = crate::support::keysentry()
            .current_dir(self.ws.dir.path())
            .env("KEYSENTRY_LOG", "keysentry=debug")
            .env("KS_VAULT_TOKEN", &self.vault_token)
            .env("KS_GH_TOKEN", GH_TOKEN)
            .env("KS_K8S_TOKEN", K8S_TOKEN)
            .args(&args)
            .output()
            .expect("run keysentry");
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        out
    }

    fn new_key(&self) -> String {
        let state = self.ws.sim.tatum_key(&self.key);
        assert_eq!(state["regenerations"], 1, "{state}");
        state["replacement_key"]
            .as_str()
            .expect("regenerated")
            .to_string()
    }

    fn actions_secret(&self, scope: &str) -> Option<Value> {
        let (_, list) = self.ws.sim.request("GET", "/_sim/actions/secrets", None);
        list.as_array()?
            .iter()
            .find(|s| s["scope"] == scope)
            .cloned()
    }

    fn k8s(&self, path: &str) -> Value {
        self.ws.sim.request("GET", path, None).1
    }
}

#[test]
fn a_rotation_reaches_every_consumer_kind_and_each_reads_it_back() {
    let s = setup("every-kind");

    let out = s.scan();

    let new = s.new_key();
    let incident = s.ws.incident_by_fp(&s.key);
    assert_eq!(incident["state"], "closed", "{}", text(&out));
    assert_eq!(s.ws.read("kms/.env"), format!("TATUM_API_KEY={new}\n"));
    let (data, version) = s.bao.get("tatum/kms");
    assert_eq!(
        data,
        json!({"api_key": new, "password": "kept-as-is"}),
        "other fields kept"
    );
    assert_eq!(version, 2, "one new version, written with check-and-set");
    assert_eq!(
        s.bao.get("tatum/other"),
        (json!({"api_key": s.other}), 1),
        "a secret holding another key is never touched"
    );
    for scope in ["acme/payments", "acme/payments:prod"] {
        let got = s
            .actions_secret(scope)
            .unwrap_or_else(|| panic!("no secret in {scope}"));
        assert_eq!(
            got["value"],
            new.as_str(),
            "the sealed box opened to the new key"
        );
        assert_eq!(got["writes"], 1);
    }
    let secret = s.k8s("/_sim/k8s/secrets/pay/tatum");
    assert_eq!(
        secret["data"],
        json!({"api-key": new, "db": "postgres://kept"})
    );
    assert_eq!(secret["writes"], 1);
    let deployment = s.k8s("/_sim/k8s/deployments/pay/kms");
    assert_eq!(deployment["patches"], 1, "one rollout restart");
    assert!(
        deployment["restarted_at"]
            .as_str()
            .is_some_and(|t| t.starts_with("20")),
        "{deployment}"
    );
    let actions = incident["actions"].to_string();
    for step in [
        "propagate:kms",
        "propagate:kms-vault",
        "propagate:ci",
        "propagate:ci-prod",
        "propagate:cluster",
        "restart:cluster",
        "confirm:new",
    ] {
        assert!(actions.contains(step), "{step} in {actions}");
    }
    let alert = s.ws.sink("owner").join("\n");
    assert!(
        alert.contains("left alone: Vault")
            && alert.contains("tatum/other field api_key does not hold the leaked key"),
        "the alert says vault-other was left alone:\n{alert}"
    );
    // The new key works: Tatum confirmed it.
    assert!(s
        .ws
        .sim
        .calls()
        .iter()
        .any(|c| c["key_fingerprint"] == fp(&new).as_str() && c["status"] == 200));
    s.ws.assert_secrets_hidden(&[&s.key, &new, &s.other], &[&out]);
}

#[test]
fn a_consumer_that_cannot_be_written_fails_alone_and_is_retried() {
    let mut s = setup("one-fails");
    s.vault_token = s.bao.token_with_policy(
        "read-only",
        r#"path "secret/data/tatum/*" { capabilities = ["read"] }"#,
    );

    let first = s.scan();

    let new = s.new_key();
    let incident = s.ws.incident_by_fp(&s.key);
    assert_eq!(incident["state"], "failed", "{}", text(&first));
    let reason = incident["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("kms-vault (vault)"), "{reason}");
    assert!(
        reason.contains("lacks a policy allowing create and update on secret/data/tatum/kms"),
        "{reason}"
    );
    assert_eq!(s.bao.get("tatum/kms").1, 1, "Vault was not written");
    // The others got the new key all the same.
    assert_eq!(s.ws.read("kms/.env"), format!("TATUM_API_KEY={new}\n"));
    assert_eq!(
        s.k8s("/_sim/k8s/secrets/pay/tatum")["data"]["api-key"],
        new.as_str()
    );
    assert_eq!(
        s.actions_secret("acme/payments").unwrap()["value"],
        new.as_str()
    );

    // The owner grants the policy; the next pass finishes Vault only.
    s.vault_token = s.bao.root.clone();
    let second = s.scan();

    let incident = s.ws.incident_by_fp(&s.key);
    assert_eq!(incident["state"], "closed", "{}", text(&second));
    assert_eq!(s.bao.get("tatum/kms").0["api_key"], new.as_str());
    assert_eq!(
        s.ws.sim.tatum_key(&s.key)["regenerations"],
        1,
        "exactly one rotation"
    );
    assert_eq!(
        s.k8s("/_sim/k8s/secrets/pay/tatum")["writes"],
        1,
        "not written twice"
    );
    assert_eq!(
        s.k8s("/_sim/k8s/deployments/pay/kms")["patches"],
        1,
        "not restarted twice"
    );
    assert_eq!(s.actions_secret("acme/payments").unwrap()["writes"], 1);
    s.ws.assert_secrets_hidden(&[&s.key, &new, &s.other], &[&first, &second]);
}

/// The next `count` writes of the Kubernetes Secret find that someone else
/// wrote it first (with `data`, if given).
fn race(s: &Setup, body: Value) {
    let (status, v) =
        s.ws.sim
            .request("POST", "/_sim/k8s/secrets/pay/tatum/race", Some(&body));
    assert_eq!(status, 204, "{v}");
}

#[test]
fn a_kubernetes_conflict_is_read_again_and_retried() {
    let s = setup("conflict");
    // Another writer wins the race but leaves the leaked key in place.
    race(&s, json!({"count": 1}));

    let out = s.scan();

    let new = s.new_key();
    let secret = s.k8s("/_sim/k8s/secrets/pay/tatum");
    assert_eq!(secret["data"]["api-key"], new.as_str(), "{}", text(&out));
    assert_eq!(secret["writes"], 1);
    assert_eq!(s.ws.incident_by_fp(&s.key)["state"], "closed");
    s.ws.assert_secrets_hidden(&[&s.key, &new], &[&out]);
}

#[test]
fn a_secret_rotated_by_someone_else_mid_write_is_not_clobbered() {
    let s = setup("clobber");
    let theirs = tatum_key("someone-else");
    race(
        &s,
        json!({"count": 1, "data": {"api-key": theirs, "db": "postgres://kept"}}),
    );

    let out = s.scan();

    let new = s.new_key();
    let secret = s.k8s("/_sim/k8s/secrets/pay/tatum");
    assert_eq!(
        secret["data"]["api-key"],
        theirs.as_str(),
        "their key stays: {}",
        text(&out)
    );
    assert_eq!(secret["writes"], 0);
    assert_eq!(
        s.k8s("/_sim/k8s/deployments/pay/kms")["patches"],
        0,
        "nothing restarted"
    );
    let incident = s.ws.incident_by_fp(&s.key);
    assert_eq!(incident["state"], "failed");
    let reason = incident["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("cluster (kubernetes): someone else changed the key"),
        "{reason}"
    );
    assert_eq!(
        s.bao.get("tatum/kms").0["api_key"],
        new.as_str(),
        "the others are written"
    );
    s.ws.assert_secrets_hidden(&[&s.key, &new, &theirs], &[&out]);
}

#[test]
fn config_check_names_each_consumer_problem_and_its_fix() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "
providers:
  gitlab:
    consumers:
      - {name: deployer, vault: {addr: 'http://vault.example.invalid:8200', mount: secret, path: '../x', field: '', token_env: KS_UNSET_VAULT}}
  tatum:
    consumers:
      - {name: nothing}
      - {name: both, env_file: /etc/x.env, variable: K, kubernetes: {api_url: 'https://k8s.example.invalid', namespace: a, secret: b, key: c, token_env: T}}
      - {name: ci, github_actions: {repo: acme, org: acme, name: 1BAD, token_env: KS_UNSET_GH}}
      - {name: cluster, kubernetes: {api_url: 'not a url', namespace: '', secret: s, key: k}}
      - {name: unit, env_file: /etc/y.env, variable: K, restart_unit: 'a b'}
  aws:
    consumers:
      - {name: uploader, kubernetes: {api_url: 'https://k8s.example.invalid', namespace: a, secret: b, key: c, token_file: /dev/null}, secret_variable: AWS_SECRET_ACCESS_KEY}
";
    crate::support::write(dir.path(), "config.yaml", yaml);
    let out = crate::support::keysentry()
        .args(["config", "check"])
        .arg(dir.path().join("config.yaml"))
        .env_remove("KS_UNSET_VAULT")
        .env_remove("KS_UNSET_GH")
        .output()
        .unwrap();
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    for want in [
        "providers.gitlab.consumers[0].vault.addr: plain http:// to vault.example.invalid",
        "providers.gitlab.consumers[0].vault.path: must be a plain path",
        "providers.gitlab.consumers[0].vault.field: must not be empty",
        "providers.gitlab.consumers[0].vault.token_env: environment variable KS_UNSET_VAULT is not set",
        "providers.tatum.consumers[0]: names no place for the key",
        "providers.tatum.consumers[1]: names env_file and kubernetes places; give exactly one",
        "providers.tatum.consumers[2].github_actions: needs `repo: owner/name` (optionally with `environment`) or `org`, exactly one",
        "providers.tatum.consumers[2].github_actions.name: must be a GitHub secret name",
        "providers.tatum.consumers[2].github_actions.token_env: environment variable KS_UNSET_GH is not set",
        "providers.tatum.consumers[3].kubernetes.api_url: is not a valid URL",
        "providers.tatum.consumers[3].kubernetes.namespace: must not be empty",
        "providers.tatum.consumers[3].kubernetes: needs exactly one of `token_env` and `token_file`",
        "providers.tatum.consumers[4].restart_unit: must name one systemd unit",
        "providers.aws.consumers[0].secret_variable: is only read for an env_file consumer",
    ] {
        assert!(all.contains(want), "missing `{want}` in\n{all}");
    }
}

/// A pass-through proxy in front of OpenBao that, before forwarding the
/// first write of `tatum/kms`, has "someone else" write it: keysentry's
/// check-and-set then finds a newer version than the one it read.
fn racing_proxy(bao_host: String, theirs: serde_json::Value) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let mut armed = true;
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            // Headers, then Content-Length bytes of body.
            let (head_end, length) = loop {
                let Ok(n) = client.read(&mut chunk) else {
                    break (0, 0);
                };
                if n == 0 {
                    break (0, 0);
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0usize);
                    break (i + 4, len);
                }
            };
            if head_end == 0 {
                continue;
            }
            while buf.len() < head_end + length {
                let Ok(n) = client.read(&mut chunk) else {
                    break;
                };
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
            if armed && head.starts_with("POST /v1/secret/data/tatum/kms ") {
                armed = false;
                let token = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("x-vault-token:")
                            .map(|_| l[14..].trim().to_string())
                    })
                    .unwrap_or_default();
                let body = serde_json::json!({ "data": theirs }).to_string();
                let mut s = std::net::TcpStream::connect(&bao_host).unwrap();
                write!(s, "POST /v1/secret/data/tatum/kms HTTP/1.1\r\nHost: {bao_host}\r\nConnection: close\r\nX-Vault-Token: {token}\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
                let _ = s.read_to_end(&mut Vec::new());
            }
            // Forward with `Connection: close`, so the client opens a new
            // connection (to this proxy) for its next request.
            let mut lines: Vec<&str> = head
                .trim_end()
                .split("\r\n")
                .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
                .collect();
            lines.push("connection: close");
            let mut upstream = std::net::TcpStream::connect(&bao_host).unwrap();
            upstream
                .write_all(format!("{}\r\n\r\n", lines.join("\r\n")).as_bytes())
                .unwrap();
            upstream.write_all(&buf[head_end..]).unwrap();
            let mut answer = Vec::new();
            let _ = upstream.read_to_end(&mut answer);
            let _ = client.write_all(&answer);
        }
    });
    format!("http://{addr}")
}

fn host(addr: &str) -> String {
    addr.trim_start_matches("http://").to_string()
}

#[test]
fn a_vault_check_and_set_mismatch_is_read_again_and_keeps_the_other_change() {
    let key = tatum_key("cas-retry");
    let theirs = json!({"api_key": key, "password": "changed-meanwhile"});
    let s = setup_via("cas-retry", |bao| racing_proxy(host(&bao.addr), theirs));

    let out = s.scan();

    let new = s.new_key();
    let (data, version) = s.bao.get("tatum/kms");
    assert_eq!(
        version,
        3,
        "their version 2, then keysentry's 3: {}",
        text(&out)
    );
    assert_eq!(
        data,
        json!({"api_key": new, "password": "changed-meanwhile"}),
        "their change is kept"
    );
    assert_eq!(s.ws.incident_by_fp(&s.key)["state"], "closed");
    s.ws.assert_secrets_hidden(&[&s.key, &new], &[&out]);
}

#[test]
fn a_vault_secret_rotated_by_someone_else_mid_write_is_not_clobbered() {
    let theirs_key = tatum_key("vault-someone-else");
    let theirs = json!({"api_key": theirs_key, "password": "kept-as-is"});
    let s = setup_via("cas-clobber", |bao| racing_proxy(host(&bao.addr), theirs));

    let out = s.scan();

    let new = s.new_key();
    let (data, version) = s.bao.get("tatum/kms");
    assert_eq!(version, 2, "{}", text(&out));
    assert_eq!(data["api_key"], theirs_key.as_str(), "their key stays");
    let incident = s.ws.incident_by_fp(&s.key);
    assert_eq!(incident["state"], "failed");
    let reason = incident["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("kms-vault (vault): someone else changed the key"),
        "{reason}"
    );
    assert_eq!(
        s.ws.read("kms/.env"),
        format!("TATUM_API_KEY={new}\n"),
        "the others are written"
    );
    s.ws.assert_secrets_hidden(&[&s.key, &new, &theirs_key], &[&out]);
}

#[test]
fn a_refusal_that_echoes_the_new_key_is_reported_without_it() {
    let s = setup("k8s-403");
    // May read but not update: the API server's 403 (like a verbose
    // admission webhook's) quotes the data sent, the new key included.
    let (status, v) = s.ws.sim.request(
        "POST",
        "/_sim/k8s/tokens",
        Some(&json!({"token": K8S_TOKEN, "verbs": ["get", "patch"]})),
    );
    assert_eq!(status, 204, "{v}");

    let out = s.scan();

    let new = s.new_key();
    let incident = s.ws.incident_by_fp(&s.key);
    assert_eq!(incident["state"], "failed", "{}", text(&out));
    let reason = incident["reason"].as_str().unwrap_or_default();
    assert!(
        reason
            .contains("cluster (kubernetes): the API server answered 403 (Forbidden) to the write"),
        "{reason}"
    );
    assert!(
        reason.contains("may not update secret tatum in namespace pay"),
        "{reason}"
    );
    assert_eq!(
        s.k8s("/_sim/k8s/secrets/pay/tatum")["data"]["api-key"],
        s.key.as_str()
    );
    assert_eq!(
        s.bao.get("tatum/kms").0["api_key"],
        new.as_str(),
        "the others are written"
    );
    s.ws.assert_secrets_hidden(&[&s.key, &new, &s.other], &[&out]);
}

#[test]
fn restart_unit_runs_systemctl_try_restart_once() {
    let ws = Workspace::new();
    let key = tatum_key("unit");
    ws.sim.add_tatum_key(&key, true, 0, 0);
    ws.write("tree/leak.env", &format!("TATUM_API_KEY={key}\n"));
    ws.write("kms/.env", &format!("TATUM_API_KEY={key}\n"));
    // systemd is not PID 1 here: a `systemctl` first on PATH records its argv.
    let bin = ws.write(
        "bin/systemctl",
        &format!(
            "#!/bin/sh\necho \"$@\" >> {}/systemctl.log\n",
            ws.dir.path().display()
        ),
    );
    super::harness::set_mode(&bin, 0o755);
    let config = CONFIG
        .split("      - name: kms-vault")
        .next()
        .unwrap_or_default()
        .replace(
            "variable: TATUM_API_KEY}",
            "variable: TATUM_API_KEY, restart_unit: tatum-kms.service}",
        );
    ws.config(&config);
    let path = format!(
        "{}:{}",
        ws.path("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let out = crate::support::keysentry()
        .current_dir(ws.dir.path())
        .env("PATH", path)
        .args(ws.scan_args())
        .output()
        .unwrap();

    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(ws.read("systemctl.log"), "try-restart tatum-kms.service\n");
    let incident = ws.incident_by_fp(&key);
    assert_eq!(incident["state"], "closed", "{}", text(&out));
    let (_, shown) = ws.show(&incident["id"]);
    assert!(
        shown.contains("restart:kms: ok — run `systemctl try-restart tatum-kms.service`"),
        "{shown}"
    );
}
