//! Integration tests: one binary, one module per area (ripgrep's layout), so
//! the crate links once. Shared helpers live in `support`.

mod errors;
mod no_leak;
mod reports;
mod scan_cli;
mod support;
