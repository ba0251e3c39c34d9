//! Handing the new key over: propagate it to every consumer that holds the
//! leaked key, restart them, confirm both keys with Tatum. Also the entry
//! point of `tatum set-key`.

use super::super::ctx::Ctx;
use super::super::{propagate, StepError};
use super::{key_in, run, tatum_config, verify, Flow, Liveness};
use crate::config::Consumer;
use crate::scan::{Fingerprint, Secret};

pub(super) async fn hand_over(ctx: &mut Ctx<'_>) -> Result<Flow, StepError> {
    let consumers = tatum_config(ctx).consumers;
    let old_fp = Fingerprint::parse(&ctx.row.fingerprint)
        .ok_or_else(|| ctx.provider_error("propagate", "the stored fingerprint is malformed"))?;
    let new_fp = ctx.row.new_fingerprint.clone();
    let mut holding_old = Vec::new();
    let mut holding_new = Vec::new();
    let mut unreadable = None;
    for c in &consumers {
        match propagate::current_fingerprint(c) {
            Ok(Some(fp)) if fp == old_fp => holding_old.push(c.clone()),
            Ok(Some(fp)) if Some(fp.as_str()) == new_fp.as_deref() => holding_new.push(c.clone()),
            Ok(_) => {}
            // A file that does not exist holds no key.
            Err(propagate::PropagateError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                ctx.note(
                    &format!("propagate:{}", c.name),
                    format!("skipped: {} does not exist", c.env_file.display()),
                );
            }
            Err(e) => unreadable = Some(e),
        }
    }
    if ctx.new_secret.is_none() {
        ctx.new_secret = new_fp.as_deref().and_then(|fp| key_in(&holding_new, fp));
    }
    let Some(new) = ctx.new_secret.clone() else {
        if holding_old.is_empty() && unreadable.is_none() {
            ctx.note("propagate", "no consumer held the leaked key");
            ctx.advance("propagated", "rotated")?;
            return Ok(Flow::Next);
        }
        let names: Vec<&str> = holding_old.iter().map(|c| c.name.as_str()).collect();
        ctx.wait(
            "waiting-manual",
            format!(
                "the key was regenerated but keysentry does not have the new key; copy it from the Tatum Dashboard and run `keysentry tatum set-key {}` (it will update: {})",
                ctx.row.id,
                if names.is_empty() { "no consumer".to_string() } else { names.join(", ") }
            ),
        )?;
        return Ok(Flow::Stop);
    };
    for c in &holding_old {
        let step = format!("propagate:{}", c.name);
        let entry = ctx.inner.store.journal_start(ctx.row.id, &step)?;
        let written = propagate::rewrite(c, &old_fp, &new);
        let (outcome, detail) = match &written {
            Ok(_) => (crate::store::Outcome::Ok, c.env_file.display().to_string()),
            Err(e) => (crate::store::Outcome::Failed, e.to_string()),
        };
        ctx.inner
            .store
            .journal_complete(entry, outcome, None, &detail)?;
        written?;
        ctx.note(
            &step,
            format!(
                "wrote the new key to {} ({})",
                c.env_file.display(),
                c.variable
            ),
        );
        restart(ctx, c).await?;
    }
    for c in &holding_new {
        if !ctx
            .inner
            .store
            .step_done(ctx.row.id, &format!("restart:{}", c.name))?
        {
            restart(ctx, c).await?;
        }
    }
    if let Some(e) = unreadable {
        return Err(e.into());
    }
    ctx.advance("propagated", "rotated")?;
    Ok(Flow::Next)
}

async fn restart(ctx: &mut Ctx<'_>, c: &Consumer) -> Result<(), StepError> {
    if c.restart.is_empty() {
        return Ok(());
    }
    let step = format!("restart:{}", c.name);
    let entry = ctx.inner.store.journal_start(ctx.row.id, &step)?;
    let ran = propagate::restart(c, ctx.inner.restart_timeout).await;
    let (outcome, detail) = match &ran {
        Ok(_) => (crate::store::Outcome::Ok, c.restart.join(" ")),
        Err(e) => (crate::store::Outcome::Failed, e.to_string()),
    };
    ctx.inner
        .store
        .journal_complete(entry, outcome, None, &detail)?;
    ran?;
    ctx.note(&step, format!("ran `{}`", c.restart.join(" ")));
    Ok(())
}

pub(super) async fn confirm(ctx: &mut Ctx<'_>) -> Result<Flow, StepError> {
    match ctx.secret.clone() {
        Some(old) => match verify(ctx, &old, "confirm:old").await? {
            Liveness::Dead => ctx.note("confirm:old", "old key answers 401"),
            _ => {
                let state = ctx.row.state.clone();
                ctx.wait(
                    &state,
                    "the old key still works at Tatum; keysentry checks again on the next run"
                        .into(),
                )?;
                return Ok(Flow::Stop);
            }
        },
        None => ctx.note(
            "confirm:old",
            "skipped: this process has no copy of the old key",
        ),
    }
    if ctx.row.stage == "propagated" {
        let new = ctx.new_secret.clone().or_else(|| {
            let fp = ctx.row.new_fingerprint.clone()?;
            key_in(&tatum_config(ctx).consumers, &fp)
        });
        match new {
            Some(new) => match verify(ctx, &new, "confirm:new").await? {
                Liveness::Dead => {
                    return Err(ctx.provider_error(
                        "confirm:new",
                        "the new key answers 401; regenerate again in the Tatum Dashboard and run `keysentry tatum set-key`",
                    ))
                }
                _ => ctx.note("confirm:new", "new key works (200)"),
            },
            None => ctx.note("confirm:new", "skipped: the new key is not available to this process"),
        }
    }
    ctx.advance("confirmed", "confirmed")?;
    Ok(Flow::Next)
}

/// Why `tatum set-key` did not finish.
pub(crate) enum SetKeyError {
    /// Tatum does not accept the new key.
    Rejected(String),
    Step(StepError),
}

impl From<StepError> for SetKeyError {
    fn from(e: StepError) -> Self {
        SetKeyError::Step(e)
    }
}

/// Finishes a manual rotation with the new key the owner pasted.
pub(crate) async fn set_key(ctx: &mut Ctx<'_>, new: Secret) -> Result<(), SetKeyError> {
    match verify(ctx, &new, "verify:new").await? {
        Liveness::Dead => return Err(SetKeyError::Rejected("it answers 401".into())),
        Liveness::Live { .. } => ctx.note("set-key", "new key accepted by Tatum (200)"),
        Liveness::Limited(s) => {
            ctx.note("set-key", format!("new key is live but rate-limited ({s})"))
        }
    }
    ctx.row.new_fingerprint = Some(new.fingerprint().as_str().to_string());
    ctx.row.new_redacted = Some(new.redacted());
    ctx.row.action = Some("regenerate".into());
    ctx.new_secret = Some(new);
    if !matches!(ctx.row.stage.as_str(), "propagated" | "confirmed") {
        ctx.advance("rotated", "rotated")?;
    }
    run(ctx).await?;
    Ok(())
}
