//! Handing the new key over: propagate it to every consumer that holds the
//! leaked key, restart them, confirm both keys with Tatum. Also the entry
//! point of `tatum set-key`.

use super::super::ctx::Ctx;
use super::super::handover;
use super::super::playbook::HandOverError;
use super::super::{new_key, StepError};
use super::{run, verify, Flow, Liveness, TatumData, TatumPlaybook};
use crate::rules::RuleSet;
use crate::scan::Secret;
use crate::store::{IncidentRow, Stage};

pub(super) async fn hand_over(p: &TatumPlaybook, ctx: &mut Ctx<'_>) -> Result<Flow, StepError> {
    let consumers = &p.tatum.consumers;
    let mut data: TatumData = ctx.data();
    let handed = handover::hand_over(ctx, consumers, &mut data.rotation).await;
    ctx.set_data(&data);
    let id = ctx.row().id;
    let missing = |names: &str| {
        format!(
        "the key was regenerated but keysentry does not have the new key; copy it from the Tatum Dashboard and run `keysentry tatum set-key {id}` (it will update: {names})"
    )
    };
    if !handover::settle(
        ctx,
        handed?,
        &data.rotation,
        missing,
        "`keysentry tatum set-key`",
    )? {
        return Ok(Flow::Stop);
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
        let mut data: TatumData = ctx.data();
        match handover::new_key(ctx, &p.tatum.consumers, &data.rotation) {
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
        let checked = handover::check_copies(ctx, &p.tatum.consumers, &mut data.rotation).await;
        ctx.set_data(&data);
        checked?;
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
    // Sealed before any consumer is written, as a key from a management
    // answer is.
    let mut data: TatumData = ctx.data();
    handover::arrived(ctx, &mut data.rotation, new);
    ctx.set_data(&data);
    ctx.set_action("regenerate");
    if !matches!(ctx.row().stage, Stage::Propagated | Stage::Confirmed) {
        ctx.advance(IncidentRow::rotate)?;
    }
    run(p, ctx).await?;
    Ok(())
}
