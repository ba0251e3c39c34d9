//! Regenerate or expire: through the management templates, or by the owner
//! in the Dashboard. A call that may have happened unseen is resolved by
//! verifying the old key before anything is sent again.

use super::super::ctx::{Accept, Ctx};
use super::super::http_action::{Reply, Request, Vars};
use super::super::policy::parse_action;
use super::super::StepError;
use super::{api_url, leaked_key, tatum_config, verify, Flow, Liveness};
use crate::config::Action;
use crate::rules::HttpTemplate;
use crate::scan::Secret;

pub(super) async fn rotate(ctx: &mut Ctx<'_>) -> Result<Flow, StepError> {
    let action = ctx
        .row
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
    let store = &ctx.inner.store;
    if store.step_done(ctx.row.id, step)? || store.step_uncertain(ctx.row.id, step)? {
        // An earlier call may have gone through: never repeat it blindly.
        if let Liveness::Dead = verify(ctx, &key, "verify").await? {
            return happened(
                ctx,
                expire,
                "an earlier call took effect (old key answers 401)",
            );
        }
    }
    let mgmt = tatum_config(ctx).management;
    let template = if expire { mgmt.expire } else { mgmt.regenerate };
    let Some(template) = template else {
        return manual(ctx, expire, &key).await;
    };
    call_management(ctx, &key, expire, &template).await
}

/// Sends the regenerate or expire template. After an answer that may hide
/// a change (timeout, 5xx) the old key is verified before any new attempt:
/// dead means the change happened.
async fn call_management(
    ctx: &mut Ctx<'_>,
    key: &Secret,
    expire: bool,
    template: &HttpTemplate,
) -> Result<Flow, StepError> {
    let step = if expire { "expire" } else { "regenerate" };
    let api = api_url(&ctx.inner.config);
    let vars = Vars {
        secret: key,
        api_url: &api,
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
            Ok(reply) if ok.contains(&reply.status) => {
                return rotated(ctx, expire, &reply, template);
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
        if let Liveness::Dead = verify(ctx, key, "verify").await? {
            let why = "took effect although the answer was lost (old key answers 401)";
            return happened(ctx, expire, why);
        }
        if attempt >= ctx.inner.retry.max_attempts {
            return Err(ctx.provider_error(
                step,
                format!("{reason} ({attempt} attempts; the old key still works, so none took effect); will retry on the next run"),
            ));
        }
        tokio::time::sleep(ctx.inner.retry.delay(attempt, None)).await;
    }
}

/// The management call succeeded.
fn rotated(
    ctx: &mut Ctx<'_>,
    expire: bool,
    reply: &Reply,
    t: &HttpTemplate,
) -> Result<Flow, StepError> {
    if expire {
        ctx.note("expire", format!("ok ({})", reply.status));
        ctx.advance("expired", "expired")?;
        return Ok(Flow::Next);
    }
    let pointer = t.new_key_pointer.as_deref().unwrap_or("/apiKey");
    let new = reply
        .json()
        .and_then(|v| v.pointer(pointer).and_then(|k| k.as_str()).map(Secret::new))
        .filter(|s| !s.is_empty());
    match new {
        Some(new) => {
            ctx.note(
                "regenerate",
                format!("ok ({}): new key {}", reply.status, new.redacted()),
            );
            ctx.row.new_fingerprint = Some(new.fingerprint().as_str().to_string());
            ctx.row.new_redacted = Some(new.redacted());
            ctx.new_secret = Some(new);
        }
        None => ctx.note(
            "regenerate",
            format!(
                "ok ({}) but the answer has no new key at `{pointer}`; check new_key_pointer",
                reply.status
            ),
        ),
    }
    ctx.row.action = Some("regenerate".into());
    ctx.advance("rotated", "rotated")?;
    Ok(Flow::Next)
}

/// The old key is dead: a regenerate or expire happened that this pass did
/// not see the answer of (crash, lost reply, the owner in the Dashboard).
fn happened(ctx: &mut Ctx<'_>, expire: bool, why: &str) -> Result<Flow, StepError> {
    if expire {
        ctx.note("expire", why);
        ctx.advance("expired", "expired")?;
    } else {
        ctx.note("regenerate", why);
        ctx.advance("rotated", "rotated")?;
    }
    Ok(Flow::Next)
}

/// No management template: the owner rotates in the Dashboard (the alert
/// says how) and keysentry polls verify until the old key answers 401.
async fn manual(ctx: &mut Ctx<'_>, expire: bool, key: &Secret) -> Result<Flow, StepError> {
    if let Liveness::Dead = verify(ctx, key, "verify").await? {
        let done = if expire { "expired" } else { "regenerated" };
        return happened(
            ctx,
            expire,
            &format!("{done} in the Tatum Dashboard (old key answers 401)"),
        );
    }
    let verb = if expire { "expire" } else { "regenerate" };
    ctx.wait(
        "waiting-manual",
        format!("waiting for the owner to {verb} the key in the Tatum Dashboard (no management template configured); keysentry checks until the old key answers 401"),
    )?;
    Ok(Flow::Stop)
}
