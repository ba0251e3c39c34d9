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
    /// List incidents or show one.
    Incidents(cli::incidents::IncidentsArgs),
    /// Tatum: finish a manual key rotation.
    #[command(subcommand)]
    Tatum(cli::tatum::TatumCommand),
    /// Check a config file.
    #[command(subcommand)]
    Config(cli::config::ConfigCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The daemon and a scan hold keys in memory: no core dump may write them
    // to disk, and no other process of the same user may ptrace them or read
    // /proc/<pid>/mem and environ (the kernel makes those root-owned).
    if matches!(cli.command, Command::Daemon(_) | Command::Scan(_)) {
        use rustix::process::{set_dumpable_behavior, DumpableBehavior};
        if let Err(e) = set_dumpable_behavior(DumpableBehavior::NotDumpable) {
            eprintln!("warning: cannot disable core dumps (prctl PR_SET_DUMPABLE): {e}");
        }
    }
    // The daemon sets up its own logging (level info, optional JSON).
    if !matches!(cli.command, Command::Daemon(_)) {
        cli::init_logging();
    }
    let result = match cli.command {
        Command::Scan(args) => cli::scan::run(args),
        Command::Rules(cmd) => cli::rules::run(cmd),
        Command::Daemon(args) => cli::daemon::run(args),
        Command::Incidents(args) => cli::incidents::run(args),
        Command::Tatum(cmd) => cli::tatum::run(cmd),
        Command::Config(cmd) => cli::config::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
