//! GitHub Actions secrets, as GitHub's REST API serves them: each
//! repository, environment and organisation has a real X25519 keypair; a
//! secret is written as a libsodium sealed box of its value under that
//! public key, which the simulator opens (so tests can check the plaintext
//! that arrived). Values are never returned by the API, only metadata.
//!
//! - `GET  /repos/{o}/{r}/actions/secrets/public-key` (and
//!   `/repos/{o}/{r}/environments/{env}/secrets/public-key`,
//!   `/orgs/{org}/actions/secrets/public-key`): `{key_id, key}`
//! - `PUT  .../secrets/{NAME}` `{encrypted_value, key_id[, visibility]}`:
//!   201 created, 204 updated, 422 wrong key_id or a box that does not open
//! - `GET  .../secrets/{NAME}`: `{name, created_at, updated_at}` or 404
//! - `Authorization: Bearer T` with a token added by control (401 `Bad
//!   credentials` otherwise); an unknown repository, environment or
//!   organisation is 404, as for a token that may not see it.
//!
//! Control: `POST /_sim/actions/tokens {"token"}`, `POST
//! /_sim/actions/scopes {"scope"}` (`o/r`, `o/r:env`, `org:NAME`), `GET
//! /_sim/actions/secrets` (`[{scope, name, value, writes}]`: the decrypted
//! values, for tests).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

struct Scope {
    key: crypto_box::SecretKey,
    key_id: String,
    /// name → (value, writes, updated_at)
    secrets: BTreeMap<String, (String, u64, String)>,
}

#[derive(Default)]
struct Actions {
    tokens: HashSet<String>,
    scopes: HashMap<String, Scope>,
    /// Makes every `updated_at` distinct.
    clock: u64,
}

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Actions>>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Actions> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub fn router() -> Router {
    Router::new()
        .route("/repos/{o}/{r}/actions/secrets/public-key", get(repo_key))
        .route(
            "/repos/{o}/{r}/actions/secrets/{name}",
            get(repo_get).put(repo_put),
        )
        .route(
            "/repos/{o}/{r}/environments/{e}/secrets/public-key",
            get(env_key),
        )
        .route(
            "/repos/{o}/{r}/environments/{e}/secrets/{name}",
            get(env_get).put(env_put),
        )
        .route("/orgs/{org}/actions/secrets/public-key", get(org_key))
        .route(
            "/orgs/{org}/actions/secrets/{name}",
            get(org_get).put(org_put),
        )
        .route("/_sim/actions/tokens", post(add_token))
        .route("/_sim/actions/scopes", post(add_scope))
        .route("/_sim/actions/secrets", get(list))
        .with_state(Shared::default())
}

fn error(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({"message": message, "documentation_url": "https://docs.github.com/rest"})),
    )
        .into_response()
}

/// The scope named by the path, if the request's token may use it.
fn authorized(sim: &Shared, headers: &HeaderMap, scope: &str) -> Result<(), Box<Response>> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("token "))
        })
        .unwrap_or_default();
    let s = sim.lock();
    if !s.tokens.contains(token) {
        return Err(Box::new(error(StatusCode::UNAUTHORIZED, "Bad credentials")));
    }
    if !s.scopes.contains_key(scope) {
        return Err(Box::new(error(StatusCode::NOT_FOUND, "Not Found")));
    }
    Ok(())
}

fn public_key(sim: Shared, headers: HeaderMap, scope: String) -> Response {
    if let Err(r) = authorized(&sim, &headers, &scope) {
        return *r;
    }
    let s = sim.lock();
    let Some(sc) = s.scopes.get(&scope) else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    Json(json!({"key_id": sc.key_id, "key": B64.encode(sc.key.public_key().as_bytes())}))
        .into_response()
}

fn metadata(sim: Shared, headers: HeaderMap, scope: String, name: String) -> Response {
    if let Err(r) = authorized(&sim, &headers, &scope) {
        return *r;
    }
    let s = sim.lock();
    match s.scopes.get(&scope).and_then(|sc| sc.secrets.get(&name)) {
        Some((_, _, updated)) => Json(json!({"name": name, "created_at": "2026-01-01T00:00:00Z", "updated_at": updated, "visibility": "private"})).into_response(),
        None => error(StatusCode::NOT_FOUND, "Not Found"),
    }
}

fn write(sim: Shared, headers: HeaderMap, scope: String, name: String, body: Value) -> Response {
    if let Err(r) = authorized(&sim, &headers, &scope) {
        return *r;
    }
    let mut s = sim.lock();
    s.clock += 1;
    let clock = s.clock;
    let Some(sc) = s.scopes.get_mut(&scope) else {
        return error(StatusCode::NOT_FOUND, "Not Found");
    };
    if body.get("key_id").and_then(Value::as_str) != Some(sc.key_id.as_str()) {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "Bad key_id");
    }
    let opened = body
        .get("encrypted_value")
        .and_then(Value::as_str)
        .and_then(|v| B64.decode(v).ok())
        .and_then(|sealed| sc.key.unseal(&sealed).ok())
        .and_then(|plain| String::from_utf8(plain).ok());
    let Some(value) = opened else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "encrypted_value is not a sealed box for this key",
        );
    };
    let updated = format!("2026-01-01T00:{:02}:{:02}Z", clock / 60 % 60, clock % 60);
    let status = match sc.secrets.get_mut(&name) {
        Some(entry) => {
            *entry = (value, entry.1 + 1, updated);
            StatusCode::NO_CONTENT
        }
        None => {
            sc.secrets.insert(name, (value, 1, updated));
            StatusCode::CREATED
        }
    };
    status.into_response()
}

async fn repo_key(
    State(s): State<Shared>,
    Path((o, r)): Path<(String, String)>,
    h: HeaderMap,
) -> Response {
    public_key(s, h, format!("{o}/{r}"))
}
async fn repo_get(
    State(s): State<Shared>,
    Path((o, r, n)): Path<(String, String, String)>,
    h: HeaderMap,
) -> Response {
    metadata(s, h, format!("{o}/{r}"), n)
}
async fn repo_put(
    State(s): State<Shared>,
    Path((o, r, n)): Path<(String, String, String)>,
    h: HeaderMap,
    Json(b): Json<Value>,
) -> Response {
    write(s, h, format!("{o}/{r}"), n, b)
}
async fn env_key(
    State(s): State<Shared>,
    Path((o, r, e)): Path<(String, String, String)>,
    h: HeaderMap,
) -> Response {
    public_key(s, h, format!("{o}/{r}:{e}"))
}
async fn env_get(
    State(s): State<Shared>,
    Path((o, r, e, n)): Path<(String, String, String, String)>,
    h: HeaderMap,
) -> Response {
    metadata(s, h, format!("{o}/{r}:{e}"), n)
}
async fn env_put(
    State(s): State<Shared>,
    Path((o, r, e, n)): Path<(String, String, String, String)>,
    h: HeaderMap,
    Json(b): Json<Value>,
) -> Response {
    write(s, h, format!("{o}/{r}:{e}"), n, b)
}
async fn org_key(State(s): State<Shared>, Path(org): Path<String>, h: HeaderMap) -> Response {
    public_key(s, h, format!("org:{org}"))
}
async fn org_get(
    State(s): State<Shared>,
    Path((org, n)): Path<(String, String)>,
    h: HeaderMap,
) -> Response {
    metadata(s, h, format!("org:{org}"), n)
}
async fn org_put(
    State(s): State<Shared>,
    Path((org, n)): Path<(String, String)>,
    h: HeaderMap,
    Json(b): Json<Value>,
) -> Response {
    write(s, h, format!("org:{org}"), n, b)
}

async fn add_token(State(s): State<Shared>, Json(b): Json<Value>) -> StatusCode {
    match b.get("token").and_then(Value::as_str) {
        Some(t) => {
            s.lock().tokens.insert(t.to_string());
            StatusCode::NO_CONTENT
        }
        None => StatusCode::BAD_REQUEST,
    }
}

async fn add_scope(State(s): State<Shared>, Json(b): Json<Value>) -> StatusCode {
    let Some(scope) = b.get("scope").and_then(Value::as_str) else {
        return StatusCode::BAD_REQUEST;
    };
    let mut st = s.lock();
    let key_id = format!("sim-key-{}", st.scopes.len() + 1);
    st.scopes.entry(scope.to_string()).or_insert_with(|| Scope {
        key: crypto_box::SecretKey::generate(&mut crypto_box::aead::OsRng),
        key_id,
        secrets: BTreeMap::new(),
    });
    StatusCode::NO_CONTENT
}

async fn list(State(s): State<Shared>) -> Json<Value> {
    let st = s.lock();
    let mut out = Vec::new();
    for (scope, sc) in &st.scopes {
        for (name, (value, writes, _)) in &sc.secrets {
            out.push(json!({"scope": scope, "name": name, "value": value, "writes": writes}));
        }
    }
    Json(Value::Array(out))
}
