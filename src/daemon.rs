//! `keysentry daemon`: the long-running service.
//!
//! [`run`] is the whole service with its edges cut off: the caller (the
//! binary in `cli/daemon.rs`, or a test) loads the config, binds the
//! sockets ([`Listeners::bind`], or port 0 in a test) and hands over a
//! [`Control`]: a [`Shutdown`] to stop it, a channel to ask for reloads and
//! a counter of the times it became ready. The caller keeps the other end,
//! a [`Remote`].
//! The binary turns SIGTERM/SIGINT into the shutdown and SIGHUP into a
//! reload request; `run` installs no signal handler, so a test runs the
//! daemon in-process and knows its port without reading its log.
//!
//! One store handle: `run` opens `<state_dir>/keysentry.db` once and shares
//! that [`Store`] with the engine (incidents), the sources (offsets, cursors)
//! and the webhook (deliveries).
//!
//! Start-up order matters to systemd: config, rules and store are loaded,
//! the HTTP endpoint bound and the sources started before `READY=1`, so a
//! unit that is "active" really watches.
//!
//! - Shutdown: stop reading, let the remediation in flight end (or give up
//!   on it after [`STOP_LIMIT`]; the engine journals before every call),
//!   persist offsets, return.
//! - Reload: re-read config and rules. A file that does not load is logged,
//!   naming the problem, and the running config stays. A good one replaces
//!   the scanner and the engine, and the sources restart from their
//!   persisted offsets once everything read so far is handled. The sockets
//!   and the state directory stay (a change to either is logged: restart).

mod control;
mod dashboard;
mod engine_sink;
mod ingest;
mod pipeline;
mod settings;
mod webhook;

pub use control::{Control, Listeners, Remote};
pub use engine_sink::EngineSink;
pub use pipeline::{ChannelOutput, Payload, Pipeline, Shared, Work};
pub use settings::{parse_duration, Loaded, RepoSettings, Settings};
pub use webhook::{DaemonSink, WebhookService};

use crate::config::ConfigError;
use crate::metrics::{Metrics, SourceState};
use crate::remediate::Engine;
use crate::rules::RuleError;
use crate::scan::{AllowlistError, FindingSink, PrefilterError};
use crate::server::{
    open_file_limit, reserved_router, router, AppState, HttpGuard, HttpLimits, Served,
};
use crate::shutdown::Shutdown;
use crate::source::log_tail::{LogTail, LogTailError};
use crate::source::repo_watch::watch_repo;
use crate::store::{self, Store, StoreError};
use sd_notify::NotifyState;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// SIGTERM to exit: systemd's default stop timeout is 90 s, ours is 10.
pub const STOP_LIMIT: Duration = Duration::from_secs(9);
/// Of that, what remediation in flight may take to end; the rest is for
/// stopping sources and servers, each bounded too.
const IN_FLIGHT_LIMIT: Duration = Duration::from_secs(6);
/// How long a reload waits for the pipeline to hand on what was read.
const RELOAD_FLUSH_LIMIT: Duration = Duration::from_secs(30);
/// How often interrupted or failed remediations are retried.
const RETRY_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Rules(#[from] RuleError),
    #[error(transparent)]
    Allowlist(#[from] AllowlistError),
    #[error(transparent)]
    Prefilter(#[from] PrefilterError),
    #[error("config: `{at}`: {message}")]
    Setting { at: String, message: String },
    #[error(transparent)]
    LogTail(#[from] LogTailError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot listen on {listen} (http.listen): {source}; pick a free port or address")]
    Listen {
        listen: String,
        source: std::io::Error,
    },
    #[error("cannot start remediation: {0}")]
    Engine(String),
    #[error(transparent)]
    Webhook(#[from] crate::github::WebhookError),
    #[error(transparent)]
    Syslog(#[from] crate::source::syslog::ListenError),
    #[error("a start-up task failed: {0}")]
    Task(String),
}

/// The sink the daemon runs.
type Sink = EngineSink;

fn open_sink(loaded: &Loaded, store: Arc<Store>) -> Result<Sink, DaemonError> {
    Engine::with_store(&loaded.config, loaded.rules.clone(), store)
        .map(EngineSink)
        .map_err(|e| DaemonError::Engine(e.to_string()))
}

/// Resolves once `stop` turns true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

fn notify(state: &[NotifyState]) {
    // Without NOTIFY_SOCKET (not under systemd) this does nothing.
    let _ = sd_notify::notify(false, state);
}

/// The running sources; restarted as a whole on reload.
struct Sources {
    logs: Option<LogTail>,
    repos: Vec<tokio::task::JoinHandle<()>>,
    stop_repos: crate::shutdown::Trigger,
}

impl Sources {
    async fn start<S: FindingSink + 'static>(
        settings: &Settings,
        shared: &Arc<Shared<S>>,
        pipeline: &Pipeline,
    ) -> Result<Sources, DaemonError> {
        let logs = if settings.logs.globs.is_empty() {
            None
        } else {
            let (logs, store) = (settings.logs.clone(), shared.store.clone());
            let metrics = shared.metrics.clone();
            let out = pipeline.output(metrics.clone());
            let started =
                tokio::task::spawn_blocking(move || LogTail::start(&logs, &store, metrics, out))
                    .await
                    .map_err(|e| DaemonError::Task(e.to_string()))?;
            Some(started?)
        };
        let (stop_repos, stop) = crate::shutdown::channel();
        let repos = settings
            .repos
            .iter()
            .map(|r| {
                tokio::spawn(watch_repo(
                    r.clone(),
                    shared.store.clone(),
                    shared.metrics.clone(),
                    pipeline.output(shared.metrics.clone()),
                    stop.clone(),
                ))
            })
            .collect();
        Ok(Sources {
            logs,
            repos,
            stop_repos,
        })
    }

    /// Tells every source to stop, without waiting.
    fn request_stop(&self) {
        if let Some(logs) = &self.logs {
            logs.request_stop();
        }
        self.stop_repos.fire();
    }

    /// Stops every source and waits for it, at most `limit`: a tailer
    /// blocked on a full pipeline behind a stuck provider is left to end
    /// on its own.
    async fn stop(self, limit: Duration) {
        self.request_stop();
        if let Some(logs) = self.logs {
            let join = tokio::task::spawn_blocking(move || logs.stop());
            if tokio::time::timeout(limit, join).await.is_err() {
                tracing::warn!("the log tailer did not stop in time");
            }
        }
        for r in self.repos {
            // A scan in progress runs on a blocking thread and ends by
            // itself; its result is dropped, its cursor never written.
            if tokio::time::timeout(limit, r).await.is_err() {
                tracing::warn!("a repository watcher did not stop in time");
            }
        }
    }

    /// A source that ended by itself has failed: say so in `/healthz`.
    fn check(&self, settings: &Settings, metrics: &Metrics) {
        if let Some(logs) = &self.logs {
            if !logs.is_running() {
                for g in &settings.logs.globs {
                    metrics.set_source(
                        &format!("log:{g}"),
                        SourceState::Failed("the log tailer stopped; see the daemon's log".into()),
                    );
                }
            }
        }
    }
}

fn source_names(settings: &Settings) -> Vec<String> {
    let mut names: Vec<String> = settings
        .logs
        .globs
        .iter()
        .map(|g| format!("log:{g}"))
        .collect();
    names.extend(
        settings
            .repos
            .iter()
            .map(|r| format!("repo:{}", r.path.display())),
    );
    names.push(pipeline::ENGINE_SOURCE.to_string());
    // The webhook and the ingest listeners are not restarted by a reload;
    // keep their health entries.
    names.push(crate::metrics::WEBHOOK_SOURCE.to_string());
    names.extend(ingest::names(settings));
    names
}

/// Runs the daemon on `loaded` (read from `config_path`, which a reload
/// reads again) and the sockets in `listeners` until `control.shutdown`
/// fires; then stops within [`STOP_LIMIT`].
///
/// The store is opened once here and shared by the engine, the sources and
/// the webhook. Signals are the caller's: this function neither installs
/// handlers nor binds sockets, so it runs as well in a test on port 0.
pub async fn run(
    config_path: &Path,
    loaded: Loaded,
    listeners: Listeners,
    control: Control,
) -> Result<(), DaemonError> {
    let Control {
        mut shutdown,
        mut reload,
        ready,
    } = control;
    let store = Arc::new(Store::from_config(&loaded.config)?);
    let loaded_config = loaded.config.clone();
    let sink = open_sink(&loaded, store.clone())?;
    let metrics = Arc::new(Metrics::new());
    let mut settings = loaded.settings;
    let shared = Arc::new(Shared::new(
        loaded.scanner,
        sink,
        store.clone(),
        metrics.clone(),
    ));
    let pipeline = Pipeline::start(shared.clone());
    // The webhook worker still takes a flag; it turns with `shutdown`.
    let (stop_tx, stop_rx) = watch::channel(false);
    let http = HttpGuard::new(http_limits(&loaded.config)?);
    let mut webhook = WebhookService::start(
        &loaded.config,
        &store,
        &loaded.rules,
        shared.clone(),
        &http,
        stop_rx.clone(),
    )?;
    let (engine, probe) = (shared.clone(), shared.clone());
    let state = AppState {
        metrics: metrics.clone(),
        store: Some(store.clone()),
        keys_held: Some(Arc::new(move || engine.sink().0.keys_held())),
        webhook: webhook.is_some(),
        components: Some(Arc::new(move || probe.sink().0.components())),
        http: Some(http.clone()),
    };
    // "Retry now" on the dashboard wakes the retry loop.
    let wake = Arc::new(tokio::sync::Notify::new());
    let ingest =
        ingest::IngestService::start(&settings, &pipeline, &metrics, &http, &shutdown).await;
    let mut ingest = ingest?;
    let mut app = router(state.clone());
    if let Some(r) = ingest.router.take() {
        app = app.merge(r);
    }
    if let Some(ui) = dashboard::router(&loaded.config, &shared, state.clone(), wake.clone())? {
        app = app.merge(ui);
    }
    let mut served = Served {
        app,
        reserved: Some(reserved_router(state)),
    };
    let Listeners {
        http: http_listener,
        webhook: webhook_listener,
    } = listeners;
    let mut webhook_server = None;
    if let Some(w) = webhook.as_mut() {
        let hook = std::mem::take(&mut w.router);
        match webhook_listener {
            Some(listener) => {
                let served = Served {
                    app: hook,
                    reserved: None,
                };
                // No `/healthz` there, so no reserved slots: a connection
                // over the cap is closed at once.
                webhook_server = Some(serve(
                    "GitHub webhook ",
                    listener,
                    served,
                    http.clone(),
                    shutdown.clone(),
                ));
            }
            // One server when the webhook listens where /healthz does.
            None if http_listener.is_some() => served.app = served.app.merge(hook),
            None => {
                return Err(DaemonError::Setting {
                    at: "github.webhook.listen".into(),
                    message: format!("no socket is bound for `{}`", w.listen),
                })
            }
        }
    }
    let server = http_listener.map(|l| serve("", l, served, http.clone(), shutdown.clone()));
    let mut sources = Sources::start(&settings, &shared, &pipeline).await?;
    // In a fleet, a peer killed mid-remediation leaves its incidents once
    // their lease expires: looking at least once a lease finds them.
    let every = RETRY_EVERY.min(crate::remediate::lease_of(&loaded_config));
    let retry = tokio::spawn(retry_loop(shared.clone(), shutdown.clone(), wake, every));
    let mut watchdog = watchdog_interval();
    let mut health = tokio::time::interval(Duration::from_secs(1));
    let mut reloads_open = true;
    tracing::info!(
        config = %config_path.display(),
        store = %shared.store.path().display(),
        node = shared.store.node(),
        "keysentry daemon ready: watching {} log globs, {} repositories",
        settings.logs.globs.len(),
        settings.repos.len()
    );
    notify(&[NotifyState::Ready, NotifyState::Status("watching")]);
    ready.send_modify(|n| *n += 1);
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            asked = reload.recv(), if reloads_open => {
                if asked.is_none() {
                    reloads_open = false;
                    continue;
                }
                if let Some(new) = reload_config(config_path, &settings, &shared, &pipeline, sources).await {
                    settings = new.0;
                    sources = new.1;
                } else {
                    sources = Sources::start(&settings, &shared, &pipeline).await?;
                }
                ready.send_modify(|n| *n += 1);
            }
            _ = tick(&mut watchdog) => notify(&[NotifyState::Watchdog]),
            _ = health.tick() => sources.check(&settings, &metrics),
        }
    }
    let stopping = Instant::now();
    tracing::info!("stopping");
    notify(&[NotifyState::Stopping]);
    let _ = stop_tx.send(true);
    // The pipeline stops taking work first, so a source blocked on a full
    // queue is released at once rather than after the backlog.
    sources.request_stop();
    if !pipeline.shutdown(IN_FLIGHT_LIMIT).await {
        tracing::warn!("remediation in flight did not finish in time; it resumes from its journal on the next start");
    }
    sources.stop(Duration::from_millis(500)).await;
    ingest.stop(Duration::from_millis(500)).await;
    retry.abort();
    let engine = shared.sink();
    if tokio::time::timeout(Duration::from_secs(2), engine.0.flush_digests())
        .await
        .is_err()
    {
        tracing::warn!("the not-live digest could not be sent in time");
    }
    if let Some(webhook) = webhook {
        webhook
            .join(STOP_LIMIT.saturating_sub(stopping.elapsed()))
            .await;
    }
    for server in [server, webhook_server].into_iter().flatten() {
        let left = STOP_LIMIT.saturating_sub(stopping.elapsed());
        let _ = tokio::time::timeout(left.min(Duration::from_secs(1)), server).await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Re-reads the config. On success returns the new settings and the
/// restarted sources; on failure the old sources keep running untouched
/// (`None` means they were stopped and must be restarted by the caller).
async fn reload_config(
    config_path: &Path,
    old: &Settings,
    shared: &Arc<Shared<Sink>>,
    pipeline: &Pipeline,
    sources: Sources,
) -> Option<(Settings, Sources)> {
    notify(&[NotifyState::Reloading]);
    tracing::info!(config = %config_path.display(), "reloading the config");
    let current = shared.sink();
    let reopen = |l: &Loaded| {
        current
            .0
            .reopen(&l.config, l.rules.clone())
            .map(EngineSink)
            .map_err(|e| DaemonError::Engine(e.to_string()))
    };
    let loaded = Loaded::from_file(config_path);
    let loaded = match loaded.and_then(|l| reopen(&l).map(|s| (l, s))) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("reload failed, still running the previous config: {e}");
            notify(&[NotifyState::Ready]);
            return Some((old.clone(), sources));
        }
    };
    let (loaded, sink) = loaded;
    if loaded.settings.http_listen != old.http_listen {
        tracing::warn!("http.listen changed; restart the daemon to apply it");
    }
    if loaded.settings.syslog != old.syslog || loaded.settings.http_ingest != old.http_ingest {
        tracing::warn!("watch.syslog or watch.http_ingest changed; restart the daemon to apply it");
    }
    let state_dir = store::state_dir(loaded.config.state_dir.as_deref());
    let url = loaded
        .config
        .store
        .as_ref()
        .and_then(|s| s.resolve_url().ok().flatten());
    let moved = match url {
        Some(url) => shared.store.path() != std::path::Path::new(&store::pg::redact_url(&url)),
        None => shared.store.path() != state_dir.join(store::DB_FILE),
    };
    if moved {
        tracing::warn!(
            "the store (state_dir or store.url) changed; restart the daemon to apply it"
        );
    }
    sources.stop(RELOAD_FLUSH_LIMIT).await;
    if !pipeline.flush(RELOAD_FLUSH_LIMIT).await {
        tracing::warn!(
            "the pipeline did not drain before the reload; some lines may be scanned twice"
        );
    }
    let (old_scanner, old_sink) = (shared.scanner(), shared.sink());
    shared.replace_arcs(Arc::new(loaded.scanner), Arc::new(sink));
    let names = source_names(&loaded.settings);
    shared
        .metrics
        .retain_sources(&|n| names.iter().any(|k| k == n));
    let restarted = match Sources::start(&loaded.settings, shared, pipeline).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(
                "reload: cannot start the new sources ({e}); going back to the previous config"
            );
            shared.replace_arcs(old_scanner, old_sink);
            return None;
        }
    };
    tracing::info!(
        "reloaded: watching {} log globs, {} repositories",
        loaded.settings.logs.globs.len(),
        loaded.settings.repos.len()
    );
    // A reload often fixes what made incidents fail (a provider URL, a
    // token): take them up now rather than at the next retry tick.
    let engine = shared.sink();
    tokio::spawn(async move {
        for o in engine.0.retry_pending_now().await {
            tracing::info!(incident = o.incident_id, state = %o.state, reason = o.reason.as_deref(), "incident retried after the reload");
        }
    });
    notify(&[NotifyState::Ready]);
    Some((loaded.settings, restarted))
}

/// `http.*` limits, the connection cap fitted under the open-file limit.
/// Read once: a reload does not change them (as `http.listen`).
fn http_limits(config: &crate::config::Config) -> Result<HttpLimits, DaemonError> {
    let limits = HttpLimits::from_config(config.http.as_ref()).map_err(|mut problems| {
        let (at, message) = problems.swap_remove(0);
        DaemonError::Setting { at, message }
    })?;
    Ok(limits.fit_open_files(open_file_limit()))
}

fn serve(
    what: &str,
    listener: TcpListener,
    served: Served,
    http: HttpGuard,
    shutdown: Shutdown,
) -> tokio::task::JoinHandle<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!("{what}listening on http://{addr}");
    }
    tokio::spawn(crate::server::serve(listener, served, http, shutdown))
}

async fn retry_loop<S: FindingSink + 'static>(
    shared: Arc<Shared<S>>,
    mut shutdown: Shutdown,
    wake: Arc<tokio::sync::Notify>,
    every: Duration,
) {
    let mut every = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = every.tick() => shared.sink().retry_pending().await,
            _ = wake.notified() => shared.sink().retry_pending().await,
        }
    }
}

/// Pings at half the watchdog period systemd asked for, if it asked.
/// As sd_watchdog_enabled(3): WATCHDOG_PID, when set, must be ours (the
/// sd-notify crate also insists that it is set at all).
fn watchdog_interval() -> Option<tokio::time::Interval> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| tokio::time::interval(Duration::from_micros(usec / 2)))
}

async fn tick(i: &mut Option<tokio::time::Interval>) {
    match i {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod retry_loop_tests;
