//! What clients, signed or not, may hold of the daemon: connections, time
//! and request-body memory. One [`HttpGuard`] is shared by every server of
//! the process (`http.listen` and a separate `github.webhook.listen`), as the
//! file descriptors and the memory they protect are the process's.

use crate::config::HttpConfig;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Below the unit's `LimitNOFILE=4096` with room for everything else the
/// daemon opens (store, logs, repositories, provider calls).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// Connections taken beyond `max_connections`; they answer only `GET
/// /healthz` and `/metrics`, so a probe still gets through a flood.
pub const RESERVED_CONNECTIONS: usize = 16;
/// A reserved connection must send its request this fast and is then closed,
/// so a flood that reaches the reserve too loses its slots within seconds.
pub const RESERVED_HEADER_TIMEOUT: Duration = Duration::from_secs(2);
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// GitHub sends 25 MiB in well under this.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Two full-size (25 MiB) GitHub deliveries at once, and a little more.
pub const DEFAULT_MAX_INFLIGHT_BODY_BYTES: usize = 64 << 20;
/// File descriptors left for everything but client connections when the cap
/// is lowered to fit the process's open-file limit.
const FD_HEADROOM: u64 = 256;
/// Sanity bounds of the settings.
const MAX_TIMEOUT_SECS: u64 = 3600;
const MAX_CONNECTIONS: usize = 1 << 20;
const MAX_INFLIGHT: usize = 1 << 40;

/// The `http:` limits, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connections served at once (plus [`RESERVED_CONNECTIONS`]); one more
    /// is closed as soon as it is accepted.
    pub max_connections: usize,
    /// From connection (or the previous response) to the end of the request
    /// head; also how long a kept-alive connection waits for its next request.
    pub header_timeout: Duration,
    /// For the whole request body to arrive.
    pub body_timeout: Duration,
    /// No byte moving either way for this long closes the connection (a
    /// client that stops reading its answer, or stops sending mid-body).
    pub idle_timeout: Duration,
    /// Request-body bytes held in memory across all requests.
    pub max_inflight_body_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_inflight_body_bytes: DEFAULT_MAX_INFLIGHT_BODY_BYTES,
        }
    }
}

impl HttpLimits {
    /// The defaults where the config is silent; every bad value, with its
    /// YAML path, otherwise.
    pub fn from_config(c: Option<&HttpConfig>) -> Result<HttpLimits, Vec<(String, String)>> {
        let d = HttpLimits::default();
        let Some(c) = c else { return Ok(d) };
        let mut problems = Vec::new();
        let mut secs = |v: Option<u64>, default: Duration, name: &str| match v {
            None => default,
            Some(n) if (1..=MAX_TIMEOUT_SECS).contains(&n) => Duration::from_secs(n),
            Some(n) => {
                problems.push((
                    format!("http.{name}"),
                    format!(
                        "{n} is out of range; use 1 to {MAX_TIMEOUT_SECS} seconds (default {})",
                        default.as_secs()
                    ),
                ));
                default
            }
        };
        let header_timeout = secs(
            c.header_timeout_secs,
            d.header_timeout,
            "header_timeout_secs",
        );
        let body_timeout = secs(c.body_timeout_secs, d.body_timeout, "body_timeout_secs");
        let idle_timeout = secs(c.idle_timeout_secs, d.idle_timeout, "idle_timeout_secs");
        let max_connections = match c.max_connections {
            None => d.max_connections,
            Some(n) if (1..=MAX_CONNECTIONS).contains(&n) => n,
            Some(n) => {
                problems.push((
                    "http.max_connections".into(),
                    format!("{n} is out of range; use 1 to {MAX_CONNECTIONS}, below the service's LimitNOFILE= (default {DEFAULT_MAX_CONNECTIONS})"),
                ));
                d.max_connections
            }
        };
        let max_inflight_body_bytes = match c.max_inflight_body_bytes {
            None => d.max_inflight_body_bytes,
            Some(n) if (1..=MAX_INFLIGHT).contains(&n) => n,
            Some(n) => {
                problems.push((
                    "http.max_inflight_body_bytes".into(),
                    format!("{n} is out of range; use 1 to {MAX_INFLIGHT} bytes, at least github.webhook.max_body (default {DEFAULT_MAX_INFLIGHT_BODY_BYTES})"),
                ));
                d.max_inflight_body_bytes
            }
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(HttpLimits {
            max_connections,
            header_timeout,
            body_timeout,
            idle_timeout,
            max_inflight_body_bytes,
        })
    }

    /// The connection cap lowered, with a warning, when it would not fit
    /// under the open-file limit `soft` (accepting past it fails every other
    /// open of the process: logs, the store, provider calls).
    pub fn fit_open_files(mut self, soft: Option<u64>) -> HttpLimits {
        let Some(soft) = soft else { return self };
        let room = soft
            .saturating_sub(FD_HEADROOM + RESERVED_CONNECTIONS as u64)
            .max(1);
        if self.max_connections as u64 > room {
            tracing::warn!(
                max_connections = self.max_connections,
                open_file_limit = soft,
                lowered_to = room,
                "http.max_connections does not fit under the open-file limit (LimitNOFILE= in the unit, ulimit -n otherwise); raise the limit or lower http.max_connections"
            );
            self.max_connections = room as usize;
        }
        self
    }
}

/// The soft `RLIMIT_NOFILE` of this process, read from `/proc/self/limits`
/// (no `unsafe` getrlimit); `None` where that file does not say.
pub fn open_file_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The shared caps and what they refused; cheap to clone.
#[derive(Clone)]
pub struct HttpGuard(Arc<Inner>);

struct Inner {
    limits: HttpLimits,
    connections: Arc<Semaphore>,
    reserved: Arc<Semaphore>,
    budget: Arc<Semaphore>,
    stats: Stats,
}

#[derive(Default)]
struct Stats {
    open: AtomicUsize,
    refused: AtomicU64,
    reserved: AtomicU64,
    header_timeouts: AtomicU64,
    idle_timeouts: AtomicU64,
    body_timeouts: AtomicU64,
    budget_refused: AtomicU64,
    body_bytes_read: AtomicU64,
    inflight_peak: AtomicUsize,
}

/// Where an accepted connection may go.
pub enum Slot {
    /// Within `max_connections`: served in full.
    Full(OwnedSemaphorePermit),
    /// Beyond it: `/healthz` and `/metrics` only, one request.
    Reserved(OwnedSemaphorePermit),
}

/// Why a connection ended early, as counted.
#[derive(Debug, Clone, Copy)]
pub enum Timeout {
    Header,
    Idle,
    Body,
}

impl std::fmt::Debug for HttpGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("HttpGuard").field(&self.0.limits).finish()
    }
}

impl HttpGuard {
    pub fn new(limits: HttpLimits) -> HttpGuard {
        HttpGuard(Arc::new(Inner {
            limits,
            connections: Arc::new(Semaphore::new(limits.max_connections)),
            reserved: Arc::new(Semaphore::new(RESERVED_CONNECTIONS)),
            budget: Arc::new(Semaphore::new(limits.max_inflight_body_bytes)),
            stats: Stats::default(),
        }))
    }

    pub fn limits(&self) -> &HttpLimits {
        &self.0.limits
    }

    /// A slot for a new connection: a full one, else (with `reserve`) a
    /// reserved one, else `None` and the refusal counted.
    pub fn admit(&self, reserve: bool) -> Option<Slot> {
        if let Ok(p) = self.0.connections.clone().try_acquire_owned() {
            return Some(Slot::Full(p));
        }
        if reserve {
            if let Ok(p) = self.0.reserved.clone().try_acquire_owned() {
                self.0.stats.reserved.fetch_add(1, Ordering::Relaxed);
                return Some(Slot::Reserved(p));
            }
        }
        self.0.stats.refused.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// Counts a connection open until the returned value is dropped.
    pub fn open(&self) -> OpenConnection {
        self.0.stats.open.fetch_add(1, Ordering::Relaxed);
        OpenConnection(self.clone())
    }

    pub fn timed_out(&self, t: Timeout) {
        let s = &self.0.stats;
        match t {
            Timeout::Header => &s.header_timeouts,
            Timeout::Idle => &s.idle_timeouts,
            Timeout::Body => &s.body_timeouts,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// `bytes` of request body from the in-flight budget, or `None` (counted)
    /// when the budget cannot spare them now.
    pub fn reserve(&self, bytes: usize) -> Option<BodyBudget> {
        let permit = self.take(bytes)?;
        Some(BodyBudget {
            guard: self.clone(),
            permit,
        })
    }

    fn take(&self, bytes: usize) -> Option<Option<OwnedSemaphorePermit>> {
        if bytes == 0 {
            return Some(None);
        }
        let Ok(n) = u32::try_from(bytes) else {
            self.0.stats.budget_refused.fetch_add(1, Ordering::Relaxed);
            return None;
        };
        match self.0.budget.clone().try_acquire_many_owned(n) {
            Ok(p) => {
                let held =
                    self.0.limits.max_inflight_body_bytes - self.0.budget.available_permits();
                self.0
                    .stats
                    .inflight_peak
                    .fetch_max(held, Ordering::Relaxed);
                Some(Some(p))
            }
            Err(_) => {
                self.0.stats.budget_refused.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    pub fn body_read(&self, bytes: usize) {
        self.0
            .stats
            .body_bytes_read
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// The `keysentry_http_*` series of `/metrics`.
    pub fn render(&self, out: &mut String) {
        let s = &self.0.stats;
        let l = &self.0.limits;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let inflight = l.max_inflight_body_bytes - self.0.budget.available_permits();
        let series: [(&str, &str, &str, String); 8] = [
            ("keysentry_http_connections_open", "gauge", "client connections open", s.open.load(Ordering::Relaxed).to_string()),
            ("keysentry_http_connections_max", "gauge", "http.max_connections in effect (reserved slots not included)", l.max_connections.to_string()),
            ("keysentry_http_connections_refused_total", "counter", "connections closed at once: over http.max_connections and the reserved slots", load(&s.refused).to_string()),
            ("keysentry_http_connections_reserved_total", "counter", "connections over http.max_connections served on a reserved slot (/healthz and /metrics only)", load(&s.reserved).to_string()),
            ("keysentry_http_body_budget_refused_total", "counter", "requests answered 503: http.max_inflight_body_bytes in use", load(&s.budget_refused).to_string()),
            ("keysentry_http_body_bytes_read_total", "counter", "request-body bytes read", load(&s.body_bytes_read).to_string()),
            ("keysentry_http_body_bytes_inflight", "gauge", "request-body bytes held now", inflight.to_string()),
            ("keysentry_http_body_bytes_inflight_peak", "gauge", "most request-body bytes held at once since start", s.inflight_peak.load(Ordering::Relaxed).to_string()),
        ];
        for (name, kind, help, value) in series {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        let name = "keysentry_http_timeouts_total";
        let _ = writeln!(out, "# HELP {name} connections and requests ended by a timeout (http.*_timeout_secs)\n# TYPE {name} counter");
        for (kind, a) in [
            ("body", &s.body_timeouts),
            ("header", &s.header_timeouts),
            ("idle", &s.idle_timeouts),
        ] {
            let _ = writeln!(out, "{name}{{kind=\"{kind}\"}} {}", load(a));
        }
    }
}

/// Decrements the open-connection gauge when dropped.
pub struct OpenConnection(HttpGuard);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0 .0.stats.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Request-body bytes a handler holds; given back when dropped.
pub struct BodyBudget {
    guard: HttpGuard,
    permit: Option<OwnedSemaphorePermit>,
}

impl BodyBudget {
    /// Takes `more` bytes on top; `false` (counted) when the budget cannot.
    #[must_use]
    pub fn grow(&mut self, more: usize) -> bool {
        match self.guard.take(more) {
            Some(Some(p)) => {
                match &mut self.permit {
                    Some(held) => held.merge(p),
                    None => self.permit = Some(p),
                }
                true
            }
            Some(None) => true,
            None => false,
        }
    }

    pub fn bytes(&self) -> usize {
        self.permit.as_ref().map_or(0, |p| p.num_permits())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(yaml: &str) -> HttpConfig {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn defaults_and_bad_values_name_their_field() {
        let c = config("listen: 127.0.0.1:0");
        assert_eq!(HttpLimits::from_config(Some(&c)), Ok(HttpLimits::default()));
        let c = config("listen: 127.0.0.1:0\nmax_connections: 0\nheader_timeout_secs: 0\nmax_inflight_body_bytes: 0");
        let problems = HttpLimits::from_config(Some(&c)).unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|(at, _)| at.as_str()).collect();
        assert_eq!(
            fields,
            [
                "http.header_timeout_secs",
                "http.max_connections",
                "http.max_inflight_body_bytes"
            ]
        );
    }

    #[test]
    fn the_cap_is_lowered_below_the_open_file_limit() {
        let l = HttpLimits::default().fit_open_files(Some(1024));
        assert_eq!(l.max_connections, 1024 - 256 - 16);
        let l = HttpLimits::default().fit_open_files(Some(4096));
        assert_eq!(l.max_connections, DEFAULT_MAX_CONNECTIONS);
    }

    #[test]
    fn the_budget_is_shared_and_given_back() {
        let g = HttpGuard::new(HttpLimits {
            max_inflight_body_bytes: 100,
            ..HttpLimits::default()
        });
        let mut a = g.reserve(60).unwrap();
        assert!(g.reserve(60).is_none());
        assert!(a.grow(40));
        assert!(!a.grow(1));
        assert_eq!(a.bytes(), 100);
        drop(a);
        assert!(g.reserve(100).is_some());
        let mut text = String::new();
        g.render(&mut text);
        assert!(
            text.contains("keysentry_http_body_budget_refused_total 2"),
            "{text}"
        );
        assert!(
            text.contains("keysentry_http_body_bytes_inflight_peak 100"),
            "{text}"
        );
    }
}
