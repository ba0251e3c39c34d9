//! Providers driven by their rule's templates (GitHub, GitLab, Slack, ...):
//! verify → revoke → confirm (verify again: dead) → close.
//!
//! A revoke whose answer was lost is not repeated before verify says the key
//! still works. This is the [`Playbook`] of every provider without one of
//! its own.

use super::ctx::{Accept, Ctx};
use super::playbook::{BoxFuture, Capabilities, Playbook};
use super::template_call::{api_url, request, says_not_ok, verify, Liveness};
use super::template_rotate::{self, Next};
use super::StepError;
use crate::config::{Action, Config};
use crate::rules::{HttpTemplate, Revoke, RuleSet};
use crate::scan::Secret;
use crate::store::{IncidentRow, Stage, State};

/// The rule templates' playbook.
pub(crate) struct TemplatePlaybook {
    config: Config,
    rules: RuleSet,
}

impl TemplatePlaybook {
    pub fn new(config: &Config, rules: RuleSet) -> TemplatePlaybook {
        TemplatePlaybook {
            config: config.clone(),
            rules,
        }
    }

    /// The rule's `manual:` text: what the owner does by hand.
    fn manual(&self, row: &IncidentRow) -> Option<String> {
        self.rules.get(&row.rule_id)?.spec.manual.clone()
    }
}

impl Playbook for TemplatePlaybook {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            verify: true,
            revoke: true,
            // Where a rule has `rotate:`.
            rotate: true,
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
        describe(self, ctx)
    }

    fn next_steps(&self, row: &IncidentRow) -> Vec<String> {
        let has_revoke = self
            .rules
            .get(&row.rule_id)
            .is_some_and(|r| r.spec.revoke.is_some());
        // A revoke that stopped for the owner (a list with no or several
        // matching entries) says why, not "no revoke action".
        if let (State::WaitingManual, true, Some(reason)) = (row.state, has_revoke, &row.reason) {
            return vec![format!(
                "{reason}; then create a new key for whatever used it."
            )];
        }
        let rotation = template_rotate::steps(row);
        if row.action.as_deref() == Some("regenerate") {
            return rotation;
        }
        let mut steps = revoke_steps(row);
        steps.extend(rotation);
        if let (Some(manual), false) = (self.manual(row), row.state == State::Closed) {
            steps.insert(0, manual.trim().to_string());
        }
        steps
    }
}

enum Flow {
    Next,
    Stop,
}

async fn run(p: &TemplatePlaybook, ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    loop {
        let flow = match ctx.row().stage {
            Stage::Detected => verify_leaked(p, ctx).await?,
            Stage::Verified => match rotation(p, ctx) {
                Some((t, v)) => match template_rotate::rotate(&p.config, ctx, &t, &v).await? {
                    Next::Go => Flow::Next,
                    Next::Stop => Flow::Stop,
                    Next::Revoke => revoke(p, ctx).await?,
                },
                None => revoke(p, ctx).await?,
            },
            Stage::Rotated => step(template_rotate::hand_over(&p.config, ctx).await?),
            Stage::Propagated => match templates(p, ctx).0 {
                Some(v) => step(template_rotate::confirm(&p.config, ctx, &v).await?),
                None => Flow::Stop,
            },
            Stage::Revoked => confirm(p, ctx).await?,
            Stage::Confirmed => {
                ctx.advance(IncidentRow::close)?;
                Flow::Stop
            }
            // Not stages of this playbook (a provider that changed
            // playbooks): nothing to do; finished ones stay finished.
            Stage::Contained
            | Stage::Inventoried
            | Stage::Expired
            | Stage::Closed
            | Stage::NotLive => Flow::Stop,
        };
        if let Flow::Stop = flow {
            return Ok(());
        }
    }
}

fn step(next: Next) -> Flow {
    match next {
        Next::Go => Flow::Next,
        Next::Stop | Next::Revoke => Flow::Stop,
    }
}

/// The rule's rotate and verify templates, when this incident is to be
/// rotated: the `regenerate` policy and a rule that says how.
fn rotation(p: &TemplatePlaybook, ctx: &Ctx<'_>) -> Option<(HttpTemplate, HttpTemplate)> {
    if ctx.policy() != Action::Regenerate {
        return None;
    }
    let rotate = p.rules.get(&ctx.row().rule_id)?.spec.rotate.clone()?;
    Some((rotate, templates(p, ctx).0?))
}

/// Why a revoke cannot be sent: its URL is `{{api_url}}`-relative and the
/// provider has no public API base (a registry or tenant the user names).
fn needs_api_url(p: &TemplatePlaybook, ctx: &Ctx<'_>, revoke: Option<&Revoke>) -> Option<String> {
    let provider = &ctx.row().provider;
    if !api_url(&p.config, provider).is_empty() {
        return None;
    }
    let relative = |url: &str, own: &Option<String>| own.is_none() && url.contains("api_url");
    let needs = match revoke? {
        Revoke::Call(t) => relative(&t.url, &t.api_url),
        Revoke::Steps(steps) => steps.iter().any(|s| relative(&s.url, &s.api_url)),
    };
    needs.then(|| format!(
        "keysentry can revoke {provider} keys once it knows the API's base URL: set providers.{provider}.api_url (the registry or tenant that issued the key); until then revoke the key in {provider}'s settings"
    ))
}

fn templates(p: &TemplatePlaybook, ctx: &Ctx<'_>) -> (Option<HttpTemplate>, Option<Revoke>) {
    match p.rules.get(&ctx.row().rule_id) {
        Some(rule) => {
            // A tenant-hosted provider's verify (Okta, Vault, ...) names no
            // base: until providers.<name>.api_url is set it cannot run, and
            // the incident goes on as if the rule had none.
            let api = api_url(&p.config, &ctx.row().provider);
            let verify =
                rule.spec.verify.clone().filter(|t| {
                    !api.is_empty() || t.api_url.is_some() || !t.url.contains("api_url")
                });
            (verify, rule.spec.revoke.clone())
        }
        None => (None, None),
    }
}

async fn verify_leaked(p: &TemplatePlaybook, ctx: &mut Ctx<'_>) -> Result<Flow, StepError> {
    let Some(key) = ctx.secret() else {
        return Ok(Flow::Stop);
    };
    let (verify_t, _) = templates(p, ctx);
    let Some(t) = verify_t else {
        ctx.note("verify", "skipped: the rule has no verify action");
        ctx.advance(IncidentRow::skip_verify)?;
        return Ok(Flow::Next);
    };
    match verify(&p.config, ctx, &t, &key, "verify").await? {
        Liveness::Live => {
            ctx.note("verify", "live");
            ctx.advance(IncidentRow::verify)?;
            Ok(Flow::Next)
        }
        Liveness::Dead => {
            ctx.note("verify", "dead: already revoked; nothing changed");
            ctx.advance(IncidentRow::not_live)?;
            Ok(Flow::Stop)
        }
    }
}

async fn revoke(p: &TemplatePlaybook, ctx: &mut Ctx<'_>) -> Result<Flow, StepError> {
    if ctx.policy() == Action::Notify {
        return Ok(Flow::Stop);
    }
    let Some(key) = ctx.secret() else {
        return Ok(Flow::Stop);
    };
    let (verify_t, revoke_t) = templates(p, ctx);
    if let Some(reason) = needs_api_url(p, ctx, revoke_t.as_ref()) {
        ctx.wait(State::WaitingManual, reason)?;
        return Ok(Flow::Stop);
    }
    let t = match revoke_t {
        Some(Revoke::Call(t)) => *t,
        Some(Revoke::Steps(steps)) => {
            let done =
                super::revoke_steps::run(&p.config, ctx, &key, &steps, verify_t.as_ref()).await?;
            return match done {
                Some(result) => revoked(ctx, &result),
                None => Ok(Flow::Stop),
            };
        }
        None => {
            let reason = match p.manual(ctx.row()) {
                Some(_) => format!(
                    "{} has no revoke API for rule {}: revoke the key by hand (the alert gives the steps)",
                    ctx.row().provider,
                    ctx.row().rule_id
                ),
                None => format!(
                    "the rule {} has no revoke action: revoke the key in {}'s settings",
                    ctx.row().rule_id,
                    ctx.row().provider
                ),
            };
            ctx.wait(State::WaitingManual, reason)?;
            return Ok(Flow::Stop);
        }
    };
    let earlier = ctx.step_done("revoke")? || ctx.step_uncertain("revoke")?;
    if let (true, Some(v)) = (earlier, &verify_t) {
        if let Liveness::Dead = verify(&p.config, ctx, v, &key, "verify").await? {
            return revoked(ctx, "an earlier call took effect (the key no longer works)");
        }
    }
    call_revoke(p, ctx, &key, &t, verify_t.as_ref()).await
}

/// Sends the revoke template. After an answer that may hide a revoke
/// (timeout, 5xx) the key is verified first, when the rule can: dead means
/// it happened.
async fn call_revoke(
    p: &TemplatePlaybook,
    ctx: &mut Ctx<'_>,
    key: &Secret,
    t: &HttpTemplate,
    verify_t: Option<&HttpTemplate>,
) -> Result<Flow, StepError> {
    let req = request(&p.config, ctx, t, key, "revoke")?;
    let ok: Vec<u16> = if t.ok.is_empty() {
        vec![200, 202, 204]
    } else {
        t.ok.clone()
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let reason = match ctx.call("revoke", &req, Accept::CHANGE).await {
            Ok(reply) if ok.contains(&reply.status) => {
                if let Some(err) = says_not_ok(t, &reply) {
                    return Err(ctx.provider_error(
                        "revoke",
                        format!("answered {} with error `{err}`", reply.status),
                    ));
                }
                return revoked(ctx, &format!("ok ({})", reply.status));
            }
            Ok(reply) => {
                return Err(ctx.provider_error(
                    "revoke",
                    format!("answered {}; expected one of {ok:?}", reply.status),
                ))
            }
            Err(StepError::Uncertain { reason, .. }) => reason,
            Err(e) => return Err(e),
        };
        if let Some(v) = verify_t {
            if let Liveness::Dead = verify(&p.config, ctx, v, key, "verify").await? {
                return revoked(ctx, "took effect although the answer was lost");
            }
        }
        if attempt >= ctx.retry().max_attempts {
            return Err(ctx.provider_error(
                "revoke",
                format!("{reason} ({attempt} attempts); will retry on the next run"),
            ));
        }
        tokio::time::sleep(ctx.retry().delay(attempt, None)).await;
    }
}

fn revoked(ctx: &mut Ctx<'_>, result: &str) -> Result<Flow, StepError> {
    ctx.note("revoke", result);
    ctx.set_action("revoke");
    ctx.advance(IncidentRow::revoke)?;
    Ok(Flow::Next)
}

async fn confirm(p: &TemplatePlaybook, ctx: &mut Ctx<'_>) -> Result<Flow, StepError> {
    let (verify_t, _) = templates(p, ctx);
    match (verify_t, ctx.secret()) {
        (Some(t), Some(key)) => match verify(&p.config, ctx, &t, &key, "confirm").await? {
            Liveness::Dead => ctx.note("confirm", "the key no longer works"),
            Liveness::Live => {
                ctx.wait(
                    State::Revoked,
                    "the provider accepted the revoke but the key still works; keysentry checks again on the next run".into(),
                )?;
                return Ok(Flow::Stop);
            }
        },
        _ => ctx.note("confirm", "skipped: no verify action or no copy of the key"),
    }
    ctx.advance(IncidentRow::confirm)?;
    Ok(Flow::Next)
}

/// What the owner does by hand, by state.
fn revoke_steps(row: &IncidentRow) -> Vec<String> {
    let provider = &row.provider;
    match row.state {
        State::Closed => vec![format!(
            "The key was revoked at {provider}; create a new one for whatever used it, and store it in a secret manager."
        )],
        State::WaitingManual => vec![format!(
            "Revoke the key in {provider}'s settings (keysentry has no revoke action for rule {}); create a new one for whatever used it.",
            row.rule_id
        )],
        State::Revoked => vec![format!(
            "{provider} accepted the revoke but still accepts the key: check in {provider}'s settings that it is gone."
        )],
        State::Failed | State::Detected | State::Verified => vec![format!(
            "The key works: revoke it in {provider}'s settings and create a new one."
        )],
        _ => Vec::new(),
    }
}

fn past(ctx: &Ctx<'_>, stages: &[Stage]) -> bool {
    !stages.contains(&ctx.row().stage)
}

/// The dry run: what a pass would do from the incident's stage on.
fn describe(p: &TemplatePlaybook, ctx: &Ctx<'_>) -> Vec<String> {
    let (verify_t, revoke_t) = templates(p, ctx);
    let api = api_url(&p.config, &ctx.row().provider);
    let show = |t: &HttpTemplate| {
        format!(
            "{} {}",
            t.method.to_ascii_uppercase(),
            t.url
                .replace("{{api_url}}", &api)
                .replace("{{ api_url }}", &api)
        )
    };
    let mut plan = Vec::new();
    if !past(ctx, &[Stage::Detected]) {
        plan.push(match &verify_t {
            Some(t) => format!("verify: {}", show(t)),
            None => "verify: none (the rule has no verify action)".into(),
        });
    }
    if ctx.policy() == Action::Notify {
        plan.push("notify the owner; no revoke (policy notify)".into());
        return plan;
    }
    if let (Some((t, _)), false) = (
        rotation(p, ctx),
        past(ctx, &[Stage::Detected, Stage::Verified]),
    ) {
        plan.push(format!(
            "rotate: {} (only if a consumer holds the key or escrow is configured; else revoke)",
            show(&t)
        ));
        plan.push(format!(
            "hand the new key to providers.{}.consumers, then confirm: the old key dead, the new one live",
            ctx.row().provider
        ));
    }
    match &revoke_t {
        Some(Revoke::Steps(steps)) => {
            for s in steps {
                let t = HttpTemplate {
                    method: s.method.clone(),
                    url: s.url.clone(),
                    ..HttpTemplate::default()
                };
                plan.push(format!("revoke step {}: {}", s.name, show(&t)));
            }
        }
        Some(Revoke::Call(t)) => plan.push(format!("revoke: {}", show(t))),
        None => plan.push(format!(
            "revoke: by the owner in {}'s settings (the rule has no revoke action)",
            ctx.row().provider
        )),
    }
    if verify_t.is_some() {
        plan.push("confirm: verify answers dead".into());
    }
    plan
}
