//! OpenAI's Administration API and Anthropic's Admin API, as far as
//! finding and removing a leaked key goes, with their verify calls:
//! - OpenAI under `/openai` (`Authorization: Bearer`): `GET /v1/models`
//!   (200 / 401); with an admin key, `GET /v1/organization/projects`, `GET
//!   /v1/organization/projects/{p}/api_keys`, `DELETE .../api_keys/{id}`,
//!   `GET /v1/organization/admin_api_keys`, `DELETE .../admin_api_keys/{id}`;
//! - Anthropic under `/anthropic` (`x-api-key`, `anthropic-version`
//!   required by the admin calls): `GET /v1/models` (200 / 401); with an
//!   admin key, `GET /v1/organizations/api_keys` (`status` filter), `POST
//!   /v1/organizations/api_keys/{id}` (`{"status": "inactive"}`).
//!
//! Lists page [`PAGE`] entries at a time (`has_more`, `last_id`, `after` /
//! `after_id`) whatever `limit` asks, so clients must follow them. Keys are
//! listed by their redacted form only (`redacted_value`,
//! `partial_key_hint`). A deleted or inactive key answers 401 everywhere.
//!
//! Control: `POST /_sim/admin/{provider}/keys` (`{"key", "name",
//! "project", "admin", "hint", "id"}`: `project` is created on first use;
//! `admin` makes it an admin key; `hint` overrides the redacted form), `POST
//! /_sim/admin/{provider}/projects` (`{"id", "name", "status"}`), `GET
//! /_sim/admin/{provider}/keys/{fingerprint}` (`id`, `deleted`, `status`,
//! `changes`: how many deletes or status changes reached it).

use crate::state::{fingerprint, Sim};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Entries per list page.
pub const PAGE: usize = 2;

const OPENAI: &str = "openai";
const ANTHROPIC: &str = "anthropic";

#[derive(Clone, Debug)]
struct Key {
    provider: String,
    secret: String,
    id: String,
    name: String,
    project: Option<String>,
    admin: bool,
    hint: String,
    deleted: bool,
    /// Anthropic's `active` / `inactive` / `archived`.
    status: String,
    changes: u32,
}

#[derive(Clone, Debug)]
struct Project {
    id: String,
    name: String,
    status: String,
}

#[derive(Default)]
struct Book {
    keys: Vec<Key>,
    projects: Vec<Project>,
    generated: u64,
}

#[derive(Clone, Default)]
struct Admin(Arc<Mutex<Book>>);

impl Admin {
    fn lock(&self) -> MutexGuard<'_, Book> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Book {
    /// The usable key `secret` of `provider`.
    fn live(&self, provider: &str, secret: &str) -> Option<&Key> {
        self.keys.iter().find(|k| {
            k.provider == provider && k.secret == secret && !k.deleted && k.status == "active"
        })
    }

    fn is_admin(&self, provider: &str, secret: Option<String>) -> bool {
        secret.is_some_and(|s| self.live(provider, &s).is_some_and(|k| k.admin))
    }
}

/// This API's routes with their own state (one book per simulator).
pub fn routes() -> Router<Sim> {
    Router::new()
        .route("/openai/v1/models", get(openai_models))
        .route("/openai/v1/organization/projects", get(openai_projects))
        .route(
            "/openai/v1/organization/projects/{project}/api_keys",
            get(openai_keys),
        )
        .route(
            "/openai/v1/organization/projects/{project}/api_keys/{id}",
            axum::routing::delete(openai_delete),
        )
        .route(
            "/openai/v1/organization/admin_api_keys",
            get(openai_admin_keys),
        )
        .route(
            "/openai/v1/organization/admin_api_keys/{id}",
            axum::routing::delete(openai_admin_delete),
        )
        .route("/anthropic/v1/models", get(anthropic_models))
        .route("/anthropic/v1/organizations/api_keys", get(anthropic_keys))
        .route(
            "/anthropic/v1/organizations/api_keys/{id}",
            post(anthropic_update),
        )
        .route("/_sim/admin/{provider}/keys", post(add_key))
        .route("/_sim/admin/{provider}/projects", post(add_project))
        .route("/_sim/admin/{provider}/keys/{fingerprint}", get(show_key))
        .with_state(Admin::default())
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let auth = headers.get("authorization")?.to_str().ok()?;
    auth.strip_prefix("Bearer ").map(|t| t.trim().to_string())
}

fn x_api_key(headers: &HeaderMap) -> Option<String> {
    Some(headers.get("x-api-key")?.to_str().ok()?.to_string())
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

/// One page of `items` after the entry whose id is `after`, in the list
/// shape both APIs share.
fn page(items: Vec<Value>, after: Option<&String>, object: Option<&str>) -> Response {
    let start = match after {
        Some(a) => match items.iter().position(|i| i["id"] == a.as_str()) {
            Some(i) => i + 1,
            None => items.len(),
        },
        None => 0,
    };
    let data: Vec<Value> = items.iter().skip(start).take(PAGE).cloned().collect();
    let has_more = start + data.len() < items.len();
    let mut body = json!({
        "data": data,
        "has_more": has_more,
        "first_id": data.first().map(|d| d["id"].clone()),
        "last_id": data.last().map(|d| d["id"].clone()),
    });
    if let Some(o) = object {
        body["object"] = json!(o);
    }
    Json(body).into_response()
}

// --- OpenAI ----------------------------------------------------------------

fn openai_error(status: StatusCode, message: &str, code: &str) -> Response {
    answer(
        status,
        json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": code}}),
    )
}

fn openai_unauthorized() -> Response {
    openai_error(
        StatusCode::UNAUTHORIZED,
        "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
        "invalid_api_key",
    )
}

fn openai_key_json(k: &Key) -> Value {
    let object = match k.admin {
        true => "organization.admin_api_key",
        false => "organization.project.api_key",
    };
    json!({
        "object": object,
        "redacted_value": k.hint,
        "name": k.name,
        "id": k.id,
        "created_at": 1_767_225_600,
        "last_used_at": 1_767_312_000,
        "owner": {"type": "user", "user": {"id": "user_sim", "name": "Sim Owner", "email": "owner@example.invalid", "role": "owner"}},
    })
}

async fn openai_models(State(a): State<Admin>, headers: HeaderMap) -> Response {
    let book = a.lock();
    match bearer(&headers).and_then(|t| book.live(OPENAI, &t).cloned()) {
        Some(_) => Json(json!({"object": "list", "data": [{"id": "gpt-sim", "object": "model", "owned_by": "openai"}]})).into_response(),
        None => openai_unauthorized(),
    }
}

async fn openai_projects(
    State(a): State<Admin>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let book = a.lock();
    if !book.is_admin(OPENAI, bearer(&headers)) {
        return openai_unauthorized();
    }
    let archived = q.get("include_archived").is_some_and(|v| v == "true");
    let items = book
        .projects
        .iter()
        .filter(|p| archived || p.status != "archived")
        .map(|p| json!({"id": p.id, "object": "organization.project", "name": p.name, "created_at": 1_767_225_600, "archived_at": null, "status": p.status}))
        .collect();
    page(items, q.get("after"), Some("list"))
}

async fn openai_keys(
    State(a): State<Admin>,
    headers: HeaderMap,
    Path(project): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let book = a.lock();
    if !book.is_admin(OPENAI, bearer(&headers)) {
        return openai_unauthorized();
    }
    if !book.projects.iter().any(|p| p.id == project) {
        return openai_error(StatusCode::NOT_FOUND, "No such project", "not_found");
    }
    let items = book
        .keys
        .iter()
        .filter(|k| k.provider == OPENAI && !k.deleted && k.project.as_deref() == Some(&project))
        .map(openai_key_json)
        .collect();
    page(items, q.get("after"), Some("list"))
}

/// Deletes the OpenAI key `id` that `pick` selects.
fn openai_remove(
    a: &Admin,
    headers: &HeaderMap,
    id: &str,
    pick: impl Fn(&Key) -> bool,
) -> Response {
    let mut book = a.lock();
    if !book.is_admin(OPENAI, bearer(headers)) {
        return openai_unauthorized();
    }
    let found = book
        .keys
        .iter_mut()
        .find(|k| k.provider == OPENAI && !k.deleted && k.id == id && pick(k));
    match found {
        Some(k) => {
            k.deleted = true;
            k.changes += 1;
            let object = match k.admin {
                true => "organization.admin_api_key.deleted",
                false => "organization.project.api_key.deleted",
            };
            Json(json!({"object": object, "id": k.id, "deleted": true})).into_response()
        }
        None => openai_error(StatusCode::NOT_FOUND, "No such API key", "not_found"),
    }
}

async fn openai_delete(
    State(a): State<Admin>,
    headers: HeaderMap,
    Path((project, id)): Path<(String, String)>,
) -> Response {
    openai_remove(&a, &headers, &id, |k| {
        !k.admin && k.project.as_deref() == Some(&project)
    })
}

async fn openai_admin_keys(
    State(a): State<Admin>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let book = a.lock();
    if !book.is_admin(OPENAI, bearer(&headers)) {
        return openai_unauthorized();
    }
    let items = book
        .keys
        .iter()
        .filter(|k| k.provider == OPENAI && k.admin && !k.deleted)
        .map(openai_key_json)
        .collect();
    page(items, q.get("after"), Some("list"))
}

async fn openai_admin_delete(
    State(a): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    openai_remove(&a, &headers, &id, |k| k.admin)
}

// --- Anthropic -------------------------------------------------------------

fn anthropic_error(status: StatusCode, kind: &str, message: &str) -> Response {
    answer(
        status,
        json!({"type": "error", "error": {"type": kind, "message": message}}),
    )
}

fn anthropic_unauthorized() -> Response {
    anthropic_error(
        StatusCode::UNAUTHORIZED,
        "authentication_error",
        "invalid x-api-key",
    )
}

/// The admin calls' checks: the version header, then the admin key.
fn anthropic_admin(book: &Book, headers: &HeaderMap) -> Option<Response> {
    if headers.get("anthropic-version").is_none() {
        return Some(anthropic_error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "anthropic-version: header is required",
        ));
    }
    (!book.is_admin(ANTHROPIC, x_api_key(headers))).then(anthropic_unauthorized)
}

fn anthropic_key_json(k: &Key) -> Value {
    json!({
        "id": k.id,
        "type": "api_key",
        "name": k.name,
        "partial_key_hint": k.hint,
        "status": k.status,
        "workspace_id": null,
        "created_at": "2026-01-01T00:00:00Z",
        "created_by": {"id": "user_sim", "type": "user"},
    })
}

async fn anthropic_models(State(a): State<Admin>, headers: HeaderMap) -> Response {
    let book = a.lock();
    match x_api_key(&headers).and_then(|t| book.live(ANTHROPIC, &t).cloned()) {
        Some(_) => Json(json!({"data": [{"id": "claude-sim", "type": "model"}], "has_more": false, "first_id": "claude-sim", "last_id": "claude-sim"})).into_response(),
        None => anthropic_unauthorized(),
    }
}

async fn anthropic_keys(
    State(a): State<Admin>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let book = a.lock();
    if let Some(refused) = anthropic_admin(&book, &headers) {
        return refused;
    }
    let items = book
        .keys
        .iter()
        .filter(|k| k.provider == ANTHROPIC && !k.admin)
        .filter(|k| q.get("status").map_or(true, |s| *s == k.status))
        .map(anthropic_key_json)
        .collect();
    page(items, q.get("after_id"), None)
}

#[derive(Deserialize)]
struct Update {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

async fn anthropic_update(
    State(a): State<Admin>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let mut book = a.lock();
    if let Some(refused) = anthropic_admin(&book, &headers) {
        return refused;
    }
    let update: Update = match serde_json::from_slice(&body) {
        Ok(u) => u,
        Err(_) => {
            return anthropic_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid JSON body",
            )
        }
    };
    if let Some(s) = &update.status {
        if !["active", "inactive", "archived"].contains(&s.as_str()) {
            return anthropic_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "status: must be active, inactive or archived",
            );
        }
    }
    let found = book
        .keys
        .iter_mut()
        .find(|k| k.provider == ANTHROPIC && !k.admin && k.id == id);
    let Some(k) = found else {
        return anthropic_error(
            StatusCode::NOT_FOUND,
            "not_found_error",
            "API key not found",
        );
    };
    if let Some(s) = update.status {
        k.status = s;
        k.changes += 1;
    }
    if let Some(n) = update.name {
        k.name = n;
    }
    Json(anthropic_key_json(k)).into_response()
}

// --- control ---------------------------------------------------------------

#[derive(Deserialize)]
struct NewKey {
    key: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    project: Option<String>,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    hint: Option<String>,
    #[serde(default)]
    id: Option<String>,
}

/// The redacted form each API lists a key by: a prefix, `...`, the last
/// four characters.
fn redacted(provider: &str, key: &str) -> String {
    let keep = if provider == ANTHROPIC { 16 } else { 11 };
    let chars: Vec<char> = key.chars().collect();
    let head: String = chars.iter().take(keep).collect();
    let tail: String = chars[chars.len().saturating_sub(4)..].iter().collect();
    format!("{head}...{tail}")
}

async fn add_key(
    State(a): State<Admin>,
    Path(provider): Path<String>,
    Json(k): Json<NewKey>,
) -> Response {
    let mut book = a.lock();
    book.generated += 1;
    let n = book.generated;
    let project = match (provider.as_str(), k.admin, k.project) {
        (OPENAI, false, p) => Some(p.unwrap_or_else(|| "proj_default".into())),
        _ => None,
    };
    if let Some(p) = &project {
        if !book.projects.iter().any(|x| &x.id == p) {
            book.projects.push(Project {
                id: p.clone(),
                name: format!("Project {p}"),
                status: "active".into(),
            });
        }
    }
    let id = k.id.unwrap_or_else(|| match provider.as_str() {
        ANTHROPIC => format!("apikey_sim{n:06}"),
        _ => format!("key_sim{n:06}"),
    });
    book.keys.push(Key {
        hint: k.hint.unwrap_or_else(|| redacted(&provider, &k.key)),
        provider,
        secret: k.key,
        id: id.clone(),
        name: k.name.unwrap_or_else(|| format!("key {n}")),
        project,
        admin: k.admin,
        deleted: false,
        status: "active".into(),
        changes: 0,
    });
    answer(StatusCode::CREATED, json!({"id": id}))
}

#[derive(Deserialize)]
struct NewProject {
    id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    status: Option<String>,
}

async fn add_project(
    State(a): State<Admin>,
    Path(_provider): Path<String>,
    Json(p): Json<NewProject>,
) -> StatusCode {
    let mut book = a.lock();
    book.projects.retain(|x| x.id != p.id);
    book.projects.push(Project {
        name: p.name.unwrap_or_else(|| format!("Project {}", p.id)),
        id: p.id,
        status: p.status.unwrap_or_else(|| "active".into()),
    });
    StatusCode::NO_CONTENT
}

async fn show_key(
    State(a): State<Admin>,
    Path((provider, fp)): Path<(String, String)>,
) -> Response {
    let book = a.lock();
    match book
        .keys
        .iter()
        .find(|k| k.provider == provider && fingerprint(&k.secret) == fp)
    {
        Some(k) => Json(json!({"id": k.id, "deleted": k.deleted, "status": k.status, "changes": k.changes, "project": k.project})).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
