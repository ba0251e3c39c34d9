//! GitHub webhook: signed, real-shaped deliveries through the router
//! (in-process, `oneshot`) against the GitHub simulator (`keysentry-sim`).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::Router;
use keysentry::config::Config;
use keysentry::github::{
    BoxFuture, FindingSink, GitHubWebhook, Handled, SinkError, WebhookSecret, WebhookSettings,
};
use keysentry::remediate::Engine;
use keysentry::rules::RuleSet;
use keysentry::scan::{Allowlist, Finding, Fingerprint, Scanner};
use keysentry::store::webhook::DeliveryStore;
use keysentry::store::{IncidentRow, Store};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::future::Future;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tower::ServiceExt;

const SECRET: &str = "webhook-secret-for-tests";
const PATH: &str = "/github/webhook";
const ZERO: &str = "0000000000000000000000000000000000000000";
const RULES: &str = r#"
rules:
  - id: tatum.api-key
    name: Tatum API key
    provider: tatum
    keywords: ["t-"]
    pattern: '\b(?P<secret>t-[0-9a-f]{24}-[0-9a-f]{24})\b'
    min_entropy: 3.0
"#;

/// A distinct, valid-looking Tatum key per `n`.
fn key(n: u32) -> String {
    let h: String = Sha256::digest(format!("key{n}"))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t-{}-{}", &h[..24], &h[24..48])
}

/// The GitHub simulator, killed on drop.
struct Sim {
    child: std::process::Child,
    url: String,
    http: reqwest::Client,
}

impl Sim {
    fn start() -> Sim {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_keysentry-sim"))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("start keysentry-sim");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("sim stdout");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("sim prints its address");
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .expect("listening line")
            .to_string();
        Sim {
            child,
            url,
            http: reqwest::Client::new(),
        }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let res = self
            .http
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .expect("sim reachable");
        assert!(res.status().is_success(), "sim {path}: {}", res.status());
        res.json().await.unwrap_or(Value::Null)
    }

    async fn get(&self, path: &str) -> Vec<Value> {
        let res = self.http.get(format!("{}{path}", self.url)).send().await;
        let v: Value = res.expect("sim reachable").json().await.expect("json");
        v.as_array().cloned().unwrap_or_default()
    }

    /// API calls whose path contains `part`, as (method, path, status).
    async fn calls(&self, part: &str) -> Vec<(String, String, u64)> {
        self.get("/_sim/github/calls")
            .await
            .into_iter()
            .filter(|c| c["path"].as_str().is_some_and(|p| p.contains(part)))
            .map(|c| {
                (
                    c["method"].as_str().unwrap_or("").to_string(),
                    c["path"].as_str().unwrap_or("").to_string(),
                    c["status"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    }

    /// Makes `key` a live key at the simulated Tatum.
    async fn tatum_key(&self, key: &str) {
        let res = self
            .http
            .post(format!("{}/_sim/tatum/keys", self.url))
            .json(&json!({"key": key, "testnet": false, "subscriptions": 0, "accounts": 0}))
            .send()
            .await
            .expect("sim reachable");
        assert!(res.status().is_success());
    }

    /// Containment calls (`PUT /v3/tatum/freeze`) that carried `key`.
    async fn freezes(&self, key: &str) -> usize {
        let fp = Fingerprint::of(key.as_bytes()).to_string();
        self.get("/_sim/calls")
            .await
            .iter()
            .filter(|c| c["method"] == "PUT" && c["path"] == "/v3/tatum/freeze")
            .filter(|c| c["key_fingerprint"] == fp.as_str())
            .count()
    }

    async fn all_freezes(&self) -> usize {
        self.get("/_sim/calls")
            .await
            .iter()
            .filter(|c| c["method"] == "PUT" && c["path"] == "/v3/tatum/freeze")
            .count()
    }

    async fn repo(&self, repo: &str) {
        self.post(
            "/_sim/github/repos",
            json!({"repo": repo, "default_branch": "main"}),
        )
        .await;
    }

    /// A commit by `email` on top of `parent` setting `files`; returns its sha.
    async fn commit(&self, repo: &str, parent: Option<&str>, email: &str, files: Value) -> String {
        self.commit_with(
            json!({"repo": repo, "parent": parent, "files": files, "message": "change",
                   "author": {"name": "Dev", "email": email, "date": "2024-05-01T10:00:00Z"}}),
        )
        .await
    }

    async fn commit_with(&self, body: Value) -> String {
        let v = self.post("/_sim/github/commits", body).await;
        v["sha"].as_str().expect("sha").to_string()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Stands in for the remediation engine: records what it is given.
#[derive(Default)]
struct Collect {
    seen: Mutex<Vec<(Finding, Option<String>)>>,
}

impl Collect {
    fn findings(&self) -> Vec<(Finding, Option<String>)> {
        self.seen.lock().unwrap().clone()
    }
    fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

impl FindingSink for Collect {
    fn process(
        &self,
        findings: Vec<Finding>,
        fallback_owner: Option<String>,
    ) -> BoxFuture<'_, Result<Vec<Handled>, SinkError>> {
        Box::pin(async move {
            let handled = findings
                .iter()
                .map(|f| Handled {
                    fingerprint: f.fingerprint.clone(),
                    contained: true,
                })
                .collect();
            let mut seen = self.seen.lock().unwrap();
            seen.extend(findings.into_iter().map(|f| (f, fallback_owner.clone())));
            Ok(handled)
        })
    }
}

struct Hook {
    router: Router,
    sink: Arc<Collect>,
    store: Arc<DeliveryStore>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    worker: Option<tokio::task::JoinHandle<()>>,
}

struct Opts {
    comment: bool,
    max_body: usize,
    run_worker: bool,
    /// More YAML under `github:`.
    github: String,
    /// The real remediation engine behind the webhook (Tatum freeze policy,
    /// against the simulator) instead of a collector.
    engine: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            comment: false,
            max_body: 25 << 20,
            run_worker: true,
            github: String::new(),
            engine: false,
        }
    }
}

const ENGINE: &str = "state_dir: {state}
remediation:
  mode: auto
  policy: {tatum: freeze}
  backoff_ms: 10
  max_attempts: 3
  rate_limit: 1000
providers:
  tatum:
    api_url: {sim}
";

async fn hook(sim: &Sim, state: &Path, opts: Opts) -> Hook {
    let mut yaml = format!("github:\n  api_url: {}\n{}", sim.url, opts.github);
    if opts.engine {
        yaml.push_str(
            &ENGINE
                .replace("{state}", &state.display().to_string())
                .replace("{sim}", &sim.url),
        );
    }
    let config = Config::parse(Path::new("test.yaml"), &yaml).unwrap();
    let mut rules = RuleSet::default();
    rules.add_file(Path::new("test.yaml"), RULES).unwrap();
    let scanner = Arc::new(Scanner::new(&rules, Allowlist::default()).unwrap());
    let settings = WebhookSettings {
        path: PATH.into(),
        secret: WebhookSecret::new(SECRET),
        max_body: opts.max_body,
        comment: opts.comment,
        max_file_size: 20 << 20,
        concurrency: 8,
    };
    let store = Arc::new(DeliveryStore::open(state).unwrap());
    let collect = Arc::new(Collect::default());
    let sink: Arc<dyn FindingSink> = if opts.engine {
        Arc::new(Engine::open_with_rules(&config, rules).unwrap())
    } else {
        collect.clone()
    };
    let remediable: HashSet<String> = ["tatum".to_string()].into();
    let gh =
        GitHubWebhook::new(&config, settings, store.clone(), scanner, remediable, sink).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let worker = opts.run_worker.then(|| {
        tokio::spawn(gh.worker.run(async {
            let _ = rx.await;
        }))
    });
    Hook {
        router: gh.router,
        sink: collect,
        store,
        stop: Some(tx),
        worker,
    }
}

impl Hook {
    async fn send(&self, req: Request<Body>) -> (StatusCode, Value) {
        let res = self.router.clone().oneshot(req).await.unwrap();
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(w) = self.worker.take() {
            let _ = w.await;
        }
    }
}

fn signed(event: &str, id: &str, body: &Value) -> Request<Body> {
    let bytes = serde_json::to_vec(body).unwrap();
    request(
        event,
        id,
        "application/json",
        &WebhookSecret::new(SECRET).sign(&bytes),
        bytes,
    )
}

fn request(event: &str, id: &str, content_type: &str, sig: &str, body: Vec<u8>) -> Request<Body> {
    Request::post(PATH)
        .header("content-type", content_type)
        .header("user-agent", "GitHub-Hookshot/abc123")
        .header("x-github-event", event)
        .header("x-github-delivery", id)
        .header("x-github-hook-id", "1")
        .header("x-hub-signature-256", sig)
        .header("content-length", body.len())
        .body(Body::from(body))
        .unwrap()
}

/// The documented push payload shape.
fn push(repo: &str, git_ref: &str, before: &str, after: &str, commits: &[(&str, &str)]) -> Value {
    let (owner, name) = repo.split_once('/').unwrap();
    let commit = |(id, email): &(&str, &str)| {
        json!({
            "id": id, "tree_id": "f".repeat(40), "distinct": true,
            "message": "update config", "timestamp": "2024-05-01T10:00:00Z",
            "url": format!("https://github.com/{repo}/commit/{id}"),
            "author": {"name": "Dev", "email": email, "username": "dev"},
            "committer": {"name": "Dev", "email": email, "username": "dev"},
            "added": [], "removed": [], "modified": []
        })
    };
    let commits: Vec<Value> = commits.iter().map(commit).collect();
    json!({
        "ref": git_ref, "before": before, "after": after,
        "created": before == ZERO, "deleted": after == ZERO, "forced": false,
        "base_ref": null, "compare": format!("https://github.com/{repo}/compare/x...y"),
        "head_commit": commits.last().cloned(),
        "commits": commits,
        "repository": {
            "id": 1, "node_id": "R_1", "name": name, "full_name": repo, "private": true,
            "owner": {"login": owner, "name": owner, "email": null},
            "default_branch": "main", "master_branch": "main"
        },
        "pusher": {"name": "pusher", "email": "pusher@example.com"},
        "sender": {"login": "pusher", "id": 7, "type": "User"}
    })
}

/// Polls `check` until it holds, failing after 30 s.
async fn until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The incidents the engine recorded.
fn incidents(state: &Path) -> Vec<IncidentRow> {
    Store::open(state).unwrap().incidents().unwrap()
}

/// The state directory (the store is `keysentry.db` in it).
fn db(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().to_path_buf()
}

/// A repo with one commit on main; returns its sha.
async fn repo_with_base(sim: &Sim, repo: &str) -> String {
    sim.repo(repo).await;
    sim.commit_with(
        json!({"repo": repo, "branch": "main", "files": {"README.md": "hello\n"},
                           "author": {"name": "Dev", "email": "dev@example.com"}}),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_with_a_key_reaches_the_engine_attributed_to_its_line() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let base = repo_with_base(&sim, "acme/app").await;
    let env = format!("# staging\nNODE_ENV=staging\nTATUM_API_KEY={}\n", key(1));
    let head = sim
        .commit(
            "acme/app",
            Some(&base),
            "alice@example.com",
            json!({"config/.env": env}),
        )
        .await;
    let h = hook(&sim, &db(&dir), Opts::default()).await;
    let payload = push(
        "acme/app",
        "refs/heads/main",
        &base,
        &head,
        &[(&head, "alice@example.com")],
    );
    let (status, body) = h.send(signed("push", "d-1", &payload)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["status"], "queued");

    until("the finding", || async { h.sink.count() == 1 }).await;
    let (f, fallback) = h.sink.findings().remove(0);
    assert_eq!(f.origin.kind(), "github");
    assert_eq!(f.origin.repo(), Some("acme/app"));
    assert_eq!(f.origin.commit(), Some(head.as_str()));
    assert_eq!(f.origin.author_email(), Some("alice@example.com"));
    assert_eq!(f.origin.path(), "config/.env");
    assert_eq!((f.line, f.column), (3, 15));
    assert_eq!(f.secret.expose(), key(1));
    assert_eq!(fallback.as_deref(), Some("pusher@example.com"));
    assert_eq!(
        sim.calls("/compare/").await,
        [(
            "GET".into(),
            format!("/repos/acme/app/compare/{base}...{head}"),
            200
        )]
    );
    until("the delivery marked done", || async {
        h.store
            .status("d-1")
            .unwrap()
            .is_some_and(|s| s.state == "done")
    })
    .await;
    h.shutdown().await;
    for file in ["keysentry.db", "keysentry.db-wal"] {
        let bytes = std::fs::read(dir.path().join(file)).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains(&key(1)), "the key is in {file}");
        assert!(!text.contains(SECRET), "the webhook secret is in {file}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_key_is_one_incident_and_one_containment_call_even_when_replayed() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let base = repo_with_base(&sim, "acme/app").await;
    sim.tatum_key(&key(20)).await;
    let env = format!("NODE_ENV=production\nTATUM_API_KEY={}\n", key(20));
    let head = sim
        .commit(
            "acme/app",
            Some(&base),
            "alice@example.com",
            json!({"deploy/.env": env}),
        )
        .await;
    let opts = Opts {
        engine: true,
        ..Opts::default()
    };
    let h = hook(&sim, &db(&dir), opts).await;
    let payload = push(
        "acme/app",
        "refs/heads/main",
        &base,
        &head,
        &[(&head, "alice@example.com")],
    );
    assert_eq!(
        h.send(signed("push", "e-1", &payload)).await.0,
        StatusCode::ACCEPTED
    );
    until("the containment call", || async {
        sim.freezes(&key(20)).await == 1
    })
    .await;
    until("the delivery done", || async {
        h.store
            .status("e-1")
            .unwrap()
            .is_some_and(|s| s.state == "done")
    })
    .await;
    // GitHub redelivers the same id, and an org hook delivers the push again.
    let (status, body) = h.send(signed("push", "e-1", &payload)).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::ACCEPTED, Some("duplicate"))
    );
    assert_eq!(
        h.send(signed("push", "e-2", &payload)).await.0,
        StatusCode::ACCEPTED
    );
    until("the second delivery done", || async {
        h.store
            .status("e-2")
            .unwrap()
            .is_some_and(|s| s.state == "done")
    })
    .await;
    h.shutdown().await;

    assert_eq!(sim.all_freezes().await, 1, "one containment call in all");
    let incidents = incidents(&db(&dir));
    assert_eq!(incidents.len(), 1);
    let incident = &incidents[0];
    assert_eq!(
        incident.fingerprint,
        Fingerprint::of(key(20).as_bytes()).as_str()
    );
    assert_eq!(incident.state, "contained");
    assert_eq!(incident.owner.as_deref(), Some("alice@example.com"));
    let store = Store::open(&db(&dir)).unwrap();
    let locations = store.locations(incident.id).unwrap();
    assert_eq!(locations.len(), 1);
    let l = &locations[0];
    assert_eq!(
        (
            l.source.as_str(),
            l.path.as_str(),
            l.line,
            l.repo.as_deref(),
            l.commit.as_deref()
        ),
        (
            "github",
            "deploy/.env",
            2,
            Some("acme/app"),
            Some(head.as_str())
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_or_missing_signature_is_401_and_calls_nothing() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let base = repo_with_base(&sim, "acme/app").await;
    let head = sim
        .commit(
            "acme/app",
            Some(&base),
            "a@example.com",
            json!({".env": key(2)}),
        )
        .await;
    let h = hook(&sim, &db(&dir), Opts::default()).await;
    let payload = push(
        "acme/app",
        "refs/heads/main",
        &base,
        &head,
        &[(&head, "a@example.com")],
    );
    let bytes = serde_json::to_vec(&payload).unwrap();
    let wrong = WebhookSecret::new("not-the-secret").sign(&bytes);
    let mut tampered = bytes.clone();
    tampered.extend_from_slice(b" ");
    let good_sig = WebhookSecret::new(SECRET).sign(&bytes);
    for (sig, body) in [
        (wrong.as_str(), bytes.clone()),
        ("", bytes.clone()),
        ("sha256=zz", bytes.clone()),
        (good_sig.as_str(), tampered),
    ] {
        let (status, _) = h
            .send(request("push", "d-bad", "application/json", sig, body))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "signature {sig:?}");
    }
    let (status, _) = h
        .send(request(
            "push",
            "d-bad",
            "text/plain",
            "",
            b"not json".to_vec(),
        ))
        .await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "unsigned comes before 415"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sim.calls("/repos/").await.is_empty());
    assert!(h.store.counts().unwrap().is_empty(), "nothing stored");
    assert_eq!(h.sink.count(), 0);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_delivery_is_acknowledged_and_not_processed_again() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let base = repo_with_base(&sim, "acme/app").await;
    let head = sim
        .commit(
            "acme/app",
            Some(&base),
            "a@example.com",
            json!({".env": key(3)}),
        )
        .await;
    let h = hook(&sim, &db(&dir), Opts::default()).await;
    let payload = push(
        "acme/app",
        "refs/heads/main",
        &base,
        &head,
        &[(&head, "a@example.com")],
    );
    assert_eq!(
        h.send(signed("push", "d-replay", &payload)).await.0,
        StatusCode::ACCEPTED
    );
    until("processing", || async {
        h.store
            .status("d-replay")
            .unwrap()
            .is_some_and(|s| s.state == "done")
    })
    .await;
    let (status, body) = h.send(signed("push", "d-replay", &payload)).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::ACCEPTED, Some("duplicate"))
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(h.sink.count(), 1);
    assert_eq!(sim.calls("/compare/").await.len(), 1);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_branch_is_compared_with_the_default_branch() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let base = repo_with_base(&sim, "acme/app").await;
    let c1 = sim
        .commit(
            "acme/app",
            Some(&base),
            "bob@example.com",
            json!({"src/app.js": "let x = 1;\n"}),
        )
        .await;
    let c2 = sim
        .commit(
            "acme/app",
            Some(&c1),
            "bob@example.com",
            json!({"src/app.js": format!("let x = 1;\nconst k = '{}';\n", key(4))}),
        )
        .await;
    let h = hook(&sim, &db(&dir), Opts::default()).await;
    let payload = push(
        "acme/app",
        "refs/heads/feature/new",
        ZERO,
        &c2,
        &[(&c1, "bob@example.com"), (&c2, "bob@example.com")],
    );
    assert_eq!(
        h.send(signed("push", "d-new", &payload)).await.0,
        StatusCode::ACCEPTED
    );
    until("the finding", || async { h.sink.count() == 1 }).await;
    let (f, _) = h.sink.findings().remove(0);
    assert_eq!((f.origin.path(), f.line), ("src/app.js".to_string(), 2));
    assert_eq!(
        f.origin.commit(),
        Some(c2.as_str()),
        "the commit that added the line"
    );
    let compares = sim.calls("/compare/").await;
    assert_eq!(compares.len(), 1);
    assert!(
        compares[0].1.ends_with(&format!("/compare/main...{c2}")),
        "{compares:?}"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repositorys_first_push_walks_the_listed_commits() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    sim.repo("acme/fresh").await;
    let c1 = sim
        .commit(
            "acme/fresh",
            None,
            "carol@example.com",
            json!({"deploy.sh": format!("export TATUM_API_KEY={}\n", key(5))}),
        )
        .await;
    let h = hook(&sim, &db(&dir), Opts::default()).await;
    let payload = push(
        "acme/fresh",
        "refs/heads/main",
        ZERO,
        &c1,
        &[(&c1, "carol@example.com")],
    );
    assert_eq!(
        h.send(signed("push", "d-first", &payload)).await.0,
        StatusCode::ACCEPTED
    );
    until("the finding", || async { h.sink.count() == 1 }).await;
    let (f, _) = h.sink.findings().remove(0);
    assert_eq!(f.origin.author_email(), Some("carol@example.com"));
    assert_eq!(f.origin.commit(), Some(c1.as_str()));
    assert!(sim.calls("/compare/").await.is_empty());
    assert_eq!(sim.calls(&format!("/commits/{c1}")).await.len(), 1);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_branch_is_ignored() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let h = hook(&sim, &db(&dir), Opts::default()).await;
    let payload = push("acme/app", "refs/heads/old", &"a".repeat(40), ZERO, &[]);
    let (status, body) = h.send(signed("push", "d-del", &payload)).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::ACCEPTED, Some("ignored"))
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sim.calls("/repos/").await.is_empty());
    assert!(h.store.counts().unwrap().is_empty());
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_non_json_ping_and_unhandled_events() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let h = hook(&sim, &db(&dir), Opts::default()).await;
    // 25 MiB + 1: refused by Content-Length, before reading or checking.
    let big = vec![b' '; (25 << 20) + 1];
    let (status, body) = h
        .send(request("push", "d-big", "application/json", "", big))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");

    let form = b"payload=%7B%7D".to_vec();
    let sig = WebhookSecret::new(SECRET).sign(&form);
    let (status, body) = h
        .send(request(
            "push",
            "d-form",
            "application/x-www-form-urlencoded",
            &sig,
            form,
        ))
        .await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(body["error"].as_str().unwrap().contains("application/json"));

    let ping =
        json!({"zen": "Keep it logically awesome.", "hook_id": 1, "hook": {"type": "Repository"}});
    assert_eq!(
        h.send(signed("ping", "d-ping", &ping)).await.0,
        StatusCode::OK
    );
    let issue = json!({"action": "opened", "issue": {"number": 1}});
    let (status, body) = h.send(signed("issues", "d-issue", &issue)).await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::ACCEPTED, Some("ignored"))
    );
    assert!(h.store.counts().unwrap().is_empty());
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_body_over_the_limit_is_413() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let opts = Opts {
        max_body: 1024,
        ..Opts::default()
    };
    let h = hook(&sim, &db(&dir), opts).await;
    let body = vec![b'x'; 4096];
    let sig = WebhookSecret::new(SECRET).sign(&body);
    let req = Request::post(PATH)
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("x-github-delivery", "d-stream")
        .header("x-hub-signature-256", sig)
        .body(Body::from(body))
        .unwrap();
    assert_eq!(h.send(req).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_deliveries_are_each_processed_exactly_once() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let base = repo_with_base(&sim, "acme/app").await;
    let mut heads = Vec::new();
    for i in 0..100 {
        sim.tatum_key(&key(100 + i)).await;
        let file = format!("svc{i}/.env");
        let head = sim
            .commit(
                "acme/app",
                Some(&base),
                "dev@example.com",
                json!({ file: format!("KEY={}\n", key(100 + i)) }),
            )
            .await;
        heads.push(head);
    }
    let opts = Opts {
        engine: true,
        ..Opts::default()
    };
    let h = hook(&sim, &db(&dir), opts).await;
    let mut sends = tokio::task::JoinSet::new();
    // Every delivery twice, all at once: GitHub retries while we work.
    for _round in 0..2 {
        for (i, head) in heads.iter().enumerate() {
            let payload = push(
                "acme/app",
                &format!("refs/heads/b{i}"),
                &base,
                head,
                &[(head, "dev@example.com")],
            );
            let req = signed("push", &format!("d-{i}"), &payload);
            let router = h.router.clone();
            sends.spawn(async move { router.oneshot(req).await.unwrap().status() });
        }
    }
    while let Some(status) = sends.join_next().await {
        assert_eq!(status.unwrap(), StatusCode::ACCEPTED);
    }
    until("100 deliveries done", || async {
        h.store.counts().unwrap().get("done") == Some(&100)
    })
    .await;
    h.shutdown().await;
    assert_eq!(
        sim.calls("/compare/").await.len(),
        100,
        "each delivery fetched once"
    );
    assert_eq!(sim.all_freezes().await, 100, "one containment call per key");
    for i in [0, 37, 99] {
        assert_eq!(sim.freezes(&key(100 + i)).await, 1);
    }
    assert_eq!(incidents(&db(&dir)).len(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_finishes_the_pending_deliveries() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let base = repo_with_base(&sim, "acme/app").await;
    let before = hook(
        &sim,
        &db(&dir),
        Opts {
            run_worker: false,
            ..Opts::default()
        },
    )
    .await;
    for i in 0..3 {
        let head = sim
            .commit(
                "acme/app",
                Some(&base),
                "dev@example.com",
                json!({ "k.env": key(300 + i) }),
            )
            .await;
        let payload = push(
            "acme/app",
            "refs/heads/main",
            &base,
            &head,
            &[(&head, "dev@example.com")],
        );
        let (status, _) = before
            .send(signed("push", &format!("p-{i}"), &payload))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED);
    }
    assert_eq!(before.store.counts().unwrap().get("pending"), Some(&3));
    drop(before);

    let after = hook(&sim, &db(&dir), Opts::default()).await;
    until("3 findings after the restart", || async {
        after.sink.count() == 3
    })
    .await;
    until("3 done", || async {
        after.store.counts().unwrap().get("done") == Some(&3)
    })
    .await;
    after.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_and_outages_delay_a_delivery_but_never_drop_it() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let base = repo_with_base(&sim, "acme/app").await;
    let head = sim
        .commit(
            "acme/app",
            Some(&base),
            "a@example.com",
            json!({".env": key(6)}),
        )
        .await;
    sim.post(
        "/_sim/github/faults",
        json!({"path_contains": "/compare/", "status": 502, "count": 1}),
    )
    .await;
    sim.post(
        "/_sim/github/faults",
        json!({"path_contains": "/compare/", "status": 429, "count": 1, "retry_after": 1}),
    )
    .await;
    sim.post(
        "/_sim/github/faults",
        json!({"path_contains": "/compare/", "status": 403, "count": 1, "reset_in": 1}),
    )
    .await;
    let h = hook(&sim, &db(&dir), Opts::default()).await;
    let payload = push(
        "acme/app",
        "refs/heads/main",
        &base,
        &head,
        &[(&head, "a@example.com")],
    );
    assert_eq!(
        h.send(signed("push", "d-limited", &payload)).await.0,
        StatusCode::ACCEPTED
    );
    until("a pending retry after the rate limit", || async {
        h.store.status("d-limited").unwrap().is_some_and(|s| {
            s.state == "pending" && s.last_error.is_some_and(|e| e.contains("rate limit"))
        })
    })
    .await;
    until("the finding", || async { h.sink.count() == 1 }).await;
    let statuses: Vec<u64> = sim.calls("/compare/").await.iter().map(|c| c.2).collect();
    assert_eq!(statuses, [502, 429, 403, 200]);
    until("done", || async {
        h.store
            .status("d-limited")
            .unwrap()
            .is_some_and(|s| s.state == "done" && s.attempts == 4)
    })
    .await;
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_whose_patch_github_omits_is_scanned_as_a_blob() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let base = repo_with_base(&sim, "acme/app").await;
    let mut big: String = (1..40).map(|i| format!("line {i}\n")).collect();
    big.push_str(&format!("api_key: {}\n", key(7)));
    let head = sim
        .commit_with(
            json!({"repo": "acme/app", "parent": base, "files": {"data/big.yaml": big},
                            "too_large": ["data/big.yaml"],
                            "author": {"name": "D", "email": "d@example.com"}}),
        )
        .await;
    let h = hook(&sim, &db(&dir), Opts::default()).await;
    let payload = push(
        "acme/app",
        "refs/heads/main",
        &base,
        &head,
        &[(&head, "d@example.com")],
    );
    assert_eq!(
        h.send(signed("push", "d-big", &payload)).await.0,
        StatusCode::ACCEPTED
    );
    until("the finding", || async { h.sink.count() == 1 }).await;
    let (f, _) = h.sink.findings().remove(0);
    assert_eq!((f.origin.path(), f.line), ("data/big.yaml".to_string(), 40));
    assert_eq!(sim.calls("/git/blobs/").await.len(), 1);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_added_lines_count_and_each_is_attributed_to_its_commit() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    sim.repo("acme/app").await;
    // A key already on main (line 1) must not be reported again.
    let old = format!("OLD={}\nA=1\n", key(8));
    let base = sim
        .commit("acme/app", None, "old@example.com", json!({".env": old}))
        .await;
    let c1 = sim
        .commit(
            "acme/app",
            Some(&base),
            "alice@example.com",
            json!({"README.md": "docs\n"}),
        )
        .await;
    let new = format!("OLD={}\nA=1\nNEW={}\n", key(8), key(9));
    let c2 = sim
        .commit(
            "acme/app",
            Some(&c1),
            "bob@example.com",
            json!({".env": new}),
        )
        .await;
    let h = hook(&sim, &db(&dir), Opts::default()).await;
    let payload = push(
        "acme/app",
        "refs/heads/main",
        &base,
        &c2,
        &[(&c1, "alice@example.com"), (&c2, "bob@example.com")],
    );
    assert_eq!(
        h.send(signed("push", "d-two", &payload)).await.0,
        StatusCode::ACCEPTED
    );
    until("processing", || async {
        h.store
            .status("d-two")
            .unwrap()
            .is_some_and(|s| s.state == "done")
    })
    .await;
    let found = h.sink.findings();
    assert_eq!(found.len(), 1, "only the added key");
    let f = &found[0].0;
    assert_eq!(f.secret.expose(), key(9));
    assert_eq!(f.line, 3);
    assert_eq!(f.origin.commit(), Some(c2.as_str()));
    assert_eq!(f.origin.author_email(), Some("bob@example.com"));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_commit_gets_one_comment_naming_file_and_line_never_the_key() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let base = repo_with_base(&sim, "acme/app").await;
    let head = sim
        .commit(
            "acme/app",
            Some(&base),
            "a@example.com",
            json!({"cfg/prod.env": format!("X=1\nK={}\n", key(10))}),
        )
        .await;
    let opts = Opts {
        comment: true,
        ..Opts::default()
    };
    let h = hook(&sim, &db(&dir), opts).await;
    let payload = push(
        "acme/app",
        "refs/heads/main",
        &base,
        &head,
        &[(&head, "a@example.com")],
    );
    // The same push delivered under two ids (e.g. a repo and an org hook).
    for id in ["d-c1", "d-c2"] {
        assert_eq!(
            h.send(signed("push", id, &payload)).await.0,
            StatusCode::ACCEPTED
        );
        until("processing", || async {
            h.store
                .status(id)
                .unwrap()
                .is_some_and(|s| s.state == "done")
        })
        .await;
    }
    let comments = sim.get("/_sim/github/comments").await;
    assert_eq!(comments.len(), 1, "{comments:?}");
    let body = comments[0]["body"].as_str().unwrap();
    assert_eq!(comments[0]["commit_id"], head.as_str());
    assert!(
        body.contains("`cfg/prod.env`") && body.contains("line 2"),
        "{body}"
    );
    assert!(body.contains("contained"), "{body}");
    assert!(
        !body.contains(&key(10)[2..12]),
        "the comment shows the key: {body}"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_scanning_alerts_feed_the_engine_with_the_fetched_secret() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    sim.repo("acme/app").await;
    sim.post(
        "/_sim/github/alerts",
        json!({"repo": "acme/app", "number": 5, "secret_type": "tatum_api_key",
               "secret": key(11), "path": "ops/env.sh", "line": 12, "commit": "c".repeat(40)}),
    )
    .await;
    let h = hook(&sim, &db(&dir), Opts::default()).await;
    let alert = |action: &str, number: u64, secret_type: &str| {
        json!({
            "action": action,
            "alert": {"number": number, "secret_type": secret_type, "state": "open",
                      "secret_type_display_name": secret_type, "created_at": "2024-05-01T10:00:00Z"},
            "repository": {"full_name": "acme/app", "name": "app", "owner": {"login": "acme"}},
            "sender": {"login": "github"}
        })
    };
    let (status, body) = h
        .send(signed(
            "secret_scanning_alert",
            "s-other",
            &alert("created", 6, "azure_storage_account_key"),
        ))
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::ACCEPTED, Some("ignored"))
    );
    let (status, body) = h
        .send(signed(
            "secret_scanning_alert",
            "s-resolved",
            &alert("resolved", 5, "tatum_api_key"),
        ))
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::ACCEPTED, Some("ignored"))
    );
    let (status, body) = h
        .send(signed(
            "secret_scanning_alert",
            "s-1",
            &alert("created", 5, "tatum_api_key"),
        ))
        .await;
    assert_eq!(
        (status, body["status"].as_str()),
        (StatusCode::ACCEPTED, Some("queued"))
    );
    until("the finding", || async { h.sink.count() == 1 }).await;
    let (f, _) = h.sink.findings().remove(0);
    assert_eq!(f.secret.expose(), key(11));
    assert_eq!(&*f.rule_id, "tatum.api-key");
    assert_eq!((f.origin.path(), f.line), ("ops/env.sh".to_string(), 12));
    assert_eq!(sim.calls("/secret-scanning/alerts/5").await.len(), 2);
    assert!(sim.calls("/alerts/6").await.is_empty());
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_app_signs_a_jwt_and_uses_an_installation_token() {
    use rsa::pkcs1::{EncodeRsaPrivateKey, LineEnding};
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let key_path = dir.path().join("app.pem");
    let rsa_key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).unwrap();
    std::fs::write(
        &key_path,
        rsa_key.to_pkcs1_pem(LineEnding::LF).unwrap().as_bytes(),
    )
    .unwrap();
    let base = repo_with_base(&sim, "acme/app").await;
    let head = sim
        .commit(
            "acme/app",
            Some(&base),
            "a@example.com",
            json!({".env": key(12)}),
        )
        .await;
    let opts = Opts {
        github: format!(
            "  app:\n    app_id: 4242\n    private_key_path: {}\n",
            key_path.display()
        ),
        ..Opts::default()
    };
    let h = hook(&sim, &db(&dir), opts).await;
    let mut payload = push(
        "acme/app",
        "refs/heads/main",
        &base,
        &head,
        &[(&head, "a@example.com")],
    );
    payload["installation"] = json!({"id": 99, "node_id": "I_99"});
    assert_eq!(
        h.send(signed("push", "d-app", &payload)).await.0,
        StatusCode::ACCEPTED
    );
    until("the finding", || async { h.sink.count() == 1 }).await;
    let calls = sim.get("/_sim/github/calls").await;
    let auth_of = |part: &str| {
        calls
            .iter()
            .find(|c| c["path"].as_str().is_some_and(|p| p.contains(part)))
            .map(|c| c["auth"].as_str().unwrap_or("").to_string())
    };
    assert_eq!(
        auth_of("/app/installations/99/access_tokens").as_deref(),
        Some("jwt")
    );
    assert_eq!(auth_of("/compare/").as_deref(), Some("token"));
    h.shutdown().await;
}

/// Runs `log_scenario` in a process of its own, with a global subscriber at
/// TRACE: tracing's callsite cache is process-wide, so a subscriber scoped to
/// one test misses events while other tests run.
#[test]
fn logs_never_contain_the_key_or_the_webhook_secret() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "webhook::log_scenario",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("KEYSENTRY_TEST_LOG_SCENARIO", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "{text}");
    assert!(text.contains("webhook request refused"), "{text}");
    assert!(text.contains("will be retried"), "{text}");
    assert!(text.contains("key found in GitHub delivery"), "{text}");
    assert!(
        !text.contains(&key(13)[2..]),
        "the key is in the logs:\n{text}"
    );
    assert!(!text.contains(SECRET), "the webhook secret is in the logs");
}

#[tokio::test]
#[ignore = "run by logs_never_contain_the_key_or_the_webhook_secret in its own process"]
async fn log_scenario() {
    assert!(std::env::var_os("KEYSENTRY_TEST_LOG_SCENARIO").is_some());
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .init();
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let base = repo_with_base(&sim, "acme/app").await;
    let head = sim
        .commit(
            "acme/app",
            Some(&base),
            "a@example.com",
            json!({".env": format!("K={}\n", key(13))}),
        )
        .await;
    sim.post(
        "/_sim/github/faults",
        json!({"path_contains": "/compare/", "status": 502, "count": 1}),
    )
    .await;
    let h = hook(&sim, &db(&dir), Opts::default()).await;
    let payload = push(
        "acme/app",
        "refs/heads/main",
        &base,
        &head,
        &[(&head, "a@example.com")],
    );
    let bytes = serde_json::to_vec(&payload).unwrap();
    let forged = WebhookSecret::new("guess").sign(&bytes);
    let (status, _) = h
        .send(request(
            "push",
            "d-forged",
            "application/json",
            &forged,
            bytes,
        ))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        h.send(signed("push", "d-logs", &payload)).await.0,
        StatusCode::ACCEPTED
    );
    until("the finding", || async { h.sink.count() == 1 }).await;
    h.shutdown().await;
}
