//! `remediation.mode: dry-run` for Tatum: what a pass would do from the
//! incident's stage on, without calling anything.

use super::super::ctx::Ctx;
use super::super::policy::action_name;
use super::super::propagate;
use super::TatumPlaybook;
use crate::config::{Action, Consumer};
use crate::scan::Fingerprint;
use crate::store::Stage;

fn past(ctx: &Ctx<'_>, stages: &[Stage]) -> bool {
    !stages.contains(&ctx.row().stage)
}

pub(super) fn describe(p: &TatumPlaybook, ctx: &Ctx<'_>) -> Vec<String> {
    let api = &p.api;
    let cfg = &p.tatum;
    let action = ctx.policy();
    let mut plan = Vec::new();
    if !past(ctx, &[Stage::Detected]) {
        plan.push(format!(
            "verify: GET {api}/v3/tatum/version (401 → not-live, stop)"
        ));
    }
    if action == Action::Notify {
        plan.push("notify the owner; no freeze, no rotation (policy notify)".into());
        return plan;
    }
    if !past(ctx, &[Stage::Detected, Stage::Verified]) {
        plan.push(format!("freeze: PUT {api}/v3/tatum/freeze"));
    }
    if !past(ctx, &[Stage::Detected, Stage::Verified, Stage::Contained]) {
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
    let leaked = &ctx.row().fingerprint;
    let held = cfg
        .consumers
        .iter()
        .any(|c| matches!(propagate::current_fingerprint(c), Ok(Some(fp)) if fp == *leaked));
    let escrow = ctx.escrow_ready();
    if !expire && template.is_some() {
        match (&escrow, held) {
            (Err(e), _) => plan.push(format!("stop before {verb}: {e}")),
            (Ok(false), false) => {
                plan.push(format!("hold back {verb}: no consumer holds this key and no escrow is configured (the new key would go nowhere); alert the owner"));
                return plan;
            }
            (Ok(true), _) => {
                plan.push("escrow: seal the new key with age before any consumer is written".into())
            }
            (Ok(false), true) => {}
        }
    }
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
                .map(|c| consumer_plan(c, &ctx.row().fingerprint)),
        );
    }
    plan.push(if expire {
        "confirm: the old key answers 401".into()
    } else {
        "confirm: the old key answers 401 and the new key 200".into()
    });
    plan
}

fn consumer_plan(c: &Consumer, leaked: &Fingerprint) -> String {
    let holds = match propagate::current_fingerprint(c) {
        Err(e @ propagate::PropagateError::Refused { .. }) => return format!("refuse {e}"),
        current => current.ok().flatten().is_some_and(|fp| fp == *leaked),
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
