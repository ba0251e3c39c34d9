//! `keysentry tatum set-key INCIDENT`: finishes a manual Tatum rotation with
//! the new key read from standard input.

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use keysentry::remediate::{Engine, RemediateError};
use keysentry::scan::Secret;
use keysentry::store::State;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum TatumCommand {
    /// Read the new key (from the Tatum Dashboard) on stdin, write it to every
    /// consumer holding the leaked key, restart them, confirm, close.
    SetKey {
        /// The incident id (`keysentry incidents list`).
        incident: i64,
        /// The config naming the state directory [default: $KEYSENTRY_CONFIG,
        /// else /etc/keysentry/keysentry.yaml, the service's].
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
}

pub fn run(cmd: TatumCommand) -> Result<ExitCode> {
    let TatumCommand::SetKey { incident, config } = cmd;
    let (config, _) = super::incidents::store_config(config.as_deref())?;
    let key = read_key()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let outcome = runtime.block_on(async {
        let engine = Engine::open(&config)?;
        engine.hand_over_key(incident, key).await
    });
    // The engine speaks of playbooks; this command is Tatum's.
    let outcome = match outcome {
        Err(RemediateError::NoHandOver { id, provider }) => bail!(
            "incident {id} is a {provider} key; `tatum set-key` finishes Tatum rotations only"
        ),
        other => other?,
    };
    super::incidents::print_outcome(&outcome);
    Ok(if outcome.state == State::Closed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn read_key() -> Result<Secret> {
    let stdin = std::io::stdin();
    let mut text = String::new();
    if stdin.is_terminal() {
        eprintln!("paste the new Tatum API key and press Enter:");
        stdin
            .read_line(&mut text)
            .context("cannot read the new key from stdin")?;
    } else {
        stdin
            .lock()
            .take(64 * 1024)
            .read_to_string(&mut text)
            .context("cannot read the new key from stdin")?;
    }
    let key = text.trim();
    if key.is_empty() {
        bail!(
            "no key on stdin; pipe the new key in, e.g. `keysentry tatum set-key 3 < new-key.txt`"
        );
    }
    if key.contains(char::is_whitespace) {
        bail!("stdin holds more than one word; give only the new key");
    }
    Ok(Secret::new(key))
}
