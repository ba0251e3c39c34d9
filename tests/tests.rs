//! Integration tests: one binary, one module per area (ripgrep's layout), so
//! the crate links once. Shared helpers live in `support`.

// Tests start programs freely; only the product is held to one git builder.
#![allow(clippy::disallowed_methods)]

mod alerts;
mod architecture;
mod archives;
mod cli_output;
mod config_reference;
mod daemon;
mod deploy;
mod errors;
mod fleet;
mod git_history;
mod git_hostile;
mod git_modes;
mod gitleaks_rules;
mod hardening;
mod hostile_input;
mod ingest;
mod no_leak;
mod precision;
mod proptests;
mod remediation;
mod reports;
mod scan_cli;
mod scan_paths;
mod support;
mod ui;
mod ui_browser;
mod wallets_and_encodings;
mod webhook;
