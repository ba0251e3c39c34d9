//! Integration tests: one binary, one module per area (ripgrep's layout), so
//! the crate links once. Shared helpers live in `support`.

mod alerts;
mod daemon;
mod git_history;
mod remediation;
mod support;
