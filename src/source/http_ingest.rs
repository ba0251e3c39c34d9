//! `POST watch.http_ingest.path` on `http.listen`: log lines shipped over
//! HTTP (Vector's `http` sink, Fluent Bit's `http` output, curl).
//!
//! Checks, in order, each answered at once and none echoing the body or
//! the token:
//! 1. `Authorization: Bearer TOKEN` missing or wrong → 401, nothing read
//!    (the token is compared as SHA-256 digests in constant time);
//! 2. `Content-Length` over `max_body` (default [`DEFAULT_MAX_BODY`]) → 413,
//!    nothing read; a body that grows past it while read → 413;
//! 3. no room in `http.max_inflight_body_bytes` → 503 + `Retry-After`; a
//!    body slower than `http.body_timeout_secs` → 408;
//! 4. the body is split into lines ([`records`]) and each queued (waiting
//!    while the queue is full), then 200 `{"accepted": N}`.
//!
//! Body formats, told apart by content: a JSON array of records (Fluent
//! Bit's `format json`, Vector's `codec json` without framing), JSON lines
//! (`json_lines`, `newline_delimited`), or plain text, one line each. A
//! record's line is its `message` or `log` field; its other fields (not
//! host/app) follow as JSON on the next line, so a key anywhere in it is
//! scanned; host from `host`/`hostname`, app from `appname`/`app_name`/
//! `app`/`ident`.

use crate::metrics::ListenerCounts;
use crate::scan::{Origin, Via};
use crate::server::{HttpGuard, Timeout};
use crate::source::syslog::framer::Framer;
use crate::source::syslog::{parse::name, Origins, Queue, MAX_LINE};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use http_body_util::BodyExt;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use subtle::ConstantTimeEq;

pub const DEFAULT_PATH: &str = "/ingest";
/// Vector batches up to 10 MB by default, Fluent Bit sends chunks of a
/// few MB: 10 MiB takes either whole.
pub const DEFAULT_MAX_BODY: usize = 10 << 20;

#[derive(Debug, Clone, PartialEq)]
pub struct HttpIngestSettings {
    pub path: String,
    pub token_env: String,
    pub max_body: usize,
}

impl HttpIngestSettings {
    /// `ingest:/ingest`: the name in `/metrics`, `/healthz` and locations.
    pub fn name(&self) -> String {
        format!("ingest:{}", self.path)
    }
}

/// Routes of the daemon's server an ingest path must not shadow.
const TAKEN: [&str; 4] = ["/healthz", "/readyz", "/metrics", "/ui"];

/// `watch.http_ingest`, or its problems (path, message naming the fix).
pub fn check(
    c: &crate::config::Config,
    bad: &mut impl FnMut(String, String),
) -> Option<HttpIngestSettings> {
    let h = c.watch.http_ingest.as_ref()?;
    let path = h.path.clone().unwrap_or_else(|| DEFAULT_PATH.to_string());
    let taken = TAKEN
        .iter()
        .any(|t| path == *t || path.starts_with(&format!("{t}/")));
    let webhook = c.github.as_ref().and_then(|g| g.webhook.as_ref());
    let hook_path = webhook.map(|w| w.path.clone().unwrap_or_else(|| "/github/webhook".into()));
    if !path.starts_with('/') || path.contains(['?', '#', ' ', '{', '}', '*']) {
        bad(
            "watch.http_ingest.path".into(),
            format!("`{path}` is not a route; write an absolute path such as /ingest"),
        );
    } else if taken || hook_path.as_deref() == Some(path.as_str()) {
        bad(
            "watch.http_ingest.path".into(),
            format!("`{path}` is already served by the daemon; pick another, e.g. /ingest"),
        );
    }
    if c.http.is_none() {
        bad(
            "watch.http_ingest".into(),
            "the endpoint is served on http.listen, which is not set; add `http: {listen: 127.0.0.1:9187}`".into(),
        );
    }
    if h.token_env.trim().is_empty() {
        bad(
            "watch.http_ingest.token_env".into(),
            "name the environment variable holding the bearer token, e.g. KEYSENTRY_INGEST_TOKEN"
                .into(),
        );
    }
    let max_body = h.max_body.unwrap_or(DEFAULT_MAX_BODY);
    if max_body == 0 {
        bad(
            "watch.http_ingest.max_body".into(),
            "0 would refuse every body; give a size in bytes, e.g. 10485760".into(),
        );
    }
    if let Ok(limits) = crate::server::HttpLimits::from_config(c.http.as_ref()) {
        if max_body > limits.max_inflight_body_bytes {
            bad(
                "watch.http_ingest.max_body".into(),
                format!(
                    "{max_body} is above http.max_inflight_body_bytes ({}): a body of that size could never be read; lower it or raise http.max_inflight_body_bytes",
                    limits.max_inflight_body_bytes
                ),
            );
        }
    }
    Some(HttpIngestSettings {
        path,
        token_env: h.token_env.clone(),
        max_body: max_body.max(1),
    })
}

/// What the handler needs; cheap to clone.
#[derive(Clone)]
pub struct Endpoint(Arc<Inner>);

struct Inner {
    name: String,
    token: [u8; 32],
    max_body: usize,
    queue: Queue,
    http: HttpGuard,
}

impl Endpoint {
    /// `token` is the value of `token_env`; only its digest is kept.
    pub fn new(s: &HttpIngestSettings, token: &str, queue: Queue, http: HttpGuard) -> Endpoint {
        Endpoint(Arc::new(Inner {
            name: s.name(),
            token: Sha256::digest(token.as_bytes()).into(),
            max_body: s.max_body,
            queue,
            http,
        }))
    }

    pub fn router(self, path: &str) -> Router {
        Router::new().route(path, post(receive)).with_state(self)
    }
}

#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("missing or wrong bearer token: send `Authorization: Bearer TOKEN`, TOKEN being the value of the variable watch.http_ingest.token_env names")]
    Token,
    #[error("body larger than watch.http_ingest.max_body ({max} bytes); send smaller batches")]
    TooLarge { max: usize },
    #[error("the request body did not arrive within http.body_timeout_secs ({secs} s)")]
    Timeout { secs: u64 },
    #[error("too many request bodies in flight (http.max_inflight_body_bytes); retry later")]
    Busy,
    #[error("cannot read the request body; send it again")]
    Body,
    #[error("the daemon is stopping; send it again later")]
    Stopping,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let status = match self {
            Refused::Token => StatusCode::UNAUTHORIZED,
            Refused::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Refused::Timeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Refused::Busy | Refused::Stopping => StatusCode::SERVICE_UNAVAILABLE,
            Refused::Body => StatusCode::BAD_REQUEST,
        };
        let body = Json(json!({ "error": self.to_string() }));
        match self {
            Refused::Token => {
                (status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
            }
            Refused::Busy | Refused::Stopping => {
                (status, [(header::RETRY_AFTER, "5")], body).into_response()
            }
            _ => (status, body).into_response(),
        }
    }
}

async fn receive(
    State(st): State<Endpoint>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, Refused> {
    let st = &st.0;
    ListenerCounts::add(&st.queue.counts.connections, 1);
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .map(|t| <[u8; 32]>::from(Sha256::digest(t)));
    let ok = given.is_some_and(|g| bool::from(g.ct_eq(&st.token)));
    if !ok {
        return Err(Refused::Token);
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > st.max_body as u64) {
        return Err(Refused::TooLarge { max: st.max_body });
    }
    let (body, _budget) = read_body(st, declared.map_or(0, |n| n as usize), req).await?;
    let mut origins = Origins::new(Via::Http, &st.name);
    let recs = records(&body, &mut origins, &st.queue.counts);
    drop(body);
    let n = recs.len();
    for (origin, data) in recs {
        st.queue
            .send(origin, data)
            .await
            .map_err(|_| Refused::Stopping)?;
    }
    Ok((StatusCode::OK, Json(json!({ "accepted": n }))).into_response())
}

/// The body, read under `max_body`, `http.body_timeout_secs` and the
/// in-flight budget (held until the lines are split out).
async fn read_body(
    st: &Inner,
    declared: usize,
    req: Request,
) -> Result<(Vec<u8>, crate::server::BodyBudget), Refused> {
    let mut budget = st.http.reserve(declared).ok_or(Refused::Busy)?;
    let mut body = req.into_body();
    let mut buf = Vec::with_capacity(declared);
    let limit = st.http.limits().body_timeout;
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => {
                st.http.timed_out(Timeout::Body);
                return Err(Refused::Timeout {
                    secs: limit.as_secs(),
                });
            }
            Ok(None) => break,
            Ok(Some(Err(_))) => return Err(Refused::Body),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        st.http.body_read(data.len());
        let len = buf.len() + data.len();
        if len > st.max_body {
            return Err(Refused::TooLarge { max: st.max_body });
        }
        if len > buf.capacity() {
            let want = (buf.capacity() * 2).clamp(len, st.max_body);
            if !budget.grow(want - buf.capacity()) {
                return Err(Refused::Busy);
            }
            buf.reserve_exact(want - buf.len());
        }
        buf.extend_from_slice(&data);
    }
    Ok((buf, budget))
}

/// The lines of a body, each with its origin (see the module doc).
pub fn records(
    body: &[u8],
    origins: &mut Origins,
    counts: &ListenerCounts,
) -> Vec<(Arc<Origin>, Vec<u8>)> {
    let mut out = Vec::new();
    let trimmed = body.trim_ascii_start();
    if trimmed.starts_with(b"[") {
        match serde_json::from_slice::<Vec<Value>>(trimmed) {
            Ok(values) => {
                for v in values {
                    record(v, None, origins, &mut out);
                }
                return out;
            }
            // Not a JSON array after all: scanned as text below.
            Err(_) => ListenerCounts::add(&counts.parse_failures, 1),
        }
    }
    let mut framer = Framer::lines(MAX_LINE);
    let mut frames = framer.push(body);
    frames.extend(framer.finish());
    for f in frames {
        if f.oversized && !f.continued {
            ListenerCounts::add(&counts.parse_failures, 1);
        }
        if f.data.starts_with(b"{") && !f.oversized {
            match serde_json::from_slice::<Value>(&f.data) {
                Ok(v) => {
                    record(v, Some(f.data), origins, &mut out);
                    continue;
                }
                Err(_) => ListenerCounts::add(&counts.parse_failures, 1),
            }
        }
        out.push((origins.get(None, None), f.data));
    }
    out
}

/// One JSON record: its line (`message`/`log`), then its other fields.
fn record(
    v: Value,
    raw: Option<Vec<u8>>,
    origins: &mut Origins,
    out: &mut Vec<(Arc<Origin>, Vec<u8>)>,
) {
    let mut obj = match v {
        Value::Object(o) => o,
        Value::String(s) => {
            push_pieces(origins.get(None, None), s.into_bytes(), out);
            return;
        }
        other => {
            let text = raw.unwrap_or_else(|| other.to_string().into_bytes());
            push_pieces(origins.get(None, None), text, out);
            return;
        }
    };
    let host = field(&obj, &["host", "hostname"]);
    let app = field(&obj, &["appname", "app_name", "app", "ident"]);
    let line = ["message", "log"].iter().find_map(|k| match obj.get(*k) {
        Some(Value::String(_)) => obj.remove(*k),
        _ => None,
    });
    let mut data = match line {
        Some(Value::String(s)) => s.into_bytes(),
        _ => Vec::new(),
    };
    // A name that had to be masked may be a key: it stays in what is
    // scanned.
    for k in ["host", "hostname", "appname", "app_name", "app", "ident"] {
        let plain = match obj.get(k) {
            Some(Value::String(v)) => name(v.as_bytes()).as_deref() == Some(v.as_str()),
            _ => false,
        };
        if plain {
            obj.remove(k);
        }
    }
    if !obj.is_empty() {
        if !data.is_empty() {
            data.push(b'\n');
        }
        data.extend(Value::Object(obj).to_string().into_bytes());
    }
    let origin = origins.get(host, app);
    push_pieces(origin, data, out);
}

fn field(obj: &Map<String, Value>, names: &[&str]) -> Option<String> {
    names
        .iter()
        .find_map(|k| obj.get(*k)?.as_str().and_then(|s| name(s.as_bytes())))
}

/// `data` in pieces of at most [`MAX_LINE`] bytes.
fn push_pieces(origin: Arc<Origin>, data: Vec<u8>, out: &mut Vec<(Arc<Origin>, Vec<u8>)>) {
    if data.is_empty() {
        return;
    }
    if data.len() <= MAX_LINE {
        out.push((origin, data));
        return;
    }
    for piece in data.chunks(MAX_LINE) {
        out.push((origin.clone(), piece.to_vec()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(body: &str) -> Vec<(String, String)> {
        let counts = ListenerCounts::default();
        let mut origins = Origins::new(Via::Http, "ingest:/ingest");
        records(body.as_bytes(), &mut origins, &counts)
            .into_iter()
            .map(|(o, d)| (o.path(), String::from_utf8_lossy(&d).into_owned()))
            .collect()
    }

    #[test]
    fn plain_text_is_one_line_each() {
        assert_eq!(
            lines("first line\r\n123 starts with a number\n\nlast"),
            vec![
                ("-/-".into(), "first line".into()),
                ("-/-".into(), "123 starts with a number".into()),
                ("-/-".into(), "last".into())
            ]
        );
    }

    #[test]
    fn json_lines_name_host_and_app_and_keep_other_fields() {
        let got = lines(
            "{\"message\":\"hello\",\"host\":\"web-1\",\"appname\":\"api\",\"timestamp\":\"2026\"}\n\
             {\"log\":\"from fluent bit\",\"hostname\":\"web-2\"}\n\
             not json {\n",
        );
        assert_eq!(
            got[0],
            ("web-1/api".into(), "hello\n{\"timestamp\":\"2026\"}".into())
        );
        assert_eq!(got[1], ("web-2/-".into(), "from fluent bit".into()));
        assert_eq!(got[2], ("-/-".into(), "not json {".into()));
        // A host that looks like a key is masked in the origin but scanned.
        let key = "t-6677183273e3a22c239969cb-dbb1e8c8d1c012c954834afa";
        let got = lines(&format!("{{\"message\":\"m\",\"host\":\"{key}\"}}"));
        assert!(!got[0].0.contains("6677183273e3a22c239969cb"), "{got:?}");
        assert!(got[0].1.contains(key), "{got:?}");
    }

    #[test]
    fn a_json_array_is_one_record_each() {
        // Fluent Bit's `format json`.
        let got = lines("[{\"date\":1.5,\"log\":\"a\"},{\"message\":\"b\",\"host\":\"h\"},\"c\"]");
        assert_eq!(
            got,
            vec![
                ("-/-".into(), "a\n{\"date\":1.5}".into()),
                ("h/-".into(), "b".into()),
                ("-/-".into(), "c".into())
            ]
        );
    }

    #[test]
    fn a_broken_json_line_is_scanned_as_text_and_counted() {
        let counts = ListenerCounts::default();
        let mut origins = Origins::new(Via::Http, "ingest:/ingest");
        let got = records(b"{\"message\": \"unterminated\n", &mut origins, &counts);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, b"{\"message\": \"unterminated");
        assert_eq!(
            counts
                .parse_failures
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }
}
