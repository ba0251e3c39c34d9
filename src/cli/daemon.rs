//! `keysentry daemon`: sets up logging and the runtime, then runs
//! [`keysentry::daemon::run`] until SIGTERM or SIGINT.

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

#[derive(Args)]
pub struct DaemonArgs {
    /// The config file (watch.logs, watch.repos, http.listen, remediation, ...).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// `text` for a terminal, `json` for log collectors (journald adds its
    /// own timestamps to either).
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

pub fn run(args: DaemonArgs) -> Result<ExitCode> {
    let filter =
        EnvFilter::try_from_env("KEYSENTRY_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match args.log_format {
        LogFormat::Text => builder.fmt_fields(super::text_log_fields()).init(),
        LogFormat::Json => builder.json().init(),
    }
    // Two workers: the scanner runs on rayon and blocking threads, the
    // runtime only moves data and waits on the network.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(keysentry::daemon::run(&args.config));
    // Blocking tasks still waiting on a stuck provider must not hold the
    // exit beyond the stop limit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    if let Err(e) = &result {
        tracing::error!("{e}");
    }
    result.with_context(|| format!("daemon with config {}", args.config.display()))?;
    Ok(ExitCode::SUCCESS)
}
