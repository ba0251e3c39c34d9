//! The Tatum playbook (ARCHITECTURE.md): verify → freeze → inventory →
//! regenerate or expire (management templates, or the owner in the
//! Dashboard) → propagate the new key to consumers → confirm → close.
//!
//! Each step moves the incident's `stage` forward and saves it, so any pass
//! (the next scan, `retry_pending`, a restart after a crash) resumes where
//! the last one stopped. A regenerate or expire that may have happened
//! without keysentry learning the answer is never simply repeated: the old
//! key is verified first, and a 401 means it happened.

pub(crate) mod expire;
mod handover;
mod plan;
mod rotate;
mod steps;

use super::ctx::{Accept, Ctx};
use super::handover::Rotation;
use super::http_action::Request;
use super::playbook::{BoxFuture, Capabilities, HandOverError, Playbook};
use super::policy::action_name;
use super::{propagate, StepError};
use crate::alert::Bound;
use crate::config::{Action, Config, Consumer, TatumConfig};
use crate::rules::RuleSet;
use crate::scan::{Fingerprint, Secret};
use crate::store::{IncidentRow, Stage, State};
use handover::{confirm, hand_over};
use reqwest::Method;
use rotate::rotate;
use std::time::Duration;

/// The provider name of Tatum's rules.
pub(crate) const PROVIDER: &str = "tatum";

/// Tatum's API when `providers.tatum.api_url` is unset.
const DEFAULT_API: &str = "https://api.tatum.io";

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

/// What this playbook keeps about an incident (the store's
/// `playbook_data`). Never a key: the new key's fingerprint and redacted
/// form only.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct TatumData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub testnet: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscriptions: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_accounts: Option<u64>,
    /// The new key: where it went, whether it is in escrow.
    #[serde(flatten)]
    pub rotation: Rotation,
    /// A regenerate is held back: no consumer holds the key and no escrow
    /// is configured.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_destination: bool,
    /// The owner asked to expire this key (`incidents expire ID`), with
    /// `--force` when anything is bound to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expire_requested: Option<ExpireRequest>,
}

/// `keysentry incidents expire ID [--force]`.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct ExpireRequest {
    pub force: bool,
}

/// The Tatum playbook, with its part of the config.
pub(crate) struct TatumPlaybook {
    tatum: TatumConfig,
    api: String,
    allow_insecure_http: bool,
    rules: RuleSet,
}

impl TatumPlaybook {
    pub fn new(config: &Config, rules: RuleSet) -> TatumPlaybook {
        TatumPlaybook {
            tatum: config.providers.tatum.clone().unwrap_or_default(),
            api: api_url(config),
            allow_insecure_http: config.allow_insecure_http,
            rules,
        }
    }
}

/// `providers.tatum.poll_interval_secs` (default 60): how often the engine
/// first looks again at an incident that waits.
pub(crate) fn poll_interval(config: &Config) -> Duration {
    Duration::from_secs(
        config
            .providers
            .tatum
            .as_ref()
            .and_then(|t| t.poll_interval_secs)
            .unwrap_or(60),
    )
}

pub fn api_url(config: &Config) -> String {
    config
        .providers
        .tatum
        .as_ref()
        .and_then(|t| t.api_url.clone())
        .unwrap_or_else(|| DEFAULT_API.to_string())
        .trim_end_matches('/')
        .to_string()
}

impl Playbook for TatumPlaybook {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            verify: true,
            contain: true,
            rotate: true,
            revoke: true,
            hand_over: true,
        }
    }

    fn default_action(&self) -> Action {
        Action::Regenerate
    }

    fn settled(&self, row: &IncidentRow, action: Action) -> bool {
        match row.state {
            State::Verified => action == Action::Notify,
            State::Contained => action == Action::Freeze,
            _ => false,
        }
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx<'_>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(run(self, ctx))
    }

    fn plan(&self, ctx: &Ctx<'_>) -> Vec<String> {
        plan::describe(self, ctx)
    }

    fn next_steps(&self, row: &IncidentRow) -> Vec<String> {
        let consumers: Vec<String> = self
            .tatum
            .consumers
            .iter()
            .map(|c| c.name.clone())
            .collect();
        steps::tatum_steps(row, &consumers)
    }

    fn bound(&self, row: &IncidentRow) -> Option<Bound> {
        let (data, _) = row.playbook_data.get::<TatumData>();
        match (data.subscriptions, data.virtual_accounts) {
            (None, None) => None,
            (s, a) => Some(Bound {
                subscriptions: s.unwrap_or(0),
                virtual_accounts: a.unwrap_or(0),
            }),
        }
    }

    fn recover_key(&self, fingerprint: &Fingerprint) -> Option<Secret> {
        key_in(&self.tatum.consumers, fingerprint)
    }

    fn accept_new_key(&self, row: &IncidentRow, key: &Secret) -> Result<(), HandOverError> {
        handover::accept(&self.rules, row, key)
    }

    fn hand_over<'a>(
        &'a self,
        ctx: &'a mut Ctx<'_>,
        key: Secret,
    ) -> BoxFuture<'a, Result<(), HandOverError>> {
        Box::pin(handover::set_key(self, ctx, key))
    }
}

/// `incidents show`'s lines for what this playbook learnt.
pub(crate) fn details(row: &IncidentRow) -> Vec<(&'static str, String)> {
    let (data, _) = row.playbook_data.get::<TatumData>();
    let mut out = Vec::new();
    if let Some(t) = data.testnet {
        out.push(("network", if t { "testnet" } else { "mainnet" }.to_string()));
    }
    if data.subscriptions.is_some() || data.virtual_accounts.is_some() {
        let show = |n: Option<u64>| n.map_or("?".to_string(), |n| n.to_string());
        out.push((
            "bound",
            format!(
                "{} subscriptions, {} virtual accounts",
                show(data.subscriptions),
                show(data.virtual_accounts)
            ),
        ));
    }
    out.extend(data.rotation.details(row.id));
    out
}

async fn run(p: &TatumPlaybook, ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    loop {
        if !matches!(ctx.row().stage, Stage::Detected | Stage::Verified) {
            // Contained: let other incidents reach containment first.
            ctx.rotation_slot().await;
        }
        let flow = match ctx.row().stage {
            Stage::Detected => verify_leaked(p, ctx).await?,
            Stage::Verified => freeze(p, ctx).await?,
            Stage::Contained => inventory(p, ctx).await?,
            Stage::Inventoried => rotate(p, ctx).await?,
            Stage::Rotated => hand_over(p, ctx).await?,
            Stage::Propagated | Stage::Expired => confirm(p, ctx).await?,
            Stage::Confirmed => {
                ctx.advance(IncidentRow::close)?;
                Flow::Stop
            }
            // Finished.
            Stage::Closed | Stage::NotLive => Flow::Stop,
            // The template playbook's stage (the key was revoked before
            // Tatum had a playbook of its own): nothing left to do here.
            Stage::Revoked => Flow::Stop,
        };
        if let Flow::Stop = flow {
            return Ok(());
        }
    }
}

/// The leaked key, or `None` when this process has no copy (it waits for the
/// key to be seen again).
fn leaked_key(ctx: &Ctx<'_>) -> Option<Secret> {
    let key = ctx.secret();
    if key.is_none() {
        tracing::debug!(
            incident = ctx.row().id,
            "no copy of the key in this process; waiting for it to be seen again"
        );
    }
    key
}

async fn verify(
    p: &TatumPlaybook,
    ctx: &mut Ctx<'_>,
    key: &Secret,
    step: &str,
) -> Result<Liveness, StepError> {
    let req = Request::new(Method::GET, format!("{}/v3/tatum/version", p.api))
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

async fn verify_leaked(p: &TatumPlaybook, ctx: &mut Ctx<'_>) -> Result<Flow, StepError> {
    let Some(key) = leaked_key(ctx) else {
        return Ok(Flow::Stop);
    };
    match verify(p, ctx, &key, "verify").await? {
        Liveness::Live { testnet } => {
            let mut data: TatumData = ctx.data();
            data.testnet = testnet;
            ctx.set_data(&data);
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
            ctx.advance(IncidentRow::not_live)?;
            return Ok(Flow::Stop);
        }
    }
    ctx.advance(IncidentRow::verify)?;
    Ok(Flow::Next)
}

async fn freeze(p: &TatumPlaybook, ctx: &mut Ctx<'_>) -> Result<Flow, StepError> {
    if ctx.policy() == Action::Notify {
        return Ok(Flow::Stop);
    }
    let Some(key) = leaked_key(ctx) else {
        return Ok(Flow::Stop);
    };
    let req = Request::new(Method::PUT, format!("{}/v3/tatum/freeze", p.api))
        .header("x-api-key", key.expose());
    // Freezing twice is harmless, so it retries like a read.
    let reply = ctx.call("freeze", &req, Accept::READ).await?;
    match reply.status {
        200..=299 => {
            ctx.note(
                "freeze",
                format!("ok ({}): transactions blocked", reply.status),
            );
            ctx.advance(IncidentRow::contain)?;
            Ok(Flow::Next)
        }
        401 => {
            ctx.note("freeze", "the key died meanwhile (401)");
            ctx.set_action("expire");
            ctx.advance(IncidentRow::expire)?;
            Ok(Flow::Next)
        }
        s => Err(ctx.provider_error("freeze", format!("answered {s}; expected 200"))),
    }
}

async fn count(
    p: &TatumPlaybook,
    ctx: &mut Ctx<'_>,
    key: &Secret,
    step: &str,
    path: &str,
) -> Result<Option<u64>, StepError> {
    let req =
        Request::new(Method::GET, format!("{}{path}", p.api)).header("x-api-key", key.expose());
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

async fn inventory(p: &TatumPlaybook, ctx: &mut Ctx<'_>) -> Result<Flow, StepError> {
    let Some(key) = leaked_key(ctx) else {
        return Ok(Flow::Stop);
    };
    let subs = count(
        p,
        ctx,
        &key,
        "inventory:subscriptions",
        "/v3/subscription/count",
    )
    .await?;
    let accounts = count(
        p,
        ctx,
        &key,
        "inventory:accounts",
        "/v3/ledger/account/count",
    )
    .await?;
    let mut data: TatumData = ctx.data();
    data.subscriptions = subs;
    data.virtual_accounts = accounts;
    ctx.set_data(&data);
    let show = |n: Option<u64>| n.map_or("unknown".to_string(), |n| n.to_string());
    ctx.note(
        "inventory",
        format!(
            "{} subscriptions, {} virtual accounts bound",
            show(subs),
            show(accounts)
        ),
    );
    let requested = data.expire_requested;
    let policy = match requested {
        Some(_) => Action::Expire,
        None => ctx.policy(),
    };
    let effective = match policy {
        Action::Expire | Action::Revoke => {
            // Unknown counts count as bound: expiring blind could break them.
            let bound = subs.map_or(true, |n| n > 0) || accounts.map_or(true, |n| n > 0);
            let forced = p.tatum.force_expire || requested.is_some_and(|r| r.force);
            if bound && !forced {
                ctx.note(
                    "policy",
                    format!(
                        "expire → regenerate: expiring deletes the {} subscriptions and {} virtual accounts bound to the key, irreversibly; to expire anyway run `keysentry incidents expire {} --force`",
                        show(subs),
                        show(accounts),
                        ctx.row().id
                    ),
                );
                Action::Regenerate
            } else {
                Action::Expire
            }
        }
        other => other,
    };
    ctx.set_action(action_name(effective));
    ctx.advance(IncidentRow::inventory)?;
    Ok(if policy == Action::Freeze {
        Flow::Stop
    } else {
        Flow::Next
    })
}

/// The leaked key read back from a consumer's env file that still holds it.
fn key_in(consumers: &[Consumer], fingerprint: &Fingerprint) -> Option<Secret> {
    consumers.iter().find_map(|c| {
        propagate::current_value(c)
            .ok()
            .flatten()
            .filter(|v| v.fingerprint() == *fingerprint)
    })
}
