//! `keysentry daemon`: sets up logging and the runtime, loads the config,
//! binds the sockets it names, installs the signal handlers (SIGTERM/SIGINT
//! stop, SIGHUP reloads) and runs [`keysentry::daemon::run`] until it stops.

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use keysentry::daemon::{Control, Listeners, Loaded};
use keysentry::shutdown::Trigger;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::mpsc;
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
    let result = runtime.block_on(serve(&args.config));
    // Blocking tasks still waiting on a stuck provider must not hold the
    // exit beyond the stop limit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    if let Err(e) = &result {
        tracing::error!("{e}");
    }
    result.with_context(|| format!("daemon with config {}", args.config.display()))?;
    Ok(ExitCode::SUCCESS)
}

/// Loads, binds, wires the signals, runs.
async fn serve(config: &Path) -> Result<()> {
    let loaded = Loaded::from_file(config)?;
    let listeners = Listeners::bind(&loaded).await?;
    let (remote, control) = Control::channel();
    let signals = Signals::install().context("cannot install the signal handlers")?;
    tokio::spawn(signals.forward(remote.trigger, remote.reload));
    keysentry::daemon::run(config, loaded, listeners, control).await?;
    Ok(())
}

/// The handlers, installed before the daemon starts so that a signal sent
/// as soon as it is ready is not lost.
struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// SIGTERM/SIGINT fire `trigger` (once; later ones are ignored, the stop
    /// is bounded anyway); SIGHUP asks for a reload. A SIGHUP while a reload
    /// is already waiting adds nothing, so it is dropped.
    async fn forward(mut self, trigger: Trigger, reload: mpsc::Sender<()>) {
        let why = loop {
            tokio::select! {
                _ = self.term.recv() => break "SIGTERM",
                _ = self.int.recv() => break "SIGINT",
                _ = self.hup.recv() => {
                    tracing::info!("SIGHUP: reload requested");
                    let _ = reload.try_send(());
                }
            }
        };
        tracing::info!("{why}: stopping");
        // The handlers stay installed after this returns (tokio never
        // restores the default action), so a second SIGTERM is ignored.
        trigger.fire();
    }
}
