//! What the daemon counts and whether each of its sources runs, rendered for
//! `/metrics` (Prometheus text format 0.0.4) and `/healthz`.
//!
//! Hand-written rather than a metrics crate: a few labelled counters and one
//! histogram are all the daemon needs. Label values are source names
//! (`log:<glob>`, `repo:<path>`), providers and incident states, so their
//! number is bounded by the config and the rule set.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Upper bounds of the remediation latency histogram, in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// The health entry for the GitHub webhook's delivery queue.
pub const WEBHOOK_SOURCE: &str = "webhook";

/// Whether a source is doing its job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceState {
    Starting,
    Running,
    /// Why not, and what to do about it.
    Failed(String),
}

#[derive(Debug, Default)]
struct Counters {
    bytes: BTreeMap<String, u64>,
    lines: BTreeMap<String, u64>,
    findings: BTreeMap<String, u64>,
    source_errors: BTreeMap<String, u64>,
    polls: BTreeMap<String, u64>,
    webhook_requests: BTreeMap<String, u64>,
    latency_buckets: Vec<u64>,
    latency_sum: f64,
    latency_count: u64,
}

/// What `/metrics` reads from the store and the engine when it is scraped.
#[derive(Debug, Default)]
pub struct Scrape {
    /// Incidents per state.
    pub incidents: BTreeMap<String, u64>,
    /// The engine's in-memory key count; `None` without an engine.
    pub keys_held: Option<usize>,
    /// Webhook deliveries per state; `None` without a webhook.
    pub webhook_deliveries: Option<BTreeMap<String, u64>>,
}

/// One source's counters, as `/metrics` shows them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SourceCounts {
    pub name: String,
    pub bytes: u64,
    pub lines: u64,
    pub errors: u64,
    pub polls: u64,
}

/// One listener of shipped logs (a syslog socket, the HTTP ingest
/// endpoint): updated on every message without a lock.
#[derive(Debug, Default)]
pub struct ListenerCounts {
    /// Messages (lines) received, whether or not they parsed.
    pub lines: AtomicU64,
    pub bytes: AtomicU64,
    /// Messages dropped because the queue was full (UDP only: TCP and HTTP
    /// wait instead).
    pub dropped: AtomicU64,
    /// Connections (HTTP: requests) accepted.
    pub connections: AtomicU64,
    /// Connections refused over the listener's cap.
    pub refused: AtomicU64,
    /// Messages that are not syslog (or JSON lines that are not JSON),
    /// octet counts that lied, frames over the line limit: each still
    /// scanned as it came.
    pub parse_failures: AtomicU64,
    /// Connections open now.
    pub open: AtomicU64,
}

impl ListenerCounts {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }
}

/// When a source last showed it is alive, and how long it may stay silent.
#[derive(Debug, Clone, Copy)]
struct Heartbeat {
    last: Instant,
    deadline: Duration,
}

/// One component's line in `/healthz` and `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ComponentHealth {
    /// `ok`, `starting`, `failed` or `stuck`.
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl ComponentHealth {
    pub fn ok() -> Self {
        ComponentHealth {
            status: "ok",
            reason: None,
        }
    }

    pub fn failed(reason: impl Into<String>) -> Self {
        ComponentHealth {
            status: "failed",
            reason: Some(reason.into()),
        }
    }
}

/// The daemon's health as a whole: `ok`, `degraded` (something fails, the
/// process still works: not ready) or `stuck` (a source stopped making
/// progress: the process needs a restart).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Health {
    pub status: &'static str,
    pub components: BTreeMap<String, ComponentHealth>,
}

impl Health {
    pub fn is_stuck(&self) -> bool {
        self.status == "stuck"
    }

    pub fn is_ok(&self) -> bool {
        self.status == "ok"
    }
}

/// Counters and source health, shared by the pipeline, the sources and the
/// HTTP server.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<Counters>,
    sources: Mutex<BTreeMap<String, SourceState>>,
    heartbeats: Mutex<BTreeMap<String, Heartbeat>>,
    listeners: Mutex<BTreeMap<String, Arc<ListenerCounts>>>,
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    fn counters(&self) -> std::sync::MutexGuard<'_, Counters> {
        // Counters stay meaningful after a panic elsewhere; keep using them.
        self.counters.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn sources(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, SourceState>> {
        self.sources.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn scanned(&self, source: &str, bytes: u64, lines: u64) {
        let mut c = self.counters();
        *c.bytes.entry(source.to_string()).or_default() += bytes;
        *c.lines.entry(source.to_string()).or_default() += lines;
    }

    pub fn finding(&self, provider: &str) {
        *self
            .counters()
            .findings
            .entry(provider.to_string())
            .or_default() += 1;
    }

    /// A request to the webhook endpoint answered with `status`.
    pub fn webhook_request(&self, status: u16) {
        *self
            .counters()
            .webhook_requests
            .entry(status.to_string())
            .or_default() += 1;
    }

    pub fn source_error(&self, source: &str) {
        *self
            .counters()
            .source_errors
            .entry(source.to_string())
            .or_default() += 1;
    }

    /// A polling source (a watched repository) finished one poll, whatever
    /// it found: what a test or an operator waits on instead of a guess at
    /// "a few polls later".
    pub fn polled(&self, source: &str) {
        *self.counters().polls.entry(source.to_string()).or_default() += 1;
    }

    /// The counters of listener `name` (`syslog:tcp://…`, `ingest:/ingest`),
    /// created on first use and kept across reloads.
    pub fn listener(&self, name: &str) -> Arc<ListenerCounts> {
        let mut all = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        all.entry(name.to_string()).or_default().clone()
    }

    /// Time the remediation engine took to take a batch of findings.
    pub fn remediation_latency(&self, took: Duration) {
        let secs = took.as_secs_f64();
        let mut c = self.counters();
        if c.latency_buckets.len() != LATENCY_BUCKETS.len() {
            c.latency_buckets = vec![0; LATENCY_BUCKETS.len()];
        }
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                c.latency_buckets[i] += 1;
            }
        }
        c.latency_sum += secs;
        c.latency_count += 1;
    }

    pub fn set_source(&self, name: &str, state: SourceState) {
        self.sources().insert(name.to_string(), state);
    }

    fn heartbeats(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Heartbeat>> {
        self.heartbeats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts watching `name` for progress: it is stuck once `deadline`
    /// passes without a [`Metrics::beat`]. Counts as a beat.
    pub fn expect_progress(&self, name: &str, deadline: Duration) {
        let beat = Heartbeat {
            last: Instant::now(),
            deadline,
        };
        self.heartbeats().insert(name.to_string(), beat);
    }

    /// `name` made progress (or is idle, waiting for work or for the
    /// pipeline). A source not watched by [`Metrics::expect_progress`] is
    /// ignored.
    pub fn beat(&self, name: &str) {
        if let Some(h) = self.heartbeats().get_mut(name) {
            h.last = Instant::now();
        }
    }

    /// Stops watching `name` for progress (it was stopped on purpose).
    pub fn forget_progress(&self, name: &str) {
        self.heartbeats().remove(name);
    }

    /// Sources past their deadline, with how long they have been silent.
    pub fn stuck(&self) -> Vec<(String, String)> {
        self.heartbeats()
            .iter()
            .filter(|(_, h)| h.last.elapsed() > h.deadline)
            .map(|(name, h)| {
                let why = format!(
                    "no progress for {} s (deadline {} s): it is blocked; see the daemon's log, \
                     and restart it if this lasts",
                    h.last.elapsed().as_secs(),
                    h.deadline.as_secs()
                );
                (name.clone(), why)
            })
            .collect()
    }

    /// Every source and `extra` component (the engine's, the alert
    /// channels'), and the verdict: `stuck` if a source is past its
    /// deadline, else `degraded` if anything is not ok, else `ok`.
    pub fn health(&self, extra: Vec<(String, ComponentHealth)>) -> Health {
        let mut components: BTreeMap<String, ComponentHealth> = self
            .sources()
            .iter()
            .map(|(name, state)| {
                let c = match state {
                    SourceState::Running => ComponentHealth::ok(),
                    SourceState::Starting => ComponentHealth {
                        status: "starting",
                        reason: None,
                    },
                    SourceState::Failed(why) => ComponentHealth::failed(why.clone()),
                };
                (name.clone(), c)
            })
            .collect();
        for (name, c) in extra {
            // A failure the engine reports wins over "running".
            match components.get(&name) {
                Some(have) if have.status != "ok" && c.status == "ok" => {}
                _ => {
                    components.insert(name, c);
                }
            }
        }
        let stuck = self.stuck();
        for (name, why) in &stuck {
            components.insert(
                name.clone(),
                ComponentHealth {
                    status: "stuck",
                    reason: Some(why.clone()),
                },
            );
        }
        let status = if !stuck.is_empty() {
            "stuck"
        } else if components.values().any(|c| c.status != "ok") {
            "degraded"
        } else {
            "ok"
        };
        Health { status, components }
    }

    /// What `/metrics` counts of each source, for the dashboard's sources
    /// page: every source that runs or has counted anything.
    pub fn source_counts(&self) -> Vec<SourceCounts> {
        let c = self.counters();
        let mut names: std::collections::BTreeSet<&String> = c.bytes.keys().collect();
        names.extend(c.source_errors.keys());
        names.extend(c.polls.keys());
        let sources = self.sources();
        names.extend(sources.keys());
        let get = |m: &BTreeMap<String, u64>, n: &String| m.get(n).copied().unwrap_or(0);
        names
            .into_iter()
            .map(|n| SourceCounts {
                name: n.clone(),
                bytes: get(&c.bytes, n),
                lines: get(&c.lines, n),
                errors: get(&c.source_errors, n),
                polls: get(&c.polls, n),
            })
            .collect()
    }

    /// Forgets sources that are no longer configured (after a reload).
    pub fn retain_sources(&self, keep: &dyn Fn(&str) -> bool) {
        self.sources().retain(|name, _| keep(name));
        self.heartbeats().retain(|name, _| keep(name));
    }

    /// Every source that is not running, with its reason; empty when all run.
    pub fn unhealthy(&self) -> Vec<(String, String)> {
        self.sources()
            .iter()
            .filter_map(|(name, state)| match state {
                SourceState::Running => None,
                SourceState::Starting => Some((name.clone(), "starting".to_string())),
                SourceState::Failed(why) => Some((name.clone(), why.clone())),
            })
            .collect()
    }

    /// The Prometheus text exposition: the counters, plus what `scrape`
    /// read from the store and the engine at scrape time.
    pub fn render(&self, scrape: &Scrape) -> String {
        let c = self.counters();
        let mut out = String::new();
        counter(
            &mut out,
            "keysentry_scanned_bytes_total",
            "Bytes scanned, per source.",
            "source",
            &c.bytes,
        );
        counter(
            &mut out,
            "keysentry_scanned_lines_total",
            "Lines scanned, per source.",
            "source",
            &c.lines,
        );
        counter(
            &mut out,
            "keysentry_findings_total",
            "Findings handed to remediation, per provider.",
            "provider",
            &c.findings,
        );
        counter(
            &mut out,
            "keysentry_source_errors_total",
            "Errors met by sources (unreadable file, failed repository scan, ...).",
            "source",
            &c.source_errors,
        );
        counter(
            &mut out,
            "keysentry_source_polls_total",
            "Polls a polling source (a watched repository) finished.",
            "source",
            &c.polls,
        );
        header(
            &mut out,
            "keysentry_incidents",
            "Incidents in the store, per state.",
            "gauge",
        );
        for (state, n) in &scrape.incidents {
            let _ = writeln!(out, "keysentry_incidents{{state=\"{}\"}} {n}", esc(state));
        }
        if let Some(n) = scrape.keys_held {
            header(
                &mut out,
                "keysentry_remediation_keys_held",
                "Leaked keys held in memory for incidents that still need a provider call.",
                "gauge",
            );
            let _ = writeln!(out, "keysentry_remediation_keys_held {n}");
        }
        header(
            &mut out,
            "keysentry_source_up",
            "1 when the source runs, 0 when it failed or is starting.",
            "gauge",
        );
        for (name, state) in self.sources().iter() {
            let up = u8::from(*state == SourceState::Running);
            let _ = writeln!(out, "keysentry_source_up{{source=\"{}\"}} {up}", esc(name));
        }
        if let Some(deliveries) = &scrape.webhook_deliveries {
            header(
                &mut out,
                "keysentry_webhook_deliveries",
                "GitHub webhook deliveries in the store, per state.",
                "gauge",
            );
            for (state, n) in deliveries {
                let _ = writeln!(
                    out,
                    "keysentry_webhook_deliveries{{state=\"{}\"}} {n}",
                    esc(state)
                );
            }
            counter(
                &mut out,
                "keysentry_webhook_requests_total",
                "Requests to the GitHub webhook endpoint, per HTTP status answered (401: bad signature).",
                "status",
                &c.webhook_requests,
            );
        }
        self.render_latency(&c, &mut out);
        self.render_listeners(&mut out);
        out
    }

    fn render_listeners(&self, out: &mut String) {
        let all = self.listeners.lock().unwrap_or_else(|p| p.into_inner());
        if all.is_empty() {
            return;
        }
        type Get = fn(&ListenerCounts) -> &AtomicU64;
        let series: [(&str, &str, &str, Get); 7] = [
            ("keysentry_ingest_lines_total", "Messages received by a listener of shipped logs (syslog, HTTP ingest).", "counter", |l| &l.lines),
            ("keysentry_ingest_bytes_total", "Bytes of messages received, per listener.", "counter", |l| &l.bytes),
            ("keysentry_ingest_dropped_total", "Messages dropped on a full queue (UDP; TCP and HTTP wait instead), per listener.", "counter", |l| &l.dropped),
            ("keysentry_ingest_connections_total", "Connections (HTTP: requests) accepted, per listener.", "counter", |l| &l.connections),
            ("keysentry_ingest_refused_total", "Connections closed at once over the listener's max_connections.", "counter", |l| &l.refused),
            ("keysentry_ingest_parse_failures_total", "Messages not in a known format, lying octet counts, frames over the line limit (all still scanned), per listener.", "counter", |l| &l.parse_failures),
            ("keysentry_ingest_connections_open", "Connections open now, per listener.", "gauge", |l| &l.open),
        ];
        for (name, help, kind, get) in series {
            header(out, name, help, kind);
            for (listener, counts) in all.iter() {
                let n = get(counts).load(Relaxed);
                let _ = writeln!(out, "{name}{{listener=\"{}\"}} {n}", esc(listener));
            }
        }
    }

    fn render_latency(&self, c: &Counters, out: &mut String) {
        let name = "keysentry_remediation_duration_seconds";
        header(
            out,
            name,
            "Time the remediation engine took per batch of findings.",
            "histogram",
        );
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            let n = c.latency_buckets.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {n}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", c.latency_count);
        let _ = writeln!(out, "{name}_sum {}", c.latency_sum);
        let _ = writeln!(out, "{name}_count {}", c.latency_count);
    }
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn counter(out: &mut String, name: &str, help: &str, label: &str, m: &BTreeMap<String, u64>) {
    header(out, name, help, "counter");
    for (k, v) in m {
        let _ = writeln!(out, "{name}{{{label}=\"{}\"}} {v}", esc(k));
    }
}

/// Label values escape backslash, quote and newline.
fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_health_and_histogram() {
        let m = Metrics::new();
        m.scanned("log:/var/log/*.log", 100, 3);
        m.finding("tatum");
        m.remediation_latency(Duration::from_millis(30));
        m.set_source("log:/var/log/*.log", SourceState::Running);
        m.set_source("repo:/srv/x", SourceState::Failed("gone".into()));
        m.webhook_request(401);
        let text = m.render(&Scrape {
            incidents: BTreeMap::from([("contained".to_string(), 2)]),
            keys_held: Some(1),
            webhook_deliveries: Some(BTreeMap::from([("done".to_string(), 4)])),
        });
        for want in [
            "keysentry_scanned_bytes_total{source=\"log:/var/log/*.log\"} 100",
            "keysentry_scanned_lines_total{source=\"log:/var/log/*.log\"} 3",
            "keysentry_findings_total{provider=\"tatum\"} 1",
            "keysentry_incidents{state=\"contained\"} 2",
            "keysentry_source_up{source=\"repo:/srv/x\"} 0",
            "keysentry_remediation_duration_seconds_bucket{le=\"0.025\"} 0",
            "keysentry_remediation_duration_seconds_bucket{le=\"0.05\"} 1",
            "keysentry_remediation_duration_seconds_count 1",
            "keysentry_remediation_keys_held 1",
            "keysentry_webhook_deliveries{state=\"done\"} 4",
            "keysentry_webhook_requests_total{status=\"401\"} 1",
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
        assert_eq!(
            m.unhealthy(),
            vec![("repo:/srv/x".to_string(), "gone".to_string())]
        );
    }

    #[test]
    fn a_silent_source_is_stuck_and_a_beating_one_is_not() {
        let m = Metrics::new();
        m.set_source("log:/a", SourceState::Running);
        m.set_source("repo:/r", SourceState::Running);
        m.expect_progress("log:/a", Duration::from_millis(50));
        m.expect_progress("repo:/r", Duration::from_millis(50));
        assert_eq!(m.health(Vec::new()).status, "ok");
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(30));
            m.beat("log:/a");
        }
        let h = m.health(Vec::new());
        assert_eq!(h.status, "stuck");
        assert_eq!(h.components["log:/a"].status, "ok");
        assert_eq!(h.components["repo:/r"].status, "stuck");
        assert!(h.components["repo:/r"]
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("no progress")));
        m.forget_progress("repo:/r");
        assert_eq!(m.health(Vec::new()).status, "ok");
    }

    #[test]
    fn a_failing_component_degrades_without_being_stuck() {
        let m = Metrics::new();
        m.set_source("remediation", SourceState::Running);
        let h = m.health(vec![(
            "remediation".into(),
            ComponentHealth::failed("tatum freeze: answered 500"),
        )]);
        assert_eq!(h.status, "degraded");
        assert_eq!(h.components["remediation"].status, "failed");
    }
}
