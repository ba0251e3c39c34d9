//! Tatum: `/v3/tatum/version`, `/v3/tatum/freeze`, the two inventory counts,
//! the management templates keysentry's config points at
//! (`/mgmt/tatum/regenerate`, `/mgmt/tatum/expire`), and control endpoints
//! that play the Dashboard (`/_sim/tatum/keys...`; `POST /_sim/tatum/keys`
//! takes one key or an array).

use crate::state::{fingerprint, Sim, SimState};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    Live,
    Frozen,
    Dead,
}

#[derive(Clone, Debug)]
pub struct TatumKey {
    pub state: KeyState,
    pub testnet: bool,
    pub subscriptions: u64,
    pub accounts: u64,
    pub regenerations: u32,
    pub expirations: u32,
    /// The key that replaced this one.
    pub replacement: Option<String>,
    /// What a management regenerate of this key answers as `apiKey`
    /// instead of the new key (the regeneration still happens): a hostile
    /// or broken key-management service.
    pub answer_key: Option<String>,
}

/// `POST /_sim/tatum/keys`.
#[derive(Deserialize)]
struct NewKey {
    key: String,
    #[serde(default = "live")]
    state: KeyState,
    #[serde(default)]
    testnet: bool,
    #[serde(default)]
    subscriptions: u64,
    #[serde(default)]
    accounts: u64,
    #[serde(default)]
    answer_key: Option<String>,
}

fn live() -> KeyState {
    KeyState::Live
}

pub fn routes() -> Router<Sim> {
    Router::new()
        .route("/v3/tatum/version", get(version))
        .route("/v3/tatum/freeze", put(freeze))
        .route("/v3/subscription/count", get(subscription_count))
        .route("/v3/ledger/account/count", get(account_count))
        .route("/mgmt/tatum/regenerate", post(mgmt_regenerate))
        .route("/mgmt/tatum/expire", post(mgmt_expire))
        .route("/mgmt/echo", post(mgmt_echo))
        .route("/_sim/tatum/keys", post(add_key))
        .route("/_sim/tatum/keys/{fingerprint}", get(key_state))
        .route(
            "/_sim/tatum/keys/{fingerprint}/regenerate",
            post(dashboard_regenerate),
        )
        .route(
            "/_sim/tatum/keys/{fingerprint}/expire",
            post(dashboard_expire),
        )
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"statusCode": 401, "errorCode": "api.key.invalid", "message": "Invalid API key"})),
    )
        .into_response()
}

/// `f` applied to the live (or frozen) key in `x-api-key`; `None` means 401.
fn with_key<T>(sim: &Sim, headers: &HeaderMap, f: impl FnOnce(&mut TatumKey) -> T) -> Option<T> {
    let key = headers.get("x-api-key").and_then(|v| v.to_str().ok())?;
    let mut s = sim.lock();
    s.tatum
        .get_mut(key)
        .filter(|k| k.state != KeyState::Dead)
        .map(f)
}

async fn version(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    match with_key(&sim, &headers, |k| k.testnet) {
        Some(testnet) => {
            Json(json!({"version": "sim-3.17", "testnet": testnet, "planName": "Sim"}))
                .into_response()
        }
        None => unauthorized(),
    }
}

async fn freeze(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    match with_key(&sim, &headers, |k| k.state = KeyState::Frozen) {
        Some(()) => Json(json!({"frozen": true})).into_response(),
        None => unauthorized(),
    }
}

async fn subscription_count(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    match with_key(&sim, &headers, |k| k.subscriptions) {
        Some(n) => Json(json!({"total": n})).into_response(),
        None => unauthorized(),
    }
}

async fn account_count(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    match with_key(&sim, &headers, |k| k.accounts) {
        Some(n) => Json(json!({"total": n})).into_response(),
        None => unauthorized(),
    }
}

#[derive(Deserialize)]
struct MgmtBody {
    #[serde(rename = "apiKey")]
    api_key: String,
}

fn new_key(s: &mut SimState, old: &str) -> String {
    s.generated += 1;
    let h = Sha256::digest(format!("{old}/{}", s.generated));
    let hex = crate::state::hex(&h);
    format!("t-{}-{}", &hex[..24], &hex[24..48])
}

/// Replaces `old` by a new live key that inherits its bindings.
fn regenerate(s: &mut SimState, old: &str) -> Option<String> {
    let k = s
        .tatum
        .get(old)
        .filter(|k| k.state != KeyState::Dead)?
        .clone();
    let new = new_key(s, old);
    s.tatum.insert(
        new.clone(),
        TatumKey {
            state: KeyState::Live,
            regenerations: 0,
            expirations: 0,
            replacement: None,
            answer_key: None,
            ..k
        },
    );
    let k = s.tatum.get_mut(old)?;
    k.state = KeyState::Dead;
    k.regenerations += 1;
    k.replacement = Some(new.clone());
    Some(new)
}

fn expire(s: &mut SimState, old: &str) -> bool {
    match s.tatum.get_mut(old) {
        Some(k) if k.state != KeyState::Dead => {
            k.state = KeyState::Dead;
            k.expirations += 1;
            // As Tatum does: expiring deletes the Virtual Accounts and
            // notification subscriptions bound to the key, for good.
            k.subscriptions = 0;
            k.accounts = 0;
            true
        }
        _ => false,
    }
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": "no such live key"})),
    )
        .into_response()
}

/// The management body, whatever content type the template declared.
fn mgmt_key(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<MgmtBody>(body)
        .ok()
        .map(|b| b.api_key)
}

async fn mgmt_regenerate(State(sim): State<Sim>, body: Bytes) -> Response {
    let Some(key) = mgmt_key(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "body must be {\"apiKey\": ...}"})),
        )
            .into_response();
    };
    let mut s = sim.lock();
    let answer = s.tatum.get(&key).and_then(|k| k.answer_key.clone());
    match regenerate(&mut s, &key) {
        Some(new) => Json(json!({"apiKey": answer.unwrap_or(new)})).into_response(),
        None => not_found(),
    }
}

async fn mgmt_expire(State(sim): State<Sim>, body: Bytes) -> Response {
    let Some(key) = mgmt_key(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "body must be {\"apiKey\": ...}"})),
        )
            .into_response();
    };
    if expire(&mut sim.lock(), &key) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        not_found()
    }
}

/// `POST /mgmt/echo?apiKey=K` with header `x-api-key: K` and body
/// `{"apiKey": K}`: 200 when all three arrived as the same non-empty value,
/// 400 otherwise (a template that does not escape what it substitutes).
async fn mgmt_echo(
    headers: HeaderMap,
    Query(query): Query<std::collections::HashMap<String, String>>,
    body: Bytes,
) -> StatusCode {
    let header = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    let in_body = mgmt_key(&body);
    let in_query = query.get("apiKey").map(String::as_str);
    match (header, in_query, in_body.as_deref()) {
        (Some(h), Some(q), Some(b)) if !h.is_empty() && h == q && q == b => StatusCode::OK,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// One key, or an array of them (benchmarks add thousands).
#[derive(Deserialize)]
#[serde(untagged)]
enum NewKeys {
    One(NewKey),
    Many(Vec<NewKey>),
}

async fn add_key(State(sim): State<Sim>, Json(keys): Json<NewKeys>) -> StatusCode {
    let keys = match keys {
        NewKeys::One(k) => vec![k],
        NewKeys::Many(ks) => ks,
    };
    let mut s = sim.lock();
    for k in keys {
        s.tatum.insert(
            k.key,
            TatumKey {
                state: k.state,
                testnet: k.testnet,
                subscriptions: k.subscriptions,
                accounts: k.accounts,
                regenerations: 0,
                expirations: 0,
                replacement: None,
                answer_key: k.answer_key,
            },
        );
    }
    StatusCode::NO_CONTENT
}

fn find(s: &SimState, fp: &str) -> Option<String> {
    s.tatum.keys().find(|k| fingerprint(k) == fp).cloned()
}

async fn key_state(State(sim): State<Sim>, Path(fp): Path<String>) -> Response {
    let s = sim.lock();
    let Some(key) = find(&s, &fp) else {
        return not_found();
    };
    let Some(k) = s.tatum.get(&key) else {
        return not_found();
    };
    Json(json!({
        "fingerprint": fp,
        "state": k.state,
        "testnet": k.testnet,
        "subscriptions": k.subscriptions,
        "accounts": k.accounts,
        "regenerations": k.regenerations,
        "expirations": k.expirations,
        "replacement_fingerprint": k.replacement.as_deref().map(fingerprint),
        // What the Dashboard would show its owner.
        "replacement_key": k.replacement,
    }))
    .into_response()
}

/// The owner clicking Regenerate in the Dashboard.
async fn dashboard_regenerate(State(sim): State<Sim>, Path(fp): Path<String>) -> Response {
    let mut s = sim.lock();
    let new = find(&s, &fp).and_then(|old| regenerate(&mut s, &old));
    match new {
        Some(new) => Json(json!({"apiKey": new})).into_response(),
        None => not_found(),
    }
}

/// The owner clicking Expire in the Dashboard.
async fn dashboard_expire(State(sim): State<Sim>, Path(fp): Path<String>) -> Response {
    let mut s = sim.lock();
    let done = find(&s, &fp).is_some_and(|old| expire(&mut s, &old));
    if done {
        StatusCode::NO_CONTENT.into_response()
    } else {
        not_found()
    }
}
