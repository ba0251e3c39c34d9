//! The webhook inside `keysentry daemon`: served next to `/healthz`, and
//! deliveries left pending by a stopped daemon finished by the next one.

use super::harness::*;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

pub(super) const SECRET_ENV: &str = "KEYSENTRY_TEST_WEBHOOK_SECRET";

/// `keysentry daemon` with its stderr collected.
pub(super) struct Daemon {
    pub(super) child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    pub(super) fn start(config: &std::path::Path) -> Daemon {
        let mut child = Command::new(env!("CARGO_BIN_EXE_keysentry"))
            .args(["daemon", "--config"])
            .arg(config)
            .env("KEYSENTRY_LOG", "keysentry=debug")
            .env(SECRET_ENV, SECRET)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start keysentry daemon");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                sink.lock().unwrap().push(line);
            }
        });
        Daemon { child, log }
    }

    pub(super) fn text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The address of the webhook, once listening (the same server as
    /// `/metrics` when `github.webhook.listen` equals `http.listen`).
    pub(super) async fn url(&self) -> String {
        self.address(true).await
    }

    /// The address of `/healthz` and `/metrics`.
    pub(super) async fn metrics_url(&self) -> String {
        self.address(false).await
    }

    async fn address(&self, webhook: bool) -> String {
        until("the daemon to listen", || async {
            self.text().contains("daemon ready")
        })
        .await;
        let text = self.text();
        let marker = "listening on http://";
        let servers: Vec<(bool, usize)> = text
            .match_indices(marker)
            .map(|(i, _)| (text[..i].ends_with("GitHub webhook "), i + marker.len()))
            .collect();
        let (_, at) = *servers
            .iter()
            .find(|(is_webhook, _)| *is_webhook == webhook)
            .or(servers.first())
            .expect("listening line");
        let addr: String = text[at..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
            .collect();
        format!("http://{addr}")
    }

    /// Polls `/metrics` until every `series value` line is on the page.
    pub(super) async fn wait_metrics(&self, want: &[&str]) {
        let url = format!("{}/metrics", self.metrics_url().await);
        let page = || async { reqwest::get(&url).await.unwrap().text().await.unwrap() };
        until("the metrics", || async {
            let text = page().await;
            want.iter().all(|w| text.lines().any(|l| l == *w))
        })
        .await;
    }

    /// SIGTERM, then the exit status and everything logged.
    pub(super) fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().expect("daemon exits");
        std::thread::sleep(Duration::from_millis(50));
        (status, self.text())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn deliver(url: &str, id: &str, body: &Value, secret: &str) -> u16 {
    let bytes = serde_json::to_vec(body).unwrap();
    reqwest::Client::new()
        .post(format!("{url}{PATH}"))
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("x-github-delivery", id)
        .header(
            "x-hub-signature-256",
            WebhookSecret::new(secret).sign(&bytes),
        )
        .body(bytes)
        .send()
        .await
        .expect("daemon reachable")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_daemon_finishes_the_deliveries_the_stopped_one_left_pending() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let base = repo_with_base(&sim, "acme/app").await;
    let mut pushes = Vec::new();
    for i in 0..3 {
        sim.tatum_key(&key(400 + i)).await;
        let head = sim
            .commit(
                "acme/app",
                Some(&base),
                "dev@example.com",
                json!({ format!("svc{i}/.env"): format!("TATUM_API_KEY={}\n", key(400 + i)) }),
            )
            .await;
        pushes.push(main_push("acme/app", &base, &head, "dev@example.com"));
    }
    let config = dir.path().join("config.yaml");
    let state = dir.path().join("state");
    std::fs::write(
        &config,
        format!(
            "state_dir: {state}
http:
  listen: 127.0.0.1:0
github:
  api_url: {sim}
  webhook:
    listen: 127.0.0.1:0
    secret_env: {SECRET_ENV}
remediation:
  mode: auto
  policy: {{tatum: freeze}}
  backoff_ms: 10
  rate_limit: 1000
providers:
  tatum:
    api_url: {sim}
",
            state = state.display(),
            sim = sim.url
        ),
    )
    .unwrap();
    // GitHub is down: the deliveries are acknowledged and stay pending.
    sim.post(
        "/_sim/github/faults",
        json!({"path_contains": "/compare/", "status": 503, "count": 1000}),
    )
    .await;
    let first = Daemon::start(&config);
    let url = first.url().await;
    assert_eq!(deliver(&url, "r-forged", &pushes[0], "wrong").await, 401);
    for (i, p) in pushes.iter().enumerate() {
        assert_eq!(deliver(&url, &format!("r-{i}"), p, SECRET).await, 202);
    }
    until("every delivery tried once", || async {
        sim.calls("/compare/").await.len() >= 3
    })
    .await;
    first
        .wait_metrics(&[
            "keysentry_webhook_requests_total{status=\"401\"} 1",
            "keysentry_webhook_requests_total{status=\"202\"} 3",
            "keysentry_webhook_deliveries{state=\"pending\"} 3",
            // The delivery queue reports its heartbeat like the other sources.
            "keysentry_source_up{source=\"webhook\"} 1",
        ])
        .await;
    let (status, first_log) = first.terminate();
    assert!(status.success(), "{first_log}");
    assert_eq!(sim.all_freezes().await, 0);

    sim.http
        .delete(format!("{}/_sim/github/faults", sim.url))
        .send()
        .await
        .unwrap();
    let second = Daemon::start(&config);
    until("three containment calls", || async {
        sim.all_freezes().await == 3
    })
    .await;
    second
        .wait_metrics(&["keysentry_webhook_deliveries{state=\"done\"} 3"])
        .await;
    let (status, second_log) = second.terminate();
    assert!(status.success(), "{second_log}");
    for i in 0..3 {
        assert_eq!(sim.freezes(&key(400 + i)).await, 1);
    }
    assert_eq!(incidents(&state).len(), 3);
    for log in [&first_log, &second_log] {
        for i in 0..3 {
            assert!(
                !log.contains(&key(400 + i)[2..]),
                "a key is in the log:\n{log}"
            );
        }
        assert!(!log.contains(SECRET), "the webhook secret is in the log");
    }
}
