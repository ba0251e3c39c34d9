//! The `keysentry` binary: argument parsing and dispatch only.
#![forbid(unsafe_code)]

mod cli;

use clap::{CommandFactory, Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "keysentry",
    version = cli::completions::VERSION,
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
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(cli::completions::CompletionsArgs),
    /// Print the manual page (roff): `keysentry man | man -l -`.
    Man(cli::completions::ManArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
        Command::Completions(args) => cli::completions::run(args, Cli::command()),
        Command::Man(args) => cli::completions::man(args, Cli::command()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
