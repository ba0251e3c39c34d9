//! The calls of the template playbook that both single and multi-step
//! revokes make: the provider's base URL, a template's request, and verify
//! (does the key still work?).

use super::ctx::{Accept, Ctx};
use super::http_action::{Reply, Request, Vars};
use super::StepError;
use crate::config::Config;
use crate::rules::HttpTemplate;
use crate::scan::Secret;

/// What verify says about a key.
pub(super) enum Liveness {
    Live,
    Dead,
}

/// `providers.<name>.api_url`, else the provider's public API.
pub fn api_url(config: &Config, provider: &str) -> String {
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

/// Runs `f` with the template variables of `key` for the incident's
/// provider (its secret, its `api_url`, the plain-http rule).
pub(super) fn with_vars<T>(
    config: &Config,
    ctx: &Ctx<'_>,
    key: &Secret,
    f: impl FnOnce(&Vars<'_>) -> T,
) -> T {
    let api = api_url(config, &ctx.row().provider);
    f(&Vars {
        secret: key,
        api_url: &api,
        allow_insecure_http: config.allow_insecure_http,
    })
}

pub(super) fn request(
    config: &Config,
    ctx: &Ctx<'_>,
    t: &HttpTemplate,
    key: &Secret,
    what: &str,
) -> Result<Request, StepError> {
    let what = format!("rule {} {what}", ctx.row().rule_id);
    Ok(with_vars(config, ctx, key, |vars| {
        Request::from_template(t, vars, &what)
    })?)
}

/// Slack-style APIs answer 200 and report failure as `{"ok": false}`.
pub(super) fn says_not_ok(t: &HttpTemplate, reply: &Reply) -> Option<String> {
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

pub(super) async fn verify(
    config: &Config,
    ctx: &mut Ctx<'_>,
    t: &HttpTemplate,
    key: &Secret,
    step: &str,
) -> Result<Liveness, StepError> {
    let req = request(config, ctx, t, key, "verify")?;
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
