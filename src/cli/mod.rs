//! One file per subcommand. Each turns its clap arguments into core types and
//! returns the process exit code: 0 clean, 1 findings, 2 error (via `Err`).

pub mod daemon;
pub mod rules;
pub mod scan;
