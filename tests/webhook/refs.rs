//! Names from a payload or a GitHub answer that would step outside the
//! repository's API paths (issue 9.8: `../` in a default branch reached a
//! compare URL, with the bearer token).

use super::harness::*;

/// Every GitHub API call the simulator saw stayed under `/repos/{repo}`.
async fn only_under(sim: &Sim, repos: &[&str]) {
    for (method, path, _) in sim.github_calls("").await {
        assert!(
            repos.iter().any(|r| {
                let root = format!("/repos/{r}");
                path == root || path.starts_with(&format!("{root}/"))
            }),
            "{method} {path} is outside {repos:?}"
        );
        assert!(!path.contains(".."), "{method} {path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_ref_names_in_a_signed_push_are_refused_before_any_call() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let (base, head) =
        base_then_commit(&sim, "acme/app", "a@example.com", json!({".env": key(7)})).await;
    let mut h = hook(&sim, &db(&dir), Opts::default()).await;
    let commits = [(head.as_str(), "a@example.com")];
    let by_ref = push("acme/app", "refs/heads/../../../x", &base, &head, &commits);
    let mut by_default = push("acme/app", "refs/heads/feature", ZERO, &head, &commits);
    by_default["repository"]["default_branch"] = json!("../../../../orgs/acme/x");
    for (id, payload, field) in [
        ("d-ref", by_ref, "`ref`"),
        ("d-default", by_default, "`repository.default_branch`"),
    ] {
        let (status, body) = h.send(signed("push", id, &payload)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{id}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(field) && error.contains("`..`"), "{error}");
        assert!(!error.contains("../"), "the value is echoed: {error}");
        assert_eq!(h.store.status(id).unwrap(), None, "{id} was stored");
    }
    h.settle().await;
    assert!(sim.github_calls("").await.is_empty());
    assert_eq!(h.sink.count(), 0);
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_default_branch_from_the_api_fails_the_delivery_with_its_reason() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    sim.post(
        "/_sim/github/repos",
        json!({"repo": "acme/lib", "default_branch": "../../../../orgs/acme/x"}),
    )
    .await;
    let head = sim
        .commit("acme/lib", None, "a@example.com", json!({".env": key(8)}))
        .await;
    let h = hook(&sim, &db(&dir), Opts::default()).await;
    // A new branch whose payload names no default branch: it is asked for.
    let mut payload = push(
        "acme/lib",
        "refs/heads/feature",
        ZERO,
        &head,
        &[(head.as_str(), "a@example.com")],
    );
    payload["repository"]
        .as_object_mut()
        .unwrap()
        .remove("default_branch");
    h.queue_push("d-api", &payload).await;
    until("the delivery marked failed", || async {
        h.store
            .status("d-api")
            .unwrap()
            .is_some_and(|s| s.state == "failed")
    })
    .await;
    let status = h.store.status("d-api").unwrap().unwrap();
    let reason = status.last_error.unwrap_or_default();
    assert!(
        reason.contains("`default_branch` contains `..`; nothing was requested with it"),
        "{reason}"
    );
    assert_eq!(status.attempts, 1, "a hostile name is not retried");
    only_under(&sim, &["acme/lib"]).await;
    assert_eq!(sim.github_calls("/repos/acme/lib").await.len(), 1);
    h.shutdown().await;
}
