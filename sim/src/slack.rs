//! Slack: `auth.test` and `auth.revoke`, both answering 200 with `ok: true`
//! or `ok: false` and an `error`, as the real Web API does. The token comes
//! as `Authorization: Bearer` or a `token` form field.

use crate::state::{carried_key, fingerprint, Sim};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::any;
use axum::{Json, Router};
use serde_json::{json, Value};

const PROVIDER: &str = "slack";

pub fn routes() -> Router<Sim> {
    Router::new()
        .route("/api/auth.test", any(auth_test))
        .route("/api/auth.revoke", any(auth_revoke))
}

fn token(headers: &HeaderMap, body: &Bytes) -> Option<String> {
    carried_key(headers, body)
}

async fn auth_test(State(sim): State<Sim>, headers: HeaderMap, body: Bytes) -> Json<Value> {
    let Some(t) = token(&headers, &body) else {
        return Json(json!({"ok": false, "error": "not_authed"}));
    };
    if sim.lock().revoked.contains(&(PROVIDER, fingerprint(&t))) {
        Json(json!({"ok": false, "error": "token_revoked"}))
    } else {
        Json(json!({"ok": true, "team": "sim", "user": "sim-user"}))
    }
}

async fn auth_revoke(State(sim): State<Sim>, headers: HeaderMap, body: Bytes) -> Json<Value> {
    let Some(t) = token(&headers, &body) else {
        return Json(json!({"ok": false, "error": "not_authed"}));
    };
    if sim.lock().revoked.insert((PROVIDER, fingerprint(&t))) {
        Json(json!({"ok": true, "revoked": true}))
    } else {
        Json(json!({"ok": false, "error": "token_revoked"}))
    }
}
