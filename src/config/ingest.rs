//! `watch.syslog` and `watch.http_ingest`: logs shipped to the daemon by the
//! collectors teams already run (rsyslog, syslog-ng, Vector, Fluent Bit).
//! Validated by `source::syslog::check` (listen address, protocol, TLS
//! files) so `config check` and the daemon agree.

use serde::Deserialize;
use std::path::PathBuf;

/// One syslog listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// `HOST:PORT`, e.g. `127.0.0.1:6514` (port 0 picks a free one, logged).
    pub listen: String,
    /// `tcp` (default; octet-counted and newline framing, told apart per
    /// frame), `udp` or `tls` (TCP framing inside TLS).
    #[serde(default)]
    pub protocol: Option<String>,
    /// `tls`: the PEM certificate chain the listener presents.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// `tls`: the PEM private key of `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// TCP/TLS: connections served at once (default 256); more are closed.
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// TCP/TLS: a connection that sends nothing this long is closed
    /// (default `5m`).
    #[serde(default)]
    pub idle_timeout: Option<String>,
}

/// The HTTP ingest endpoint on `http.listen`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpIngestConfig {
    /// Route on `http.listen` (default `/ingest`).
    #[serde(default)]
    pub path: Option<String>,
    /// The variable holding the bearer token (at least 16 characters).
    pub token_env: String,
    /// Bodies larger than this many bytes are refused with 413 (default
    /// 10 MiB).
    #[serde(default)]
    pub max_body: Option<usize>,
}
