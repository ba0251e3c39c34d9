//! The Kubernetes API server's Secrets and Deployments, as keysentry's
//! kubernetes consumer uses them:
//!
//! - `GET /api/v1/namespaces/{ns}/secrets/{name}`: the Secret (`data`
//!   base64, `metadata.resourceVersion`), 404 `NotFound` Status
//! - `PUT` the same path: the whole object; a `metadata.resourceVersion`
//!   other than the current one is 409 `Conflict`; else stored, the
//!   resourceVersion bumped, 200 with the object
//! - `PATCH /apis/apps/v1/namespaces/{ns}/deployments/{name}` (strategic
//!   merge): sets the pod template annotations, 404 for no deployment
//! - `Authorization: Bearer T` with a token added by control, else 401;
//!   a token without the verb (`get`, `update`, `patch`) is 403 `Forbidden`
//!   — whose message, like a verbose admission webhook's, echoes the data
//!   sent (so tests see that keysentry never prints it).
//!
//! Control: `POST /_sim/k8s/tokens {"token","verbs":[..]}`, `PUT
//! /_sim/k8s/secrets/{ns}/{name} {"data":{k: plaintext}}`, `GET` it
//! (`{data (plaintext), resourceVersion, writes}`), `POST
//! /_sim/k8s/secrets/{ns}/{name}/race {"count", "data"?}` (the next `count`
//! PUTs find the Secret changed by someone else first: resourceVersion
//! bumped, `data` written if given), `POST /_sim/k8s/deployments
//! {"namespace","name"}`, `GET /_sim/k8s/deployments/{ns}/{name}`
//! (`{restarted_at, patches}`).

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Default)]
struct Secret {
    /// key → plaintext
    data: Map<String, Value>,
    version: u64,
    writes: u64,
    /// PUTs still to lose a race; what the other writer sets.
    races: u32,
    race_data: Option<Map<String, Value>>,
}

#[derive(Default)]
struct Cluster {
    tokens: HashMap<String, Vec<String>>,
    secrets: HashMap<(String, String), Secret>,
    deployments: HashMap<(String, String), (Option<String>, u64)>,
    versions: u64,
}

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Cluster>>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Cluster> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub fn router() -> Router {
    Router::new()
        .route(
            "/api/v1/namespaces/{ns}/secrets/{name}",
            get(get_secret).put(put_secret),
        )
        .route(
            "/apis/apps/v1/namespaces/{ns}/deployments/{name}",
            axum::routing::patch(patch_deployment),
        )
        .route("/_sim/k8s/tokens", post(add_token))
        .route(
            "/_sim/k8s/secrets/{ns}/{name}",
            put(set_secret).get(show_secret),
        )
        .route("/_sim/k8s/secrets/{ns}/{name}/race", post(race))
        .route("/_sim/k8s/deployments", post(add_deployment))
        .route("/_sim/k8s/deployments/{ns}/{name}", get(show_deployment))
        .with_state(Shared::default())
}

fn status(code: StatusCode, reason: &str, message: String) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16()});
    (code, Json(body)).into_response()
}

fn allowed(
    c: &Cluster,
    headers: &HeaderMap,
    verb: &str,
    what: &str,
    echo: &str,
) -> Result<(), Box<Response>> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    match c.tokens.get(token) {
        None => Err(Box::new(status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized".into()))),
        Some(verbs) if !verbs.iter().any(|v| v == verb) => Err(Box::new(status(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("{what} is forbidden: User \"system:serviceaccount:sim\" cannot {verb} resource; admission denied request {echo}"),
        ))),
        Some(_) => Ok(()),
    }
}

fn object(ns: &str, name: &str, s: &Secret) -> Value {
    let data: Map<String, Value> = s
        .data
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                Value::String(B64.encode(v.as_str().unwrap_or_default())),
            )
        })
        .collect();
    json!({"kind": "Secret", "apiVersion": "v1", "type": "Opaque",
        "metadata": {"name": name, "namespace": ns, "resourceVersion": s.version.to_string()},
        "data": data})
}

async fn get_secret(
    State(sim): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let c = sim.lock();
    if let Err(r) = allowed(&c, &headers, "get", &format!("secrets \"{name}\""), "") {
        return *r;
    }
    match c.secrets.get(&(ns.clone(), name.clone())) {
        Some(s) => Json(object(&ns, &name, s)).into_response(),
        None => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("secrets \"{name}\" not found"),
        ),
    }
}

async fn put_secret(
    State(sim): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut c = sim.lock();
    if let Err(r) = allowed(
        &c,
        &headers,
        "update",
        &format!("secrets \"{name}\""),
        &body["data"].to_string(),
    ) {
        return *r;
    }
    c.versions += 1;
    let next = c.versions + 1000;
    let Some(s) = c.secrets.get_mut(&(ns.clone(), name.clone())) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("secrets \"{name}\" not found"),
        );
    };
    if s.races > 0 {
        s.races -= 1;
        if let Some(d) = s.race_data.clone() {
            s.data = d;
        }
        s.version = next;
    }
    let sent = body
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str);
    if sent != Some(s.version.to_string().as_str()) {
        return status(StatusCode::CONFLICT, "Conflict", format!("Operation cannot be fulfilled on secrets \"{name}\": the object has been modified; please apply your changes to the latest version and try again"));
    }
    let Some(data) = body.get("data").and_then(Value::as_object) else {
        return status(StatusCode::BAD_REQUEST, "BadRequest", "no data".into());
    };
    let mut plain = Map::new();
    for (k, v) in data {
        let Some(decoded) = v
            .as_str()
            .and_then(|v| B64.decode(v).ok())
            .and_then(|b| String::from_utf8(b).ok())
        else {
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("data[{k}] is not base64"),
            );
        };
        plain.insert(k.clone(), Value::String(decoded));
    }
    s.data = plain;
    s.version = next + 1;
    s.writes += 1;
    Json(object(&ns, &name, s)).into_response()
}

async fn patch_deployment(
    State(sim): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut c = sim.lock();
    if let Err(r) = allowed(
        &c,
        &headers,
        "patch",
        &format!("deployments.apps \"{name}\""),
        "",
    ) {
        return *r;
    }
    let Some(d) = c.deployments.get_mut(&(ns.clone(), name.clone())) else {
        return status(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("deployments.apps \"{name}\" not found"),
        );
    };
    let at = body
        .pointer("/spec/template/metadata/annotations/kubectl.kubernetes.io~1restartedAt")
        .and_then(Value::as_str)
        .map(str::to_string);
    d.0 = at.or(d.0.take());
    d.1 += 1;
    Json(json!({"kind": "Deployment", "metadata": {"name": name, "namespace": ns}})).into_response()
}

async fn add_token(State(sim): State<Shared>, Json(b): Json<Value>) -> StatusCode {
    let (Some(t), Some(verbs)) = (
        b.get("token").and_then(Value::as_str),
        b.get("verbs").and_then(Value::as_array),
    ) else {
        return StatusCode::BAD_REQUEST;
    };
    let verbs = verbs
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    sim.lock().tokens.insert(t.to_string(), verbs);
    StatusCode::NO_CONTENT
}

async fn set_secret(
    State(sim): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    Json(b): Json<Value>,
) -> StatusCode {
    let Some(data) = b.get("data").and_then(Value::as_object).cloned() else {
        return StatusCode::BAD_REQUEST;
    };
    let mut c = sim.lock();
    c.versions += 1;
    let version = c.versions;
    let s = c.secrets.entry((ns, name)).or_default();
    s.data = data;
    s.version = version;
    StatusCode::NO_CONTENT
}

async fn show_secret(
    State(sim): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    let c = sim.lock();
    match c.secrets.get(&(ns, name)) {
        Some(s) => Json(
            json!({"data": s.data, "resourceVersion": s.version.to_string(), "writes": s.writes}),
        )
        .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn race(
    State(sim): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
    Json(b): Json<Value>,
) -> StatusCode {
    let mut c = sim.lock();
    let Some(s) = c.secrets.get_mut(&(ns, name)) else {
        return StatusCode::NOT_FOUND;
    };
    s.races = b.get("count").and_then(Value::as_u64).unwrap_or(1) as u32;
    s.race_data = b.get("data").and_then(Value::as_object).cloned();
    StatusCode::NO_CONTENT
}

async fn add_deployment(State(sim): State<Shared>, Json(b): Json<Value>) -> StatusCode {
    let (Some(ns), Some(name)) = (
        b.get("namespace").and_then(Value::as_str),
        b.get("name").and_then(Value::as_str),
    ) else {
        return StatusCode::BAD_REQUEST;
    };
    sim.lock()
        .deployments
        .insert((ns.into(), name.into()), (None, 0));
    StatusCode::NO_CONTENT
}

async fn show_deployment(
    State(sim): State<Shared>,
    Path((ns, name)): Path<(String, String)>,
) -> Response {
    match sim.lock().deployments.get(&(ns, name)) {
        Some((at, n)) => Json(json!({"restarted_at": at, "patches": n})).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
