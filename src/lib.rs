//! keysentry finds exposed API keys and makes them harmless.
//!
//! The pipeline, one module a stage:
//!
//! - [`rules`]: detection rules as YAML data (built-ins embedded at build
//!   time), validated and compiled; `rules check` runs their examples.
//! - [`scan`]: the pure, synchronous engine — an aho-corasick prefilter over
//!   every keyword, regexes only near hits, then entropy, placeholder,
//!   allowlist and baseline filters — and the `Finding`, `Fingerprint` and
//!   `Secret` types every later stage consumes.
//! - [`source`]: where bytes come from — files (archives and container
//!   images expanded), stdin, git history.
//! - [`report`]: text, JSON, JSONL and SARIF output.
//! - [`config`]: the YAML config file.
//! - [`store`]: the SQLite state: incidents and their journal, log
//!   offsets, repository cursors (versioned schema).
//! - [`remediate`]: the engine that verifies, contains, rotates or revokes
//!   each leaked key and tells its owner (Tatum playbook, rule templates).
//! - [`github`]: the GitHub webhook target (push events, secret scanning
//!   alerts).
//! - [`daemon`]: the long-running service — sources into one bounded
//!   pipeline, signals, reload, systemd notification — with [`server`]
//!   (`/healthz`, `/metrics`) and [`metrics`].
//!
//! The binary (`src/main.rs`, `src/cli/`) only parses arguments and wires
//! these together.
#![forbid(unsafe_code)]

pub mod alert;
pub mod config;
pub mod daemon;
pub mod github;
pub mod metrics;
pub mod remediate;
pub mod report;
pub mod rules;
pub mod scan;
pub mod server;
pub mod shutdown;
pub mod source;
pub mod store;
