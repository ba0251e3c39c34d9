//! One generic family of read-only "who am I" endpoints for the rule
//! templates' `verify`: `ANY /_verify/{provider}/{*path}`. Point a
//! provider's `api_url` at `{sim}/_verify/{provider}` and the shipped
//! template runs unchanged against it.
//!
//! A test registers a credential (`POST /_sim/verify/{provider}`) with the
//! shape the provider takes it in; a call answers as the real API would:
//! 200 for a live credential sent the right way, 401 (or the provider's own
//! dead status and body) for a revoked, wrong or missing one or a bad
//! signature, 400 for a signed call whose timestamp is outside the window.
//! Shapes:
//! - `{"type":"header","name":"dd-api-key"}` and `{"type":"query","name":"apikey"}`
//! - `{"type":"bearer"}` (`"scheme"` for another word than `Bearer`)
//! - `{"type":"basic","user":"{pair}","password":"{key}"}` (`{key}`,
//!   `{pair}` or literal text; `*` accepts anything)
//! - `{"type":"hmac_query","key_header":"X-MBX-APIKEY"}`: Binance's signed
//!   query (`timestamp` in ms within `window_ms`, `signature` = hex
//!   HMAC-SHA256 of the query before it, keyed by the pair secret)
//! - `{"type":"aws_sigv4"}`: AWS Signature Version 4 in the `Authorization`
//!   header, `x-amz-date` within 15 minutes.

use crate::state::{hex, now_ms, Sim};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::{Json, Router};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub fn routes() -> Router<Sim> {
    Router::new()
        .route("/_sim/verify/{provider}", post(register))
        .route("/_verify/{provider}/{*path}", any(call))
        .route("/_verify/{provider}/", any(call_root))
}

#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Shape {
    Header {
        name: String,
    },
    Query {
        name: String,
    },
    Bearer {
        #[serde(default = "bearer")]
        scheme: String,
    },
    Basic {
        user: String,
        password: String,
    },
    HmacQuery {
        key_header: String,
        #[serde(default = "window")]
        window_ms: u64,
    },
    AwsSigv4,
}

fn bearer() -> String {
    "Bearer".into()
}

fn window() -> u64 {
    5000
}

/// A credential a test registered.
#[derive(Clone, Debug, Deserialize)]
pub struct Credential {
    pub key: String,
    #[serde(default)]
    pub pair: Option<String>,
    pub shape: Shape,
    /// false: the provider knows the key but it is revoked.
    #[serde(default = "yes")]
    pub live: bool,
    /// The provider's answer to a dead credential, when it is not 401 with
    /// a JSON error (Etherscan answers 200 `{"status":"0"}`).
    #[serde(default)]
    pub dead_status: Option<u16>,
    #[serde(default)]
    pub dead_body: Option<Value>,
    #[serde(default)]
    pub live_body: Option<Value>,
}

fn yes() -> bool {
    true
}

async fn register(
    State(sim): State<Sim>,
    Path(provider): Path<String>,
    Json(c): Json<Credential>,
) -> StatusCode {
    sim.lock().verify.entry(provider).or_default().push(c);
    StatusCode::NO_CONTENT
}

async fn call_root(
    state: State<Sim>,
    Path(provider): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(state, provider, method, uri, headers, body)
}

async fn call(
    state: State<Sim>,
    Path((provider, _)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    answer(state, provider, method, uri, headers, body)
}

fn answer(
    State(sim): State<Sim>,
    provider: String,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let creds = sim
        .lock()
        .verify
        .get(&provider)
        .cloned()
        .unwrap_or_default();
    let req = Req {
        method: method.as_str(),
        uri: &uri,
        headers: &headers,
        body: &body,
    };
    // The first credential the request carries decides; none is 401.
    let mut outcome = Outcome::Missing;
    for c in &creds {
        match check(c, &req) {
            Outcome::Missing => continue,
            o => {
                outcome = o;
                break;
            }
        }
    }
    let (status, body) = match outcome {
        Outcome::Live(c) => (
            StatusCode::OK,
            c.live_body
                .clone()
                .unwrap_or_else(|| json!({"ok": true, "provider": provider})),
        ),
        Outcome::Revoked(c) => return dead(c, "the credential was revoked"),
        Outcome::BadSignature(c) => return dead(c, "signature mismatch"),
        Outcome::Stale => (
            StatusCode::BAD_REQUEST,
            json!({"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."}),
        ),
        Outcome::Missing => (
            StatusCode::UNAUTHORIZED,
            json!({"error": {"code": "unauthorized", "message": "missing or unknown credentials"}}),
        ),
    };
    (status, Json(body)).into_response()
}

fn dead(c: &Credential, why: &str) -> Response {
    let status = c
        .dead_status
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::UNAUTHORIZED);
    let body = c
        .dead_body
        .clone()
        .unwrap_or_else(|| json!({"error": {"code": "unauthorized", "message": why}}));
    (status, Json(body)).into_response()
}

struct Req<'a> {
    method: &'a str,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    body: &'a [u8],
}

impl Req<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn query(&self) -> &str {
        self.uri.query().unwrap_or_default()
    }

    fn param(&self, name: &str) -> Option<String> {
        self.query().split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            (k == name).then(|| percent_decode(v))
        })
    }
}

enum Outcome<'a> {
    Live(&'a Credential),
    Revoked(&'a Credential),
    BadSignature(&'a Credential),
    Stale,
    /// The request does not carry this credential.
    Missing,
}

fn check<'a>(c: &'a Credential, req: &Req<'_>) -> Outcome<'a> {
    let carried = match &c.shape {
        Shape::Header { name } => req.header(name) == Some(c.key.as_str()),
        Shape::Query { name } => req.param(name).as_deref() == Some(c.key.as_str()),
        Shape::Bearer { scheme } => req
            .header("authorization")
            .and_then(|a| a.split_once(' '))
            .is_some_and(|(s, t)| s.eq_ignore_ascii_case(scheme) && t.trim() == c.key),
        Shape::Basic { user, password } => basic(req).is_some_and(|(u, p)| {
            let want = |pattern: &str, got: &str| match pattern {
                "*" => true,
                "{key}" => got == c.key,
                "{pair}" => c.pair.as_deref() == Some(got),
                literal => got == literal,
            };
            want(user, &u) && want(password, &p)
        }),
        Shape::HmacQuery {
            key_header,
            window_ms,
        } => {
            if req.header(key_header) != Some(c.key.as_str()) {
                return Outcome::Missing;
            }
            return signed_query(c, req, *window_ms);
        }
        Shape::AwsSigv4 => return sigv4(c, req),
    };
    match (carried, c.live) {
        (false, _) => Outcome::Missing,
        (true, true) => Outcome::Live(c),
        (true, false) => Outcome::Revoked(c),
    }
}

fn basic(req: &Req<'_>) -> Option<(String, String)> {
    use base64::Engine as _;
    let (scheme, value) = req.header("authorization")?.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    // HMAC takes a key of any length.
    match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(mut m) => {
            m.update(msg);
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

/// Binance: `...&timestamp=MS&signature=HEX`, the signature covering the
/// query before `&signature=` (and a form body, if any).
fn signed_query<'a>(c: &'a Credential, req: &Req<'_>, window_ms: u64) -> Outcome<'a> {
    let query = req.query();
    let Some((signed, sig)) = query.rsplit_once("&signature=") else {
        return Outcome::BadSignature(c);
    };
    let ts = req.param("timestamp").and_then(|t| t.parse::<u128>().ok());
    match ts {
        Some(ts) if now_ms().abs_diff(ts) <= u128::from(window_ms) => {}
        _ => return Outcome::Stale,
    }
    let mut msg = signed.as_bytes().to_vec();
    msg.extend_from_slice(req.body);
    let secret = c.pair.as_deref().unwrap_or_default();
    if hex(&hmac_sha256(secret.as_bytes(), &msg)) != sig {
        return Outcome::BadSignature(c);
    }
    if c.live {
        Outcome::Live(c)
    } else {
        Outcome::Revoked(c)
    }
}

/// AWS SigV4 over the request as received: the canonical request of the
/// signed headers, `x-amz-date` within 15 minutes, the key chain from the
/// pair secret and the credential scope in the header.
fn sigv4<'a>(c: &'a Credential, req: &Req<'_>) -> Outcome<'a> {
    let Some(auth) = req.header("authorization") else {
        return Outcome::Missing;
    };
    let Some(rest) = auth.strip_prefix("AWS4-HMAC-SHA256 ") else {
        return Outcome::Missing;
    };
    let field = |name: &str| {
        rest.split(", ")
            .find_map(|kv| kv.trim().strip_prefix(name)?.strip_prefix('='))
            .unwrap_or_default()
            .to_string()
    };
    let (credential, signed_headers, signature) = (
        field("Credential"),
        field("SignedHeaders"),
        field("Signature"),
    );
    let mut scope = credential.splitn(2, '/');
    if scope.next() != Some(c.key.as_str()) {
        return Outcome::Missing;
    }
    let scope = scope.next().unwrap_or_default().to_string();
    let amz_date = req.header("x-amz-date").unwrap_or_default().to_string();
    if !fresh_amz_date(&amz_date) {
        return Outcome::Stale;
    }
    let mut canonical = format!("{}\n{}\n{}\n", req.method, req.uri.path(), req.query());
    for h in signed_headers.split(';') {
        canonical.push_str(&format!(
            "{h}:{}\n",
            req.header(h).unwrap_or_default().trim()
        ));
    }
    canonical.push_str(&format!(
        "\n{signed_headers}\n{}",
        hex(&Sha256::digest(req.body))
    ));
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let secret = c.pair.as_deref().unwrap_or_default();
    let mut key = format!("AWS4{secret}").into_bytes();
    for part in scope.split('/') {
        key = hmac_sha256(&key, part.as_bytes());
    }
    if hex(&hmac_sha256(&key, to_sign.as_bytes())) != signature {
        return Outcome::BadSignature(c);
    }
    if c.live {
        Outcome::Live(c)
    } else {
        Outcome::Revoked(c)
    }
}

/// Whether a request is SigV4-signed by `key_id`/`secret` for `service`
/// (aws_iam.rs): `Err` with the AWS error code otherwise.
pub(crate) fn sigv4_signed_by(
    key_id: &str,
    secret: &str,
    service: &str,
    method: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), &'static str> {
    let c = Credential {
        key: key_id.to_string(),
        pair: Some(secret.to_string()),
        shape: Shape::AwsSigv4,
        live: true,
        dead_status: None,
        dead_body: None,
        live_body: None,
    };
    let req = Req {
        method,
        uri,
        headers,
        body,
    };
    let scope_names = |s: &str| s.contains(&format!("/{service}/aws4_request"));
    let auth = req.header("authorization").unwrap_or_default();
    if !scope_names(auth) {
        return Err("SignatureDoesNotMatch");
    }
    match sigv4(&c, &req) {
        Outcome::Live(_) => Ok(()),
        Outcome::Stale => Err("RequestExpired"),
        Outcome::Missing => Err("InvalidClientTokenId"),
        Outcome::Revoked(_) | Outcome::BadSignature(_) => Err("SignatureDoesNotMatch"),
    }
}

/// `a=1&b=x%20y` as a map (form bodies and queries), values decoded.
pub(crate) fn form_params(s: &str) -> std::collections::HashMap<String, String> {
    s.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect()
}

/// `YYYYMMDDTHHMMSSZ` within 15 minutes of now (AWS's window).
fn fresh_amz_date(d: &str) -> bool {
    let b = d.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| d.get(r).and_then(|s| s.parse::<i64>().ok());
    let (Some(y), Some(mo), Some(day), Some(h), Some(mi), Some(s)) = (
        num(0..4),
        num(4..6),
        num(6..8),
        num(9..11),
        num(11..13),
        num(13..15),
    ) else {
        return false;
    };
    // Days from civil (H. Hinnant).
    let y2 = if mo <= 2 { y - 1 } else { y };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * (if mo > 2 { mo - 3 } else { mo + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + s;
    let now = (now_ms() / 1000) as i64;
    (now - secs).abs() <= 15 * 60
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hexval = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hexval(b[i + 1]), hexval(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binance(query: &str) -> Outcome<'static> {
        let c: &'static Credential = Box::leak(Box::new(Credential {
            key: "k".into(),
            pair: Some("s".into()),
            shape: Shape::HmacQuery {
                key_header: "x-mbx-apikey".into(),
                window_ms: 5000,
            },
            live: true,
            dead_status: None,
            dead_body: None,
            live_body: None,
        }));
        let uri: Uri = format!("/api/v3/account?{query}").parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("x-mbx-apikey", "k".parse().unwrap());
        let req = Req {
            method: "GET",
            uri: &uri,
            headers: &headers,
            body: b"",
        };
        check(c, &req)
    }

    #[test]
    fn signed_queries_need_a_fresh_timestamp_and_the_right_signature() {
        let signed = |q: &str| format!("{q}&signature={}", hex(&hmac_sha256(b"s", q.as_bytes())));
        let fresh = format!("timestamp={}", now_ms());
        assert!(matches!(binance(&signed(&fresh)), Outcome::Live(_)));
        let stale = format!("timestamp={}", now_ms() - 60_000);
        assert!(matches!(binance(&signed(&stale)), Outcome::Stale));
        let forged = format!("{fresh}&signature={}", "0".repeat(64));
        assert!(matches!(binance(&forged), Outcome::BadSignature(_)));
        assert!(matches!(binance(&fresh), Outcome::BadSignature(_)));
    }

    #[test]
    fn amz_dates_and_percent_escapes_parse() {
        assert!(!fresh_amz_date("20150830T123600Z"));
        assert!(!fresh_amz_date("garbage"));
        assert_eq!(percent_decode("a%2Fb+c%zz"), "a/b c%zz");
    }
}
