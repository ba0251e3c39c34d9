//! The key book of the providers that revoke by list-then-delete or by a
//! self-revoke call (revoke_lists.rs, revoke_self.rs): which keys exist,
//! their ids, which are revoked, and how many times a delete reached each.
//!
//! Control: `POST /_sim/keys/{provider}` adds a key
//! (`{"key", "pair", "id", "listed_twice", "others"}`), `GET
//! /_sim/keys/{provider}/{fingerprint}` shows it (`revoked`, `deletes`).

use crate::state::{fingerprint, Sim};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

/// One key a simulated provider issued.
#[derive(Clone, Debug)]
pub struct Key {
    pub provider: String,
    pub secret: String,
    /// The partner of the key (a Twilio API key's SID), if it has one.
    pub pair: Option<String>,
    /// The provider's id for the key (SendGrid's api_key_id, Cloudflare's
    /// token id, Heroku's authorization id, ...).
    pub id: String,
    pub revoked: bool,
    /// Deletes that reached this key (a second one is a bug in keysentry).
    pub deletes: u32,
    /// The list answers show this key twice (a registry proxy that merges
    /// two lists): a client must not pick either.
    pub listed_twice: bool,
    /// The account the key belongs to: one per `POST /_sim/keys`, shared
    /// with its `others`. A list shows the caller's account only.
    pub account: u64,
}

#[derive(Default)]
pub struct Book {
    pub keys: Vec<Key>,
}

impl Book {
    /// The live key `secret` of `provider`.
    pub fn live(&mut self, provider: &str, secret: &str) -> Option<&mut Key> {
        self.keys
            .iter_mut()
            .find(|k| k.provider == provider && k.secret == secret && !k.revoked)
    }

    /// The key of `provider` whose id is `id`, live or not.
    pub fn by_id(&mut self, provider: &str, id: &str) -> Option<&mut Key> {
        self.keys
            .iter_mut()
            .find(|k| k.provider == provider && k.id == id)
    }

    /// Every key of `provider` in `account` that is not revoked, in the
    /// order added, the ones listed twice twice.
    pub fn listed(&self, provider: &str, account: u64) -> Vec<Key> {
        let mut out = Vec::new();
        for k in self
            .keys
            .iter()
            .filter(|k| k.provider == provider && k.account == account && !k.revoked)
        {
            out.push(k.clone());
            if k.listed_twice {
                out.push(k.clone());
            }
        }
        out
    }

    /// Marks `key` revoked, counting the delete.
    pub fn revoke(key: &mut Key) {
        key.revoked = true;
        key.deletes += 1;
    }
}

pub fn routes() -> Router<Sim> {
    Router::new()
        .route("/_sim/keys/{provider}", post(add))
        .route("/_sim/keys/{provider}/{fingerprint}", get(show))
}

#[derive(Deserialize)]
struct NewKey {
    key: String,
    #[serde(default)]
    pair: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    listed_twice: bool,
    /// Other keys of the same account, listed beside it (paging).
    #[serde(default)]
    others: u32,
}

async fn add(
    State(sim): State<Sim>,
    Path(provider): Path<String>,
    Json(k): Json<NewKey>,
) -> Response {
    let mut s = sim.lock();
    s.generated += 1;
    let account = s.generated;
    for _ in 0..k.others {
        s.generated += 1;
        let n = s.generated;
        s.keys.keys.push(Key {
            provider: provider.clone(),
            secret: format!("sim-other-{n:016x}"),
            pair: None,
            id: format!("other{n:08x}"),
            revoked: false,
            deletes: 0,
            listed_twice: false,
            account,
        });
    }
    s.generated += 1;
    // A SendGrid key carries its id: SG.<api_key_id>.<secret>.
    let own = k.key.strip_prefix("SG.").and_then(|r| r.split('.').next());
    let id =
        k.id.or_else(|| own.map(str::to_string))
            .unwrap_or_else(|| format!("id{:010x}", s.generated));
    s.keys.keys.push(Key {
        provider,
        secret: k.key,
        pair: k.pair,
        id: id.clone(),
        revoked: false,
        deletes: 0,
        listed_twice: k.listed_twice,
        account,
    });
    (StatusCode::CREATED, Json(json!({"id": id}))).into_response()
}

async fn show(State(sim): State<Sim>, Path((provider, fp)): Path<(String, String)>) -> Response {
    let s = sim.lock();
    match s
        .keys
        .keys
        .iter()
        .find(|k| k.provider == provider && fingerprint(&k.secret) == fp)
    {
        Some(k) => {
            Json(json!({"id": k.id, "revoked": k.revoked, "deletes": k.deletes})).into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// The bearer token of a request (`Authorization: Bearer …` or `token …`).
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<String> {
    let auth = headers.get("authorization")?.to_str().ok()?;
    let (scheme, token) = auth.split_once(' ')?;
    matches!(scheme.to_ascii_lowercase().as_str(), "bearer" | "token")
        .then(|| token.trim().to_string())
}

/// HTTP basic credentials of a request: (user, password).
pub fn basic(headers: &axum::http::HeaderMap) -> Option<(String, String)> {
    use base64::Engine as _;
    let auth = headers.get("authorization")?.to_str().ok()?;
    let encoded = auth.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}
