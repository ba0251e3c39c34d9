//! Handing the new key over: propagate it to every consumer that holds the
//! leaked key, restart them, confirm both keys with Tatum. Also the entry
//! point of `tatum set-key`.

use super::super::ctx::Ctx;
use super::super::playbook::HandOverError;
use super::super::{new_key, propagate, StepError};
use super::{key_in, run, verify, Flow, Liveness, TatumData, TatumPlaybook};
use crate::config::Consumer;
use crate::rules::RuleSet;
use crate::scan::{Fingerprint, Secret};
use crate::store::{IncidentRow, Outcome, Stage, State};

/// The configured consumers by what their env file holds now.
#[derive(Default)]
struct Holders {
    old: Vec<Consumer>,
    new: Vec<Consumer>,
    /// A consumer that could not be read: it might hold the leaked key.
    unreadable: Option<propagate::PropagateError>,
    /// Consumers whose env file is no safe place for a key (a symlink,
    /// writable by others): never read, never written.
    refused: Vec<propagate::PropagateError>,
}

fn holders(
    p: &TatumPlaybook,
    ctx: &mut Ctx<'_>,
    old_fp: &Fingerprint,
    new_fp: Option<&Fingerprint>,
) -> Holders {
    let mut h = Holders::default();
    for c in p.tatum.consumers.iter().cloned() {
        match propagate::current_fingerprint(&c) {
            Ok(Some(fp)) if fp == *old_fp => h.old.push(c),
            Ok(Some(fp)) if Some(&fp) == new_fp => h.new.push(c),
            Ok(_) => {}
            // A file that does not exist holds no key.
            Err(propagate::PropagateError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                let why = format!("skipped: {} does not exist", c.env_file.display());
                ctx.note(&format!("propagate:{}", c.name), why);
            }
            Err(e @ propagate::PropagateError::Refused { .. }) => {
                ctx.note(&format!("propagate:{}", c.name), e.to_string());
                h.refused.push(e);
            }
            Err(e) => h.unreadable = Some(e),
        }
    }
    h
}

pub(super) async fn hand_over(p: &TatumPlaybook, ctx: &mut Ctx<'_>) -> Result<Flow, StepError> {
    let old_fp = ctx.row().fingerprint.clone();
    let new_fp = ctx.data::<TatumData>().new_fingerprint;
    let holders = holders(p, ctx, &old_fp, new_fp.as_ref());
    if ctx.new_secret().is_none() {
        // A previous run wrote it to a consumer before it stopped.
        ctx.set_new_secret(new_fp.as_ref().and_then(|fp| key_in(&holders.new, fp)));
    }
    let Some(new) = ctx.new_secret() else {
        if holders.old.is_empty() && holders.unreadable.is_none() && holders.refused.is_empty() {
            ctx.note("propagate", "no consumer held the leaked key");
            ctx.advance(IncidentRow::propagate)?;
            return Ok(Flow::Next);
        }
        let names: Vec<&str> = holders.old.iter().map(|c| c.name.as_str()).collect();
        let mut reason = format!(
            "the key was regenerated but keysentry does not have the new key; copy it from the Tatum Dashboard and run `keysentry tatum set-key {}` (it will update: {})",
            ctx.row().id,
            if names.is_empty() { "no consumer".to_string() } else { names.join(", ") }
        );
        for e in &holders.refused {
            reason.push_str(&format!("; {e}"));
        }
        ctx.wait(State::WaitingManual, reason)?;
        return Ok(Flow::Stop);
    };
    for c in &holders.old {
        write_new_key(ctx, c, &old_fp, &new)?;
        restart(ctx, c).await?;
    }
    for c in &holders.new {
        // Written by a run that stopped before the restart completed.
        let step = format!("restart:{}", c.name);
        if !ctx.step_done(&step)? {
            restart(ctx, c).await?;
        }
    }
    if let Some(e) = holders.unreadable {
        return Err(e.into());
    }
    // The others have the new key; a refused one must get it by hand once
    // its path is fixed (`tatum set-key` finishes then).
    if let Some(e) = holders.refused.into_iter().next() {
        return Err(e.into());
    }
    ctx.advance(IncidentRow::propagate)?;
    Ok(Flow::Next)
}

fn write_new_key(
    ctx: &mut Ctx<'_>,
    c: &Consumer,
    old_fp: &Fingerprint,
    new: &Secret,
) -> Result<(), StepError> {
    let step = format!("propagate:{}", c.name);
    let entry = ctx.journal_start(&step)?;
    let written = propagate::rewrite(c, old_fp, new);
    let (outcome, detail) = match &written {
        Ok(_) => (Outcome::Ok, c.env_file.display().to_string()),
        Err(e) => (Outcome::Failed, e.to_string()),
    };
    ctx.journal_complete(entry, outcome, None, &detail)?;
    written?;
    let what = format!(
        "wrote the new key to {} ({})",
        c.env_file.display(),
        c.variable
    );
    ctx.note(&step, what);
    Ok(())
}

async fn restart(ctx: &mut Ctx<'_>, c: &Consumer) -> Result<(), StepError> {
    if c.restart.is_empty() {
        return Ok(());
    }
    let step = format!("restart:{}", c.name);
    let entry = ctx.journal_start(&step)?;
    let ran = propagate::restart(c, ctx.restart_timeout()).await;
    let (outcome, detail) = match &ran {
        Ok(_) => (Outcome::Ok, c.restart.join(" ")),
        Err(e) => (Outcome::Failed, e.to_string()),
    };
    ctx.journal_complete(entry, outcome, None, &detail)?;
    ran?;
    ctx.note(&step, format!("ran `{}`", c.restart.join(" ")));
    Ok(())
}

pub(super) async fn confirm(p: &TatumPlaybook, ctx: &mut Ctx<'_>) -> Result<Flow, StepError> {
    match ctx.secret() {
        Some(old) => match verify(p, ctx, &old, "confirm:old").await? {
            Liveness::Dead => ctx.note("confirm:old", "old key answers 401"),
            _ => {
                let state = ctx.row().state;
                ctx.wait(
                    state,
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
    if ctx.row().stage == Stage::Propagated {
        let new = ctx.new_secret().or_else(|| {
            let fp = ctx.data::<TatumData>().new_fingerprint?;
            key_in(&p.tatum.consumers, &fp)
        });
        match new {
            Some(new) => match verify(p, ctx, &new, "confirm:new").await? {
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
    ctx.advance(IncidentRow::confirm)?;
    Ok(Flow::Next)
}

/// Checks the key the owner pasted before the lease is taken: not the
/// leaked key, and a key of Tatum's rules. The messages are the CLI's
/// (`tatum set-key`).
pub(super) fn accept(
    rules: &RuleSet,
    row: &IncidentRow,
    key: &Secret,
) -> Result<(), HandOverError> {
    if key.fingerprint() == row.fingerprint {
        return Err(HandOverError::Refused(format!(
            "the key given is the leaked key itself (fingerprint {}); paste the NEW key from the Tatum Dashboard",
            row.fingerprint
        )));
    }
    new_key::check(rules, &row.provider, &row.fingerprint, key).map_err(|why| {
        HandOverError::Refused(format!(
            "the key given is not usable as the new key: {why}; paste the NEW key from the Tatum Dashboard"
        ))
    })
}

/// Finishes a manual rotation with the new key the owner pasted.
pub(super) async fn set_key(
    p: &TatumPlaybook,
    ctx: &mut Ctx<'_>,
    new: Secret,
) -> Result<(), HandOverError> {
    match verify(p, ctx, &new, "verify:new").await? {
        Liveness::Dead => return Err(HandOverError::Refused(
            "Tatum refused the new key (it answers 401); check that the whole new key was pasted"
                .into(),
        )),
        Liveness::Live { .. } => ctx.note("set-key", "new key accepted by Tatum (200)"),
        Liveness::Limited(s) => {
            ctx.note("set-key", format!("new key is live but rate-limited ({s})"))
        }
    }
    let mut data: TatumData = ctx.data();
    data.new_fingerprint = Some(new.fingerprint());
    data.new_redacted = Some(new.redacted());
    ctx.set_data(&data);
    ctx.set_action("regenerate");
    ctx.set_new_secret(Some(new));
    if !matches!(ctx.row().stage, Stage::Propagated | Stage::Confirmed) {
        ctx.advance(IncidentRow::rotate)?;
    }
    run(p, ctx).await?;
    Ok(())
}
