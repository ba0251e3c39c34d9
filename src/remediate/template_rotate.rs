//! The template playbook's rotation (`rotate:` in the rule YAML, under the
//! `regenerate` policy): rotate → hand the new key to
//! `providers.<p>.consumers` → confirm (old key dead, new key live, every
//! copy read back) → close. GitLab's `personal_access_tokens/self/rotate`
//! is the model: one call that kills the old token and answers with the new
//! one.
//!
//! A rotate is called only when the new key has somewhere to go (a consumer
//! holding the leaked key, or the escrow); otherwise the key is revoked and
//! the owner is told why. The rotate call is journaled before it is sent;
//! after a lost answer the old key is verified before anything is sent
//! again: dead means the rotate happened, and the new key comes from escrow.

use super::ctx::{Accept, Ctx};
use super::handover::{self, Rotation};
use super::http_action::Reply;
use super::template_call::{request, verify, Liveness};
use super::StepError;
use crate::config::{Config, Consumer};
use crate::rules::HttpTemplate;
use crate::scan::Secret;
use crate::store::{IncidentRow, Stage, State};

/// What the template playbook keeps about an incident.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(crate) struct TemplateData {
    #[serde(flatten)]
    pub rotation: Rotation,
    /// A rotate was held back: the new key would have gone nowhere.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_destination: bool,
}

/// How a step of the rotation ended.
pub(super) enum Next {
    /// On to the next stage.
    Go,
    /// The incident waits (saved).
    Stop,
    /// No destination for a new key: revoke instead.
    Revoke,
}

fn consumers<'c>(config: &'c Config, provider: &str) -> &'c [Consumer] {
    config
        .providers
        .others
        .get(provider)
        .map_or(&[], |p| p.consumers.as_slice())
}

/// Rotates the leaked key (the incident is at `verified`).
pub(super) async fn rotate(
    config: &Config,
    ctx: &mut Ctx<'_>,
    t: &HttpTemplate,
    verify_t: &HttpTemplate,
) -> Result<Next, StepError> {
    let Some(key) = ctx.secret() else {
        return Ok(Next::Stop);
    };
    if ctx.step_done("rotate")? || ctx.step_uncertain("rotate")? {
        // An earlier rotate may have gone through: never send it blindly.
        if let Liveness::Dead = verify(config, ctx, verify_t, &key, "verify").await? {
            return happened(
                ctx,
                "an earlier rotate took effect (the old key no longer works)",
            );
        }
    }
    if let Some(why) = no_destination(config, ctx).await? {
        let mut data: TemplateData = ctx.data();
        data.no_destination = true;
        ctx.set_data(&data);
        ctx.note(
            "rotate",
            format!("not called: {why}; revoking the key instead"),
        );
        return Ok(Next::Revoke);
    }
    let req = request(config, ctx, t, &key, "rotate")?;
    let ok: Vec<u16> = match t.ok.is_empty() {
        true => vec![200, 201],
        false => t.ok.clone(),
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let reason = match ctx.call("rotate", &req, Accept::CHANGE).await {
            Ok(reply) if ok.contains(&reply.status) => {
                match handover::key_in_answer(ctx, &reply, t, "/token") {
                    Ok(new) => return rotated(ctx, &reply, new),
                    // An answer without a usable key proves nothing: the old key
                    // says whether the rotate happened.
                    Err(why) => format!("answered {} but {why}", reply.status),
                }
            }
            Ok(reply) => {
                return Err(ctx.provider_error(
                    "rotate",
                    format!("answered {}; expected one of {ok:?}", reply.status),
                ))
            }
            Err(StepError::Uncertain { reason, .. }) => reason,
            Err(e) => return Err(e),
        };
        if let Liveness::Dead = verify(config, ctx, verify_t, &key, "verify").await? {
            return happened(
                ctx,
                &format!("took effect although no usable answer came back ({reason})"),
            );
        }
        if attempt >= ctx.retry().max_attempts {
            return Err(ctx.provider_error(
                "rotate",
                format!("{reason} ({attempt} attempts; the old key still works, so none took effect); will retry on the next run"),
            ));
        }
        tokio::time::sleep(ctx.retry().delay(attempt, None)).await;
    }
}

/// Why a rotate must not be called: the new key needs somewhere to go
/// before it exists (a consumer holding the leaked key, or the escrow).
async fn no_destination(config: &Config, ctx: &Ctx<'_>) -> Result<Option<String>, StepError> {
    let provider = &ctx.row().provider;
    let list = consumers(config, provider);
    let Some(unread) = handover::nowhere(ctx, list).await? else {
        return Ok(None);
    };
    Ok(Some(format!(
        "no consumer holds this key{unread} and no escrow is configured, so the new key would have gone nowhere ({} consumers checked in providers.{provider}.consumers)",
        list.len()
    )))
}

fn rotated(ctx: &mut Ctx<'_>, reply: &Reply, new: Secret) -> Result<Next, StepError> {
    ctx.note(
        "rotate",
        format!("ok ({}): new key {}", reply.status, new.redacted()),
    );
    let mut data: TemplateData = ctx.data();
    handover::arrived(ctx, &mut data.rotation, new);
    data.no_destination = false;
    ctx.set_data(&data);
    ctx.set_action("regenerate");
    ctx.advance(IncidentRow::rotate)?;
    Ok(Next::Go)
}

/// The old key is dead and this pass did not see the answer (a crash, a
/// lost reply): the new key is looked for in escrow by the hand-over.
fn happened(ctx: &mut Ctx<'_>, why: &str) -> Result<Next, StepError> {
    ctx.note("rotate", why);
    ctx.set_action("regenerate");
    ctx.advance(IncidentRow::rotate)?;
    Ok(Next::Go)
}

/// Hands the new key to the provider's consumers (the incident is at
/// `rotated`).
pub(super) async fn hand_over(config: &Config, ctx: &mut Ctx<'_>) -> Result<Next, StepError> {
    let provider = ctx.row().provider.clone();
    let list = consumers(config, &provider);
    let mut data: TemplateData = ctx.data();
    let handed = handover::hand_over(ctx, list, &mut data.rotation).await;
    ctx.set_data(&data);
    let missing = |names: &str| {
        format!(
        "the key was rotated at {provider} but keysentry does not have the new key (its answer was lost and it is not in escrow); create a new key at {provider} and put it in: {names}"
    )
    };
    if !handover::settle(ctx, handed?, &data.rotation, missing, "a key made by hand")? {
        return Ok(Next::Stop);
    }
    ctx.advance(IncidentRow::propagate)?;
    Ok(Next::Go)
}

/// The old key is dead, the new one works, and every written consumer
/// holds it (the incident is at `propagated`).
pub(super) async fn confirm(
    config: &Config,
    ctx: &mut Ctx<'_>,
    verify_t: &HttpTemplate,
) -> Result<Next, StepError> {
    match ctx.secret() {
        Some(old) => match verify(config, ctx, verify_t, &old, "confirm:old").await? {
            Liveness::Dead => ctx.note("confirm:old", "the old key no longer works"),
            Liveness::Live => {
                ctx.wait(
                    State::Rotated,
                    "the provider answered the rotate but the old key still works; keysentry checks again on the next run".into(),
                )?;
                return Ok(Next::Stop);
            }
        },
        None => ctx.note(
            "confirm:old",
            "skipped: this process has no copy of the old key",
        ),
    }
    let provider = ctx.row().provider.clone();
    let list = consumers(config, &provider);
    let mut data: TemplateData = ctx.data();
    match handover::new_key(ctx, list, &data.rotation) {
        Some(new) => match verify(config, ctx, verify_t, &new, "confirm:new").await? {
            Liveness::Live => ctx.note("confirm:new", "the new key works"),
            Liveness::Dead => {
                return Err(ctx.provider_error(
                    "confirm:new",
                    format!("the new key does not work at {provider}; create one by hand and put it where the key is used"),
                ))
            }
        },
        None => ctx.note(
            "confirm:new",
            "skipped: the new key is not available to this process",
        ),
    }
    let checked = handover::check_copies(ctx, list, &mut data.rotation).await;
    ctx.set_data(&data);
    checked?;
    ctx.advance(IncidentRow::confirm)?;
    Ok(Next::Go)
}

/// The owner's next steps for a rotation, by state (empty when the
/// incident is not one).
pub(super) fn steps(row: &IncidentRow) -> Vec<String> {
    let (data, _) = row.playbook_data.get::<TemplateData>();
    let provider = &row.provider;
    let r = &data.rotation;
    let mut steps = Vec::new();
    if row.state == State::Closed && row.action.as_deref() == Some("regenerate") {
        let done = format!("The leaked key was rotated at {provider} and no longer works.");
        let nowhere = "create a new one and put it where the key is used.";
        steps.push(handover::closing(r, &done, nowhere));
    } else if !row.state.is_final() {
        steps.extend(handover::progress(r));
    }
    if data.no_destination && row.stage != Stage::Rotated {
        steps.push(format!(
            "keysentry did not rotate the key: no consumer holds it and no escrow is configured, so the new key would have been lost; it revoked the key instead. To let keysentry rotate {provider} keys, configure escrow (`keysentry config init-escrow`, then `remediation.escrow`) or providers.{provider}.consumers."
        ));
    }
    if r.escrowed {
        steps.push(handover::escrow_step(row.id));
    }
    steps
}

/// `incidents show`'s lines about a template rotation.
pub(crate) fn details(row: &IncidentRow) -> Vec<(&'static str, String)> {
    let (data, _) = row.playbook_data.get::<TemplateData>();
    data.rotation.details(row.id)
}
