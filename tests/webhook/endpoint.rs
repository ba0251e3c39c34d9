//! The endpoint: signatures, limits, content types, event filtering,
//! replays, and what reaches the logs.

use super::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_or_missing_signature_is_401_and_calls_nothing() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let (base, head) =
        base_then_commit(&sim, "acme/app", "a@example.com", json!({".env": key(2)})).await;
    let mut h = hook(&sim, &db(&dir), Opts::default()).await;
    let payload = main_push("acme/app", &base, &head, "a@example.com");
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
    h.settle().await;
    assert!(sim.github_calls("/repos/").await.is_empty());
    assert!(h.store.counts().unwrap().is_empty(), "nothing stored");
    assert_eq!(h.sink.count(), 0);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_delivery_is_acknowledged_and_not_processed_again() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let (base, head) =
        base_then_commit(&sim, "acme/app", "a@example.com", json!({".env": key(3)})).await;
    let mut h = hook(&sim, &db(&dir), Opts::default()).await;
    let payload = main_push("acme/app", &base, &head, "a@example.com");
    h.queue_push("d-replay", &payload).await;
    until("processing", || async {
        h.store
            .status("d-replay")
            .unwrap()
            .is_some_and(|s| s.state == "done")
    })
    .await;
    assert_eq!(h.accepted("push", "d-replay", &payload).await, "duplicate");
    h.settle().await;
    assert_eq!(h.sink.count(), 1);
    assert_eq!(sim.github_calls("/compare/").await.len(), 1);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_branch_is_ignored() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let mut h = hook(&sim, &db(&dir), Opts::default()).await;
    let payload = push("acme/app", "refs/heads/old", &"a".repeat(40), ZERO, &[]);
    assert_eq!(h.accepted("push", "d-del", &payload).await, "ignored");
    h.settle().await;
    assert!(sim.github_calls("/repos/").await.is_empty());
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
    assert_eq!(h.accepted("issues", "d-issue", &issue).await, "ignored");
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
async fn a_body_that_cannot_get_budget_is_503_with_retry_after() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let opts = Opts {
        http: HttpLimits {
            max_inflight_body_bytes: 1024,
            ..HttpLimits::default()
        },
        ..Opts::default()
    };
    let h = hook(&sim, &db(&dir), opts).await;
    let ping = json!({"zen": "x".repeat(2048), "hook_id": 1});
    let bytes = serde_json::to_vec(&ping).unwrap();
    let sig = WebhookSecret::new(SECRET).sign(&bytes);
    // Declared (refused before reading) and streamed without a length
    // (refused once the buffer outgrows the budget).
    let declared = request("ping", "d-busy", "application/json", &sig, bytes.clone());
    let streamed = Request::post(PATH)
        .header("content-type", "application/json")
        .header("x-github-event", "ping")
        .header("x-github-delivery", "d-busy2")
        .header("x-hub-signature-256", &sig)
        .body(Body::new(Pieces(
            bytes.chunks(256).map(<[u8]>::to_vec).collect(),
        )))
        .unwrap();
    for req in [declared, streamed] {
        let res = h.router.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()["retry-after"], "5");
        let body = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("http.max_inflight_body_bytes"), "{text}");
    }
    // A body that fits is served, the budget given back each time.
    let small = json!({"zen": "ok", "hook_id": 1});
    for i in 0..3 {
        let (status, _) = h.send(signed("ping", &format!("d-ok{i}"), &small)).await;
        assert_eq!(status, StatusCode::OK);
    }
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stalls_is_408_after_the_body_timeout() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let opts = Opts {
        http: HttpLimits {
            body_timeout: Duration::from_secs(1),
            ..HttpLimits::default()
        },
        ..Opts::default()
    };
    let h = hook(&sim, &db(&dir), opts).await;
    let sig = WebhookSecret::new(SECRET).sign(b"{}");
    let req = Request::post(PATH)
        .header("content-type", "application/json")
        .header("x-github-event", "push")
        .header("x-github-delivery", "d-stall")
        .header("x-hub-signature-256", &sig)
        .header("content-length", "1000")
        .body(Body::new(Stalled(Some(b"{".to_vec()))))
        .unwrap();
    let res = tokio::time::timeout(Duration::from_secs(20), h.router.clone().oneshot(req))
        .await
        .expect("a stalled body is given up on")
        .unwrap();
    assert_eq!(res.status(), StatusCode::REQUEST_TIMEOUT);
    h.shutdown().await;
}

/// A body of these pieces, in order, with no length known up front.
struct Pieces(std::collections::VecDeque<Vec<u8>>);

impl hyper::body::Body for Pieces {
    type Data = axum::body::Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        let next = self.0.pop_front();
        std::task::Poll::Ready(next.map(|p| Ok(hyper::body::Frame::data(p.into()))))
    }
}

/// Sends one chunk, then nothing, forever.
struct Stalled(Option<Vec<u8>>);

impl hyper::body::Body for Stalled {
    type Data = axum::body::Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        match self.0.take() {
            Some(first) => std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(first.into())))),
            None => std::task::Poll::Pending,
        }
    }
}

/// Runs `log_scenario` in a process of its own, with a global subscriber at
/// TRACE: tracing's callsite cache is process-wide, so a subscriber scoped to
/// one test misses events while other tests run.
#[test]
fn logs_never_contain_the_key_or_the_webhook_secret() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "webhook::endpoint::log_scenario",
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
    let (base, head) = base_then_commit(
        &sim,
        "acme/app",
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
    let payload = main_push("acme/app", &base, &head, "a@example.com");
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
    h.queue_push("d-logs", &payload).await;
    until("the finding", || async { h.sink.count() == 1 }).await;
    h.shutdown().await;
}
