//! Logs shipped to the daemon: syslog listeners (`watch.syslog`: TCP, UDP,
//! TLS) and, through the same [`Queue`], the HTTP ingest endpoint. Every
//! message is one line whose origin names the sender's host and app and the
//! listener ([`Origin::Shipped`]); the daemon (`daemon::ingest`) hands them
//! to its pipeline.
//!
//! Limits (per listener; why in each constant):
//! - a message (frame, line) is at most [`MAX_LINE`] bytes; a longer one is
//!   handed on in pieces of that size (counted as a parse failure);
//! - the queue to the pipeline holds at most [`QUEUE_BYTES`]; when it is
//!   full a TCP/TLS connection stops being read (the sender's kernel buffer
//!   fills, then the sender waits: back pressure), a UDP datagram is
//!   dropped and counted (`keysentry_ingest_dropped_total`), an HTTP
//!   request waits;
//! - TCP/TLS: at most `max_connections` (default [`DEFAULT_MAX_CONNECTIONS`])
//!   at once, more are closed at once and counted; a connection silent for
//!   `idle_timeout` (default [`DEFAULT_IDLE_TIMEOUT`]) is closed; a TLS
//!   handshake must finish within [`HANDSHAKE_TIMEOUT`].

pub mod framer;
mod listener;
pub mod parse;

pub use listener::{ListenError, Listener};

use crate::config::Config;
use crate::metrics::ListenerCounts;
use crate::scan::{Origin, Via};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// The longest message handed on whole: RFC 5425 asks receivers to take at
/// least 8 KiB, rsyslog's default maximum is 8 KiB; 64 KiB leaves room for
/// stack traces shipped as one message.
pub const MAX_LINE: usize = 64 << 10;
/// Bytes queued per listener towards the pipeline (its own queue holds 16
/// chunks more): a burst of ~16,000 short lines before back pressure.
pub const QUEUE_BYTES: usize = 4 << 20;
/// What a queued message costs beyond its bytes (origin, allocation).
const MESSAGE_OVERHEAD: usize = 256;
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest UDP datagram (IPv4's payload limit).
pub const MAX_DATAGRAM: usize = 65_507;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
    Tls,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Tls => "tls",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SyslogSettings {
    /// As written in the config (the label in metrics and health).
    pub listen: String,
    pub addr: SocketAddr,
    pub protocol: Protocol,
    /// `tls`: certificate chain and key files.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub max_connections: usize,
    pub idle_timeout: Duration,
}

impl SyslogSettings {
    /// `syslog:tcp://127.0.0.1:6514`: the listener's name in `/metrics`,
    /// `/healthz` and the findings' locations.
    pub fn name(&self) -> String {
        format!("syslog:{}://{}", self.protocol.as_str(), self.listen)
    }
}

/// `watch.syslog`, or its problems (YAML path, message naming the fix).
/// `duration` parses `idle_timeout` (the daemon's one duration syntax,
/// which lives above the sources).
pub fn check(
    c: &Config,
    bad: &mut impl FnMut(String, String),
    duration: fn(&str) -> Result<Duration, String>,
) -> Vec<SyslogSettings> {
    let mut out = Vec::new();
    for (i, s) in c.watch.syslog.iter().enumerate() {
        let at = format!("watch.syslog[{i}]");
        let addr = match s.listen.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(e) => {
                let why = format!(
                    "`{}`: {e}; use IP:PORT, e.g. 127.0.0.1:6514 (0.0.0.0:6514 for every interface)",
                    s.listen
                );
                bad(format!("{at}.listen"), why);
                None
            }
        };
        let protocol = match s.protocol.as_deref() {
            None | Some("tcp") => Protocol::Tcp,
            Some("udp") => Protocol::Udp,
            Some("tls") => Protocol::Tls,
            Some(other) => {
                let why = format!("`{other}` is not a protocol; use tcp, udp or tls");
                bad(format!("{at}.protocol"), why);
                Protocol::Tcp
            }
        };
        let tls = match (protocol, &s.tls_cert, &s.tls_key) {
            (Protocol::Tls, Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            (Protocol::Tls, cert, _) => {
                let missing = if cert.is_none() {
                    "tls_cert"
                } else {
                    "tls_key"
                };
                let why = format!(
                    "protocol tls needs `tls_cert` and `tls_key` (PEM files); `{missing}` is missing"
                );
                bad(format!("{at}.{missing}"), why);
                None
            }
            (_, None, None) => None,
            (p, _, _) => {
                let why = format!(
                    "`tls_cert`/`tls_key` apply to protocol tls only, this listener is {}; set `protocol: tls` or remove them",
                    p.as_str()
                );
                bad(format!("{at}.protocol"), why);
                None
            }
        };
        let max_connections = s.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
        if max_connections == 0 {
            let why = "0 would refuse every sender; give a positive number".to_string();
            bad(format!("{at}.max_connections"), why);
        }
        let idle_timeout = match s.idle_timeout.as_deref().map(duration) {
            None => DEFAULT_IDLE_TIMEOUT,
            Some(Ok(d)) => d,
            Some(Err(m)) => {
                bad(format!("{at}.idle_timeout"), m);
                DEFAULT_IDLE_TIMEOUT
            }
        };
        if let Some(addr) = addr {
            let dup = out.iter().any(|o: &SyslogSettings| {
                o.addr == addr && (o.protocol == Protocol::Udp) == (protocol == Protocol::Udp)
            });
            if dup && addr.port() != 0 {
                let why = format!(
                    "`{}` is used by another listener; give each its own port",
                    s.listen
                );
                bad(format!("{at}.listen"), why);
            }
            out.push(SyslogSettings {
                listen: s.listen.clone(),
                addr,
                protocol,
                tls,
                max_connections: max_connections.max(1),
                idle_timeout,
            });
        }
    }
    out
}

/// One received message on its way to the pipeline; holds its share of
/// the queue's bytes until the pipeline has it.
pub struct Message {
    pub origin: Arc<Origin>,
    pub data: Vec<u8>,
    _held: OwnedSemaphorePermit,
}

impl Message {
    /// The origin, the bytes, and their share of the queue: drop it once
    /// the bytes are handed on.
    pub fn take(self) -> (Arc<Origin>, Vec<u8>, OwnedSemaphorePermit) {
        (self.origin, self.data, self._held)
    }
}

/// The queue shipped messages wait in for the pipeline, bounded in bytes.
#[derive(Clone)]
pub struct Queue {
    tx: mpsc::UnboundedSender<Message>,
    bytes: Arc<Semaphore>,
    pub counts: Arc<ListenerCounts>,
}

/// The daemon is stopping: the queue's reader is gone.
#[derive(Debug)]
pub struct Closed;

impl Queue {
    pub fn new(counts: Arc<ListenerCounts>) -> (Queue, mpsc::UnboundedReceiver<Message>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let bytes = Arc::new(Semaphore::new(QUEUE_BYTES));
        (Queue { tx, bytes, counts }, rx)
    }

    fn cost(data: &[u8]) -> u32 {
        // At most MAX_LINE (or a datagram) plus the overhead: fits.
        u32::try_from(data.len().min(QUEUE_BYTES - MESSAGE_OVERHEAD) + MESSAGE_OVERHEAD)
            .unwrap_or(u32::MAX)
    }

    /// Queues `data`, waiting while the queue is full (back pressure).
    pub async fn send(&self, origin: Arc<Origin>, data: Vec<u8>) -> Result<(), Closed> {
        let held = self
            .bytes
            .clone()
            .acquire_many_owned(Self::cost(&data))
            .await
            .map_err(|_| Closed)?;
        self.count(&data);
        let m = Message {
            origin,
            data,
            _held: held,
        };
        self.tx.send(m).map_err(|_| Closed)
    }

    /// Queues `data` if there is room now; otherwise drops it (counted).
    pub fn try_send(&self, origin: Arc<Origin>, data: Vec<u8>) -> bool {
        self.count(&data);
        let Ok(held) = self.bytes.clone().try_acquire_many_owned(Self::cost(&data)) else {
            ListenerCounts::add(&self.counts.dropped, 1);
            return false;
        };
        let m = Message {
            origin,
            data,
            _held: held,
        };
        self.tx.send(m).is_ok()
    }

    fn count(&self, data: &[u8]) {
        ListenerCounts::add(&self.counts.lines, 1);
        ListenerCounts::add(&self.counts.bytes, data.len() as u64);
    }
}

/// The origin of a message from `host`/`app` on `listener`, reused while
/// the sender does not change (one allocation per sender, not per line).
#[derive(Debug)]
pub struct Origins {
    via: Via,
    listener: String,
    last: Option<Arc<Origin>>,
}

impl Origins {
    pub fn new(via: Via, listener: &str) -> Origins {
        Origins {
            via,
            listener: listener.to_string(),
            last: None,
        }
    }

    pub fn get(&mut self, host: Option<String>, app: Option<String>) -> Arc<Origin> {
        if let Some(last) = &self.last {
            if let Origin::Shipped {
                host: h, app: a, ..
            } = &**last
            {
                if *h == host && *a == app {
                    return last.clone();
                }
            }
        }
        let o = Arc::new(Origin::Shipped {
            via: self.via,
            listener: self.listener.clone(),
            host,
            app,
        });
        self.last = Some(o.clone());
        o
    }

    /// The origin handed out last.
    pub fn last(&self) -> Option<Arc<Origin>> {
        self.last.clone()
    }

    /// The origin of a syslog message (host and app from its header), and
    /// whether it was syslog at all (the caller counts the failures).
    pub fn of_syslog(&mut self, msg: &[u8]) -> (Arc<Origin>, bool) {
        match parse::sender(msg) {
            Some(s) => (self.get(s.host, s.app), true),
            None => (self.get(None, None), false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn problems(yaml: &str) -> String {
        let c = Config::parse(Path::new("c.yaml"), yaml).unwrap();
        let mut out = Vec::new();
        let secs = |s: &str| {
            s.parse()
                .map(Duration::from_secs)
                .map_err(|_| "bad".to_string())
        };
        check(&c, &mut |at, m| out.push(format!("{at}: {m}")), secs);
        out.join("\n")
    }

    #[test]
    fn bad_listeners_name_the_field_and_the_fix() {
        let e = problems("watch:\n  syslog:\n    - listen: 127.0.0.1:6514\n      protocol: relp\n");
        assert!(
            e.contains("watch.syslog[0].protocol") && e.contains("tcp, udp or tls"),
            "{e}"
        );
        let e = problems("watch:\n  syslog:\n    - listen: localhost\n");
        assert!(
            e.contains("watch.syslog[0].listen") && e.contains("127.0.0.1:6514"),
            "{e}"
        );
        let e = problems("watch:\n  syslog:\n    - listen: 127.0.0.1:6514\n      protocol: tls\n");
        assert!(
            e.contains("watch.syslog[0].tls_cert") && e.contains("PEM"),
            "{e}"
        );
        let e = problems("watch:\n  syslog:\n    - listen: 127.0.0.1:6514\n      tls_cert: /c.pem\n      tls_key: /k.pem\n");
        assert!(e.contains("protocol: tls"), "{e}");
        let e = problems(
            "watch:\n  syslog:\n    - listen: 127.0.0.1:6514\n    - listen: 127.0.0.1:6514\n",
        );
        assert!(e.contains("watch.syslog[1].listen"), "{e}");
        // The same port over TCP and UDP is usual.
        let ok = problems("watch:\n  syslog:\n    - listen: 127.0.0.1:6514\n    - listen: 127.0.0.1:6514\n      protocol: udp\n");
        assert_eq!(ok, "");
    }

    #[tokio::test]
    async fn a_full_queue_drops_datagrams_and_counts_them() {
        let counts = Arc::new(ListenerCounts::default());
        let (q, mut rx) = Queue::new(counts.clone());
        let mut origins = Origins::new(Via::Syslog, "syslog:udp://x");
        let o = origins.get(None, None);
        let line = vec![b'x'; MAX_LINE];
        let mut sent = 0;
        while q.try_send(o.clone(), line.clone()) {
            sent += 1;
        }
        assert!(sent > 0 && sent * MAX_LINE <= QUEUE_BYTES, "{sent}");
        assert_eq!(counts.dropped.load(std::sync::atomic::Ordering::Relaxed), 1);
        // Taking one out makes room again.
        drop(rx.recv().await);
        assert!(q.try_send(o, line));
    }
}
