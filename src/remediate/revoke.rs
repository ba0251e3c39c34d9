//! Providers driven by their rule's templates (GitHub, GitLab, Slack, ...):
//! verify → revoke → confirm (verify again: dead) → close.
//!
//! A revoke whose answer was lost is not repeated before verify says the key
//! still works.

use super::ctx::{Accept, Ctx};
use super::http_action::{Reply, Request, Vars};
use super::StepError;
use crate::config::Action;
use crate::rules::HttpTemplate;
use crate::scan::Secret;

enum Flow {
    Next,
    Stop,
}

enum Liveness {
    Live,
    Dead,
}

pub(super) async fn run(ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    loop {
        let flow = match ctx.row.stage.as_str() {
            "detected" => verify_leaked(ctx).await?,
            "verified" => revoke(ctx).await?,
            "revoked" => confirm(ctx).await?,
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

fn templates(ctx: &Ctx<'_>) -> (Option<HttpTemplate>, Option<HttpTemplate>) {
    match ctx.inner.rules.get(&ctx.row.rule_id) {
        Some(rule) => {
            // A tenant-hosted provider's verify (Okta, Vault, ...) names no
            // base: until providers.<name>.api_url is set it cannot run, and
            // the incident goes on as if the rule had none.
            let api = api_url(&ctx.inner.config, &ctx.row.provider);
            let verify =
                rule.spec.verify.clone().filter(|t| {
                    !api.is_empty() || t.api_url.is_some() || !t.url.contains("api_url")
                });
            (verify, rule.spec.revoke.clone())
        }
        None => (None, None),
    }
}

/// `providers.<name>.api_url`, else the provider's public API.
pub fn api_url(config: &crate::config::Config, provider: &str) -> String {
    config
        .providers
        .others
        .get(provider)
        .and_then(|p| p.api_url.clone())
        .or_else(|| super::policy::default_api_url(provider).map(str::to_string))
        .unwrap_or_default()
        .trim_end_matches('/')
        .to_string()
}

fn request(
    ctx: &Ctx<'_>,
    t: &HttpTemplate,
    key: &Secret,
    what: &str,
) -> Result<Request, StepError> {
    let api = api_url(&ctx.inner.config, &ctx.row.provider);
    let vars = Vars {
        secret: key,
        api_url: &api,
        allow_insecure_http: ctx.inner.config.allow_insecure_http,
    };
    Ok(Request::from_template(
        t,
        &vars,
        &format!("rule {} {what}", ctx.row.rule_id),
    )?)
}

/// Slack-style APIs answer 200 and report failure as `{"ok": false}`.
fn says_not_ok(t: &HttpTemplate, reply: &Reply) -> Option<String> {
    if let Some(want) = &t.body_contains {
        let body = String::from_utf8_lossy(&reply.body);
        if !body.contains(want.as_str()) {
            return Some("the response lacks the rule's body_contains text".into());
        }
    }
    let v = reply.json()?;
    if v.get("ok")?.as_bool()? {
        return None;
    }
    Some(
        v.get("error")
            .and_then(|e| e.as_str())
            .unwrap_or("ok: false")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect(),
    )
}

async fn verify(
    ctx: &mut Ctx<'_>,
    t: &HttpTemplate,
    key: &Secret,
    step: &str,
) -> Result<Liveness, StepError> {
    let req = request(ctx, t, key, "verify")?;
    let answers: Vec<u16> = t.live.iter().chain(&t.dead).copied().collect();
    let reply = ctx.call(step, &req, Accept::verify(&answers)).await?;
    if t.dead.contains(&reply.status) {
        return Ok(Liveness::Dead);
    }
    let live = if t.live.is_empty() {
        (200..300).contains(&reply.status)
    } else {
        t.live.contains(&reply.status)
    };
    if live {
        return Ok(match says_not_ok(t, &reply) {
            Some(_) => Liveness::Dead,
            None => Liveness::Live,
        });
    }
    Err(ctx.provider_error(
        step,
        format!(
            "answered {}; the rule's verify expects live {:?} or dead {:?}",
            reply.status, t.live, t.dead
        ),
    ))
}

async fn verify_leaked(ctx: &mut Ctx<'_>) -> Result<Flow, StepError> {
    let Some(key) = ctx.secret.clone() else {
        return Ok(Flow::Stop);
    };
    let (verify_t, _) = templates(ctx);
    let Some(t) = verify_t else {
        ctx.note("verify", "skipped: the rule has no verify action");
        ctx.advance("verified", "detected")?;
        return Ok(Flow::Next);
    };
    match verify(ctx, &t, &key, "verify").await? {
        Liveness::Live => {
            ctx.note("verify", "live");
            ctx.advance("verified", "verified")?;
            Ok(Flow::Next)
        }
        Liveness::Dead => {
            ctx.note("verify", "dead: already revoked; nothing changed");
            ctx.advance("not-live", "not-live")?;
            Ok(Flow::Stop)
        }
    }
}

async fn revoke(ctx: &mut Ctx<'_>) -> Result<Flow, StepError> {
    if ctx.policy() == Action::Notify {
        return Ok(Flow::Stop);
    }
    let Some(key) = ctx.secret.clone() else {
        return Ok(Flow::Stop);
    };
    let (verify_t, revoke_t) = templates(ctx);
    let Some(t) = revoke_t else {
        let reason = format!(
            "the rule {} has no revoke action: revoke the key in {}'s settings",
            ctx.row.rule_id, ctx.row.provider
        );
        ctx.wait("waiting-manual", reason)?;
        return Ok(Flow::Stop);
    };
    let store = &ctx.inner.store;
    let earlier =
        store.step_done(ctx.row.id, "revoke")? || store.step_uncertain(ctx.row.id, "revoke")?;
    if let (true, Some(v)) = (earlier, &verify_t) {
        if let Liveness::Dead = verify(ctx, v, &key, "verify").await? {
            return revoked(ctx, "an earlier call took effect (the key no longer works)");
        }
    }
    call_revoke(ctx, &key, &t, verify_t.as_ref()).await
}

/// Sends the revoke template. After an answer that may hide a revoke
/// (timeout, 5xx) the key is verified first, when the rule can: dead means
/// it happened.
async fn call_revoke(
    ctx: &mut Ctx<'_>,
    key: &Secret,
    t: &HttpTemplate,
    verify_t: Option<&HttpTemplate>,
) -> Result<Flow, StepError> {
    let req = request(ctx, t, key, "revoke")?;
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
            if let Liveness::Dead = verify(ctx, v, key, "verify").await? {
                return revoked(ctx, "took effect although the answer was lost");
            }
        }
        if attempt >= ctx.inner.retry.max_attempts {
            return Err(ctx.provider_error(
                "revoke",
                format!("{reason} ({attempt} attempts); will retry on the next run"),
            ));
        }
        tokio::time::sleep(ctx.inner.retry.delay(attempt, None)).await;
    }
}

fn revoked(ctx: &mut Ctx<'_>, result: &str) -> Result<Flow, StepError> {
    ctx.note("revoke", result);
    ctx.row.action = Some("revoke".into());
    ctx.advance("revoked", "revoked")?;
    Ok(Flow::Next)
}

async fn confirm(ctx: &mut Ctx<'_>) -> Result<Flow, StepError> {
    let (verify_t, _) = templates(ctx);
    match (verify_t, ctx.secret.clone()) {
        (Some(t), Some(key)) => match verify(ctx, &t, &key, "confirm").await? {
            Liveness::Dead => ctx.note("confirm", "the key no longer works"),
            Liveness::Live => {
                ctx.wait(
                    "revoked",
                    "the provider accepted the revoke but the key still works; keysentry checks again on the next run".into(),
                )?;
                return Ok(Flow::Stop);
            }
        },
        _ => ctx.note("confirm", "skipped: no verify action or no copy of the key"),
    }
    ctx.advance("confirmed", "confirmed")?;
    Ok(Flow::Next)
}
