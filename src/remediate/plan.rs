//! `remediation.mode: dry-run`: what a pass would do, from the incident's
//! current stage on, without calling anything.

use super::ctx::Ctx;
use super::policy::action_name;
use super::{propagate, revoke, tatum};
use crate::config::{Action, Consumer};

pub fn describe(ctx: &Ctx<'_>) -> Vec<String> {
    if ctx.row.provider == super::policy::TATUM {
        describe_tatum(ctx)
    } else {
        describe_template(ctx)
    }
}

fn past(ctx: &Ctx<'_>, stages: &[&str]) -> bool {
    !stages.contains(&ctx.row.stage.as_str())
}

fn describe_tatum(ctx: &Ctx<'_>) -> Vec<String> {
    let api = tatum::api_url(&ctx.inner.config);
    let cfg = ctx.inner.config.providers.tatum.clone().unwrap_or_default();
    let action = ctx.policy();
    let mut plan = Vec::new();
    if !past(ctx, &["detected"]) {
        plan.push(format!(
            "verify: GET {api}/v3/tatum/version (401 → not-live, stop)"
        ));
    }
    if action == Action::Notify {
        plan.push("notify the owner; no freeze, no rotation (policy notify)".into());
        return plan;
    }
    if !past(ctx, &["detected", "verified"]) {
        plan.push(format!("freeze: PUT {api}/v3/tatum/freeze"));
    }
    if !past(ctx, &["detected", "verified", "contained"]) {
        plan.push(format!(
            "inventory: GET {api}/v3/subscription/count, GET {api}/v3/ledger/account/count"
        ));
    }
    if action == Action::Freeze {
        plan.push("stop at frozen (policy freeze)".into());
        return plan;
    }
    let expire = matches!(action, Action::Expire | Action::Revoke);
    if expire && !cfg.force_expire {
        plan.push(
            "expire becomes regenerate if any subscription or virtual account is bound".into(),
        );
    }
    let (verb, template) = if expire {
        ("expire", cfg.management.expire.as_ref())
    } else {
        (
            action_name(Action::Regenerate),
            cfg.management.regenerate.as_ref(),
        )
    };
    match template {
        Some(t) => plan.push(format!("{verb}: {} {}", t.method.to_ascii_uppercase(), t.url)),
        None => plan.push(format!(
            "{verb}: by the owner in the Tatum Dashboard (no management template); poll verify until the old key answers 401"
        )),
    }
    if !expire {
        plan.extend(
            cfg.consumers
                .iter()
                .map(|c| consumer_plan(c, &ctx.row.fingerprint)),
        );
    }
    plan.push(if expire {
        "confirm: the old key answers 401".into()
    } else {
        "confirm: the old key answers 401 and the new key 200".into()
    });
    plan
}

fn consumer_plan(c: &Consumer, leaked: &str) -> String {
    let holds = match propagate::current_fingerprint(c) {
        Err(e @ propagate::PropagateError::Refused { .. }) => return format!("refuse {e}"),
        current => current
            .ok()
            .flatten()
            .is_some_and(|fp| fp.as_str() == leaked),
    };
    if !holds {
        return format!(
            "leave consumer {} alone: {} does not hold the leaked key",
            c.name,
            c.env_file.display()
        );
    }
    let restart = if c.restart.is_empty() {
        String::new()
    } else {
        format!(", then run `{}`", c.restart.join(" "))
    };
    format!(
        "propagate: write the new key to {} ({}){restart}",
        c.env_file.display(),
        c.variable
    )
}

fn describe_template(ctx: &Ctx<'_>) -> Vec<String> {
    let (verify_t, revoke_t) = match ctx.inner.rules.get(&ctx.row.rule_id) {
        Some(r) => (r.spec.verify.clone(), r.spec.revoke.clone()),
        None => (None, None),
    };
    let api = revoke::api_url(&ctx.inner.config, &ctx.row.provider);
    let show = |t: &crate::rules::HttpTemplate| {
        format!(
            "{} {}",
            t.method.to_ascii_uppercase(),
            t.url
                .replace("{{api_url}}", &api)
                .replace("{{ api_url }}", &api)
        )
    };
    let mut plan = Vec::new();
    if !past(ctx, &["detected"]) {
        plan.push(match &verify_t {
            Some(t) => format!("verify: {}", show(t)),
            None => "verify: none (the rule has no verify action)".into(),
        });
    }
    if ctx.policy() == Action::Notify {
        plan.push("notify the owner; no revoke (policy notify)".into());
        return plan;
    }
    plan.push(match &revoke_t {
        Some(t) => format!("revoke: {}", show(t)),
        None => format!(
            "revoke: by the owner in {}'s settings (the rule has no revoke action)",
            ctx.row.provider
        ),
    });
    if verify_t.is_some() {
        plan.push("confirm: verify answers dead".into());
    }
    plan
}
