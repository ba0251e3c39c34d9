//! GitLab personal access tokens: `GET /api/v4/personal_access_tokens/self`
//! (200 / 401), `DELETE` it (204, revoke) and `POST .../self/rotate` (200
//! with a new token; the old one is revoked). The token comes as
//! `PRIVATE-TOKEN` or `Authorization: Bearer`.

use crate::state::{carried_key, fingerprint, Sim};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use sha2::Digest;

const PROVIDER: &str = "gitlab";
const SELF: &str = "/api/v4/personal_access_tokens/self";

pub fn routes() -> Router<Sim> {
    Router::new()
        .route(SELF, get(show).delete(revoke))
        .route("/api/v4/personal_access_tokens/self/rotate", post(rotate))
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"message": "401 Unauthorized"})),
    )
        .into_response()
}

/// The fingerprint of the live token the request carries; `None` means 401.
fn live_token(sim: &Sim, headers: &HeaderMap) -> Option<String> {
    let fp = fingerprint(&carried_key(headers, &[])?);
    (!sim.lock().revoked.contains(&(PROVIDER, fp.clone()))).then_some(fp)
}

async fn show(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    match live_token(&sim, &headers) {
        Some(_) => Json(
            json!({"id": 1, "name": "sim", "active": true, "revoked": false, "scopes": ["api"]}),
        )
        .into_response(),
        None => unauthorized(),
    }
}

async fn revoke(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    match live_token(&sim, &headers) {
        Some(fp) => {
            sim.lock().revoked.insert((PROVIDER, fp));
            StatusCode::NO_CONTENT.into_response()
        }
        None => unauthorized(),
    }
}

async fn rotate(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    match live_token(&sim, &headers) {
        Some(fp) => {
            let mut s = sim.lock();
            s.revoked.insert((PROVIDER, fp.clone()));
            s.generated += 1;
            // A legacy-shaped token (20 characters), different every time.
            let digest = sha2::Sha256::digest(format!("gitlab-rotate-{}", s.generated));
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            let token = format!("glpat-{}", &hex[..20]);
            Json(json!({"id": 1, "token": token, "active": true})).into_response()
        }
        None => unauthorized(),
    }
}
