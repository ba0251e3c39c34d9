//! The `keysentry` binary: argument parsing and dispatch only.
#![forbid(unsafe_code)]

mod cli;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "keysentry",
    version,
    about = "Find exposed API keys and make them harmless"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Scan files, stdin or git history for exposed keys.
    Scan(cli::scan::ScanArgs),
    /// List or check detection rules.
    #[command(subcommand)]
    Rules(cli::rules::RulesCommand),
    /// Watch logs and repositories continuously (the systemd service).
    Daemon(cli::daemon::DaemonArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Scan(args) => cli::scan::run(args),
        Command::Rules(cmd) => cli::rules::run(cmd),
        Command::Daemon(args) => cli::daemon::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
