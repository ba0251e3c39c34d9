//! The Tatum playbook (ARCHITECTURE.md): verify → freeze → inventory →
//! regenerate or expire (management templates, or the owner in the
//! Dashboard) → propagate the new key to consumers → confirm → close.
//!
//! Each step moves the incident's `stage` forward and saves it, so any pass
//! (the next scan, `retry_pending`, a restart after a crash) resumes where
//! the last one stopped. A regenerate or expire that may have happened
//! without keysentry learning the answer is never simply repeated: the old
//! key is verified first, and a 401 means it happened.

use super::ctx::{Accept, Ctx};
use super::http_action::{Reply, Request, Vars};
use super::policy::{action_name, parse_action};
use super::{propagate, StepError};
use crate::config::{Action, Config, Consumer, TatumConfig};
use crate::rules::HttpTemplate;
use crate::scan::{Fingerprint, Secret};
use reqwest::Method;

enum Flow {
    Next,
    Stop,
}

enum Liveness {
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

fn tatum_config(ctx: &Ctx<'_>) -> TatumConfig {
    ctx.inner.config.providers.tatum.clone().unwrap_or_default()
}

pub(super) async fn run(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    loop {
        let flow = match ctx.row.stage.as_str() {
            "detected" => verify_leaked(ctx).await?,
            "verified" => freeze(ctx).await?,
            "contained" => inventory(ctx).await?,
            "inventoried" => rotate(ctx).await?,
            "rotated" => propagate(ctx).await?,
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
fn leaked_key(ctx: &Ctx<'_>) -> Option<Secret> {
    if ctx.secret.is_none() {
        tracing::debug!(
            incident = ctx.row.id,
            "no copy of the key in this process; waiting for it to be seen again"
        );
    }
    ctx.secret.clone()
}

async fn verify(ctx: &mut Ctx<'_>, key: &Secret, step: &str) -> Result<Liveness, StepError> {
    let req = Request::new(
        Method::GET,
        format!("{}/v3/tatum/version", api_url(&ctx.inner.config)),
    )
    .header("x-api-key", key.expose());
    let accept = Accept {
        answers: &[429],
        state_changing: false,
    };
    let reply = ctx.call(step, &req, accept).await?;
    Ok(match reply.status {
        200..=299 => Liveness::Live {
            testnet: reply
                .json()
                .and_then(|v| v.get("testnet").and_then(|t| t.as_bool())),
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

async fn rotate(ctx: &mut Ctx<'_>) -> Result<Flow, StepError> {
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
    let api = api_url(&ctx.inner.config);
    let vars = Vars {
        secret: &key,
        api_url: &api,
    };
    let req = Request::from_template(
        &template,
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
        match ctx.call(step, &req, Accept::CHANGE).await {
            Ok(reply) if ok.contains(&reply.status) => {
                return rotated(ctx, expire, &reply, &template);
            }
            Ok(reply) => {
                return Err(ctx.provider_error(
                    step,
                    format!("answered {}; expected one of {ok:?}", reply.status),
                ))
            }
            Err(StepError::Uncertain { reason, .. }) => {
                if let Liveness::Dead = verify(ctx, &key, "verify").await? {
                    return happened(
                        ctx,
                        expire,
                        "took effect although the answer was lost (old key answers 401)",
                    );
                }
                if attempt >= ctx.inner.retry.max_attempts {
                    return Err(ctx.provider_error(
                        step,
                        format!("{reason} ({attempt} attempts; the old key still works, so none took effect); will retry on the next run"),
                    ));
                }
                tokio::time::sleep(ctx.inner.retry.delay(attempt, None)).await;
            }
            Err(e) => return Err(e),
        }
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

async fn propagate(ctx: &mut Ctx<'_>) -> Result<Flow, StepError> {
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

async fn confirm(ctx: &mut Ctx<'_>) -> Result<Flow, StepError> {
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
pub enum SetKeyError {
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
pub(super) async fn set_key(ctx: &mut Ctx<'_>, new: Secret) -> Result<(), SetKeyError> {
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

/// The leaked key read back from a consumer's env file that still holds it.
pub(super) fn key_from_consumers(config: &Config, fingerprint: &str) -> Option<Secret> {
    let consumers = config.providers.tatum.as_ref()?.consumers.clone();
    key_in(&consumers, fingerprint)
}

fn key_in(consumers: &[Consumer], fingerprint: &str) -> Option<Secret> {
    consumers.iter().find_map(|c| {
        propagate::current_value(c)
            .ok()
            .flatten()
            .filter(|v| v.fingerprint().as_str() == fingerprint)
    })
}
