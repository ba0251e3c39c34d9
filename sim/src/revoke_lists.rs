//! Providers whose keys are revoked by listing them and deleting the one
//! that matches, as their APIs document:
//! - npm: `GET /-/whoami`; `GET /-/npm/v1/tokens` (two per page, `urls.next`
//!   to the next; each entry's `key` is the SHA-512 of the token, `token`
//!   its first characters); `DELETE /-/npm/v1/tokens/token/{key}` (204);
//! - SendGrid: `GET /v3/scopes`; `GET /v3/api_keys` (`result[].api_key_id`,
//!   the middle part of an `SG.<id>.<secret>` key); `DELETE
//!   /v3/api_keys/{id}` (204, 404);
//! - Twilio: `GET /2010-04-01/Accounts.json` with an API key's SID and
//!   secret (basic auth; the account and, when it has them, its
//!   subaccounts); `DELETE /2010-04-01/Accounts/{AC}/Keys/{SK}.json` (204);
//! - Heroku: `GET /account`; `GET /oauth/authorizations`; `DELETE
//!   /oauth/authorizations/{id}` (200).
//!
//! A revoked key gets 401 (Twilio, npm, SendGrid, Heroku) from every call,
//! verify included.

use crate::revoke_keys::{basic, bearer, Book, Key};
use crate::state::{hex, Sim};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde_json::{json, Value};
use sha2::{Digest, Sha512};
use std::collections::HashMap;

pub fn routes() -> Router<Sim> {
    Router::new()
        .route("/-/whoami", get(npm_whoami))
        .route("/-/npm/v1/tokens", get(npm_tokens))
        .route("/-/npm/v1/tokens/token/{key}", delete(npm_delete))
        .route("/v3/scopes", get(sendgrid_scopes))
        .route("/v3/api_keys", get(sendgrid_keys))
        .route("/v3/api_keys/{id}", delete(sendgrid_delete))
        .route("/2010-04-01/Accounts.json", get(twilio_accounts))
        .route(
            "/2010-04-01/Accounts/{account}/Keys/{file}",
            delete(twilio_delete),
        )
        .route("/account", get(heroku_account))
        .route("/oauth/authorizations", get(heroku_list))
        .route("/oauth/authorizations/{id}", delete(heroku_delete))
}

fn status(code: StatusCode, body: Value) -> Response {
    (code, Json(body)).into_response()
}

/// The live key of `provider` the request's bearer token is.
fn live(sim: &Sim, provider: &str, headers: &HeaderMap) -> Option<Key> {
    let token = bearer(headers)?;
    sim.lock().keys.live(provider, &token).cloned()
}

const NPM: &str = "npm";
const NPM_PAGE: usize = 2;

fn npm_unauthorized() -> Response {
    status(
        StatusCode::UNAUTHORIZED,
        json!({"error": "You must be logged in to access this resource"}),
    )
}

fn npm_key(secret: &str) -> String {
    hex(&Sha512::digest(secret.as_bytes()))
}

async fn npm_whoami(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    match live(&sim, NPM, &headers) {
        Some(_) => Json(json!({"username": "sim"})).into_response(),
        None => npm_unauthorized(),
    }
}

async fn npm_tokens(
    State(sim): State<Sim>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let Some(caller) = live(&sim, NPM, &headers) else {
        return npm_unauthorized();
    };
    let page: usize = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(0);
    let all = sim.lock().keys.listed(NPM, caller.account);
    let objects: Vec<Value> = all
        .iter()
        .skip(page * NPM_PAGE)
        .take(NPM_PAGE)
        .map(|k| {
            json!({
                "token": format!("{}…", k.secret.chars().take(6).collect::<String>()),
                "key": npm_key(&k.secret),
                "cidr_whitelist": null,
                "readonly": false,
                "automation": false,
                "created": "2026-01-01T00:00:00.000Z",
                "updated": "2026-01-01T00:00:00.000Z"
            })
        })
        .collect();
    let more = (page + 1) * NPM_PAGE < all.len();
    let urls = match more {
        true => json!({"next": format!("/-/npm/v1/tokens?page={}", page + 1)}),
        false => json!({}),
    };
    Json(json!({"objects": objects, "total": all.len(), "urls": urls})).into_response()
}

async fn npm_delete(
    State(sim): State<Sim>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> Response {
    if live(&sim, NPM, &headers).is_none() {
        return npm_unauthorized();
    }
    let mut s = sim.lock();
    let found = s
        .keys
        .keys
        .iter_mut()
        .find(|k| k.provider == NPM && !k.revoked && npm_key(&k.secret) == key);
    match found {
        Some(k) => {
            Book::revoke(k);
            StatusCode::NO_CONTENT.into_response()
        }
        None => status(StatusCode::NOT_FOUND, json!({"error": "Not found"})),
    }
}

const SENDGRID: &str = "sendgrid";

fn sendgrid_error(code: StatusCode, message: &str) -> Response {
    status(
        code,
        json!({"errors": [{"field": null, "message": message}]}),
    )
}

async fn sendgrid_scopes(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    match live(&sim, SENDGRID, &headers) {
        Some(_) => Json(json!({"scopes": ["api_keys.read", "api_keys.delete", "mail.send"]}))
            .into_response(),
        None => sendgrid_error(StatusCode::UNAUTHORIZED, "authorization required"),
    }
}

async fn sendgrid_keys(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    let Some(caller) = live(&sim, SENDGRID, &headers) else {
        return sendgrid_error(StatusCode::UNAUTHORIZED, "authorization required");
    };
    let result: Vec<Value> = sim
        .lock()
        .keys
        .listed(SENDGRID, caller.account)
        .iter()
        .map(|k| json!({"name": format!("key {}", k.id), "api_key_id": k.id}))
        .collect();
    Json(json!({"result": result})).into_response()
}

async fn sendgrid_delete(
    State(sim): State<Sim>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if live(&sim, SENDGRID, &headers).is_none() {
        return sendgrid_error(StatusCode::UNAUTHORIZED, "authorization required");
    }
    let mut s = sim.lock();
    match s.keys.by_id(SENDGRID, &id).filter(|k| !k.revoked) {
        Some(k) => {
            Book::revoke(k);
            StatusCode::NO_CONTENT.into_response()
        }
        None => sendgrid_error(StatusCode::NOT_FOUND, "resource not found"),
    }
}

const TWILIO: &str = "twilio";

fn twilio_unauthorized() -> Response {
    status(
        StatusCode::UNAUTHORIZED,
        json!({"code": 20003, "message": "Authenticate", "more_info": "https://www.twilio.com/docs/errors/20003", "status": 401}),
    )
}

/// The live API key the request's basic credentials (SID, secret) are.
fn twilio_key(sim: &Sim, headers: &HeaderMap) -> Option<Key> {
    let (sid, secret) = basic(headers)?;
    let key = sim.lock().keys.live(TWILIO, &secret).cloned()?;
    (key.pair.as_deref() == Some(sid.as_str())).then_some(key)
}

async fn twilio_accounts(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    let Some(key) = twilio_key(&sim, &headers) else {
        return twilio_unauthorized();
    };
    let account = |sid: &str| json!({"sid": sid, "owner_account_sid": key.id, "status": "active", "friendly_name": sid, "type": "Full"});
    let mut accounts = vec![account(&key.id)];
    if key.listed_twice {
        // A subaccount the key can also reach.
        accounts.push(account(&format!("AC{}", "5".repeat(32))));
    }
    Json(json!({
        "accounts": accounts,
        "first_page_uri": "/2010-04-01/Accounts.json?PageSize=50&Page=0",
        "next_page_uri": null,
        "page": 0,
        "page_size": 50,
        "uri": "/2010-04-01/Accounts.json?PageSize=50&Page=0"
    }))
    .into_response()
}

async fn twilio_delete(
    State(sim): State<Sim>,
    headers: HeaderMap,
    Path((account, file)): Path<(String, String)>,
) -> Response {
    if twilio_key(&sim, &headers).is_none() {
        return twilio_unauthorized();
    }
    let sid = file.strip_suffix(".json").unwrap_or_default().to_string();
    let mut s = sim.lock();
    let found = s.keys.keys.iter_mut().find(|k| {
        k.provider == TWILIO
            && !k.revoked
            && k.id == account
            && k.pair.as_deref() == Some(sid.as_str())
    });
    match found {
        Some(k) => {
            Book::revoke(k);
            StatusCode::NO_CONTENT.into_response()
        }
        None => status(
            StatusCode::NOT_FOUND,
            json!({"code": 20404, "message": "The requested resource was not found", "status": 404}),
        ),
    }
}

const HEROKU: &str = "heroku";

fn heroku_unauthorized() -> Response {
    status(
        StatusCode::UNAUTHORIZED,
        json!({"id": "unauthorized", "message": "Invalid credentials provided."}),
    )
}

async fn heroku_account(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    match live(&sim, HEROKU, &headers) {
        Some(k) => Json(json!({"id": k.id, "email": "sim@example.invalid"})).into_response(),
        None => heroku_unauthorized(),
    }
}

fn authorization(k: &Key) -> Value {
    json!({
        "id": k.id,
        "description": "Long-lived user authorization",
        "scope": ["global"],
        "access_token": {"id": format!("tok-{}", k.id), "token": k.secret, "expires_in": null}
    })
}

async fn heroku_list(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    let Some(caller) = live(&sim, HEROKU, &headers) else {
        return heroku_unauthorized();
    };
    let list: Vec<Value> = sim
        .lock()
        .keys
        .listed(HEROKU, caller.account)
        .iter()
        .map(authorization)
        .collect();
    Json(Value::Array(list)).into_response()
}

async fn heroku_delete(
    State(sim): State<Sim>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if live(&sim, HEROKU, &headers).is_none() {
        return heroku_unauthorized();
    }
    let mut s = sim.lock();
    match s.keys.by_id(HEROKU, &id).filter(|k| !k.revoked) {
        Some(k) => {
            Book::revoke(k);
            let body = authorization(k);
            Json(body).into_response()
        }
        None => status(
            StatusCode::NOT_FOUND,
            json!({"id": "not_found", "message": "Couldn't find that authorization."}),
        ),
    }
}
