//! One file per subcommand. Each turns its clap arguments into core types and
//! returns the process exit code: 0 clean, 1 findings, 2 error (via `Err`).

pub mod completions;
pub mod config;
pub mod daemon;
pub mod incidents;
pub mod rules;
pub mod scan;
pub mod tatum;

/// Logs go to stderr, filtered by `KEYSENTRY_LOG` (e.g. `keysentry=debug`),
/// warnings only by default so that a scan's output stays clean.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEYSENTRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
