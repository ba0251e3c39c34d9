//! Restarting what uses a consumer's key once the new key is written: the
//! consumer's own `restart` argv, a systemd unit (`restart_unit`), and for
//! Kubernetes a rollout restart of the named deployments.

use super::{ConsumerError, Reach};
use crate::config::Consumer;

/// Restarts everything `c` names. Returns false when it names nothing.
pub async fn restart(c: &Consumer, reach: &Reach) -> Result<bool, ConsumerError> {
    let mut any = false;
    if !c.restart.is_empty() {
        run(c, &c.restart, reach).await?;
        any = true;
    }
    if let Some(unit) = &c.restart_unit {
        // try-restart: a unit that is not running is not started by this.
        let argv = ["systemctl", "try-restart", unit.as_str()].map(String::from);
        run(c, &argv, reach).await?;
        any = true;
    }
    if let Some(k) = &c.kubernetes {
        for deployment in &k.restart_deployments {
            super::kubernetes::rollout_restart(c, k, deployment, reach).await?;
            any = true;
        }
    }
    Ok(any)
}

/// What [`restart`] runs, as the journal and plans show it.
pub fn describe(c: &Consumer) -> Vec<String> {
    let mut out = Vec::new();
    if !c.restart.is_empty() {
        out.push(format!("run `{}`", c.restart.join(" ")));
    }
    if let Some(unit) = &c.restart_unit {
        out.push(format!("run `systemctl try-restart {unit}`"));
    }
    if let Some(k) = &c.kubernetes {
        for d in &k.restart_deployments {
            out.push(format!("rollout restart of deployment {}/{d}", k.namespace));
        }
    }
    out
}

/// Runs `argv` and waits for it. Its output is discarded: keysentry cannot
/// vouch that it holds no key.
// The owner's own restart argv from the config, not git.
#[allow(clippy::disallowed_methods)]
async fn run(c: &Consumer, argv: &[String], reach: &Reach) -> Result<(), ConsumerError> {
    let Some((program, args)) = argv.split_first() else {
        return Ok(());
    };
    let command = argv.join(" ");
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| ConsumerError::Spawn {
            consumer: c.name.clone(),
            command: command.clone(),
            source,
        })?;
    let failed = |how: String| ConsumerError::RestartFailed {
        consumer: c.name.clone(),
        command: command.clone(),
        how,
    };
    match tokio::time::timeout(reach.restart_timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(failed(format!("exited with {status}"))),
        Ok(Err(e)) => Err(failed(format!("could not be waited for ({e})"))),
        Err(_) => Err(failed(format!(
            "did not finish within {}s and was killed",
            reach.restart_timeout.as_secs()
        ))),
    }
}
