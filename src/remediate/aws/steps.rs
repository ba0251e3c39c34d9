//! What the owner reads about an AWS incident: the next steps by state,
//! the dry run's plan, and `incidents show`'s lines.

use super::iam::{Iam, NoAdmin, QUARANTINE};
use super::{AwsData, AwsPlaybook};
use crate::config::Action;
use crate::remediate::ctx::Ctx;
use crate::store::{IncidentRow, Stage, State};

/// `incidents show`'s lines for what this playbook learnt.
pub(crate) fn details(row: &IncidentRow) -> Vec<(&'static str, String)> {
    let (data, _) = row.playbook_data.get::<AwsData>();
    let mut out = Vec::new();
    if let Some(u) = &data.user {
        out.push(("IAM user", u.clone()));
    }
    let mut done = Vec::new();
    if data.quarantined {
        done.push("AWSCompromisedKeyQuarantineV3 attached");
    }
    if data.inactive {
        done.push("key Inactive");
    }
    if data.deleted {
        done.push("key deleted");
    }
    if !done.is_empty() {
        out.push(("containment", done.join(", ")));
    }
    out.extend(data.rotation.details(row.id));
    out
}

/// What the owner should do now, by state.
pub(super) fn steps(row: &IncidentRow) -> Vec<String> {
    let (data, _) = row.playbook_data.get::<AwsData>();
    let user = data.user.as_deref().unwrap_or("the key's user");
    let key = &row.redacted;
    match row.state {
        State::WaitingManual => row.reason.iter().map(|r| format!("{r}.")).collect(),
        State::Contained => vec![format!(
            "keysentry attached AWSCompromisedKeyQuarantineV3 to IAM user {user} and made access key {key} Inactive (both reversible). Create a new access key for {user}, put it where the old one was used, then delete the old key in the IAM console; check CloudTrail for what the key did while it was exposed."
        )],
        State::Closed | State::Confirmed if data.rotation.new_redacted.is_some() => vec![format!(
            "keysentry replaced access key {key} of IAM user {user} with {} (handed to the consumers listed above) and deleted the old key. Check CloudTrail for what the old key did while it was exposed; detach AWSCompromisedKeyQuarantineV3 from {user} once you are done.",
            data.rotation.new_redacted.as_deref().unwrap_or("?")
        )],
        State::Closed | State::Confirmed => vec![format!(
            "keysentry quarantined IAM user {user} and deleted access key {key}. Create a new access key for whatever used it, and check CloudTrail for what the old key did while it was exposed; detach AWSCompromisedKeyQuarantineV3 from {user} once you are done."
        )],
        State::Rotated => vec![format!(
            "keysentry created access key {} for IAM user {user} and is handing it over; the old key {key} is quarantined and Inactive.",
            data.rotation.new_redacted.as_deref().unwrap_or("?")
        )],
        State::Revoked => vec![format!(
            "IAM accepted the delete of access key {key}: check in the IAM console that it is gone."
        )],
        State::Failed | State::Detected | State::Verified => vec![format!(
            "The key may still work: in the IAM console attach AWSCompromisedKeyQuarantineV3 to {user}, make access key {key} Inactive, then create a new key and delete the old one."
        )],
        _ => Vec::new(),
    }
}

/// The dry run: what a pass would do from the incident's stage on.
pub(super) fn describe(p: &AwsPlaybook, ctx: &Ctx<'_>) -> Vec<String> {
    let mut plan = Vec::new();
    let stage = ctx.row().stage;
    if stage == Stage::Detected {
        plan.push("verify: STS GetCallerIdentity signed with the key and its secret (when the secret was found next to it)".into());
    }
    let policy = ctx.policy();
    if policy == Action::Notify {
        plan.push("notify the owner; nothing changed at AWS (policy notify)".into());
        return plan;
    }
    if matches!(Iam::from_config(&p.aws), Err(NoAdmin::NotConfigured)) {
        plan.push("tell the owner the IAM console steps (no admin credentials configured: providers.aws.admin_key_id_env / admin_key_env)".into());
        return plan;
    }
    if matches!(stage, Stage::Detected | Stage::Verified) {
        plan.push("find the key's user: IAM GetAccessKeyLastUsed".into());
        plan.push(format!("quarantine: IAM AttachUserPolicy {QUARANTINE}"));
        plan.push("deactivate: IAM UpdateAccessKey Status=Inactive".into());
    }
    match policy {
        Action::Revoke | Action::Expire => {
            plan.push("delete: IAM DeleteAccessKey".into());
            plan.push("confirm: ListAccessKeys no longer lists the key, STS rejects it".into());
        }
        Action::Regenerate => {
            plan.push("regenerate: IAM CreateAccessKey, only with escrow or a consumer holding the key id; sealed in escrow".into());
            plan.push("propagate: the new secret access key to each consumer's secret_variable, the id to its variable, restart".into());
            plan.push("delete: IAM DeleteAccessKey of the old key; confirm: ListAccessKeys shows it gone and the new key Active".into());
        }
        Action::Freeze | Action::Notify => {}
    }
    plan
}
