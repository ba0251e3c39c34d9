//! The delivery queue with the real engine: one incident and one
//! containment call per key, concurrency, restarts, rate limits and
//! outages, secret scanning alerts.

use super::harness::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_key_is_one_incident_and_one_containment_call_even_when_replayed() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let base = repo_with_base(&sim, "acme/app").await;
    sim.live_key(&key(20)).await;
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
        comment: true,
        ..Opts::default()
    };
    let h = hook(&sim, &db(&dir), opts).await;
    let payload = main_push("acme/app", &base, &head, "alice@example.com");
    h.queue_push("e-1", &payload).await;
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
    assert_eq!(h.accepted("push", "e-1", &payload).await, "duplicate");
    h.queue_push("e-2", &payload).await;
    until("the second delivery done", || async {
        h.store
            .status("e-2")
            .unwrap()
            .is_some_and(|s| s.state == "done")
    })
    .await;
    h.shutdown().await;

    assert_eq!(sim.all_freezes().await, 1, "one containment call in all");
    let comments = sim.get_list("/_sim/github/comments").await;
    assert_eq!(comments.len(), 1, "the commit is told once: {comments:?}");
    let body = comments[0]["body"].as_str().unwrap();
    assert!(
        body.contains("`deploy/.env`") && body.contains("contained"),
        "{body}"
    );
    let incidents = incidents(&db(&dir));
    assert_eq!(incidents.len(), 1);
    let incident = &incidents[0];
    assert_eq!(incident.fingerprint, Fingerprint::of(key(20).as_bytes()));
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
async fn a_hundred_concurrent_deliveries_are_each_processed_exactly_once() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let base = repo_with_base(&sim, "acme/app").await;
    let mut heads = Vec::new();
    for i in 0..100 {
        sim.live_key(&key(100 + i)).await;
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
        sim.github_calls("/compare/").await.len(),
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
        let payload = main_push("acme/app", &base, &head, "dev@example.com");
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
    let (base, head) =
        base_then_commit(&sim, "acme/app", "a@example.com", json!({".env": key(6)})).await;
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
    let payload = main_push("acme/app", &base, &head, "a@example.com");
    h.queue_push("d-limited", &payload).await;
    until("a pending retry after the rate limit", || async {
        h.store.status("d-limited").unwrap().is_some_and(|s| {
            s.state == "pending" && s.last_error.is_some_and(|e| e.contains("rate limit"))
        })
    })
    .await;
    until("the finding", || async { h.sink.count() == 1 }).await;
    let statuses: Vec<u64> = sim
        .github_calls("/compare/")
        .await
        .iter()
        .map(|c| c.2)
        .collect();
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
    let event = "secret_scanning_alert";
    let other = alert("created", 6, "azure_storage_account_key");
    assert_eq!(h.accepted(event, "s-other", &other).await, "ignored");
    let resolved = alert("resolved", 5, "tatum_api_key");
    assert_eq!(h.accepted(event, "s-resolved", &resolved).await, "ignored");
    let created = alert("created", 5, "tatum_api_key");
    assert_eq!(h.accepted(event, "s-1", &created).await, "queued");
    let (f, _) = h.only_finding().await;
    assert_eq!(f.secret.expose(), key(11));
    assert_eq!(&*f.rule_id, "tatum.api-key");
    assert_eq!((f.origin.path(), f.line), ("ops/env.sh".to_string(), 12));
    assert_eq!(sim.github_calls("/secret-scanning/alerts/5").await.len(), 2);
    assert!(sim.github_calls("/alerts/6").await.is_empty());
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pusher_owns_a_key_whose_commit_names_no_author() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let base = repo_with_base(&sim, "acme/app").await;
    sim.live_key(&key(21)).await;
    let head = sim
        .commit_with(
            json!({"repo": "acme/app", "parent": base, "author": {"name": "bot"},
                            "files": {"ci.env": format!("TATUM_API_KEY={}\n", key(21))}}),
        )
        .await;
    let opts = Opts {
        engine: true,
        ..Opts::default()
    };
    let h = hook(&sim, &db(&dir), opts).await;
    let mut payload = push("acme/app", "refs/heads/main", &base, &head, &[]);
    payload["commits"] = json!([{"id": head, "message": "ci", "author": {"name": "bot"}}]);
    h.queue_push("o-1", &payload).await;
    until("the containment call", || async {
        sim.freezes(&key(21)).await == 1
    })
    .await;
    h.shutdown().await;
    let incidents = incidents(&db(&dir));
    assert_eq!(incidents[0].owner.as_deref(), Some("pusher@example.com"));
}
