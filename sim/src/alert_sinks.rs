//! Where alerts land: a generic webhook receiver (which also stands in for
//! Slack's incoming webhooks) and GitHub's create-issue endpoint.
//!
//! - `POST /_sink/webhook/{name}`: records the request; answers `200 ok`,
//!   or as `PUT /_sim/sink/{name}/behaviour` set it
//!   (`{"status": 500}`, `{"delay_ms": 30000}`, or both).
//! - `GET /_sim/sink/{name}`: the recorded requests,
//!   `[{"content_type", "body", "status"}]` (`body` is the raw text).
//! - `POST /repos/{owner}/{repo}/issues`: GitHub's "create an issue". Needs
//!   `Authorization: Bearer|token T` (401 otherwise, as GitHub does) and a
//!   JSON body with a `title`; answers `201` with the issue.
//! - `GET /_sim/github/issues`: the created issues,
//!   `[{"repo", "number", "title", "body", "labels", "token"}]`.
//! - `PUT /_sim/github/behaviour`: as for sinks.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

#[derive(Default)]
struct Sinks {
    received: HashMap<String, Vec<Value>>,
    behaviour: HashMap<String, Behaviour>,
    issues: Vec<Value>,
    github: Behaviour,
}

/// How a receiver answers: after `delay_ms`, with `status` (default: success).
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Behaviour {
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    delay_ms: u64,
}

type Shared = Arc<Mutex<Sinks>>;

pub fn router() -> Router {
    Router::new()
        .route("/_sink/webhook/{name}", post(receive_webhook))
        .route("/_sim/sink/{name}", get(list_webhook))
        .route("/_sim/sink/{name}/behaviour", put(set_webhook_behaviour))
        .route("/repos/{owner}/{repo}/issues", post(create_issue))
        .route("/_sim/github/issues", get(list_issues))
        .route("/_sim/github/behaviour", put(set_github_behaviour))
        .with_state(Shared::default())
}

/// A poisoned lock only means another handler panicked; the data is still
/// what the test wants to see.
fn lock(state: &Shared) -> MutexGuard<'_, Sinks> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

async fn receive_webhook(
    State(state): State<Shared>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let behaviour = {
        let mut sinks = lock(&state);
        let behaviour = sinks.behaviour.get(&name).copied().unwrap_or_default();
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        sinks.received.entry(name).or_default().push(json!({
            "content_type": content_type,
            "body": body,
            "status": behaviour.status.unwrap_or(200),
        }));
        behaviour
    };
    answer(behaviour, (StatusCode::OK, "ok").into_response()).await
}

async fn list_webhook(State(state): State<Shared>, Path(name): Path<String>) -> Json<Value> {
    let sinks = lock(&state);
    Json(json!(sinks
        .received
        .get(&name)
        .cloned()
        .unwrap_or_default()))
}

async fn set_webhook_behaviour(
    State(state): State<Shared>,
    Path(name): Path<String>,
    Json(behaviour): Json<Behaviour>,
) -> StatusCode {
    lock(&state).behaviour.insert(name, behaviour);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct NewIssue {
    title: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    labels: Vec<String>,
}

async fn create_issue(
    State(state): State<Shared>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("token "))
        })
        .map(str::to_string);
    let Some(token) = token else {
        let msg = json!({"message": "Requires authentication"});
        return (StatusCode::UNAUTHORIZED, Json(msg)).into_response();
    };
    let issue: NewIssue = match serde_json::from_str(&body) {
        Ok(issue) => issue,
        Err(e) => {
            let msg = json!({"message": format!("Problems parsing JSON: {e}")});
            return (StatusCode::BAD_REQUEST, Json(msg)).into_response();
        }
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1");
    let (behaviour, created) = {
        let mut sinks = lock(&state);
        let behaviour = sinks.github;
        let number = sinks.issues.len() + 1;
        let full = format!("{owner}/{repo}");
        let record = json!({
            "repo": full, "number": number, "title": issue.title,
            "body": issue.body, "labels": issue.labels, "token": token,
        });
        // A simulated failure creates nothing, as a real one would not.
        if !behaviour.status.is_some_and(|s| !(200..300).contains(&s)) {
            sinks.issues.push(record);
        }
        let labels: Vec<Value> = issue.labels.iter().map(|l| json!({"name": l})).collect();
        let created = json!({
            "id": number, "number": number, "state": "open",
            "title": issue.title, "body": issue.body, "labels": labels,
            "url": format!("http://{host}/repos/{full}/issues/{number}"),
            "html_url": format!("http://{host}/{full}/issues/{number}"),
        });
        (behaviour, created)
    };
    answer(
        behaviour,
        (StatusCode::CREATED, Json(created)).into_response(),
    )
    .await
}

async fn list_issues(State(state): State<Shared>) -> Json<Value> {
    Json(json!(lock(&state).issues))
}

async fn set_github_behaviour(
    State(state): State<Shared>,
    Json(behaviour): Json<Behaviour>,
) -> StatusCode {
    lock(&state).github = behaviour;
    StatusCode::NO_CONTENT
}

async fn answer(behaviour: Behaviour, success: Response) -> Response {
    if behaviour.delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(behaviour.delay_ms)).await;
    }
    match behaviour.status.map(StatusCode::from_u16) {
        Some(Ok(status)) if !status.is_success() => {
            let msg = json!({"message": format!("simulated {status}")});
            (status, Json(msg)).into_response()
        }
        _ => success,
    }
}
