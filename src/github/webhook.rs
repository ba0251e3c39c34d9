//! The webhook endpoint, `POST github.webhook.path`.
//!
//! Checks, in order, each answered at once:
//! 1. `Content-Length` over `max_body` → 413, nothing read;
//! 2. `X-Hub-Signature-256` missing or malformed → 401, nothing read;
//! 3. no room in `http.max_inflight_body_bytes` for the declared length →
//!    503 + `Retry-After`, nothing read;
//! 4. the body streams into the HMAC and a buffer charged to that budget:
//!    past `max_body` → 413, past `http.body_timeout_secs` → 408, budget
//!    gone (a body without `Content-Length`) → 503; once it has all arrived
//!    a wrong MAC → 401, before anything in it is looked at;
//! 5. a content type other than JSON → 415;
//! 6. `ping` → 200; events not handled, deleted branches, alert actions and
//!    secret types keysentry cannot act on → 202 `ignored`;
//! 7. a handled delivery is stored durably under `X-GitHub-Delivery`, then
//!    answered 202 `queued`; a known id → 202 `duplicate`, not run again.

use super::deliveries::DeliveryQueue;
use super::job::Job;
use super::push::{parse_push, PayloadError, PushEvent};
use super::secret_scanning::{parse_alert, AlertEvent};
use super::signature::{SignatureError, Verifier, WebhookSecret};
use super::WebhookSettings;
use crate::server::{BodyBudget, HttpGuard, Timeout};
use crate::store::webhook::Enqueued;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use http_body_util::BodyExt;
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
    /// The body budget and timeout, shared with every other request.
    http: HttpGuard,
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
                http: settings.http.clone(),
            }),
        }
    }
}

/// The router for `github.webhook.path`, ready to `.merge()` into a server.
pub fn webhook_router(state: WebhookState) -> Router {
    let path = state.inner.path.clone();
    Router::new().route(&path, post(receive)).with_state(state)
}

/// Why a request was refused; the body says what to do about it.
#[derive(Debug, thiserror::Error)]
enum HookError {
    #[error("body larger than github.webhook.max_body ({max} bytes)")]
    TooLarge { max: usize },
    #[error("cannot read the request body: {0}")]
    Body(String),
    #[error("the request body did not arrive within http.body_timeout_secs ({secs} s)")]
    BodyTimeout { secs: u64 },
    #[error("too many request bodies in flight (http.max_inflight_body_bytes); retry later")]
    Busy,
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
            HookError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            HookError::Store | HookError::Busy => StatusCode::SERVICE_UNAVAILABLE,
        };
        let body = Json(json!({ "error": self.to_string() }));
        if matches!(self, HookError::Busy) {
            return (status, [(header::RETRY_AFTER, "5")], body).into_response();
        }
        (status, body).into_response()
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
    let signature = headers.get("x-hub-signature-256").map(|v| v.as_bytes());
    let verifier = st.secret.verifier(signature).map_err(refused)?;
    let (body, _budget) = read_signed(st, declared, req.into_body(), verifier).await?;
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

fn refused(e: SignatureError) -> HookError {
    tracing::warn!(reason = %e, "webhook request refused");
    HookError::Signature(e)
}

/// The body, read under `http.body_timeout_secs` and the in-flight budget,
/// and the budget it holds (kept while the body is parsed). Returned only
/// once its MAC is the one claimed.
async fn read_signed(
    st: &Inner,
    declared: Option<u64>,
    mut body: Body,
    mut mac: Verifier,
) -> Result<(Vec<u8>, BodyBudget), HookError> {
    let too_large = HookError::TooLarge { max: st.max_body };
    // Known to be at most max_body by now.
    let declared = declared.map_or(0, |n| n as usize);
    let mut budget = st.http.reserve(declared).ok_or(HookError::Busy)?;
    let mut buf = Vec::with_capacity(declared);
    let limit = st.http.limits().body_timeout;
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => {
                st.http.timed_out(Timeout::Body);
                return Err(HookError::BodyTimeout {
                    secs: limit.as_secs(),
                });
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => return Err(HookError::Body(e.to_string())),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        st.http.body_read(data.len());
        let len = buf.len() + data.len();
        if len > st.max_body {
            return Err(too_large);
        }
        if len > buf.capacity() {
            // Charged for what is allocated, not only what is used.
            let want = (buf.capacity() * 2).clamp(len, st.max_body);
            if !budget.grow(want - buf.capacity()) {
                return Err(HookError::Busy);
            }
            buf.reserve_exact(want - buf.len());
        }
        mac.update(&data);
        buf.extend_from_slice(&data);
    }
    mac.finish().map_err(refused)?;
    Ok((buf, budget))
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
