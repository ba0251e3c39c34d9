//! keysentry finds exposed API keys and makes them harmless.
//!
//! Data flows one way: **sources** yield chunks, one **driver** scans them,
//! one **sink** takes the findings (the remediation engine, or a report in a
//! one-shot scan), and the engine records them in the **store**, runs each
//! provider's **playbook** and **alerts** the owner. `docs/ARCHITECTURE.md`
//! draws it and names every trait's contract.
//!
//! The modules, from the bottom up (a module uses only those above it in
//! this list; `cargo test --test tests architecture` checks that no two
//! modules import each other):
//!
//! - [`mask`]: masks for messages that may quote a key; [`limits`]: size
//!   and depth caps for every file keysentry parses; [`urls`]: the
//!   plain-http rule for every URL a key is sent to; [`shutdown`]: the one
//!   stop signal every long-running task gets.
//! - [`rules`]: detection rules as YAML data (built-ins embedded at build
//!   time), validated and compiled.
//! - [`scan`]: the pure engine — an aho-corasick prefilter over every
//!   keyword, regexes only near hits, then entropy, checksum, placeholder,
//!   allowlist and baseline filters — and the `Chunk`, `Finding`,
//!   `Fingerprint` and `Secret` types every later stage consumes.
//! - [`config`]: the YAML config file, parsed into typed sections.
//! - [`source`]: where bytes come from — files (archives and container
//!   images expanded), stdin, git history, log tails, watched repositories
//!   — as chunks.
//! - [`report`]: text, JSON, JSONL and SARIF output.
//! - [`store`]: the SQLite state — incidents and their journal, webhook
//!   deliveries, log offsets, repository cursors (versioned schema).
//! - [`metrics`]: counters and per-source health for `/metrics` and
//!   `/healthz`.
//! - [`alert`]: owners and the channels that tell them (email, webhooks,
//!   GitHub issues), never the key.
//! - [`remediate`]: the engine that verifies, contains, rotates or revokes
//!   each leaked key through its provider's playbook, exactly once.
//! - [`server`]: the daemon's HTTP accept loop, limits and health routes.
//! - [`settings`]: the config's `watch` and `http` sections as the daemon
//!   runs them, every problem with its YAML path.
//! - [`github`]: the GitHub webhook target — signatures, payloads, the API
//!   — yielding chunks like any other source.
//! - [`ui`]: the incident dashboard under `/ui` — pages, JSON API,
//!   sign-in, CSRF — over the store's views.
//! - [`check`]: the one validation of a config, used by `config check`,
//!   `scan --config` and the daemon.
//! - [`daemon`]: the long-running service — sources into one bounded
//!   pipeline, reload, systemd notification.
//!
//! The binary (`src/main.rs`, `src/cli/`) parses arguments, binds sockets,
//! installs signal handlers and wires these together.
#![forbid(unsafe_code)]
// The map above names the crate-private modules too: it is for readers of
// the code, who see them all.
#![allow(rustdoc::private_intra_doc_links)]

pub mod alert;
pub mod check;
pub mod config;
pub mod daemon;
pub mod github;
pub(crate) mod limits;
pub(crate) mod mask;
pub(crate) mod metrics;
pub mod remediate;
pub mod report;
pub mod rules;
pub mod scan;
pub mod server;
pub(crate) mod settings;
pub mod shutdown;
pub mod source;
pub mod store;
pub(crate) mod ui;
pub(crate) mod urls;
