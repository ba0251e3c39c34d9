//! What the daemon counts and whether each of its sources runs, rendered for
//! `/metrics` (Prometheus text format 0.0.4) and `/healthz`.
//!
//! Hand-written rather than a metrics crate: a few labelled counters and one
//! histogram are all the daemon needs. Label values are source names
//! (`log:<glob>`, `repo:<path>`), providers and incident states, so their
//! number is bounded by the config and the rule set.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the remediation latency histogram, in seconds.
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

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

/// Counters and source health, shared by the pipeline, the sources and the
/// HTTP server.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<Counters>,
    sources: Mutex<BTreeMap<String, SourceState>>,
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

    /// Forgets sources that are no longer configured (after a reload).
    pub fn retain_sources(&self, keep: &dyn Fn(&str) -> bool) {
        self.sources().retain(|name, _| keep(name));
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
        out
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
}
