//! `remediation.mode: dry-run` for Tatum: what a pass would do from the
//! incident's stage on, without calling anything.

use super::super::ctx::Ctx;
use super::super::policy::action_name;
use super::super::propagate;
use super::TatumPlaybook;
use crate::config::{Action, Consumer, ConsumerKind};
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
    // A dry run reads no remote consumer: one may hold the key.
    let held = cfg.consumers.iter().any(|c| match c.kind() {
        Ok(ConsumerKind::EnvFile) => matches!(
            propagate::current_value(c),
            Ok(Some(v)) if v.fingerprint() == *leaked
        ),
        Ok(_) => true,
        Err(_) => false,
    });
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
    let place = propagate::place(c);
    // Remote consumers are not read in a dry run: it calls nothing.
    let holds = match c.kind() {
        Ok(ConsumerKind::EnvFile) => match propagate::current_value(c) {
            Err(e) if e.is_refused() => return format!("refuse {e}"),
            current => current
                .ok()
                .flatten()
                .is_some_and(|v| v.fingerprint() == *leaked),
        },
        Ok(ConsumerKind::GithubActions) => true,
        Ok(_) => {
            return format!(
                "propagate: if {place} holds the leaked key, write the new key there and read it back{}",
                restart_plan(c)
            )
        }
        Err(why) => return format!("consumer {}: {why}", c.name),
    };
    if !holds {
        return format!(
            "leave consumer {} alone: {place} does not hold the leaked key",
            c.name
        );
    }
    format!("propagate: write the new key to {place}{}", restart_plan(c))
}

fn restart_plan(c: &Consumer) -> String {
    let what = super::super::consumer::restart::describe(c);
    if what.is_empty() {
        String::new()
    } else {
        format!(", then {}", what.join(", "))
    }
}
