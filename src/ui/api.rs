//! `/ui/api/`: the dashboard's views as JSON, for its script and for teams
//! who script (docs/UI-API.md). The same store reads as the pages.

use super::auth;
use super::read::{self, ListQuery};
use super::{blocking, UiState, PAGE_SIZE};
use crate::remediate::incident_details;
use axum::extract::{Path, Query, State as Extract};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};

pub(super) fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

pub(super) async fn incidents(
    Extract(state): Extract<UiState>,
    headers: HeaderMap,
    Query(raw): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = auth::require(&state, &headers, true) {
        return *r;
    }
    let q = match ListQuery::parse(&raw) {
        Ok(q) => q,
        Err(e) => return error(StatusCode::BAD_REQUEST, &e),
    };
    let page = q.page;
    match read::read_list(&state, q).await {
        Some(Ok((list, counts))) => Json(json!({
            "counts": counts,
            "total": list.total,
            "page": page,
            "page_size": PAGE_SIZE,
            "incidents": list.incidents,
        }))
        .into_response(),
        Some(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, &e),
        None => error(StatusCode::INTERNAL_SERVER_ERROR, "the store task failed"),
    }
}

pub(super) async fn incident(
    Extract(state): Extract<UiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(r) = auth::require(&state, &headers, true) {
        return *r;
    }
    let Ok(id) = id.parse::<i64>() else {
        return error(StatusCode::NOT_FOUND, "incident ids are numbers");
    };
    let view = match read::read_incident(&state, id).await {
        Some(Ok(Some(v))) => v,
        Some(Ok(None)) => return error(StatusCode::NOT_FOUND, &format!("no incident {id}")),
        Some(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e),
        None => return error(StatusCode::INTERNAL_SERVER_ERROR, "the store task failed"),
    };
    let details: BTreeMap<&str, String> = incident_details(&view.incident).into_iter().collect();
    let links: Vec<Option<String>> = view
        .locations
        .iter()
        .map(|l| read::location_link(&state.0.settings.github_web, l))
        .collect();
    let hand_over = read::offers_hand_over(&view);
    let mut v = match serde_json::to_value(&view) {
        Ok(v) => v,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    v["details"] = json!(details);
    v["location_links"] = json!(links);
    v["needs_a_human"] = json!(crate::store::needs_a_human(view.incident.state));
    v["hand_over"] = json!(hand_over);
    Json(v).into_response()
}

pub(super) async fn sources(Extract(state): Extract<UiState>, headers: HeaderMap) -> Response {
    if let Err(r) = auth::require(&state, &headers, true) {
        return *r;
    }
    Json(read::sources_view(&state).await).into_response()
}

pub(super) async fn stats(Extract(state): Extract<UiState>, headers: HeaderMap) -> Response {
    if let Err(r) = auth::require(&state, &headers, true) {
        return *r;
    }
    let st = state.clone();
    match blocking(move || st.0.store.stats()).await {
        Some(Ok(s)) => Json(s).into_response(),
        Some(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        None => error(StatusCode::INTERNAL_SERVER_ERROR, "the store task failed"),
    }
}

/// What an action answers in JSON.
pub(super) fn done(message: &str, row: Option<Value>) -> Response {
    Json(json!({ "message": message, "incident": row })).into_response()
}
