//! `keysentry config check FILE [--env-file FILE]`: every problem in a
//! config file, each with its path in the YAML
//! (`providers.tatum.consumers[0].env_file`), not just the first one; exit 2
//! when there is any. The checks are the library's (`check::check_text`),
//! the same ones `scan --config` and the daemon refuse a file for.

use anyhow::Result;
use clap::Subcommand;
use keysentry::config::{self, Env};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Report every problem in a config file (exit 2 if any).
    Check {
        /// [default: $KEYSENTRY_CONFIG, else /etc/keysentry/keysentry.yaml]
        file: Option<PathBuf>,
        /// The service's environment file (systemd `EnvironmentFile=`,
        /// KEY=value lines): `*_env` names and `{{env.NAME}}` are checked
        /// against it instead of this shell's environment. Values are never
        /// printed.
        #[arg(long, value_name = "FILE")]
        env_file: Option<PathBuf>,
        /// Extra rule directories the config is used with (as `scan
        /// --rules`): their providers and rule ids count as known.
        #[arg(long = "rules", value_name = "DIR")]
        rules: Vec<PathBuf>,
    },
    /// Create the service's escrow identity (an age X25519 key, mode 0600,
    /// never over an existing file) and print its public recipient.
    InitEscrow {
        /// Where to create it [default: /etc/keysentry/escrow.key].
        #[arg(long, value_name = "FILE")]
        identity_file: Option<PathBuf>,
    },
}

pub fn run(cmd: ConfigCommand) -> Result<ExitCode> {
    let (file, env_file, rules) = match cmd {
        ConfigCommand::Check {
            file,
            env_file,
            rules,
        } => (file, env_file, rules),
        ConfigCommand::InitEscrow { identity_file } => return init_escrow(identity_file),
    };
    let (file, _) = super::incidents::config_path(file.as_deref());
    let env = match &env_file {
        Some(p) => Env::from_file(p)?,
        None => Env::Process,
    };
    let text = config::read(&file)?;
    let problems = keysentry::check::check_text(&text, &rules, &env).problems;
    for p in &problems {
        println!("{}: {p}", file.display());
    }
    if problems.is_empty() {
        println!("{}: OK", file.display());
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "{} problem{} in {}",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" },
            file.display()
        );
        Ok(ExitCode::from(2))
    }
}

/// `config init-escrow`: the identity file, and what to do with it.
fn init_escrow(path: Option<PathBuf>) -> Result<ExitCode> {
    use keysentry::remediate::escrow;
    let path = path.unwrap_or_else(|| PathBuf::from(escrow::DEFAULT_IDENTITY));
    let public = escrow::init_identity(&path)?;
    println!("{public}");
    eprintln!(
        "created {} (mode 0600): keysentry seals every new key to {public} (and to \
         remediation.escrow.age_recipients); set `remediation: {{escrow: {{identity_file: {}}}}}` \
         unless it is the default, and keep the file out of backups of the store",
        path.display(),
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}
