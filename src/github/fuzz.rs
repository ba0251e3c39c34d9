//! Property tests of what parses untrusted bytes on the GitHub side: the
//! webhook endpoint (signature, then payload), the payload parsers, and the
//! API answers. Inputs are real-shaped payloads and answers, mutated, with a
//! key planted in them: nothing panics, no error quotes the key, and what is
//! accepted is safe to put in an API path.
//!
//! 256 cases per property; `PROPTEST_CASES=100000 cargo test --release --lib
//! github::fuzz` runs a long campaign (bench/fuzz_github.sh).

use super::api::{
    blob_bytes, decode, first_commit_location, ApiError, CommitData, Compare, RawAlert, RawBlob,
    RawLocation, RawRepo, ScanningAlert,
};
use super::deliveries::DeliveryQueue;
use super::push::{check_job, parse_push, PushEvent};
use super::secret_scanning::{parse_alert, AlertEvent};
use super::signature::WebhookSecret;
use super::webhook::{webhook_router, WebhookState};
use super::WebhookSettings;
use crate::server::{HttpGuard, HttpLimits};
use crate::store::webhook::DeliveryStore;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode};
use proptest::prelude::*;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::sync::Arc;
use tower::ServiceExt;

const SECRET: &str = "fuzz-webhook-secret";
const SHA: &str = "6dcb09b5b57875f334f61aebed695e2e4193db5e";

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn push_seed() -> Value {
    json!({
        "ref": "refs/heads/main", "before": "0".repeat(40), "after": SHA,
        "created": true, "deleted": false, "forced": false, "base_ref": null,
        "commits": [{"id": SHA, "tree_id": "f".repeat(40), "message": "add config",
                     "author": {"name": "Dev", "email": "dev@example.com", "username": "dev"}}],
        "head_commit": null,
        "repository": {"id": 1, "name": "app", "full_name": "acme/app", "private": true,
                       "default_branch": "main", "owner": {"login": "acme"}},
        "pusher": {"name": "dev", "email": "dev@example.com"},
        "sender": {"login": "dev", "id": 7},
        "installation": {"id": 42}
    })
}

fn alert_seed() -> Value {
    json!({
        "action": "created",
        "alert": {"number": 3, "secret_type": "tatum_api_key", "state": "open",
                  "html_url": "https://github.com/acme/app/security/secret-scanning/3"},
        "repository": {"full_name": "acme/app", "default_branch": "main"},
        "installation": {"id": 42}
    })
}

/// Real-shaped API answers, by what they are parsed as.
fn answer_seeds() -> Vec<(Answer, Value)> {
    let file = json!({"filename": ".env", "status": "added", "additions": 1,
                      "patch": "@@ -0,0 +1 @@\n+KEY=x", "sha": SHA});
    let commit = json!({"sha": SHA, "commit": {"author": {"name": "Dev", "email": "d@e.com"}},
                        "files": [file.clone()]});
    vec![
        (
            Answer::Compare,
            json!({"total_commits": 1, "commits": [commit.clone()], "files": [file]}),
        ),
        (Answer::Commit, commit),
        (
            Answer::Repo,
            json!({"full_name": "acme/app", "default_branch": "main"}),
        ),
        (
            Answer::Blob,
            json!({"content": "S0VZPXgK\n", "encoding": "base64", "sha": SHA}),
        ),
        (
            Answer::Alert,
            json!({"number": 3, "secret_type": "tatum_api_key", "state": "open",
                               "secret": "t-0"}),
        ),
        (
            Answer::Locations,
            json!([{"type": "commit", "details": {"path": ".env",
                                   "start_line": 1, "commit_sha": SHA}}]),
        ),
        (
            Answer::Repo,
            json!({"message": "Not Found",
                              "documentation_url": "https://docs.github.com/rest"}),
        ),
    ]
}

#[derive(Debug, Clone, Copy)]
enum Answer {
    Compare,
    Commit,
    Repo,
    Blob,
    Alert,
    Locations,
}

/// One change to a document.
#[derive(Debug, Clone)]
enum Mutation {
    /// The `n`th leaf (string, number, bool, null) becomes the key.
    LeafIsKey(usize),
    /// The `n`th leaf becomes another JSON value.
    Leaf(usize, Value),
    /// The key inserted at about `at` of the text (per mille).
    InsertKey(u16),
    /// A byte replaced.
    Byte(u16, u8),
    /// Cut at `at` per mille.
    Truncate(u16),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let other = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        "[ -~]{0,40}".prop_map(Value::from),
        Just(json!("../../../x")),
        Just(json!("refs/heads/a..b")),
        Just(json!([])),
        Just(json!({})),
    ];
    prop_oneof![
        4 => (0usize..64).prop_map(Mutation::LeafIsKey),
        3 => ((0usize..64), other).prop_map(|(n, v)| Mutation::Leaf(n, v)),
        2 => (0u16..=1000).prop_map(Mutation::InsertKey),
        2 => ((0u16..=1000), any::<u8>()).prop_map(|(at, b)| Mutation::Byte(at, b)),
        1 => (0u16..=1000).prop_map(Mutation::Truncate),
    ]
}

fn key() -> impl Strategy<Value = String> {
    "t-[0-9a-f]{24}-[0-9a-f]{24}"
}

fn set_leaf(doc: &mut Value, n: usize, to: Value) {
    fn walk(v: &mut Value, n: &mut usize, to: &Value) -> bool {
        match v {
            Value::Array(items) => items.iter_mut().any(|i| walk(i, n, to)),
            Value::Object(map) => map.values_mut().any(|i| walk(i, n, to)),
            _ if *n == 0 => {
                *v = to.clone();
                true
            }
            _ => {
                *n -= 1;
                false
            }
        }
    }
    let mut n = n;
    walk(doc, &mut n, &to);
}

/// The seed with the mutations applied: structural ones first, then the
/// text ones.
fn mutate(seed: &Value, mutations: &[Mutation], key: &str) -> Vec<u8> {
    let mut doc = seed.clone();
    for m in mutations {
        match m {
            Mutation::LeafIsKey(n) => set_leaf(&mut doc, *n, Value::from(key)),
            Mutation::Leaf(n, v) => set_leaf(&mut doc, *n, v.clone()),
            _ => {}
        }
    }
    let mut text = serde_json::to_vec(&doc).unwrap_or_default();
    let at = |per_mille: u16, len: usize| len * usize::from(per_mille.min(1000)) / 1000;
    for m in mutations {
        match m {
            Mutation::InsertKey(p) => {
                let i = at(*p, text.len());
                text.splice(i..i, key.bytes());
            }
            Mutation::Byte(p, b) if !text.is_empty() => {
                let i = at(*p, text.len() - 1);
                text[i] = *b;
            }
            Mutation::Truncate(p) => text.truncate(at(*p, text.len())),
            _ => {}
        }
    }
    text
}

fn no_key(said: &str, key: &str) -> Result<(), TestCaseError> {
    // Also a recognisable piece of it: the first hex group.
    prop_assert!(!said.contains(key) && !said.contains(&key[2..26]), "{said}");
    Ok(())
}

fn any_status() -> impl Strategy<Value = u16> {
    prop_oneof![
        6 => Just(200u16),
        1 => Just(401u16),
        1 => Just(403u16),
        1 => Just(404u16),
        1 => Just(422u16),
        1 => Just(429u16),
        1 => Just(502u16),
    ]
}

/// Parses `body` as `kind` would be; the error, if any, as displayed.
fn parse_answer(kind: Answer, status: u16, body: Vec<u8>) -> Option<String> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let mut headers = HeaderMap::new();
    if status.as_u16() == 429 {
        headers.insert("retry-after", HeaderValue::from_static("7"));
    }
    let text = Ok(String::from_utf8_lossy(&body).into_owned());
    let what = "GET /repos/acme/app/x";
    let err: Option<ApiError> = match kind {
        Answer::Compare => decode::<Compare>(what, status, &headers, text).err(),
        Answer::Commit => decode::<CommitData>(what, status, &headers, text).err(),
        Answer::Repo => decode::<RawRepo>(what, status, &headers, text).err(),
        Answer::Blob => decode::<RawBlob>(what, status, &headers, text)
            .and_then(|b| blob_bytes(what, b))
            .err(),
        Answer::Alert => decode::<RawAlert>(what, status, &headers, text)
            .map(|a| format!("{:?}", ScanningAlert::from(a)))
            .err(),
        Answer::Locations => decode::<Vec<RawLocation>>(what, status, &headers, text)
            .map(first_commit_location)
            .err(),
    };
    err.map(|e| e.to_string())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn proptest_payloads_never_panic_quote_a_key_or_yield_an_unsafe_job(
        alert in any::<bool>(),
        mutations in prop::collection::vec(mutation(), 0..4),
        key in key(),
    ) {
        let seed = if alert { alert_seed() } else { push_seed() };
        let body = mutate(&seed, &mutations, &key);
        let remediable: HashSet<String> = ["tatum".to_string()].into();
        if alert {
            match parse_alert(&body, &remediable) {
                Err(e) => no_key(&e.to_string(), &key)?,
                Ok(AlertEvent::Remediate(job)) => {
                    prop_assert!(super::untrusted::repo_problem(&job.repo).is_none());
                }
                Ok(AlertEvent::Ignored(_)) => {}
            }
        } else {
            match parse_push(&body) {
                Err(e) => no_key(&e.to_string(), &key)?,
                // Whatever is accepted passes the checks made again before
                // a URL is built.
                Ok(PushEvent::Scan(job)) => prop_assert!(check_job(&job).is_ok(), "{job:?}"),
                Ok(PushEvent::Ignored(_)) => {}
            }
        }
    }

    #[test]
    fn proptest_api_answers_never_panic_or_quote_a_key(
        seed in 0usize..7,
        status in any_status(),
        mutations in prop::collection::vec(mutation(), 0..4),
        key in key(),
    ) {
        let (kind, doc) = answer_seeds().swap_remove(seed);
        let body = mutate(&doc, &mutations, &key);
        if let Some(said) = parse_answer(kind, status, body) {
            no_key(&said, &key)?;
        }
    }

    #[test]
    fn proptest_a_signature_holds_for_its_body_only(
        body in prop::collection::vec(any::<u8>(), 0..512),
        flip in any::<prop::sample::Index>(),
        header in prop::collection::vec(any::<u8>(), 0..80),
    ) {
        let secret = WebhookSecret::new(SECRET);
        let sig = secret.sign(&body);
        prop_assert!(secret.verify(Some(sig.as_bytes()), &body).is_ok());
        if !body.is_empty() {
            let mut other = body.clone();
            let i = flip.index(other.len());
            other[i] ^= 1;
            prop_assert!(secret.verify(Some(sig.as_bytes()), &other).is_err());
        }
        // Random header bytes never panic and (but for a 2^-256 chance) fail.
        prop_assert!(secret.verify(Some(&header), &body).is_err());
    }
}

/// The endpoint in-process: the signature check, then parsing, on mutated
/// payloads signed with the right secret or not.
struct Endpoint {
    rt: tokio::runtime::Runtime,
    router: axum::Router,
    _dir: tempfile::TempDir,
}

impl Endpoint {
    fn new() -> Endpoint {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(DeliveryStore::open(dir.path()).unwrap());
        let settings = WebhookSettings {
            path: "/hook".into(),
            secret: WebhookSecret::new(SECRET),
            max_body: 64 << 10,
            comment: false,
            max_file_size: 1 << 20,
            concurrency: 1,
            http: HttpGuard::new(HttpLimits::default()),
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let state = WebhookState::new(
            &settings,
            DeliveryQueue::new(store),
            ["tatum".to_string()].into(),
        );
        Endpoint {
            rt,
            router: webhook_router(state),
            _dir: dir,
        }
    }

    fn send(&self, event: &str, id: &str, sig: &str, body: Vec<u8>) -> (StatusCode, String) {
        let req = Request::post("/hook")
            .header("content-type", "application/json")
            .header("x-github-event", event)
            .header("x-github-delivery", id)
            .header("x-hub-signature-256", sig)
            .body(Body::from(body))
            .unwrap();
        self.rt.block_on(async {
            let res = self.router.clone().oneshot(req).await.unwrap();
            let status = res.status();
            let bytes = axum::body::to_bytes(res.into_body(), 1 << 20)
                .await
                .unwrap_or_default();
            (status, String::from_utf8_lossy(&bytes).into_owned())
        })
    }
}

#[test]
fn proptest_the_endpoint_never_panics_or_answers_with_a_key() {
    let endpoint = Endpoint::new();
    let strategy = (
        0usize..4,
        prop::collection::vec(mutation(), 0..4),
        key(),
        any::<bool>(),
    );
    let n = std::sync::atomic::AtomicU64::new(0);
    let mut runner = proptest::test_runner::TestRunner::new(config());
    let outcome = runner.run(&strategy, |(event, mutations, key, sign)| {
        let n = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (event, seed) = match event {
            0 => ("push", push_seed()),
            1 => ("secret_scanning_alert", alert_seed()),
            2 => ("ping", json!({"zen": "Design for failure.", "hook_id": 1})),
            _ => ("issues", json!({"action": "opened"})),
        };
        let body = mutate(&seed, &mutations, &key);
        let sig = if sign {
            WebhookSecret::new(SECRET).sign(&body)
        } else {
            WebhookSecret::new("forged").sign(&body)
        };
        let (status, answer) = endpoint.send(event, &format!("fuzz-{n}"), &sig, body);
        let expected: &[u16] = if sign {
            &[200, 202, 400, 413]
        } else {
            &[401, 413]
        };
        prop_assert!(expected.contains(&status.as_u16()), "{status} {answer}");
        no_key(&answer, &key)
    });
    if let Err(e) = outcome {
        panic!("{e}");
    }
}
