//! Push events: what a push added, attributed to the commit, author, path
//! and line; blobs for omitted patches; commit comments; GitHub App auth.

use super::harness::*;

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
    let payload = main_push("acme/app", &base, &head, "alice@example.com");
    let (status, body) = h.send(signed("push", "d-1", &payload)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(body["status"], "queued");

    let (f, fallback) = h.only_finding().await;
    assert_eq!(f.origin.kind(), "github");
    assert_eq!(f.origin.repo(), Some("acme/app"));
    assert_eq!(f.origin.commit(), Some(head.as_str()));
    assert_eq!(f.origin.author_email(), Some("alice@example.com"));
    assert_eq!(f.origin.path(), "config/.env");
    assert_eq!((f.line, f.column), (3, 15));
    assert_eq!(f.secret.expose(), key(1));
    assert_eq!(fallback.as_deref(), Some("pusher@example.com"));
    assert_eq!(
        sim.github_calls("/compare/").await,
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
    h.queue_push("d-new", &payload).await;
    let (f, _) = h.only_finding().await;
    assert_eq!((f.origin.path(), f.line), ("src/app.js".to_string(), 2));
    assert_eq!(
        f.origin.commit(),
        Some(c2.as_str()),
        "the commit that added the line"
    );
    let compares = sim.github_calls("/compare/").await;
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
    h.queue_push("d-first", &payload).await;
    let (f, _) = h.only_finding().await;
    assert_eq!(f.origin.author_email(), Some("carol@example.com"));
    assert_eq!(f.origin.commit(), Some(c1.as_str()));
    assert!(sim.github_calls("/compare/").await.is_empty());
    assert_eq!(sim.github_calls(&format!("/commits/{c1}")).await.len(), 1);
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
    let payload = main_push("acme/app", &base, &head, "d@example.com");
    h.queue_push("d-big", &payload).await;
    let (f, _) = h.only_finding().await;
    assert_eq!((f.origin.path(), f.line), ("data/big.yaml".to_string(), 40));
    assert_eq!(sim.github_calls("/git/blobs/").await.len(), 1);
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
    h.queue_push("d-two", &payload).await;
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
async fn a_key_added_and_removed_within_one_push_is_still_found() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let base = repo_with_base(&sim, "acme/app").await;
    let leaked = sim
        .commit(
            "acme/app",
            Some(&base),
            "carol@example.com",
            json!({"deploy.sh": format!("#!/bin/sh\nexport TATUM_API_KEY={}\n", key(11))}),
        )
        .await;
    // "Oops": the next commit of the same push takes it out again. The net
    // diff holds no key, but the first commit is public history.
    let cleaned = sim
        .commit(
            "acme/app",
            Some(&leaked),
            "carol@example.com",
            json!({"deploy.sh": "#!/bin/sh\nexport TATUM_API_KEY=\"$(cat /run/secrets/tatum)\"\n"}),
        )
        .await;
    let h = hook(&sim, &db(&dir), Opts::default()).await;
    let payload = push(
        "acme/app",
        "refs/heads/main",
        &base,
        &cleaned,
        &[
            (&leaked, "carol@example.com"),
            (&cleaned, "carol@example.com"),
        ],
    );
    h.queue_push("d-oops", &payload).await;
    let (f, _) = h.only_finding().await;
    assert_eq!(f.secret.expose(), key(11));
    assert_eq!(f.origin.commit(), Some(leaked.as_str()));
    assert_eq!((f.origin.path(), f.line), ("deploy.sh".to_string(), 2));
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_in_commit_255_of_a_260_commit_push_is_found() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let base = repo_with_base(&sim, "acme/app").await;
    // Unpaged, a compare lists 250 commits; keysentry reads them 100 a page.
    let mut head = base.clone();
    let mut leaked = String::new();
    for i in 1..=260 {
        let text = match i {
            255 => format!("TATUM_API_KEY={}\n", key(13)),
            _ => format!("build {i}\n"),
        };
        head = sim
            .commit(
                "acme/app",
                Some(&head),
                "e@example.com",
                json!({ format!("n/{i}.txt"): text }),
            )
            .await;
        if i == 255 {
            leaked = head.clone();
        }
    }
    let h = hook(&sim, &db(&dir), Opts::default()).await;
    let payload = main_push("acme/app", &base, &head, "e@example.com");
    h.queue_push("d-long", &payload).await;
    let (f, _) = h.only_finding().await;
    assert_eq!(f.origin.commit(), Some(leaked.as_str()));
    assert_eq!(f.origin.path(), "n/255.txt");
    assert_eq!(sim.github_calls("/compare/").await.len(), 3, "three pages");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_past_the_first_300_files_of_a_commit_is_found() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    // GitHub lists 300 files in a compare and 300 per page of a commit; the
    // key is in file 321 of 321 (paths sort `gen/…` before `zz.env`).
    let mut files = serde_json::Map::new();
    for i in 0..320 {
        files.insert(format!("gen/{i:03}.txt"), json!(format!("line {i}\n")));
    }
    files.insert(
        "zz.env".into(),
        json!(format!("TATUM_API_KEY={}\n", key(12))),
    );
    let (base, head) =
        base_then_commit(&sim, "acme/app", "big@example.com", Value::Object(files)).await;
    let h = hook(&sim, &db(&dir), Opts::default()).await;
    let payload = main_push("acme/app", &base, &head, "big@example.com");
    h.queue_push("d-big", &payload).await;
    let (f, _) = h.only_finding().await;
    assert_eq!((f.origin.path(), f.line), ("zz.env".to_string(), 1));
    assert_eq!(f.origin.commit(), Some(head.as_str()));
    let pages = sim.github_calls(&format!("/commits/{head}")).await;
    assert_eq!(pages.len(), 2, "{pages:?}");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_commit_gets_one_comment_naming_file_and_line_never_the_key() {
    let sim = Sim::start();
    let dir = tempfile::tempdir().unwrap();
    let (base, head) = base_then_commit(
        &sim,
        "acme/app",
        "a@example.com",
        json!({"cfg/prod.env": format!("X=1\nK={}\n", key(10))}),
    )
    .await;
    let opts = Opts {
        comment: true,
        ..Opts::default()
    };
    let h = hook(&sim, &db(&dir), opts).await;
    let payload = main_push("acme/app", &base, &head, "a@example.com");
    // The same push delivered under two ids (e.g. a repo and an org hook).
    for id in ["d-c1", "d-c2"] {
        h.queue_push(id, &payload).await;
        until("processing", || async {
            h.store
                .status(id)
                .unwrap()
                .is_some_and(|s| s.state == "done")
        })
        .await;
    }
    let comments = sim.get_list("/_sim/github/comments").await;
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
    let (base, head) =
        base_then_commit(&sim, "acme/app", "a@example.com", json!({".env": key(12)})).await;
    let opts = Opts {
        github: format!(
            "  app:\n    app_id: 4242\n    private_key_path: {}\n",
            key_path.display()
        ),
        ..Opts::default()
    };
    let h = hook(&sim, &db(&dir), opts).await;
    let mut payload = main_push("acme/app", &base, &head, "a@example.com");
    payload["installation"] = json!({"id": 99, "node_id": "I_99"});
    h.queue_push("d-app", &payload).await;
    until("the finding", || async { h.sink.count() == 1 }).await;
    let calls = sim.get_list("/_sim/github/calls").await;
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
