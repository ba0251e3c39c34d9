//! The daemon's HTTP side: `/healthz`, `/readyz`, `/metrics`, and (merged in
//! by the webhook module) `/github/webhook`. [`router`] builds it without a
//! socket, so tests call it with `oneshot`.
//!
//! Liveness and readiness differ on purpose: `/healthz` fails (503) only when
//! a source is stuck, which a restart cures; `/readyz` fails whenever the
//! daemon is degraded (a source, remediation or every alert channel failing),
//! which a restart does not cure but an operator must see. Both answer the
//! same JSON: the verdict and every component's status.
//!
//! [`serve`] runs a router on a socket under the connection, time and
//! body-memory limits of [`HttpGuard`].

mod conn;
mod limits;

pub use conn::{serve, Served};
pub use limits::{
    open_file_limit, BodyBudget, HttpGuard, HttpLimits, Timeout, DEFAULT_MAX_CONNECTIONS,
    RESERVED_CONNECTIONS,
};

use crate::metrics::{ComponentHealth, Health, Metrics, Scrape};
use crate::store::Store;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;

/// What the handlers read.
#[derive(Clone)]
pub struct AppState {
    pub metrics: Arc<Metrics>,
    /// Incident counts come from here at scrape time; `None` in tests that
    /// have no store.
    pub store: Option<Arc<Store>>,
    /// The remediation engine's count of keys held in memory, read at
    /// scrape time; `None` without an engine.
    pub keys_held: Option<KeysHeld>,
    /// Whether a GitHub webhook is served (its deliveries are counted).
    pub webhook: bool,
    /// The engine's own components (remediation, alert channels), read per
    /// request; `None` without an engine.
    pub components: Option<Components>,
    /// The connection and body limits, whose counts `/metrics` shows.
    pub http: Option<HttpGuard>,
}

/// Reads a count at scrape time.
pub type KeysHeld = Arc<dyn Fn() -> usize + Send + Sync>;

/// Reads the engine's component health per request.
pub type Components = Arc<dyn Fn() -> Vec<(String, ComponentHealth)> + Send + Sync>;

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// What a connection over `http.max_connections` gets: `/healthz` and
/// `/metrics` as usual, 503 for everything else.
pub fn reserved_router(state: AppState) -> Router {
    router(state).fallback(over_capacity)
}

async fn over_capacity() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "5")],
        "keysentry is at http.max_connections; retry later\n",
    )
        .into_response()
}

fn health(state: &AppState) -> Health {
    let extra = state.components.as_ref().map(|f| f()).unwrap_or_default();
    state.metrics.health(extra)
}

fn answer(ok: bool, health: &Health) -> Response {
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(health)).into_response()
}

/// Liveness: 503 only while a source is stuck (past its progress
/// deadline); otherwise 200, with `ok` or `degraded` and the reasons.
async fn healthz(State(state): State<AppState>) -> Response {
    let h = health(&state);
    answer(!h.is_stuck(), &h)
}

/// Readiness: 200 only when every component is ok.
async fn readyz(State(state): State<AppState>) -> Response {
    let h = health(&state);
    answer(h.is_ok(), &h)
}

async fn metrics(State(state): State<AppState>) -> Response {
    let webhook = state.webhook;
    let mut scrape = match state.store.clone() {
        // SQLite is blocking; keep it off the runtime's worker threads.
        Some(store) => tokio::task::spawn_blocking(move || Scrape {
            incidents: store.incident_counts(),
            webhook_deliveries: webhook.then(|| store.webhook_delivery_counts()),
            keys_held: None,
        })
        .await
        .unwrap_or_default(),
        None => Scrape::default(),
    };
    scrape.keys_held = state.keys_held.as_ref().map(|f| f());
    let mut text = state.metrics.render(&scrape);
    if let Some(http) = &state.http {
        http.render(&mut text);
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::SourceState;
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    async fn get_text(app: Router, uri: &str) -> (StatusCode, String) {
        let resp = app
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn healthz_names_the_failed_source() {
        let metrics = Arc::new(Metrics::new());
        metrics.set_source("log:/a/*.log", SourceState::Running);
        let state = AppState {
            metrics: metrics.clone(),
            store: None,
            keys_held: None,
            webhook: false,
            components: None,
            http: None,
        };
        for uri in ["/healthz", "/readyz"] {
            let (status, body) = get_text(router(state.clone()), uri).await;
            assert_eq!(status, StatusCode::OK, "{uri}");
            assert!(body.contains(r#""status":"ok""#), "{body}");
        }
        metrics.set_source(
            "repo:/srv/r",
            SourceState::Failed("not a git repository".into()),
        );
        // Alive but not ready: a restart would not fix a missing repository.
        let (status, body) = get_text(router(state.clone()), "/healthz").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains(r#""status":"degraded""#), "{body}");
        let (status, body) = get_text(router(state), "/readyz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["components"]["repo:/srv/r"]["status"], "failed");
        assert_eq!(
            v["components"]["repo:/srv/r"]["reason"],
            "not a git repository"
        );
    }

    #[tokio::test]
    async fn healthz_fails_only_when_a_source_is_stuck() {
        let metrics = Arc::new(Metrics::new());
        metrics.set_source("log:/a/*.log", SourceState::Running);
        metrics.expect_progress("log:/a/*.log", std::time::Duration::from_millis(20));
        let state = AppState {
            metrics,
            store: None,
            keys_held: None,
            webhook: false,
            components: Some(Arc::new(|| {
                vec![(
                    "alerts".into(),
                    ComponentHealth::failed("every channel fails"),
                )]
            })),
            http: None,
        };
        let (status, body) = get_text(router(state.clone()), "/healthz").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.contains("every channel fails"), "{body}");
        tokio::time::sleep(std::time::Duration::from_millis(40)).await;
        let (status, body) = get_text(router(state), "/healthz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["status"], "stuck");
        assert_eq!(v["components"]["log:/a/*.log"]["status"], "stuck");
    }

    #[tokio::test]
    async fn metrics_are_prometheus_text() {
        let metrics = Arc::new(Metrics::new());
        metrics.scanned("log:/a/*.log", 10, 1);
        let state = AppState {
            metrics,
            store: Some(Arc::new(Store::in_memory().unwrap())),
            keys_held: Some(Arc::new(|| 3)),
            webhook: false,
            components: None,
            http: Some(HttpGuard::new(HttpLimits::default())),
        };
        let (status, body) = get_text(router(state), "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("# TYPE keysentry_scanned_bytes_total counter"));
        assert!(body.contains("keysentry_scanned_bytes_total{source=\"log:/a/*.log\"} 10"));
        assert!(body.contains("keysentry_remediation_keys_held 3"));
        assert!(body.contains("keysentry_http_connections_refused_total 0"));
    }
}
