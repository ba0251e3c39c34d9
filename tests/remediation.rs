//! Remediation end to end: the real `keysentry` binary (and, in `engine`,
//! the library's `Engine` as the daemon uses it) against `keysentry-sim`,
//! one simulator and temp workspace per test.

mod admin_keys;
mod aws;
mod config_check;
mod consumers;
mod containment;
mod engine;
mod escrow;
mod hardening;
mod harness;
mod incidents_cli;
mod migration;
mod reminders;
mod revoke;
mod rotate;
mod tatum;
mod verify_shapes;
