//! The webhook inside `keysentry daemon`: its router (merged into the
//! daemon's server when `github.webhook.listen` equals `http.listen`, else
//! served on its own), its worker (stopped with the daemon; what it has not
//! finished stays pending for the next start), and the daemon's current
//! engine and scanner, looked up per delivery so that SIGHUP applies.
//!
//! It belongs to the daemon, not to `github`: `github` parses, verifies,
//! fetches and yields chunks; the daemon wires it to its engine.

use super::{EngineSink, Shared};
use crate::config::Config;
use crate::github::{
    remediable_providers, CurrentScanner, GitHubWebhook, WebhookError, WebhookSettings,
    DELIVERY_STUCK_AFTER,
};
use crate::metrics::{SourceState, WEBHOOK_SOURCE};
use crate::rules::RuleSet;
use crate::scan::{BoxFuture, Finding, FindingSink, Handled, SinkError};
use crate::server::HttpGuard;
use crate::store::webhook::DeliveryStore;
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The daemon's engine, whichever one the last reload installed.
pub struct DaemonSink(pub Arc<Shared<EngineSink>>);

impl FindingSink for DaemonSink {
    fn submit(&self, findings: Vec<Finding>) -> BoxFuture<'_, Result<Vec<Handled>, SinkError>> {
        let engine = self.0.sink();
        Box::pin(async move { FindingSink::submit(&engine.0, findings).await })
    }
}

/// A running webhook: the router to serve and the worker behind it.
pub struct WebhookService {
    pub router: axum::Router,
    /// `github.webhook.listen`.
    pub listen: String,
    worker: JoinHandle<()>,
}

impl WebhookService {
    /// `None` when the config has no `github.webhook`. The worker runs until
    /// `stop` turns true.
    pub fn start(
        config: &Config,
        store: &Arc<Store>,
        rules: &RuleSet,
        shared: Arc<Shared<EngineSink>>,
        http: &HttpGuard,
        mut stop: watch::Receiver<bool>,
    ) -> Result<Option<WebhookService>, WebhookError> {
        let Some(settings) = WebhookSettings::from_config(config, http)? else {
            return Ok(None);
        };
        let listen = config
            .github
            .as_ref()
            .and_then(|g| g.webhook.as_ref())
            .map(|w| w.listen.clone())
            .unwrap_or_default();
        let store = Arc::new(DeliveryStore::new(store.clone()));
        let metrics = shared.metrics.clone();
        let shared_metrics = shared.metrics.clone();
        let current = shared.clone();
        let scanner: CurrentScanner = Arc::new(move || current.scanner());
        let hook = GitHubWebhook::new(
            config,
            settings,
            store,
            scanner,
            remediable_providers(rules),
            Arc::new(DaemonSink(shared)),
        )?;
        // The delivery queue is a source like the others: `/healthz` says
        // when it stops turning.
        let beats = shared_metrics.clone();
        beats.set_source(WEBHOOK_SOURCE, SourceState::Running);
        beats.expect_progress(WEBHOOK_SOURCE, DELIVERY_STUCK_AFTER);
        let heartbeat = Arc::new(move || beats.beat(WEBHOOK_SOURCE));
        let worker = tokio::spawn(hook.worker.with_heartbeat(heartbeat).run(async move {
            super::stopped(&mut stop).await;
        }));
        // Every answer counted by status in /metrics (401s are bad signatures).
        let router = hook.router.layer(axum::middleware::map_response(
            move |res: axum::response::Response| {
                metrics.webhook_request(res.status().as_u16());
                std::future::ready(res)
            },
        ));
        Ok(Some(WebhookService {
            router,
            listen,
            worker,
        }))
    }

    /// Waits (at most `limit`) for the worker to record what it finished.
    pub async fn join(self, limit: Duration) {
        if tokio::time::timeout(limit, self.worker).await.is_err() {
            tracing::warn!("webhook deliveries in flight did not finish in time; they resume on the next start");
        }
    }
}
