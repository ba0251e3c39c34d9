//! Handing the new key over: propagate it to every consumer that holds the
//! leaked key, restart them, confirm both keys with Tatum. Also the entry
//! point of `tatum set-key`.

use super::super::ctx::Ctx;
use super::super::playbook::HandOverError;
use super::super::{consumer, new_key, propagate, StepError};
use super::{key_in, run, verify, Flow, Liveness, TatumData, TatumPlaybook};
use crate::rules::RuleSet;
use crate::scan::{Fingerprint, Secret};
use crate::store::{IncidentRow, Outcome, Stage, State};

/// The new key when this pass does not hold it: from escrow (a restart, a
/// retry), else from a consumer an earlier pass wrote it to.
async fn recover_new_key(
    p: &TatumPlaybook,
    ctx: &mut Ctx<'_>,
) -> Result<Option<Secret>, StepError> {
    let mut data: TatumData = ctx.data();
    if let Some(key) = ctx.escrowed_key()? {
        let fp = key.fingerprint();
        if data.new_fingerprint.as_ref().map_or(true, |f| *f == fp) {
            let detail = format!("new key {} opened from escrow", key.redacted());
            let entry = ctx.journal_start("escrow:open")?;
            ctx.journal_complete(entry, Outcome::Ok, None, &detail)?;
            ctx.note("escrow:open", detail);
            if data.new_fingerprint.is_none() {
                // Sealed just before a crash that came before the rotation
                // was saved.
                data.new_fingerprint = Some(fp);
                data.new_redacted = Some(key.redacted());
                data.escrowed = true;
                ctx.set_data(&data);
            }
            return Ok(Some(key));
        }
    }
    let Some(new_fp) = data.new_fingerprint else {
        return Ok(None);
    };
    let reach = ctx.consumer_reach();
    Ok(propagate::recover(&reach, &p.tatum.consumers, &new_fp).await)
}

pub(super) async fn hand_over(p: &TatumPlaybook, ctx: &mut Ctx<'_>) -> Result<Flow, StepError> {
    let old_fp = ctx.row().fingerprint.clone();
    let consumers = &p.tatum.consumers;
    if ctx.new_secret().is_none() {
        let recovered = recover_new_key(p, ctx).await?;
        ctx.set_new_secret(recovered);
    }
    let Some(new) = ctx.new_secret() else {
        let (names, errors) = propagate::holders(ctx, consumers, &old_fp).await;
        if names.is_empty() && errors.is_empty() {
            ctx.note(
                "propagate",
                "no consumer held the leaked key: the new key was written nowhere",
            );
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
    let failed: Vec<String> = reports
        .iter()
        .filter(|r| r.failed())
        .map(|r| r.to_string())
        .collect();
    let mut data: TatumData = ctx.data();
    data.consumers = reports;
    let escrowed = data.escrowed;
    ctx.set_data(&data);
    if !failed.is_empty() {
        // The others have the new key; this one gets it on the next pass,
        // from escrow, once what stopped it is fixed.
        let from = if escrowed {
            "the new key is in escrow and keysentry writes it there on its next retry"
        } else {
            "keysentry retries while this process runs; otherwise finish with `keysentry tatum set-key`"
        };
        return Err(ctx.provider_error(
            "propagate",
            format!(
                "the new key could not be handed to {}; {from}",
                failed.join("; ")
            ),
        ));
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
        check_copies(p, ctx).await?;
    }
    ctx.advance(IncidentRow::confirm)?;
    Ok(Flow::Next)
}

/// Every consumer keysentry wrote holds exactly the new key now (KMS must
/// sign with the key Tatum knows): read back and compared by fingerprint.
/// A consumer whose values cannot be read (GitHub Actions) keeps what its
/// write's read-back said.
async fn check_copies(p: &TatumPlaybook, ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let mut data: TatumData = ctx.data();
    let Some(new_fp) = data.new_fingerprint.clone() else {
        return Ok(());
    };
    let reach = ctx.consumer_reach();
    let mut wrong = Vec::new();
    for r in data.consumers.iter_mut().filter(|r| r.written) {
        let Some(c) = p.tatum.consumers.iter().find(|c| c.name == r.name) else {
            continue;
        };
        if c.kind() == Ok(crate::config::ConsumerKind::GithubActions) {
            continue;
        }
        let step = format!("confirm:{}", c.name);
        let held = consumer::value(c, &reach).await;
        let fp: Option<Fingerprint> = held
            .as_ref()
            .ok()
            .and_then(|v| v.as_ref().map(Secret::fingerprint));
        if fp.as_ref() == Some(&new_fp) {
            r.verified = true;
            ctx.note(&step, "holds the new key");
            continue;
        }
        let why = match held {
            Ok(Some(_)) => "it holds another key now".to_string(),
            Ok(None) => format!("{} no longer holds a key", propagate::place(c)),
            Err(e) => e.to_string(),
        };
        ctx.note(&step, format!("does not hold the new key: {why}"));
        r.verified = false;
        wrong.push(format!("{}: {why}", c.name));
    }
    ctx.set_data(&data);
    if wrong.is_empty() {
        return Ok(());
    }
    Err(ctx.provider_error(
        "confirm",
        format!(
            "a consumer keysentry wrote does not hold the new key ({}); check what changed it",
            wrong.join("; ")
        ),
    ))
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
    let escrowed = super::rotate::seal(ctx, &new);
    let mut data: TatumData = ctx.data();
    data.new_fingerprint = Some(new.fingerprint());
    data.new_redacted = Some(new.redacted());
    data.escrowed |= escrowed;
    ctx.set_data(&data);
    ctx.set_action("regenerate");
    ctx.set_new_secret(Some(new));
    if !matches!(ctx.row().stage, Stage::Propagated | Stage::Confirmed) {
        ctx.advance(IncidentRow::rotate)?;
    }
    run(p, ctx).await?;
    Ok(())
}
