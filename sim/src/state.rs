//! The simulator's shared state, the call log, and fault injection (a
//! middleware in front of every simulated API).

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Clone, Default)]
pub struct Sim(Arc<Mutex<SimState>>);

impl Sim {
    pub fn lock(&self) -> MutexGuard<'_, SimState> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[derive(Default)]
pub struct SimState {
    pub calls: Vec<Call>,
    pub faults: Vec<Fault>,
    /// Tatum keys by their value.
    pub tatum: HashMap<String, crate::tatum::TatumKey>,
    /// Revoked tokens of the simple providers: (provider, fingerprint).
    pub revoked: HashSet<(&'static str, String)>,
    /// Credentials of the generic verify endpoints, by provider.
    pub verify: HashMap<String, Vec<crate::verify::Credential>>,
    /// Keys of the list-then-delete and self-revoking providers.
    pub keys: crate::revoke_keys::Book,
    /// Makes every generated key distinct.
    pub generated: u64,
}

/// One request received, as `GET /_sim/calls` lists it.
#[derive(Clone, Serialize)]
pub struct Call {
    pub method: String,
    pub path: String,
    /// `None` while the call is still being answered (or was abandoned).
    pub status: Option<u16>,
    /// SHA-256 of the key the request carried; never the key.
    pub key_fingerprint: Option<String>,
    pub at_unix_ms: u128,
}

/// `POST /_sim/fault`: the next `count` calls to `path` (and `method`, if
/// given) answer `status` without reaching the API (after `hang_ms`, if
/// given, with `Retry-After: retry_after` if given). Without `status`, the
/// API handles the call and the answer is held back `hang_ms`: the provider
/// did the work but the caller never hears of it.
#[derive(Clone, Debug, Deserialize)]
pub struct Fault {
    pub path: String,
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default = "one")]
    pub count: u32,
    #[serde(default)]
    pub status: Option<u16>,
    #[serde(default)]
    pub hang_ms: Option<u64>,
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// With `status`: answer with this many bytes of body instead of
    /// "injected fault" (a huge answer).
    #[serde(default)]
    pub body_bytes: Option<usize>,
}

fn one() -> u32 {
    1
}

/// keysentry's fingerprint of a key: lowercase hex SHA-256 of its bytes.
pub fn fingerprint(key: &str) -> String {
    hex(&Sha256::digest(key.as_bytes()))
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

pub fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// The key a request carries, wherever the simulated APIs expect it.
pub fn carried_key(headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(k) = header("x-api-key").or_else(|| header("private-token")) {
        return Some(k.to_string());
    }
    if let Some(auth) = header("authorization") {
        if let Some((_, token)) = auth.split_once(' ') {
            return Some(token.trim().to_string());
        }
    }
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        if let Some(k) = v.get("apiKey").and_then(|k| k.as_str()) {
            return Some(k.to_string());
        }
        if let Some(k) = v.pointer("/credentials/0").and_then(|k| k.as_str()) {
            return Some(k.to_string());
        }
    }
    let form = std::str::from_utf8(body).ok()?;
    form.split('&')
        .find_map(|kv| kv.strip_prefix("token="))
        .map(str::to_string)
}

pub async fn record_and_inject(State(sim): State<Sim>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if path.starts_with("/_sim/") {
        return next.run(req).await;
    }
    let method = req.method().to_string();
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, 1 << 20).await.unwrap_or_default();
    let key = carried_key(&parts.headers, &bytes);
    let (index, fault) = sim.record(method, path, key.as_deref());
    let req = Request::from_parts(parts, Body::from(bytes));
    let hang = fault
        .as_ref()
        .and_then(|f| f.hang_ms)
        .map(Duration::from_millis);
    let response = match fault {
        Some(Fault {
            status: Some(status),
            retry_after,
            body_bytes,
            ..
        }) => {
            if let Some(h) = hang {
                tokio::time::sleep(h).await;
            }
            injected(status, retry_after, body_bytes)
        }
        _ => {
            let r = next.run(req).await;
            if let Some(h) = hang {
                tokio::time::sleep(h).await;
            }
            r
        }
    };
    if let Some(call) = sim.lock().calls.get_mut(index) {
        call.status = Some(response.status().as_u16());
    }
    response
}

impl Sim {
    /// Logs a call as received and takes the fault that applies to it.
    fn record(&self, method: String, path: String, key: Option<&str>) -> (usize, Option<Fault>) {
        let mut s = self.lock();
        let fault = s.faults.iter_mut().find(|f| {
            f.count > 0
                && f.path == path
                && f.method
                    .as_deref()
                    .map_or(true, |m| m.eq_ignore_ascii_case(&method))
        });
        let fault = fault.map(|f| {
            f.count -= 1;
            f.clone()
        });
        s.faults.retain(|f| f.count > 0);
        s.calls.push(Call {
            method,
            path,
            status: None,
            key_fingerprint: key.map(fingerprint),
            at_unix_ms: now_ms(),
        });
        (s.calls.len() - 1, fault)
    }
}

fn injected(status: u16, retry_after: Option<u64>, body_bytes: Option<usize>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = match body_bytes {
        Some(n) => (status, Body::from(vec![b'x'; n])).into_response(),
        None => (status, "injected fault").into_response(),
    };
    if let Some(secs) = retry_after {
        if let Ok(v) = secs.to_string().parse() {
            r.headers_mut().insert("retry-after", v);
        }
    }
    r
}
