//! OpenAI and Anthropic: a leaked key is deleted (OpenAI) or disabled
//! (Anthropic, whose API cannot delete a key) with the owner's admin key
//! (`providers.<p>.admin_key_env`): verify → find the key's id in the
//! admin API's lists by its redacted form → delete or disable exactly that
//! key → confirm (the leaked key answers 401) → close.
//!
//! The lists show only a redacted form, so a key that merely looks like the
//! leaked one could be picked: exactly one listed key must match
//! ([`hint::matches`]); none or several and nothing is changed, the owner
//! is told which ids matched and what to do. The change is journaled before
//! it is sent; after a lost answer (or a restart) the leaked key is verified
//! before anything is sent again. Without an admin key the key is verified
//! and the owner gets the steps by hand, as for a provider without an API.

mod api;
mod hint;

pub(crate) use api::Api;

use super::ctx::Ctx;
use super::playbook::{BoxFuture, Capabilities, Playbook};
use super::template_call::{api_url, verify, Liveness};
use super::StepError;
use crate::config::{Action, Config};
use crate::rules::{HttpTemplate, RuleSet};
use crate::scan::Secret;
use crate::store::{IncidentRow, Stage, State};
use api::{Admin, Candidate, Listing};

/// The playbook of one admin API (two registrations, one per provider).
pub(crate) struct AdminKeyPlaybook {
    api: Api,
    config: Config,
    rules: RuleSet,
}

impl AdminKeyPlaybook {
    pub fn new(api: Api, config: &Config, rules: RuleSet) -> AdminKeyPlaybook {
        AdminKeyPlaybook {
            api,
            config: config.clone(),
            rules,
        }
    }

    fn verify_template(&self, row: &IncidentRow) -> Option<HttpTemplate> {
        self.rules.get(&row.rule_id)?.spec.verify.clone()
    }

    /// `providers.<p>.admin_key_env`, when set.
    fn admin_env(&self) -> Option<String> {
        self.config
            .providers
            .others
            .get(self.api.provider())
            .and_then(|p| p.admin_key_env.clone())
            .filter(|v| !v.trim().is_empty())
    }

    /// The admin key, or why there is none (a reason for the owner).
    fn admin(&self) -> Result<Admin<'_>, String> {
        let p = self.api.provider();
        let Some(env) = self.admin_env() else {
            return Err(format!(
                "keysentry removes a leaked {} key with an admin key and none is configured: set providers.{p}.admin_key_env to the variable holding {}",
                self.api.title(),
                self.api.admin_key_help()
            ));
        };
        match std::env::var(&env) {
            Ok(v) if !v.trim().is_empty() => Ok(Admin::new(
                self.api,
                &self.config,
                Secret::new(v.trim()),
                env,
            )),
            _ => Err(format!(
                "providers.{p}.admin_key_env names ${env}, which is not set (or empty) in keysentry's environment: set it to {} (e.g. in the systemd unit's EnvironmentFile)",
                self.api.admin_key_help()
            )),
        }
    }

    /// Where the owner removes the key by hand.
    fn by_hand(&self, row: &IncidentRow) -> String {
        match self.api {
            Api::OpenAi => "delete it by hand: platform.openai.com → Settings → the key's project → API keys (an admin key: Settings → Organization → Admin keys)".into(),
            Api::Anthropic if row.rule_id == "anthropic.api-key" => {
                "disable or delete it by hand: console.anthropic.com → Settings → API keys".into()
            }
            Api::Anthropic => format!(
                "revoke it by hand in the Anthropic Console (Settings; Anthropic's admin API manages API keys only, not the {} this rule finds)",
                self.rules
                    .get(&row.rule_id)
                    .map_or("key", |r| r.spec.name.as_str())
            ),
        }
    }
}

impl Playbook for AdminKeyPlaybook {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            verify: true,
            revoke: true,
            ..Capabilities::default()
        }
    }

    fn default_action(&self) -> Action {
        Action::Revoke
    }

    fn settled(&self, row: &IncidentRow, action: Action) -> bool {
        row.state == State::Verified && action == Action::Notify
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx<'_>) -> BoxFuture<'a, Result<(), StepError>> {
        Box::pin(run(self, ctx))
    }

    fn plan(&self, ctx: &Ctx<'_>) -> Vec<String> {
        let api = api_url(&self.config, self.api.provider());
        let mut plan = Vec::new();
        if ctx.row().stage == Stage::Detected {
            plan.push(format!("verify: GET {api}/v1/models with the leaked key"));
        }
        if ctx.policy() == Action::Notify {
            plan.push("notify the owner; nothing removed (policy notify)".into());
            return plan;
        }
        match self.admin() {
            Ok(_) => {
                plan.push(format!(
                    "find: list the {} admin API's keys (all pages{}) and match the leaked key's redacted form; exactly one match or nothing is changed",
                    self.api.title(),
                    match self.api {
                        Api::OpenAi => ", every project",
                        Api::Anthropic => "",
                    }
                ));
                plan.push(format!(
                    "{}: that key, with the admin key",
                    self.api.change_step()
                ));
                plan.push("confirm: verify answers dead".into());
            }
            Err(why) => plan.push(format!(
                "{why}; until then the owner is asked to remove it by hand"
            )),
        }
        plan
    }

    fn next_steps(&self, row: &IncidentRow) -> Vec<String> {
        let title = self.api.title();
        match (row.state, &row.reason) {
            (State::WaitingManual, Some(reason)) => {
                vec![format!("{reason}; then create a new key for whatever used it.")]
            }
            (State::Closed, _) => vec![format!(
                "The key was {} at {title} with the admin key; create a new one for whatever used it, and store it in a secret manager.",
                self.api.changed()
            )],
            (State::Revoked, _) => vec![format!(
                "{title} accepted the change but still accepts the key: check in {title}'s console that it is gone."
            )],
            (State::Failed | State::Detected | State::Verified, _) => vec![format!(
                "The key works: {}; then create a new one.",
                self.by_hand(row)
            )],
            _ => Vec::new(),
        }
    }
}

enum Flow {
    Next,
    Stop,
}

async fn run(p: &AdminKeyPlaybook, ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    loop {
        let flow = match ctx.row().stage {
            Stage::Detected => verify_leaked(p, ctx).await?,
            Stage::Verified => remove(p, ctx).await?,
            Stage::Revoked => confirm(p, ctx).await?,
            Stage::Confirmed => {
                ctx.advance(IncidentRow::close)?;
                Flow::Stop
            }
            // Not stages of this playbook; finished ones stay finished.
            Stage::Contained
            | Stage::Inventoried
            | Stage::Rotated
            | Stage::Propagated
            | Stage::Expired
            | Stage::Closed
            | Stage::NotLive => Flow::Stop,
        };
        if let Flow::Stop = flow {
            return Ok(());
        }
    }
}

/// Whether the leaked key still works (the rule's verify template).
async fn live(
    p: &AdminKeyPlaybook,
    ctx: &mut Ctx<'_>,
    key: &Secret,
    step: &str,
) -> Result<Option<bool>, StepError> {
    let Some(t) = p.verify_template(ctx.row()) else {
        return Ok(None);
    };
    Ok(Some(matches!(
        verify(&p.config, ctx, &t, key, step).await?,
        Liveness::Live
    )))
}

async fn verify_leaked(p: &AdminKeyPlaybook, ctx: &mut Ctx<'_>) -> Result<Flow, StepError> {
    let Some(key) = ctx.secret() else {
        return Ok(Flow::Stop);
    };
    match live(p, ctx, &key, "verify").await? {
        None => {
            ctx.note("verify", "skipped: the rule has no verify action");
            ctx.advance(IncidentRow::skip_verify)?;
            Ok(Flow::Next)
        }
        Some(true) => {
            ctx.note("verify", "live");
            ctx.advance(IncidentRow::verify)?;
            Ok(Flow::Next)
        }
        Some(false) => {
            ctx.note("verify", "dead: already revoked; nothing changed");
            ctx.advance(IncidentRow::not_live)?;
            Ok(Flow::Stop)
        }
    }
}

/// Waits for the owner with `reason` (never holding the key).
fn ask_owner(ctx: &mut Ctx<'_>, reason: String) -> Result<Flow, StepError> {
    ctx.wait(State::WaitingManual, reason)?;
    Ok(Flow::Stop)
}

async fn remove(p: &AdminKeyPlaybook, ctx: &mut Ctx<'_>) -> Result<Flow, StepError> {
    if ctx.policy() == Action::Notify {
        return Ok(Flow::Stop);
    }
    let Some(key) = ctx.secret() else {
        return Ok(Flow::Stop);
    };
    let Some(listing) = p.api.listing(&ctx.row().rule_id, &key) else {
        let reason = format!(
            "{} cannot remove this kind of key through its admin API: {}",
            p.api.title(),
            p.by_hand(ctx.row())
        );
        return ask_owner(ctx, reason);
    };
    let mut admin = match p.admin() {
        Ok(admin) => admin,
        Err(why) => {
            let reason = format!("{why}; or {}", p.by_hand(ctx.row()));
            return ask_owner(ctx, reason);
        }
    };
    let step = p.api.change_step();
    let (done, uncertain) = (ctx.step_done(step)?, ctx.step_uncertain(step)?);
    if done || uncertain {
        // An earlier pass sent the change: never again before verify says
        // the key still works.
        if live(p, ctx, &key, "verify").await? == Some(false) {
            return removed(
                p,
                ctx,
                "an earlier call took effect (the key no longer works)",
            );
        }
        if done {
            return removed(p, ctx, "the provider accepted the change earlier");
        }
    }
    let found = admin.search(ctx, listing, &key).await?;
    let [only] = found.matches.as_slice() else {
        return ask_owner(ctx, ambiguous(p, &found.matches, found.listed, ctx.row()));
    };
    let only = only.clone();
    if only.id.is_none() {
        return ask_owner(ctx, ambiguous(p, &found.matches, found.listed, ctx.row()));
    }
    ctx.note(
        "find",
        format!(
            "exactly one of {} listed keys matches: {}",
            found.listed,
            only.describe()
        ),
    );
    if admin.key == key {
        let why = format!(
            "the leaked key is the admin key in ${} itself: it is removed too; give keysentry a new admin key there",
            admin.env
        );
        ctx.note("find", why);
    }
    change(p, ctx, &admin, listing, &only, &key).await
}

/// The reason for none or several matches: the candidates' ids and names,
/// and what to do.
fn ambiguous(
    p: &AdminKeyPlaybook,
    matches: &[Candidate],
    listed: usize,
    row: &IncidentRow,
) -> String {
    let title = p.api.title();
    if matches.is_empty() {
        return format!(
            "none of the {listed} {title} keys the admin key can list matches this key's redacted form (it may belong to another organization); nothing was changed: {}",
            p.by_hand(row)
        );
    }
    if let [only] = matches {
        return format!(
            "the one {title} key matching this key's redacted form ({}) has an id keysentry will not put in a URL; nothing was changed: {}",
            only.describe(),
            p.by_hand(row)
        );
    }
    let names: Vec<String> = matches.iter().map(Candidate::describe).collect();
    format!(
        "{} {title} keys match this key's redacted form: {}; keysentry changes only an exact single match, so nothing was changed: find the leaked one among them and {}",
        matches.len(),
        names.join(", "),
        p.by_hand(row).replacen("it by hand", "it", 1)
    )
}

/// Sends the change; after an answer that may hide it (timeout, 5xx) the
/// leaked key is verified first: dead means it happened.
async fn change(
    p: &AdminKeyPlaybook,
    ctx: &mut Ctx<'_>,
    admin: &Admin<'_>,
    listing: Listing,
    c: &Candidate,
    key: &Secret,
) -> Result<Flow, StepError> {
    let step = p.api.change_step();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let reason = match admin.change(ctx, listing, c).await {
            Ok(reply) if (200..300).contains(&reply.status) => {
                if !admin.change_confirmed(&reply) {
                    return Err(ctx.provider_error(
                        step,
                        format!(
                            "answered {} without saying the key was {}",
                            reply.status,
                            p.api.changed()
                        ),
                    ));
                }
                return removed(
                    p,
                    ctx,
                    &format!("{} {} ({})", c.describe(), p.api.changed(), reply.status),
                );
            }
            Ok(reply) if matches!(reply.status, 401 | 403) => {
                return Err(admin.refused(ctx, step, reply.status))
            }
            Ok(reply) if reply.status == 404 => {
                // Gone since it was listed: someone (or a lost earlier
                // call) removed it. Only verify can tell it was this key.
                if live(p, ctx, key, "verify").await? == Some(false) {
                    return removed(p, ctx, "the key was already gone (404) and no longer works");
                }
                return Err(ctx.provider_error(
                    step,
                    format!("answered 404 for {} although it was just listed; keysentry lists again on the next run", c.describe()),
                ));
            }
            Ok(reply) => return Err(ctx.provider_error(step, format!("answered {}", reply.status))),
            Err(StepError::Uncertain { reason, .. }) => reason,
            Err(e) => return Err(e),
        };
        if live(p, ctx, key, "verify").await? == Some(false) {
            return removed(p, ctx, "took effect although the answer was lost");
        }
        if attempt >= ctx.retry().max_attempts {
            return Err(ctx.provider_error(
                step,
                format!("{reason} ({attempt} attempts); will retry on the next run"),
            ));
        }
        tokio::time::sleep(ctx.retry().delay(attempt, None)).await;
    }
}

fn removed(p: &AdminKeyPlaybook, ctx: &mut Ctx<'_>, result: &str) -> Result<Flow, StepError> {
    ctx.note(p.api.change_step(), result);
    ctx.set_action(match p.api {
        Api::OpenAi => "delete",
        Api::Anthropic => "disable",
    });
    ctx.advance(IncidentRow::revoke)?;
    Ok(Flow::Next)
}

async fn confirm(p: &AdminKeyPlaybook, ctx: &mut Ctx<'_>) -> Result<Flow, StepError> {
    let Some(key) = ctx.secret() else {
        ctx.note("confirm", "skipped: no copy of the key");
        ctx.advance(IncidentRow::confirm)?;
        return Ok(Flow::Next);
    };
    match live(p, ctx, &key, "confirm").await? {
        Some(true) => {
            ctx.wait(
                State::Revoked,
                format!(
                    "{} accepted the change but the key still works; keysentry checks again on the next run",
                    p.api.title()
                ),
            )?;
            return Ok(Flow::Stop);
        }
        Some(false) => ctx.note("confirm", "the key no longer works"),
        None => ctx.note("confirm", "skipped: the rule has no verify action"),
    }
    ctx.advance(IncidentRow::confirm)?;
    Ok(Flow::Next)
}
