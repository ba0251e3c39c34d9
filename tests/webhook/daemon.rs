//! The webhook inside `keysentry daemon`: served next to `/healthz`, and
//! deliveries left pending by a stopped daemon finished by the next one;
//! one store handle for the whole daemon.

use super::harness::*;
use crate::support::daemon::{Daemon, Launch};

pub(super) const SECRET_ENV: &str = "KEYSENTRY_TEST_WEBHOOK_SECRET";

/// `keysentry daemon` (text log, debug) with the webhook secret in its
/// environment.
pub(super) fn start_daemon(config: &std::path::Path) -> Daemon {
    Launch::new(config)
        .text_log()
        .env("KEYSENTRY_LOG", "keysentry=debug")
        .env(SECRET_ENV, SECRET)
        .no_wait()
        .start()
}

/// Polls `/metrics` until every `series value` line is on the page.
async fn wait_metrics(d: &Daemon, want: &[&str]) {
    let url = format!("{}/metrics", d.http_url());
    let page = || async { reqwest::get(&url).await.unwrap().text().await.unwrap() };
    until("the metrics", || async {
        let text = page().await;
        want.iter().all(|w| text.lines().any(|l| l == *w))
    })
    .await;
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
        sim.live_key(&key(400 + i)).await;
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
    let first = start_daemon(&config);
    let url = first.webhook_url();
    assert_eq!(deliver(&url, "r-forged", &pushes[0], "wrong").await, 401);
    for (i, p) in pushes.iter().enumerate() {
        assert_eq!(deliver(&url, &format!("r-{i}"), p, SECRET).await, 202);
    }
    until("every delivery tried once", || async {
        sim.github_calls("/compare/").await.len() >= 3
    })
    .await;
    wait_metrics(
        &first,
        &[
            "keysentry_webhook_requests_total{status=\"401\"} 1",
            "keysentry_webhook_requests_total{status=\"202\"} 3",
            "keysentry_webhook_deliveries{state=\"pending\"} 3",
            // The delivery queue reports its heartbeat like the other sources.
            "keysentry_source_up{source=\"webhook\"} 1",
        ],
    )
    .await;
    let (status, first_log) = first.terminate();
    assert!(status.success(), "{first_log}");
    assert_eq!(sim.all_freezes().await, 0);

    sim.http
        .delete(format!("{}/_sim/github/faults", sim.url))
        .send()
        .await
        .unwrap();
    let second = start_daemon(&config);
    until("three containment calls", || async {
        sim.all_freezes().await == 3
    })
    .await;
    wait_metrics(&second, &["keysentry_webhook_deliveries{state=\"done\"} 3"]).await;
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

/// The files under `/proc/PID/fd` that are `path`: one per SQLite
/// connection that has it open.
fn open_handles(pid: u32, path: &std::path::Path) -> usize {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).expect("read /proc/PID/fd");
    fds.filter_map(Result::ok)
        .filter(|fd| std::fs::read_link(fd.path()).is_ok_and(|to| to == path))
        .count()
}

/// Regression (issue 11): the daemon opened its database three times (its
/// own handle, the engine's and the webhook's), three connections and three
/// caches on one file. Now one handle serves offsets, incidents and
/// deliveries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_holds_one_connection_to_its_store_with_the_webhook_on() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yaml");
    let state = dir.path().join("state");
    std::fs::write(
        &config,
        format!(
            "state_dir: {state}\nhttp:\n  listen: 127.0.0.1:0\ngithub:\n  api_url: {sim}\n  webhook:\n    listen: 127.0.0.1:0\n    secret_env: {SECRET_ENV}\nremediation:\n  mode: auto\n  policy: {{tatum: freeze}}\nproviders:\n  tatum:\n    api_url: {sim}\n",
            state = state.display(),
            sim = sim.url
        ),
    )
    .unwrap();
    let d = start_daemon(&config);
    d.wait_for("the daemon to be ready", |l| l.contains("daemon ready"));
    let db = state.join("keysentry.db").canonicalize().unwrap();
    assert_eq!(open_handles(d.child.id(), &db), 1, "{}", d.text());
    // And the webhook's worker runs on that handle.
    wait_metrics(&d, &["keysentry_source_up{source=\"webhook\"} 1"]).await;
    let (status, log) = d.terminate();
    assert!(status.success(), "{log}");
}

/// A config whose webhook listens on `webhook_listen`, apart from
/// `/healthz` on 127.0.0.1:0.
fn own_socket_config(dir: &std::path::Path, sim: &Sim, webhook_listen: &str) -> std::path::PathBuf {
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "state_dir: {state}\nhttp:\n  listen: 127.0.0.1:0\ngithub:\n  api_url: {sim}\n  webhook:\n    listen: {webhook_listen}\n    secret_env: {SECRET_ENV}\nremediation:\n  mode: off\n",
            state = dir.join("state").display(),
            sim = sim.url
        ),
    )
    .unwrap();
    config
}

/// The webhook on an address of its own is served there, and only there;
/// `/healthz` stays on `http.listen`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_with_its_own_address_is_served_apart_from_healthz() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    // All of 127.0.0.0/8 is loopback on Linux: another address, same host.
    let d = start_daemon(&own_socket_config(dir.path(), &sim, "127.0.0.2:0"));
    let (hook, health) = (d.webhook_url(), d.http_url());
    assert!(hook.starts_with("http://127.0.0.2:"), "{hook}");
    assert!(health.starts_with("http://127.0.0.1:"), "{health}");
    let payload = main_push(
        "acme/app",
        &"a".repeat(40),
        &"b".repeat(40),
        "dev@example.com",
    );
    assert_eq!(deliver(&hook, "own-1", &payload, "wrong").await, 401);
    assert_eq!(deliver(&health, "own-2", &payload, SECRET).await, 404);
    let status = |url: String| async move { reqwest::get(url).await.unwrap().status().as_u16() };
    assert_eq!(status(format!("{health}/healthz")).await, 200);
    assert_eq!(status(format!("{hook}/healthz")).await, 404);
    let (exit, log) = d.terminate();
    assert!(exit.success(), "{log}");
    assert!(!log.contains(SECRET), "the webhook secret is in the log");
}

/// The binary binds the webhook's socket before the daemon starts: a busy
/// one is exit 2 naming the setting and the fix, and never ready.
#[test]
fn a_busy_webhook_address_is_an_error_naming_github_webhook_listen() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let busy = taken.local_addr().unwrap().to_string();
    let config = own_socket_config(dir.path(), &sim, &busy);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keysentry"))
        .args(["daemon", "--config"])
        .arg(&config)
        .env(SECRET_ENV, SECRET)
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("github.webhook.listen")
            && stderr.contains(&busy)
            && stderr.contains("pick a free port"),
        "{stderr}"
    );
    assert!(!stderr.contains("daemon ready"), "{stderr}");
}

/// Two webhook replicas on one PostgreSQL store behind a load balancer: the
/// same delivery (GitHub's redelivery, or a retry through the balancer)
/// reaches both, and is processed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_delivery_sent_to_two_replicas_on_one_store_is_processed_once() {
    let sim = Sim::start();
    let store = crate::support::postgres::fresh_database();
    let base = repo_with_base(&sim, "acme/app").await;
    let leaked = key(700);
    sim.live_key(&leaked).await;
    let head = sim
        .commit(
            "acme/app",
            Some(&base),
            "dev@example.com",
            json!({"svc/.env": format!("TATUM_API_KEY={leaked}\n")}),
        )
        .await;
    let push = main_push("acme/app", &base, &head, "dev@example.com");
    let replica = |name: &str| {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.yaml");
        std::fs::write(
            &config,
            format!(
                "node: {name}
store:
  url: '{store}'
state_dir: {state}
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
providers:
  tatum:
    api_url: {sim}
",
                state = dir.path().join("state").display(),
                sim = sim.url
            ),
        )
        .unwrap();
        (dir, config)
    };
    let (_a_dir, a_config) = replica("replica-a");
    let (_b_dir, b_config) = replica("replica-b");
    let a = start_daemon(&a_config);
    let b = start_daemon(&b_config);
    let (a_url, b_url) = (a.webhook_url(), b.webhook_url());
    let (to_a, to_b) = tokio::join!(
        deliver(&a_url, "twice-1", &push, SECRET),
        deliver(&b_url, "twice-1", &push, SECRET)
    );
    assert_eq!((to_a, to_b), (202, 202), "both replicas acknowledge it");
    until("the freeze", || async { sim.freezes(&leaked).await >= 1 }).await;
    wait_metrics(&a, &["keysentry_webhook_deliveries{state=\"done\"} 1"]).await;
    wait_metrics(&b, &["keysentry_webhook_deliveries{state=\"done\"} 1"]).await;
    // A second run would have fetched the push again by now.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(
        sim.github_calls("/compare/").await.len(),
        1,
        "the push was fetched once"
    );
    assert_eq!(sim.freezes(&leaked).await, 1, "the key was frozen once");
    for d in [a, b] {
        let (status, log) = d.terminate();
        assert!(status.success(), "{log}");
        assert!(!log.contains(&leaked[2..]), "the key is in the log");
        assert!(!log.contains(SECRET), "the webhook secret is in the log");
    }
}
