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
    /// Colour: auto (a terminal, unless NO_COLOR is set), always or never.
    #[arg(long, global = true, value_enum, default_value_t = cli::ColorChoice::Auto)]
    color: cli::ColorChoice,
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
    cli::set_color(cli.color);
    quiet_on_closed_stdout();
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
        Command::Completions(args) => cli::completions::run(args, Cli::command()),
        Command::Man(args) => cli::completions::man(args, Cli::command()),
    };
    match result {
        Ok(code) => code,
        // A command that wrote to stdout without `cli::stdout()` and met a
        // closed pipe: the reader is gone, say nothing.
        Err(e) if closed_pipe(&e) => ExitCode::from(141),
        Err(e) => {
            eprintln!("error: {}", cli::error_text(&e));
            ExitCode::from(2)
        }
    }
}

fn closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// A `println!` into a closed pipe (`keysentry … | head`) panics. Commands
/// write through `cli::stdout()`, which ends quietly; this catches any
/// `println!` left, so no command prints a panic for it: it exits 141, the
/// status of a tool stopped by SIGPIPE. (Restoring SIGPIPE's default would
/// need `unsafe` and would kill a `scan --remediate` before it remediates.)
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        // `failed printing to stdout: Broken pipe (os error 32)` from
        // `println!`; clap_complete's `generate` panics with its own prefix.
        if message.contains("Broken pipe (os error 32)") {
            std::process::exit(141);
        }
        default(info);
    }));
}
