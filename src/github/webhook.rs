//! The webhook endpoint, `POST github.webhook.path`.
//!
//! Checks, in order, each answered at once:
//! 1. body over `max_body` → 413 (by `Content-Length` before reading, else
//!    while reading);
//! 2. `X-Hub-Signature-256` missing or wrong → 401, before anything in the
//!    body is looked at;
//! 3. a content type other than JSON → 415;
//! 4. `ping` → 200; events not handled, deleted branches, alert actions and
//!    secret types keysentry cannot act on → 202 `ignored`;
//! 5. a handled delivery is stored durably under `X-GitHub-Delivery`, then
//!    answered 202 `queued`; a known id → 202 `duplicate`, not run again.

use super::deliveries::{DeliveryQueue, Job};
use super::push::{parse_push, PayloadError, PushEvent};
use super::secret_scanning::{parse_alert, AlertEvent};
use super::signature::{SignatureError, WebhookSecret};
use super::WebhookSettings;
use crate::store::webhook::Enqueued;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;

/// Everything the handler needs; cheap to clone.
#[derive(Clone)]
pub struct WebhookState {
    inner: Arc<Inner>,
}

struct Inner {
    path: String,
    secret: WebhookSecret,
    max_body: usize,
    queue: DeliveryQueue,
    /// Providers whose secret scanning alerts are worth fetching.
    remediable: HashSet<String>,
}

impl WebhookState {
    pub fn new(
        settings: &WebhookSettings,
        queue: DeliveryQueue,
        remediable: HashSet<String>,
    ) -> WebhookState {
        WebhookState {
            inner: Arc::new(Inner {
                path: settings.path.clone(),
                secret: settings.secret.clone(),
                max_body: settings.max_body,
                queue,
                remediable,
            }),
        }
    }
}

/// The router for `github.webhook.path`, ready to `.merge()` into a server.
pub fn webhook_router(state: WebhookState) -> Router {
    let path = state.inner.path.clone();
    let limit = state.inner.max_body;
    Router::new()
        .route(&path, post(receive))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

/// Why a request was refused; the body says what to do about it.
#[derive(Debug, thiserror::Error)]
enum HookError {
    #[error("body larger than github.webhook.max_body ({max} bytes)")]
    TooLarge { max: usize },
    #[error("cannot read the request body: {0}")]
    Body(String),
    #[error(transparent)]
    Signature(SignatureError),
    #[error("content type must be application/json; set \"Content type: application/json\" in the GitHub webhook settings")]
    ContentType,
    #[error("missing {0} header; is this request from GitHub?")]
    MissingHeader(&'static str),
    #[error(transparent)]
    Payload(#[from] PayloadError),
    #[error("cannot store the delivery; GitHub can redeliver it")]
    Store,
}

impl IntoResponse for HookError {
    fn into_response(self) -> Response {
        let status = match &self {
            HookError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            HookError::Signature(_) => StatusCode::UNAUTHORIZED,
            HookError::ContentType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            HookError::Body(_) | HookError::MissingHeader(_) | HookError::Payload(_) => {
                StatusCode::BAD_REQUEST
            }
            HookError::Store => StatusCode::SERVICE_UNAVAILABLE,
        };
        (status, Json(json!({ "error": self.to_string() }))).into_response()
    }
}

async fn receive(
    State(st): State<WebhookState>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, HookError> {
    let st = &st.inner;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > st.max_body as u64) {
        return Err(HookError::TooLarge { max: st.max_body });
    }
    let body = Bytes::from_request(req, &()).await.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            HookError::TooLarge { max: st.max_body }
        } else {
            HookError::Body(r.body_text())
        }
    })?;
    let signature = headers.get("x-hub-signature-256").map(|v| v.as_bytes());
    if let Err(e) = st.secret.verify(signature, &body) {
        tracing::warn!(reason = %e, "webhook request refused");
        return Err(HookError::Signature(e));
    }
    if !is_json(&headers) {
        return Err(HookError::ContentType);
    }
    let event =
        header_str(&headers, "x-github-event").ok_or(HookError::MissingHeader("X-GitHub-Event"))?;
    let job = match event {
        "ping" => return Ok(reply(StatusCode::OK, json!({ "status": "pong" }))),
        "push" => match parse_push(&body)? {
            PushEvent::Ignored(why) => return Ok(ignored(why)),
            PushEvent::Scan(job) => (Job::Push(job), "push"),
        },
        "secret_scanning_alert" => match parse_alert(&body, &st.remediable)? {
            AlertEvent::Ignored(why) => return Ok(ignored(why)),
            AlertEvent::Remediate(job) => (Job::SecretScanningAlert(job), "secret_scanning_alert"),
        },
        _ => return Ok(ignored("event not handled")),
    };
    let id = delivery_id(&headers)?;
    let (job, event) = job;
    let stored = st.queue.enqueue(id.clone(), event, &job).await;
    tracing::debug!(delivery = %id, event, ?stored, "webhook delivery received");
    match stored {
        Ok(Enqueued::New) => Ok(reply(
            StatusCode::ACCEPTED,
            json!({ "status": "queued", "delivery": id }),
        )),
        Ok(Enqueued::Duplicate) => Ok(reply(
            StatusCode::ACCEPTED,
            json!({ "status": "duplicate", "delivery": id }),
        )),
        Err(e) => {
            tracing::error!(delivery = %id, error = %e, "cannot store webhook delivery");
            Err(HookError::Store)
        }
    }
}

fn reply(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}

fn ignored(reason: &str) -> Response {
    reply(
        StatusCode::ACCEPTED,
        json!({ "status": "ignored", "reason": reason }),
    )
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
}

fn is_json(headers: &HeaderMap) -> bool {
    header_str(headers, "content-type").is_some_and(|ct| {
        let mime = ct.split(';').next().unwrap_or("").trim();
        mime.eq_ignore_ascii_case("application/json")
    })
}

/// GitHub sends a GUID; anything printable up to 100 bytes is accepted, as
/// it is only ever a key.
fn delivery_id(headers: &HeaderMap) -> Result<String, HookError> {
    header_str(headers, "x-github-delivery")
        .filter(|id| id.len() <= 100 && id.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .ok_or(HookError::MissingHeader("X-GitHub-Delivery"))
}
