//! Shared by the webhook tests: the simulator, a router with its worker and
//! a collecting sink (or the real engine), signed real-shaped deliveries.

pub use axum::body::Body;
pub use axum::http::{Request, StatusCode};
use axum::Router;
use keysentry::config::Config;
pub use keysentry::github::WebhookSecret;
use keysentry::github::{fixed_scanner, GitHubWebhook, WebhookSettings};
use keysentry::remediate::Engine;
use keysentry::rules::RuleSet;
pub use keysentry::scan::Fingerprint;
use keysentry::scan::{Allowlist, BoxFuture, Finding, FindingSink, Handled, Scanner, SinkError};
use keysentry::server::HttpGuard;
pub use keysentry::server::HttpLimits;
use keysentry::store::webhook::DeliveryStore;
pub use keysentry::store::{IncidentRow, Store};
pub use serde_json::{json, Value};
pub use std::collections::HashSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
pub use std::time::{Duration, Instant};
pub use tower::ServiceExt;

pub const SECRET: &str = "webhook-secret-for-tests";
pub const PATH: &str = "/github/webhook";
pub const ZERO: &str = "0000000000000000000000000000000000000000";
pub const RULES: &str = r#"
rules:
  - id: tatum.api-key
    name: Tatum API key
    provider: tatum
    keywords: ["t-"]
    pattern: '\b(?P<secret>t-[0-9a-f]{24}-[0-9a-f]{24})\b'
    min_entropy: 3.0
"#;

/// A distinct, valid-looking Tatum key per `n`.
pub fn key(n: u32) -> String {
    crate::support::key(&format!("key{n}"))
}

pub use crate::support::sim::Sim;

/// Stands in for the remediation engine: records what it is given.
#[derive(Default)]
pub struct Collect {
    pub seen: Mutex<Vec<(Finding, Option<String>)>>,
}

impl Collect {
    pub fn findings(&self) -> Vec<(Finding, Option<String>)> {
        self.seen.lock().unwrap().clone()
    }
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

impl FindingSink for Collect {
    fn submit(&self, findings: Vec<Finding>) -> BoxFuture<'_, Result<Vec<Handled>, SinkError>> {
        Box::pin(async move {
            let handled = findings
                .iter()
                .map(|f| Handled {
                    fingerprint: f.fingerprint.clone(),
                    contained: true,
                })
                .collect();
            let mut seen = self.seen.lock().unwrap();
            // The fallback owner (the pusher) travels on the origin.
            seen.extend(findings.into_iter().map(|f| {
                let pusher = f.origin.pusher().map(str::to_string);
                (f, pusher)
            }));
            Ok(handled)
        })
    }
}

pub struct Hook {
    pub router: Router,
    pub sink: Arc<Collect>,
    pub store: Arc<DeliveryStore>,
    pub stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub worker: Option<tokio::task::JoinHandle<()>>,
}

pub struct Opts {
    pub comment: bool,
    pub max_body: usize,
    /// The `http.*` limits (body budget and timeout apply in-process).
    pub http: HttpLimits,
    pub run_worker: bool,
    /// More YAML under `github:`.
    pub github: String,
    /// The real remediation engine behind the webhook (Tatum freeze policy,
    /// against the simulator) instead of a collector.
    pub engine: bool,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            comment: false,
            max_body: 25 << 20,
            http: HttpLimits::default(),
            run_worker: true,
            github: String::new(),
            engine: false,
        }
    }
}

pub const ENGINE: &str = "state_dir: {state}
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

pub async fn hook(sim: &Sim, state: &Path, opts: Opts) -> Hook {
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
        http: HttpGuard::new(opts.http),
    };
    let store = Arc::new(DeliveryStore::open(state).unwrap());
    let collect = Arc::new(Collect::default());
    let sink: Arc<dyn FindingSink> = if opts.engine {
        Arc::new(Engine::open_with_rules(&config, rules).unwrap())
    } else {
        collect.clone()
    };
    let remediable: HashSet<String> = ["tatum".to_string()].into();
    let gh = GitHubWebhook::new(
        &config,
        settings,
        store.clone(),
        fixed_scanner(scanner),
        remediable,
        sink,
    )
    .unwrap();
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
    pub async fn send(&self, req: Request<Body>) -> (StatusCode, Value) {
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

    /// Sends a signed delivery, checks it was accepted (202) and returns
    /// what the answer says of it (`queued`, `duplicate`, `ignored`).
    pub async fn accepted(&self, event: &str, id: &str, payload: &Value) -> String {
        let (status, body) = self.send(signed(event, id, payload)).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        body["status"].as_str().unwrap_or_default().to_string()
    }

    /// Sends a signed push delivery and checks it was queued (202).
    pub async fn queue_push(&self, id: &str, payload: &Value) {
        assert_eq!(self.accepted("push", id, payload).await, "queued");
    }

    /// Waits for the first finding and returns it with its fallback owner.
    pub async fn only_finding(&self) -> (Finding, Option<String>) {
        until("the finding", || async { self.sink.count() == 1 }).await;
        self.sink.findings().remove(0)
    }

    pub async fn shutdown(mut self) {
        self.stop_worker().await;
    }

    /// Waits until the queue holds nothing to do (every stored delivery
    /// done or failed), then stops the worker, which ends the tasks it
    /// runs: after this nothing more reaches the sink or the simulator, so
    /// "nothing happened" can be asserted without guessing a sleep.
    pub async fn settle(&mut self) {
        until("the delivery queue to be idle", || async {
            let counts = self.store.counts().expect("read the queue");
            counts.keys().all(|s| s == "done" || s == "failed")
        })
        .await;
        self.stop_worker().await;
    }

    async fn stop_worker(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(w) = self.worker.take() {
            let _ = w.await;
        }
    }
}

pub fn signed(event: &str, id: &str, body: &Value) -> Request<Body> {
    let bytes = serde_json::to_vec(body).unwrap();
    request(
        event,
        id,
        "application/json",
        &WebhookSecret::new(SECRET).sign(&bytes),
        bytes,
    )
}

pub fn request(
    event: &str,
    id: &str,
    content_type: &str,
    sig: &str,
    body: Vec<u8>,
) -> Request<Body> {
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

/// A push of the one commit `head` (by `email`) onto `base` on main.
pub fn main_push(repo: &str, base: &str, head: &str, email: &str) -> Value {
    push(repo, "refs/heads/main", base, head, &[(head, email)])
}

/// The documented push payload shape.
pub fn push(
    repo: &str,
    git_ref: &str,
    before: &str,
    after: &str,
    commits: &[(&str, &str)],
) -> Value {
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
pub async fn until<F, Fut>(what: &str, mut check: F)
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
pub fn incidents(state: &Path) -> Vec<IncidentRow> {
    Store::open(state).unwrap().incidents().unwrap()
}

/// The state directory (the store is `keysentry.db` in it).
pub fn db(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().to_path_buf()
}

/// A repo with one commit on main; returns its sha.
/// A repository with a base commit on main and one commit on top of it by
/// `email` with `files`: the shape most push tests start from.
pub async fn base_then_commit(
    sim: &Sim,
    repo: &str,
    email: &str,
    files: Value,
) -> (String, String) {
    let base = repo_with_base(sim, repo).await;
    let head = sim.commit(repo, Some(&base), email, files).await;
    (base, head)
}

pub async fn repo_with_base(sim: &Sim, repo: &str) -> String {
    sim.repo(repo).await;
    sim.commit_with(
        json!({"repo": repo, "branch": "main", "files": {"README.md": "hello\n"},
                           "author": {"name": "Dev", "email": "dev@example.com"}}),
    )
    .await
}
