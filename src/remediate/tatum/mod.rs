//! The Tatum playbook (ARCHITECTURE.md): verify → freeze → inventory →
//! regenerate or expire (management templates, or the owner in the
//! Dashboard) → propagate the new key to consumers → confirm → close.
//!
//! Each step moves the incident's `stage` forward and saves it, so any pass
//! (the next scan, `retry_pending`, a restart after a crash) resumes where
//! the last one stopped. A regenerate or expire that may have happened
//! without keysentry learning the answer is never simply repeated: the old
//! key is verified first, and a 401 means it happened.

mod handover;
mod rotate;

pub(super) use handover::{set_key, SetKeyError};

use super::ctx::{Accept, Ctx};
use super::http_action::Request;
use super::policy::action_name;
use super::{propagate, StepError};
use crate::config::{Action, Config, Consumer, TatumConfig};
use crate::scan::Secret;
use handover::{confirm, hand_over};
use reqwest::Method;
use rotate::rotate;

pub(super) enum Flow {
    Next,
    Stop,
}

pub(super) enum Liveness {
    Live {
        testnet: Option<bool>,
    },
    /// 403 or 429: the key works but is limited right now.
    Limited(u16),
    Dead,
}

pub fn api_url(config: &Config) -> String {
    config
        .providers
        .tatum
        .as_ref()
        .and_then(|t| t.api_url.clone())
        .unwrap_or_else(|| {
            super::policy::default_api_url("tatum")
                .unwrap_or_default()
                .to_string()
        })
        .trim_end_matches('/')
        .to_string()
}

pub(super) fn tatum_config(ctx: &Ctx<'_>) -> TatumConfig {
    ctx.inner.config.providers.tatum.clone().unwrap_or_default()
}

pub(crate) async fn run(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    loop {
        if !matches!(ctx.row.stage.as_str(), "detected" | "verified") {
            // Contained: let other incidents reach containment first.
            ctx.rotation_slot().await;
        }
        let flow = match ctx.row.stage.as_str() {
            "detected" => verify_leaked(ctx).await?,
            "verified" => freeze(ctx).await?,
            "contained" => inventory(ctx).await?,
            "inventoried" => rotate(ctx).await?,
            "rotated" => hand_over(ctx).await?,
            "propagated" | "expired" => confirm(ctx).await?,
            "confirmed" => {
                ctx.advance("closed", "closed")?;
                Flow::Stop
            }
            _ => Flow::Stop,
        };
        if let Flow::Stop = flow {
            return Ok(());
        }
    }
}

/// The leaked key, or `None` when this process has no copy (it waits for the
/// key to be seen again).
pub(super) fn leaked_key(ctx: &Ctx<'_>) -> Option<Secret> {
    if ctx.secret.is_none() {
        tracing::debug!(
            incident = ctx.row.id,
            "no copy of the key in this process; waiting for it to be seen again"
        );
    }
    ctx.secret.clone()
}

pub(super) async fn verify(
    ctx: &mut Ctx<'_>,
    key: &Secret,
    step: &str,
) -> Result<Liveness, StepError> {
    let req = Request::new(
        Method::GET,
        format!("{}/v3/tatum/version", api_url(&ctx.inner.config)),
    )
    .header("x-api-key", key.expose());
    let reply = ctx
        .call(step, &req, Accept::verify(&[401, 403, 429]))
        .await?;
    Ok(match reply.status {
        200..=299 => match reply.json() {
            // A 200 that is not Tatum's JSON (a proxy's or portal's page, a
            // wrong api_url) says nothing about the key.
            Some(v) if v.is_object() => Liveness::Live {
                testnet: v.get("testnet").and_then(|t| t.as_bool()),
            },
            _ => {
                return Err(ctx.provider_error(
                    step,
                    format!(
                        "answered {} but not with a JSON object as Tatum's /v3/tatum/version does; check providers.tatum.api_url",
                        reply.status
                    ),
                ))
            }
        },
        401 => Liveness::Dead,
        s @ (403 | 429) => Liveness::Limited(s),
        s => {
            return Err(ctx.provider_error(
                step,
                format!("answered {s}; expected 200 (live) or 401 (dead)"),
            ))
        }
    })
}

async fn verify_leaked(ctx: &mut Ctx<'_>) -> Result<Flow, StepError> {
    let Some(key) = leaked_key(ctx) else {
        return Ok(Flow::Stop);
    };
    match verify(ctx, &key, "verify").await? {
        Liveness::Live { testnet } => {
            ctx.row.testnet = testnet;
            let net = match testnet {
                Some(true) => "testnet",
                Some(false) => "mainnet",
                None => "network unknown",
            };
            ctx.note("verify", format!("live (200, {net})"));
        }
        Liveness::Limited(s) => ctx.note("verify", format!("live but rate-limited ({s})")),
        Liveness::Dead => {
            ctx.note(
                "verify",
                "dead (401): already revoked or expired; nothing changed",
            );
            ctx.advance("not-live", "not-live")?;
            return Ok(Flow::Stop);
        }
    }
    ctx.advance("verified", "verified")?;
    Ok(Flow::Next)
}

async fn freeze(ctx: &mut Ctx<'_>) -> Result<Flow, StepError> {
    if ctx.policy() == Action::Notify {
        return Ok(Flow::Stop);
    }
    let Some(key) = leaked_key(ctx) else {
        return Ok(Flow::Stop);
    };
    let req = Request::new(
        Method::PUT,
        format!("{}/v3/tatum/freeze", api_url(&ctx.inner.config)),
    )
    .header("x-api-key", key.expose());
    // Freezing twice is harmless, so it retries like a read.
    let reply = ctx.call("freeze", &req, Accept::READ).await?;
    match reply.status {
        200..=299 => {
            ctx.note(
                "freeze",
                format!("ok ({}): transactions blocked", reply.status),
            );
            ctx.advance("contained", "contained")?;
            Ok(Flow::Next)
        }
        401 => {
            ctx.note("freeze", "the key died meanwhile (401)");
            ctx.row.action = Some("expire".into());
            ctx.advance("expired", "expired")?;
            Ok(Flow::Next)
        }
        s => Err(ctx.provider_error("freeze", format!("answered {s}; expected 200"))),
    }
}

async fn count(
    ctx: &mut Ctx<'_>,
    key: &Secret,
    step: &str,
    path: &str,
) -> Result<Option<u64>, StepError> {
    let req = Request::new(Method::GET, format!("{}{path}", api_url(&ctx.inner.config)))
        .header("x-api-key", key.expose());
    let reply = ctx.call(step, &req, Accept::READ).await?;
    if !(200..300).contains(&reply.status) {
        ctx.note(step, format!("unknown (answered {})", reply.status));
        return Ok(None);
    }
    // Tatum answers `{"total": n}`; accept a bare number or `count` too.
    let n = reply.json().and_then(|v| {
        v.as_u64()
            .or_else(|| v.get("total").and_then(|t| t.as_u64()))
            .or_else(|| v.get("count").and_then(|t| t.as_u64()))
    });
    if n.is_none() {
        ctx.note(step, "unknown (unexpected answer)");
    }
    Ok(n)
}

async fn inventory(ctx: &mut Ctx<'_>) -> Result<Flow, StepError> {
    let Some(key) = leaked_key(ctx) else {
        return Ok(Flow::Stop);
    };
    let subs = count(
        ctx,
        &key,
        "inventory:subscriptions",
        "/v3/subscription/count",
    )
    .await?;
    let accounts = count(ctx, &key, "inventory:accounts", "/v3/ledger/account/count").await?;
    ctx.row.subscriptions = subs;
    ctx.row.virtual_accounts = accounts;
    let show = |n: Option<u64>| n.map_or("unknown".to_string(), |n| n.to_string());
    ctx.note(
        "inventory",
        format!(
            "{} subscriptions, {} virtual accounts bound",
            show(subs),
            show(accounts)
        ),
    );
    let policy = ctx.policy();
    let effective = match policy {
        Action::Expire | Action::Revoke => {
            // Unknown counts count as bound: expiring blind could break them.
            let bound = subs.map_or(true, |n| n > 0) || accounts.map_or(true, |n| n > 0);
            if bound && !tatum_config(ctx).force_expire {
                ctx.note(
                    "policy",
                    "expire → regenerate: an expired key would stop the bound subscriptions and virtual accounts (set force_expire: true to expire anyway)",
                );
                Action::Regenerate
            } else {
                Action::Expire
            }
        }
        other => other,
    };
    ctx.row.action = Some(action_name(effective).to_string());
    ctx.advance("inventoried", "contained")?;
    Ok(if policy == Action::Freeze {
        Flow::Stop
    } else {
        Flow::Next
    })
}

/// The leaked key read back from a consumer's env file that still holds it.
pub(crate) fn key_from_consumers(config: &Config, fingerprint: &str) -> Option<Secret> {
    let consumers = config.providers.tatum.as_ref()?.consumers.clone();
    key_in(&consumers, fingerprint)
}

pub(super) fn key_in(consumers: &[Consumer], fingerprint: &str) -> Option<Secret> {
    consumers.iter().find_map(|c| {
        propagate::current_value(c)
            .ok()
            .flatten()
            .filter(|v| v.fingerprint().as_str() == fingerprint)
    })
}
