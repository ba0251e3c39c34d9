//! Handing the new key over: propagate it to every consumer that holds the
//! leaked key, restart them, confirm both keys with Tatum. Also the entry
//! point of `tatum set-key`.

use super::super::ctx::Ctx;
use super::super::playbook::HandOverError;
use super::super::{new_key, propagate, StepError};
use super::{key_in, run, verify, Flow, Liveness, TatumData, TatumPlaybook};
use crate::rules::RuleSet;
use crate::scan::Secret;
use crate::store::{IncidentRow, Stage, State};

pub(super) async fn hand_over(p: &TatumPlaybook, ctx: &mut Ctx<'_>) -> Result<Flow, StepError> {
    let old_fp = ctx.row().fingerprint.clone();
    let new_fp = ctx.data::<TatumData>().new_fingerprint;
    let consumers = &p.tatum.consumers;
    if ctx.new_secret().is_none() {
        // A previous run wrote it to a consumer before it stopped.
        if let Some(fp) = &new_fp {
            let reach = ctx.consumer_reach();
            ctx.set_new_secret(propagate::recover(&reach, consumers, fp).await);
        }
    }
    let Some(new) = ctx.new_secret() else {
        let (names, errors) = propagate::holders(ctx, consumers, &old_fp).await;
        if names.is_empty() && errors.is_empty() {
            ctx.note("propagate", "no consumer held the leaked key");
            ctx.advance(IncidentRow::propagate)?;
            return Ok(Flow::Next);
        }
        let mut reason = format!(
            "the key was regenerated but keysentry does not have the new key; copy it from the Tatum Dashboard and run `keysentry tatum set-key {}` (it will update: {})",
            ctx.row().id,
            if names.is_empty() { "no consumer".to_string() } else { names.join(", ") }
        );
        for e in errors.iter().filter(|e| e.is_refused()) {
            reason.push_str(&format!("; {e}"));
        }
        ctx.wait(State::WaitingManual, reason)?;
        return Ok(Flow::Stop);
    };
    let reports = propagate::propagate(ctx, consumers, &old_fp, &new).await?;
    // The others have the new key; a failed one is retried on the next run
    // (a refused env file once its path is fixed; `tatum set-key` too).
    if let Some(e) = propagate::failure(&reports) {
        return Err(e.into());
    }
    ctx.advance(IncidentRow::propagate)?;
    Ok(Flow::Next)
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
