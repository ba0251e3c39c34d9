//! Integration tests: one binary, one module per area (ripgrep's layout), so
//! the crate links once. Shared helpers live in `support`.

mod alerts;
mod config_reference;
mod daemon;
mod errors;
mod git_history;
mod hardening;
mod hostile_input;
mod no_leak;
mod proptests;
mod remediation;
mod reports;
mod scan_cli;
mod support;
mod webhook;
