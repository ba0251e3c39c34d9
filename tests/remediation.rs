//! Remediation end to end: the real `keysentry` binary against
//! `keysentry-sim`, one simulator and temp workspace per test.

mod config_check;
mod harness;
mod revoke;
mod tatum;
