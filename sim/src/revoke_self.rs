//! Providers whose keys revoke themselves, as their APIs document:
//! - Cloudflare: `GET /client/v4/user/tokens/verify` (the token's id and
//!   status), `DELETE /client/v4/user/tokens/{id}` (200, `success: true`);
//! - Vercel: `GET /v2/user`, `DELETE /v3/user/tokens/current` (200 with
//!   the token's id); a dead token gets 403 `invalidToken`;
//! - Doppler: `GET /v3/me`, `POST /v3/auth/revoke` (`{"token": …}`);
//! - Buildkite: `GET` and `DELETE /v2/access-token` (204);
//! - DigitalOcean: `GET /v2/account`, `POST /v1/oauth/revoke`
//!   (`token=…`, form-encoded; 200 with an empty body);
//! - the Rust registry (crates-io): `GET /api/v1/me`, `DELETE
//!   /api/v1/tokens/current` (204), the token bare in `Authorization` as
//!   cargo sends it; a dead token gets 403 `authentication failed`.

use crate::revoke_keys::{bearer, Book, Key};
use crate::state::Sim;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

pub fn routes() -> Router<Sim> {
    Router::new()
        .route("/client/v4/user/tokens/verify", get(cloudflare_verify))
        .route("/client/v4/user/tokens/{id}", delete(cloudflare_delete))
        .route("/v2/user", get(vercel_user))
        .route("/v3/user/tokens/current", delete(vercel_delete))
        .route("/v3/me", get(doppler_me))
        .route("/v3/auth/revoke", post(doppler_revoke))
        .route(
            "/v2/access-token",
            get(buildkite_show).delete(buildkite_delete),
        )
        .route("/v2/account", get(digitalocean_account))
        .route("/v1/oauth/revoke", post(digitalocean_revoke))
        .route("/api/v1/me", get(cratesio_me))
        .route("/api/v1/tokens/current", delete(cratesio_revoke))
}

fn status(code: StatusCode, body: Value) -> Response {
    (code, Json(body)).into_response()
}

fn live(sim: &Sim, provider: &str, headers: &HeaderMap) -> Option<Key> {
    let token = bearer(headers)?;
    sim.lock().keys.live(provider, &token).cloned()
}

/// Revokes the live key `secret` of `provider`; false if there is none.
fn revoke(sim: &Sim, provider: &str, secret: &str) -> bool {
    let mut s = sim.lock();
    match s.keys.live(provider, secret) {
        Some(k) => {
            Book::revoke(k);
            true
        }
        None => false,
    }
}

const CLOUDFLARE: &str = "cloudflare";

fn cloudflare_invalid() -> Response {
    status(
        StatusCode::UNAUTHORIZED,
        json!({"success": false, "errors": [{"code": 1000, "message": "Invalid API Token"}], "messages": [], "result": null}),
    )
}

async fn cloudflare_verify(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    match live(&sim, CLOUDFLARE, &headers) {
        Some(k) => Json(json!({
            "result": {"id": k.id, "status": "active"},
            "success": true,
            "errors": [],
            "messages": [{"code": 10000, "message": "This API Token is valid and active", "type": null}]
        }))
        .into_response(),
        None => cloudflare_invalid(),
    }
}

async fn cloudflare_delete(
    State(sim): State<Sim>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if live(&sim, CLOUDFLARE, &headers).is_none() {
        return cloudflare_invalid();
    }
    let mut s = sim.lock();
    match s.keys.by_id(CLOUDFLARE, &id).filter(|k| !k.revoked) {
        Some(k) => {
            Book::revoke(k);
            Json(json!({"result": {"id": id}, "success": true, "errors": [], "messages": []}))
                .into_response()
        }
        None => status(
            StatusCode::NOT_FOUND,
            json!({"success": false, "errors": [{"code": 1003, "message": "Token not found"}], "messages": [], "result": null}),
        ),
    }
}

const VERCEL: &str = "vercel";

fn vercel_forbidden() -> Response {
    status(
        StatusCode::FORBIDDEN,
        json!({"error": {"code": "forbidden", "message": "Not authorized", "invalidToken": true}}),
    )
}

async fn vercel_user(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    match live(&sim, VERCEL, &headers) {
        Some(_) => Json(json!({"user": {"id": "sim-user", "username": "sim"}})).into_response(),
        None => vercel_forbidden(),
    }
}

async fn vercel_delete(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    let Some(k) = live(&sim, VERCEL, &headers) else {
        return vercel_forbidden();
    };
    revoke(&sim, VERCEL, &k.secret);
    Json(json!({"tokenId": k.id})).into_response()
}

const DOPPLER: &str = "doppler";

fn doppler_unauthorized() -> Response {
    status(
        StatusCode::UNAUTHORIZED,
        json!({"messages": ["Invalid Auth token"], "success": false}),
    )
}

async fn doppler_me(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    match live(&sim, DOPPLER, &headers) {
        Some(_) => Json(json!({"workplace": {"slug": "sim", "name": "sim"}, "type": "personal"}))
            .into_response(),
        None => doppler_unauthorized(),
    }
}

async fn doppler_revoke(State(sim): State<Sim>, headers: HeaderMap, body: Bytes) -> Response {
    if live(&sim, DOPPLER, &headers).is_none() {
        return doppler_unauthorized();
    }
    let token = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("token").and_then(Value::as_str).map(str::to_string));
    match token {
        Some(t) if revoke(&sim, DOPPLER, &t) => Json(json!({"success": true})).into_response(),
        _ => status(
            StatusCode::BAD_REQUEST,
            json!({"messages": ["Invalid token"], "success": false}),
        ),
    }
}

const BUILDKITE: &str = "buildkite";

fn buildkite_unauthorized() -> Response {
    status(
        StatusCode::UNAUTHORIZED,
        json!({"message": "Authentication required. Please supply a valid API Access Token"}),
    )
}

async fn buildkite_show(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    match live(&sim, BUILDKITE, &headers) {
        Some(k) => Json(json!({"uuid": k.id, "scopes": ["read_builds"]})).into_response(),
        None => buildkite_unauthorized(),
    }
}

async fn buildkite_delete(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    match live(&sim, BUILDKITE, &headers) {
        Some(k) => {
            revoke(&sim, BUILDKITE, &k.secret);
            StatusCode::NO_CONTENT.into_response()
        }
        None => buildkite_unauthorized(),
    }
}

const DIGITALOCEAN: &str = "digitalocean";

fn digitalocean_unauthorized() -> Response {
    status(
        StatusCode::UNAUTHORIZED,
        json!({"id": "Unauthorized", "message": "Unable to authenticate you"}),
    )
}

async fn digitalocean_account(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    match live(&sim, DIGITALOCEAN, &headers) {
        Some(k) => Json(
            json!({"account": {"uuid": k.id, "email": "sim@example.invalid", "status": "active"}}),
        )
        .into_response(),
        None => digitalocean_unauthorized(),
    }
}

async fn digitalocean_revoke(State(sim): State<Sim>, headers: HeaderMap, body: Bytes) -> Response {
    if live(&sim, DIGITALOCEAN, &headers).is_none() {
        return digitalocean_unauthorized();
    }
    let form = String::from_utf8_lossy(&body).into_owned();
    let token = form.split('&').find_map(|kv| kv.strip_prefix("token="));
    match token {
        Some(t) if revoke(&sim, DIGITALOCEAN, t) => StatusCode::OK.into_response(),
        _ => status(StatusCode::BAD_REQUEST, json!({"error": "invalid_request"})),
    }
}

const CRATESIO: &str = "cratesio";

/// The registry's live token in a request: bare, as cargo sends it.
fn cratesio_token(sim: &Sim, headers: &HeaderMap) -> Option<Key> {
    let token = headers.get("authorization")?.to_str().ok()?.trim();
    sim.lock().keys.live(CRATESIO, token).cloned()
}

fn cratesio_forbidden() -> Response {
    status(
        StatusCode::FORBIDDEN,
        json!({"errors": [{"detail": "authentication failed"}]}),
    )
}

async fn cratesio_me(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    match cratesio_token(&sim, &headers) {
        Some(k) => {
            Json(json!({"user": {"id": 1, "login": "sim", "name": k.id}, "owned_crates": []}))
                .into_response()
        }
        None => cratesio_forbidden(),
    }
}

async fn cratesio_revoke(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    match cratesio_token(&sim, &headers) {
        Some(k) => {
            revoke(&sim, CRATESIO, &k.secret);
            StatusCode::NO_CONTENT.into_response()
        }
        None => cratesio_forbidden(),
    }
}
