//! Regenerate or expire: through the management templates, or by the owner
//! in the Dashboard. A call that may have happened unseen is resolved by
//! verifying the old key before anything is sent again.

use super::super::ctx::{Accept, Ctx};
use super::super::handover;
use super::super::http_action::{Reply, Request, Vars};
use super::super::policy::parse_action;
use super::super::StepError;
use super::{leaked_key, verify, Flow, Liveness, TatumData, TatumPlaybook};
use crate::config::Action;
use crate::rules::HttpTemplate;
use crate::scan::Secret;
use crate::store::{IncidentRow, Outcome, State};

pub(super) async fn rotate(p: &TatumPlaybook, ctx: &mut Ctx<'_>) -> Result<Flow, StepError> {
    let action = ctx
        .row()
        .action
        .as_deref()
        .and_then(parse_action)
        .unwrap_or(Action::Regenerate);
    if matches!(action, Action::Freeze | Action::Notify) {
        return Ok(Flow::Stop);
    }
    let expire = action == Action::Expire;
    let step = if expire { "expire" } else { "regenerate" };
    let Some(key) = leaked_key(ctx) else {
        return Ok(Flow::Stop);
    };
    if ctx.step_done(step)? || ctx.step_uncertain(step)? {
        // An earlier call may have gone through: never repeat it blindly.
        if let Liveness::Dead = verify(p, ctx, &key, "verify").await? {
            return happened(
                ctx,
                expire,
                "an earlier call took effect (old key answers 401)",
            );
        }
    }
    let mgmt = &p.tatum.management;
    let template = if expire {
        &mgmt.expire
    } else {
        &mgmt.regenerate
    };
    let Some(template) = template else {
        return manual(p, ctx, expire, &key, None).await;
    };
    if !expire {
        if let Some(why) = no_destination(p, ctx).await? {
            return manual(p, ctx, expire, &key, Some(why)).await;
        }
    }
    let mut data: TatumData = ctx.data();
    if data.no_destination {
        data.no_destination = false;
        ctx.set_data(&data);
    }
    call_management(p, ctx, &key, expire, template).await
}

/// Why a regenerate must not be called: a new key needs somewhere to go
/// before it exists (a consumer that holds the leaked key, or the escrow),
/// or it would be lost the moment it arrives. An escrow that is configured
/// but broken is an error: the owner asked for it, so nothing rotates
/// without it.
async fn no_destination(p: &TatumPlaybook, ctx: &Ctx<'_>) -> Result<Option<String>, StepError> {
    let Some(unread) = handover::nowhere(ctx, &p.tatum.consumers).await? else {
        return Ok(None);
    };
    Ok(Some(format!(
        "no consumer holds this key{unread} and no escrow is configured, so keysentry did not regenerate it (the new key would have gone nowhere; {} consumers checked, none holds the leaked key). The key is frozen. To let keysentry regenerate it, configure escrow (`keysentry config init-escrow`, then `remediation.escrow` in the config) or a consumer that holds the key (providers.tatum.consumers); keysentry checks again on its next poll. Or regenerate it yourself in the Tatum Dashboard and put the new key where it is used",
        p.tatum.consumers.len()
    )))
}

/// Sends the regenerate or expire template. After an answer that may hide
/// a change (timeout, 5xx) the old key is verified before any new attempt:
/// dead means the change happened.
async fn call_management(
    p: &TatumPlaybook,
    ctx: &mut Ctx<'_>,
    key: &Secret,
    expire: bool,
    template: &HttpTemplate,
) -> Result<Flow, StepError> {
    let step = if expire { "expire" } else { "regenerate" };
    let vars = Vars {
        secret: key,
        api_url: &p.api,
        allow_insecure_http: p.allow_insecure_http,
    };
    let req = Request::from_template(
        template,
        &vars,
        &format!("providers.tatum.management.{step}"),
    )?;
    let ok: Vec<u16> = match (&template.ok[..], expire) {
        ([], false) => vec![200, 201],
        ([], true) => vec![200, 204],
        (ok, _) => ok.to_vec(),
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let reason = match ctx.call(step, &req, Accept::CHANGE).await {
            Ok(reply) if ok.contains(&reply.status) && expire => {
                ctx.note("expire", format!("ok ({})", reply.status));
                ctx.advance(IncidentRow::expire)?;
                return Ok(Flow::Next);
            }
            Ok(reply) if ok.contains(&reply.status) => {
                match handover::key_in_answer(ctx, &reply, template, "/apiKey") {
                    Ok(new) => return rotated(ctx, &reply, new),
                    // An answer that does not hold a usable key is no proof of
                    // anything: the old key says whether the regenerate happened.
                    Err(why) => {
                        let reason = format!("answered {} but {why}", reply.status);
                        let detail = format!("{reason}; the answer is not trusted");
                        // In the journal too: the owner must learn why keysentry
                        // asks for the new key although the call succeeded.
                        let entry = ctx.journal_start("regenerate:answer")?;
                        ctx.journal_complete(entry, Outcome::Failed, Some(reply.status), &detail)?;
                        ctx.note("regenerate", detail);
                        reason
                    }
                }
            }
            Ok(reply) => {
                return Err(ctx.provider_error(
                    step,
                    format!("answered {}; expected one of {ok:?}", reply.status),
                ))
            }
            Err(StepError::Uncertain { reason, .. }) => reason,
            Err(e) => return Err(e),
        };
        if let Liveness::Dead = verify(p, ctx, key, "verify").await? {
            let why = "took effect although no usable answer came back (old key answers 401)";
            return happened(ctx, expire, why);
        }
        if attempt >= ctx.retry().max_attempts {
            return Err(ctx.provider_error(
                step,
                format!("{reason} ({attempt} attempts; the old key still works, so none took effect); will retry on the next run"),
            ));
        }
        tokio::time::sleep(ctx.retry().delay(attempt, None)).await;
    }
}

/// The regenerate call succeeded with a usable new key: sealed in escrow
/// first, before any consumer sees it.
fn rotated(ctx: &mut Ctx<'_>, reply: &Reply, new: Secret) -> Result<Flow, StepError> {
    ctx.note(
        "regenerate",
        format!("ok ({}): new key {}", reply.status, new.redacted()),
    );
    let mut data: TatumData = ctx.data();
    handover::arrived(ctx, &mut data.rotation, new);
    ctx.set_data(&data);
    ctx.set_action("regenerate");
    ctx.advance(IncidentRow::rotate)?;
    Ok(Flow::Next)
}

/// The old key is dead: a regenerate or expire happened that this pass did
/// not see the answer of (crash, lost reply, the owner in the Dashboard).
fn happened(ctx: &mut Ctx<'_>, expire: bool, why: &str) -> Result<Flow, StepError> {
    if expire {
        ctx.note("expire", why);
        ctx.advance(IncidentRow::expire)?;
    } else {
        ctx.note("regenerate", why);
        ctx.advance(IncidentRow::rotate)?;
    }
    Ok(Flow::Next)
}

/// No management template: the owner rotates in the Dashboard (the alert
/// says how) and keysentry polls verify until the old key answers 401.
///
/// With `why`, a regenerate keysentry would make itself is held back (the
/// new key would have nowhere to go): the owner is told why, and the key
/// stays frozen meanwhile.
async fn manual(
    p: &TatumPlaybook,
    ctx: &mut Ctx<'_>,
    expire: bool,
    key: &Secret,
    why: Option<String>,
) -> Result<Flow, StepError> {
    if let Liveness::Dead = verify(p, ctx, key, "verify").await? {
        let done = if expire { "expired" } else { "regenerated" };
        return happened(
            ctx,
            expire,
            &format!("{done} in the Tatum Dashboard (old key answers 401)"),
        );
    }
    let verb = if expire { "expire" } else { "regenerate" };
    let reason = match why {
        Some(why) => {
            let mut data: TatumData = ctx.data();
            if !data.no_destination {
                data.no_destination = true;
                ctx.set_data(&data);
                ctx.note("regenerate", format!("not called: {why}"));
            }
            why
        }
        None => format!("waiting for the owner to {verb} the key in the Tatum Dashboard (no management template configured); keysentry checks until the old key answers 401"),
    };
    ctx.wait(State::WaitingManual, reason)?;
    Ok(Flow::Stop)
}
