//! GitHub: `POST /credentials/revoke` (unauthenticated, body
//! `{"credentials": [KEY, ...]}`, 202) and `GET /user` (200 for a token not
//! revoked, 401 otherwise). Any token is live until revoked.

use crate::state::{fingerprint, Sim};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

const PROVIDER: &str = "github";

pub fn routes() -> Router<Sim> {
    Router::new()
        .route("/credentials/revoke", post(revoke))
        .route("/user", get(user))
}

#[derive(Deserialize)]
struct RevokeBody {
    credentials: Vec<String>,
}

async fn revoke(State(sim): State<Sim>, body: Option<Json<RevokeBody>>) -> Response {
    let Some(Json(body)) = body else {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"message": "Invalid request: credentials is required"})),
        )
            .into_response();
    };
    let mut s = sim.lock();
    for c in &body.credentials {
        s.revoked.insert((PROVIDER, fingerprint(c)));
    }
    StatusCode::ACCEPTED.into_response()
}

async fn user(State(sim): State<Sim>, headers: HeaderMap) -> Response {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split_once(' '))
        .map(|(_, t)| t.trim().to_string());
    let live = token.is_some_and(|t| !sim.lock().revoked.contains(&(PROVIDER, fingerprint(&t))));
    if live {
        Json(json!({"login": "sim-user", "id": 1})).into_response()
    } else {
        (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "Bad credentials"})),
        )
            .into_response()
    }
}
