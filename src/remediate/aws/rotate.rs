//! `regenerate` for a contained AWS key: `CreateAccessKey` for the key's
//! user (only when the new key has somewhere to go: escrow, or a consumer
//! that holds the leaked key id), the new pair sealed in escrow at once,
//! handed to the consumers (the secret access key into `secret_variable`
//! first, then the id into `variable`, then the restart), then
//! `DeleteAccessKey` of the old key and a confirm (`ListAccessKeys`: the
//! old key gone, the new one Active).
//!
//! IAM returns a new key's secret only in the `CreateAccessKey` answer, so
//! a key created by a call whose answer was lost is useless: it is found
//! (a key the user did not have before) and deleted before another is
//! created, which also keeps the user under IAM's two-key limit.

use super::super::consumer::{self, Holding};
use super::super::ctx::Ctx;
use super::super::StepError;
use super::super::{handover, propagate};
use super::iam::{first, members, refused, Answer, Iam};
use super::{AwsData, AwsPlaybook, Flow};
use crate::config::{Consumer, ConsumerKind};
use crate::scan::Secret;
use crate::store::{IncidentRow, State};

const CREATE: &str = "aws:create-key";

/// The consumers an AWS key pair can be handed to: env files that name
/// both the id's `variable` and the secret's `secret_variable`.
pub(super) fn pair_consumers(p: &AwsPlaybook) -> Vec<&Consumer> {
    p.aws
        .consumers
        .iter()
        .filter(|c| c.secret_variable.is_some() && matches!(c.kind(), Ok(ConsumerKind::EnvFile)))
        .collect()
}

/// The new pair as one sealed value: what `age -d` shows the owner.
fn bundle(id: &str, secret: &str) -> Secret {
    Secret::new(format!(
        "AWS_ACCESS_KEY_ID={id}\nAWS_SECRET_ACCESS_KEY={secret}\n"
    ))
}

/// The id and the secret back out of [`bundle`].
fn unbundle(b: &Secret) -> Option<(Secret, Secret)> {
    let mut id = None;
    let mut secret = None;
    for line in b.expose().lines() {
        if let Some(v) = line.strip_prefix("AWS_ACCESS_KEY_ID=") {
            id = Some(Secret::new(v));
        } else if let Some(v) = line.strip_prefix("AWS_SECRET_ACCESS_KEY=") {
            secret = Some(Secret::new(v));
        }
    }
    Some((id?, secret?))
}

/// Why the new key would go nowhere, if it would (see tatum's
/// `no_destination`): no escrow and no consumer holding the leaked id.
async fn no_destination(p: &AwsPlaybook, ctx: &Ctx<'_>) -> Result<Option<String>, StepError> {
    if handover::nowhere(ctx, pair_consumers(p)).await?.is_none() {
        return Ok(None);
    }
    Ok(Some(format!(
        "no consumer holds this key (an env file with `variable` and `secret_variable` in providers.aws.consumers; {} configured) and no escrow is configured, so keysentry did not create a new AWS key (it would have gone nowhere). The key is quarantined and Inactive. Configure escrow (`keysentry config init-escrow`, then `remediation.escrow`) or such a consumer and keysentry checks again on its next poll; or create the new key in the IAM console and delete the old one",
        p.aws.consumers.len()
    )))
}

/// Contained, policy `regenerate`: create the new key.
pub(super) async fn create(
    p: &AwsPlaybook,
    iam: &Iam,
    ctx: &mut Ctx<'_>,
    user: &str,
) -> Result<Flow, StepError> {
    ctx.rotation_slot().await;
    if let Some(why) = no_destination(p, ctx).await? {
        let mut data: AwsData = ctx.data();
        if !data.no_destination {
            data.no_destination = true;
            ctx.set_data(&data);
            ctx.note("regenerate", format!("not called: {why}"));
        }
        ctx.wait(State::WaitingManual, why)?;
        return Ok(Flow::Stop);
    }
    let mut data: AwsData = ctx.data();
    data.no_destination = false;
    // The user's keys before any create: a later unknown key is ours.
    let listed = list(iam, ctx, user).await?;
    if data.before.is_empty() || !(ctx.step_done(CREATE)? || ctx.step_uncertain(CREATE)?) {
        data.before = listed
            .iter()
            .map(|(id, _)| Secret::new(id.as_str()).fingerprint().to_string())
            .collect();
    } else {
        for (id, _) in &listed {
            let fp = Secret::new(id.as_str()).fingerprint().to_string();
            if fp == ctx.row().fingerprint.to_string() || data.before.contains(&fp) {
                continue;
            }
            let step = "aws:delete-lost-key";
            let params = [("UserName", user), ("AccessKeyId", id.as_str())];
            match iam
                .call(ctx, step, "DeleteAccessKey", &params, true)
                .await?
            {
                Answer::Ok(_) => ctx.note(
                    step,
                    "deleted a key whose CreateAccessKey answer was lost (its secret is unknown)",
                ),
                Answer::Err { code, .. } if code == "NoSuchEntity" => {}
                Answer::Err { status, code } => {
                    return Err(refused(ctx, step, "DeleteAccessKey", status, &code))
                }
            }
        }
    }
    ctx.set_data(&data);
    let xml = match iam
        .call(ctx, CREATE, "CreateAccessKey", &[("UserName", user)], true)
        .await?
    {
        Answer::Ok(xml) => xml,
        Answer::Err { code, .. } if code == "LimitExceeded" => {
            let reason = format!(
                "IAM user {user} already has two access keys, IAM's limit, so keysentry cannot create the replacement: delete the user's other unused key in the IAM console (not {}, which is quarantined and Inactive); keysentry tries again on its next poll",
                ctx.row().redacted
            );
            ctx.note(CREATE, "refused: LimitExceeded (two keys already)");
            ctx.wait(State::WaitingManual, reason)?;
            return Ok(Flow::Stop);
        }
        Answer::Err { status, code } => {
            return Err(refused(ctx, CREATE, "CreateAccessKey", status, &code))
        }
    };
    let (Some(id), Some(secret)) = (first(&xml, "AccessKeyId"), first(&xml, "SecretAccessKey"))
    else {
        return Err(ctx.provider_error(CREATE, "IAM's CreateAccessKey answer has no AccessKeyId and SecretAccessKey; the key it may have made is deleted on the next run"));
    };
    let new_id = Secret::new(id.as_str());
    let plain =
        |s: &str| !s.is_empty() && s.len() <= 128 && s.chars().all(|c| c.is_ascii_graphic());
    if let Err(why) = ctx.check_new_key(&new_id) {
        return Err(ctx.provider_error(
            CREATE,
            format!("the new access key id in IAM's answer was refused: {why}"),
        ));
    }
    if !plain(&secret) {
        return Err(ctx.provider_error(
            CREATE,
            "the new secret access key in IAM's answer is not plain text",
        ));
    }
    let new = bundle(&id, &secret);
    ctx.note(
        CREATE,
        format!(
            "created access key {} for IAM user {user}",
            new_id.redacted()
        ),
    );
    let escrowed = super::super::handover::seal(ctx, &new);
    let mut data: AwsData = ctx.data();
    data.rotation.escrowed |= escrowed;
    data.rotation.new_fingerprint = Some(new_id.fingerprint());
    data.rotation.new_redacted = Some(new_id.redacted());
    ctx.set_data(&data);
    ctx.set_new_secret(Some(new));
    ctx.set_action("regenerate");
    ctx.advance(IncidentRow::rotate)?;
    Ok(Flow::Next)
}

/// The user's keys: (id, status).
async fn list(
    iam: &Iam,
    ctx: &mut Ctx<'_>,
    user: &str,
) -> Result<Vec<(String, String)>, StepError> {
    let step = "aws:list-keys";
    match iam
        .call(ctx, step, "ListAccessKeys", &[("UserName", user)], false)
        .await?
    {
        Answer::Ok(xml) => {
            let rows = members(&xml, "AccessKeyMetadata", &["AccessKeyId", "Status"]).ok_or_else(|| {
                ctx.provider_error(step, "IAM's ListAccessKeys answer is not IAM's XML (check providers.aws.api_url)")
            })?;
            Ok(rows
                .into_iter()
                .map(|r| (r[0].clone(), r[1].clone()))
                .collect())
        }
        Answer::Err { status, code } => Err(refused(ctx, step, "ListAccessKeys", status, &code)),
    }
}

/// Rotated: the new pair to every consumer holding the leaked id.
pub(super) async fn hand_over(p: &AwsPlaybook, ctx: &mut Ctx<'_>) -> Result<Flow, StepError> {
    ctx.rotation_slot().await;
    let new = match ctx.new_secret() {
        Some(k) => Some(k),
        None => ctx.escrowed_key()?,
    };
    let Some((new_id, new_secret)) = new.as_ref().and_then(unbundle) else {
        let reason = format!(
            "keysentry created the new access key {} but no longer has its secret (no escrow configured, and the run that created it ended before the hand-over): create another key for the user in the IAM console, put it where the old one was used and delete {} and the old key",
            ctx.data::<AwsData>().rotation.new_redacted.unwrap_or_default(),
            ctx.row().redacted
        );
        ctx.wait(State::WaitingManual, reason)?;
        return Ok(Flow::Stop);
    };
    let leaked = ctx.row().fingerprint.clone();
    let reach = ctx.consumer_reach();
    let mut reports = Vec::new();
    for c in pair_consumers(p) {
        // The secret first: a restart after the id's write then finds both.
        let holds_old_id = matches!(
            consumer::holding(c, &reach, &leaked, Some(&new_id.fingerprint())).await,
            Ok(Holding::Old { .. })
        );
        if holds_old_id {
            let secret_side = Consumer {
                name: format!("{}:secret", c.name),
                variable: c.secret_variable.clone(),
                secret_variable: None,
                restart: Vec::new(),
                restart_unit: None,
                ..c.clone()
            };
            let old_secret = consumer::value(&secret_side, &reach)
                .await
                .ok()
                .flatten()
                .map(|s| s.fingerprint());
            if let Some(old) = old_secret {
                let r = propagate::propagate(
                    ctx,
                    std::slice::from_ref(&secret_side),
                    &old,
                    &new_secret,
                )
                .await?;
                if r.iter().any(|r| r.failed()) {
                    reports.extend(r);
                    continue;
                }
            }
        }
        reports.extend(propagate::propagate(ctx, std::slice::from_ref(c), &leaked, &new_id).await?);
    }
    let mut data: AwsData = ctx.data();
    data.rotation.consumers = reports.clone();
    ctx.set_data(&data);
    if let Some(e) = propagate::failure(&reports) {
        return Err(e.into());
    }
    let written: Vec<&str> = reports
        .iter()
        .filter(|r| r.written)
        .map(|r| r.name.as_str())
        .collect();
    ctx.note(
        "propagate",
        match written.is_empty() {
            true => "no consumer held the leaked key; the new key is in escrow only".to_string(),
            false => format!("the new key pair went to {}", written.join(", ")),
        },
    );
    ctx.advance(IncidentRow::propagate)?;
    Ok(Flow::Next)
}

/// Propagated: delete the old key, then confirm in `ListAccessKeys` that
/// it is gone and the new one Active.
pub(super) async fn finish(
    iam: &Iam,
    ctx: &mut Ctx<'_>,
    user: &str,
    key: &Secret,
) -> Result<Flow, StepError> {
    let data: AwsData = ctx.data();
    if !data.deleted {
        super::delete(iam, ctx, user, key).await?;
    }
    let listed = list(iam, ctx, user).await?;
    let old_listed = listed.iter().any(|(id, _)| id == key.expose());
    let new_active = listed.iter().any(|(id, status)| {
        Some(Secret::new(id.as_str()).fingerprint()) == data.rotation.new_fingerprint
            && status == "Active"
    });
    if old_listed || !new_active {
        let reason = format!(
            "IAM lists {}: keysentry checks again on the next run",
            match (old_listed, new_active) {
                (true, _) => "the old key still, although it accepted the delete",
                _ => "the new key as missing or not Active",
            }
        );
        ctx.wait(State::Rotated, reason)?;
        return Ok(Flow::Stop);
    }
    ctx.note(
        "confirm",
        "the old key is gone from IAM and the new one is Active",
    );
    ctx.advance(IncidentRow::confirm)?;
    Ok(Flow::Next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_pair_survives_the_round_trip_through_its_sealed_form() {
        let b = bundle(
            "AKIAQSLOJOLIENSB3IAR",
            "skH53rGTD+2U3OpSH5r44wLzwTGV6HJYq+EEyUqj",
        );
        let (id, secret) = unbundle(&b).unwrap();
        assert_eq!(id.expose(), "AKIAQSLOJOLIENSB3IAR");
        assert_eq!(secret.expose(), "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");
        assert!(unbundle(&Secret::new("AKIA only")).is_none());
    }
}
