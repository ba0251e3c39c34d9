//! Inspection and fault injection: `GET /_sim/calls`, `POST /_sim/fault`.

use crate::state::{Fault, Sim};
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};

pub fn routes() -> Router<Sim> {
    Router::new()
        .route("/_sim/calls", get(calls))
        .route("/_sim/fault", post(fault))
}

async fn calls(State(sim): State<Sim>) -> Json<Vec<crate::state::Call>> {
    Json(sim.lock().calls.clone())
}

async fn fault(State(sim): State<Sim>, Json(f): Json<Fault>) -> StatusCode {
    sim.lock().faults.push(f);
    StatusCode::NO_CONTENT
}
