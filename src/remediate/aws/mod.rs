//! The AWS playbook, for a leaked access key id (`aws.access-key-id`; the
//! finding's pair is its secret access key): verify (the rule's STS
//! template, when the pair is known) → find the key's user
//! (`GetAccessKeyLastUsed`) → contain: attach AWS's compromised-key
//! quarantine policy to the user (`AttachUserPolicy`) and make the key
//! Inactive (`UpdateAccessKey`) → under `revoke`, delete it
//! (`DeleteAccessKey`) → confirm → close.
//!
//! All IAM calls are signed with the owner's admin credentials
//! (`providers.aws.admin_key_id_env` / `admin_key_env`). Without them
//! nothing is called after verify: the owner is told the console steps and
//! which settings let keysentry do them. Each change is checked first (the
//! policy in `ListAttachedUserPolicies`, the key's Status in
//! `ListAccessKeys`) and only sent when not already in effect, so a change
//! whose answer was lost is verified before it is ever sent again.
//!
//! `regenerate` (rotate.rs) contains first, then creates the new key
//! (`CreateAccessKey`, only when it has somewhere to go), seals it in
//! escrow, hands it to the consumers and deletes the old key. The other AWS
//! rules (the secret access key alone, session tokens, Bedrock keys) keep
//! the template playbook.

mod iam;
mod rotate;
mod steps;

use super::ctx::Ctx;
use super::playbook::{BoxFuture, Capabilities, Playbook};
use super::revoke::TemplatePlaybook;
use super::template_call::{verify, Liveness};
use super::StepError;
use crate::config::{Action, Config, SimpleProviderConfig};
use crate::rules::RuleSet;
use crate::scan::Secret;
use crate::store::{IncidentRow, Stage, State};
use iam::{first, members, refused, user_name, Answer, Iam, NoAdmin, QUARANTINE};
pub(crate) use steps::details;
use steps::{describe, steps};

/// The provider name of AWS's rules.
pub(crate) const PROVIDER: &str = "aws";

/// The rule whose keys this playbook contains.
const KEY_RULE: &str = "aws.access-key-id";

/// What this playbook keeps about an incident: the key's user (a name, not
/// a credential) and what is in effect. Never a key.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct AwsData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub quarantined: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub inactive: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// A create is held back: no consumer holds the key, no escrow.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_destination: bool,
    /// Fingerprints of the user's key ids before the first create.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub before: Vec<String>,
    /// The new key id's fingerprint and redacted form (never the key),
    /// whether the new pair is in escrow, what each consumer got.
    #[serde(flatten)]
    pub rotation: super::handover::Rotation,
}

pub(crate) struct AwsPlaybook {
    config: Config,
    aws: SimpleProviderConfig,
    rules: RuleSet,
    templates: TemplatePlaybook,
}

impl AwsPlaybook {
    pub fn new(config: &Config, rules: RuleSet) -> AwsPlaybook {
        AwsPlaybook {
            config: config.clone(),
            aws: config
                .providers
                .others
                .get(PROVIDER)
                .cloned()
                .unwrap_or_default(),
            templates: TemplatePlaybook::new(config, rules.clone()),
            rules,
        }
    }
}

fn ours(row: &IncidentRow) -> bool {
    row.rule_id == KEY_RULE
}

impl Playbook for AwsPlaybook {
    fn capabilities(&self) -> Capabilities {
        Capabilities {
            verify: true,
            contain: true,
            rotate: true,
            revoke: true,
            hand_over: false,
        }
    }

    fn default_action(&self) -> Action {
        Action::Freeze
    }

    fn settled(&self, row: &IncidentRow, action: Action) -> bool {
        if !ours(row) {
            return self.templates.settled(row, action);
        }
        match row.state {
            State::Verified | State::Detected => action == Action::Notify,
            State::Contained => action == Action::Freeze,
            _ => false,
        }
    }

    fn run<'a>(&'a self, ctx: &'a mut Ctx<'_>) -> BoxFuture<'a, Result<(), StepError>> {
        if !ours(ctx.row()) {
            return self.templates.run(ctx);
        }
        Box::pin(run(self, ctx))
    }

    fn plan(&self, ctx: &Ctx<'_>) -> Vec<String> {
        if !ours(ctx.row()) {
            return self.templates.plan(ctx);
        }
        describe(self, ctx)
    }

    fn next_steps(&self, row: &IncidentRow) -> Vec<String> {
        if !ours(row) {
            return self.templates.next_steps(row);
        }
        steps(row)
    }
}

enum Flow {
    Next,
    Stop,
}

async fn run(p: &AwsPlaybook, ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    loop {
        let flow = match ctx.row().stage {
            Stage::Detected => verify_leaked(p, ctx).await?,
            Stage::Verified => contain(p, ctx).await?,
            Stage::Contained => after_containment(p, ctx).await?,
            Stage::Revoked | Stage::Expired => confirm(p, ctx).await?,
            Stage::Confirmed => {
                ctx.advance(IncidentRow::close)?;
                Flow::Stop
            }
            Stage::Rotated => rotate::hand_over(p, ctx).await?,
            Stage::Propagated => after_propagation(p, ctx).await?,
            Stage::Inventoried | Stage::Closed | Stage::NotLive => Flow::Stop,
        };
        if let Flow::Stop = flow {
            return Ok(());
        }
    }
}

/// The rule's STS verify, when the pair is known.
async fn liveness(
    p: &AwsPlaybook,
    ctx: &mut Ctx<'_>,
    key: &Secret,
    step: &str,
) -> Result<Option<Liveness>, StepError> {
    let template = p.rules.get(KEY_RULE).and_then(|r| r.spec.verify.clone());
    match (template, key.pair()) {
        (Some(t), Some(_)) => Ok(Some(verify(&p.config, ctx, &t, key, step).await?)),
        _ => Ok(None),
    }
}

async fn verify_leaked(p: &AwsPlaybook, ctx: &mut Ctx<'_>) -> Result<Flow, StepError> {
    let Some(key) = ctx.secret() else {
        return Ok(Flow::Stop);
    };
    match liveness(p, ctx, &key, "verify").await? {
        Some(Liveness::Live) => {
            ctx.note("verify", "live (STS GetCallerIdentity answered 200)");
            ctx.advance(IncidentRow::verify)?;
        }
        Some(Liveness::Dead) => {
            ctx.note("verify", "dead: AWS rejects the key (403); nothing changed");
            ctx.advance(IncidentRow::not_live)?;
            return Ok(Flow::Stop);
        }
        None => {
            ctx.note(
                "verify",
                "skipped: no secret access key was found next to the key id; IAM tells whether it is active",
            );
            ctx.advance(IncidentRow::skip_verify)?;
        }
    }
    Ok(Flow::Next)
}

/// What the owner does by hand when keysentry has no admin credentials.
fn by_hand(redacted: &str) -> String {
    format!(
        "keysentry has no AWS admin credentials, so it changed nothing at AWS: in the IAM console open the user that owns access key {redacted} (Users → Security credentials), attach the AWS managed policy AWSCompromisedKeyQuarantineV3 to the user, make the access key Inactive, then create a new key, put it where the old one was used and delete the old one. To let keysentry quarantine and deactivate leaked keys itself, set providers.aws.admin_key_id_env and providers.aws.admin_key_env to the variables holding an admin access key id and secret access key"
    )
}

async fn contain(p: &AwsPlaybook, ctx: &mut Ctx<'_>) -> Result<Flow, StepError> {
    let policy = ctx.policy();
    if policy == Action::Notify {
        return Ok(Flow::Stop);
    }
    let Some(key) = ctx.secret() else {
        return Ok(Flow::Stop);
    };
    let iam = match Iam::from_config(&p.aws) {
        Ok(iam) => iam,
        Err(NoAdmin::NotConfigured) => {
            let reason = by_hand(&ctx.row().redacted);
            ctx.wait(State::WaitingManual, reason)?;
            return Ok(Flow::Stop);
        }
        Err(NoAdmin::Broken(why)) => return Err(ctx.provider_error("admin credentials", why)),
    };
    let Some(user) = find_user(&iam, ctx, &key).await? else {
        return Ok(Flow::Stop);
    };
    let gone = quarantine_and_deactivate(&iam, ctx, &user, &key).await?;
    if policy == Action::Revoke {
        if !gone {
            delete(&iam, ctx, &user, &key).await?;
        }
        ctx.set_action("revoke");
        ctx.advance(IncidentRow::revoke)?;
        return Ok(Flow::Next);
    }
    ctx.set_action("freeze");
    ctx.advance(IncidentRow::contain)?;
    Ok(Flow::Next)
}

/// The IAM client, the leaked key and its user for the stages after
/// containment (`None`: nothing to do in this pass).
fn later(p: &AwsPlaybook, ctx: &Ctx<'_>) -> Result<Option<(Iam, Secret, String)>, StepError> {
    let iam = match Iam::from_config(&p.aws) {
        Ok(iam) => iam,
        Err(NoAdmin::NotConfigured) => return Ok(None),
        Err(NoAdmin::Broken(why)) => return Err(ctx.provider_error("admin credentials", why)),
    };
    let (Some(key), Some(user)) = (ctx.secret(), ctx.data::<AwsData>().user) else {
        return Ok(None);
    };
    Ok(Some((iam, key, user)))
}

/// Contained: `freeze` is done; `revoke` (a policy changed since) deletes
/// the key; `regenerate` creates the new one.
async fn after_containment(p: &AwsPlaybook, ctx: &mut Ctx<'_>) -> Result<Flow, StepError> {
    let policy = ctx.policy();
    if matches!(policy, Action::Freeze | Action::Notify) {
        return Ok(Flow::Stop);
    }
    let Some((iam, key, user)) = later(p, ctx)? else {
        return Ok(Flow::Stop);
    };
    if policy == Action::Regenerate {
        return rotate::create(p, &iam, ctx, &user).await;
    }
    if !ctx.data::<AwsData>().deleted {
        delete(&iam, ctx, &user, &key).await?;
    }
    ctx.set_action("revoke");
    ctx.advance(IncidentRow::inventory)?;
    ctx.advance(IncidentRow::expire)?;
    Ok(Flow::Next)
}

/// Propagated: the old key is deleted and the result confirmed.
async fn after_propagation(p: &AwsPlaybook, ctx: &mut Ctx<'_>) -> Result<Flow, StepError> {
    let Some((iam, key, user)) = later(p, ctx)? else {
        return Ok(Flow::Stop);
    };
    rotate::finish(&iam, ctx, &user, &key).await
}

/// The key's user from `GetAccessKeyLastUsed`; `None` (and the incident
/// waits for its owner) when the key is not in the admin's account.
async fn find_user(
    iam: &Iam,
    ctx: &mut Ctx<'_>,
    key: &Secret,
) -> Result<Option<String>, StepError> {
    if let Some(user) = ctx.data::<AwsData>().user {
        return Ok(Some(user));
    }
    const ACTION: &str = "GetAccessKeyLastUsed";
    let step = "aws:find-user";
    let answer = iam
        .call(ctx, step, ACTION, &[("AccessKeyId", key.expose())], false)
        .await?;
    let xml = match answer {
        Answer::Ok(xml) => xml,
        Answer::Err { code, .. } if code == "NoSuchEntity" => {
            let reason = format!(
                "access key {} is not in the AWS account of the admin credentials (GetAccessKeyLastUsed: NoSuchEntity): it belongs to another account, or was deleted; whoever owns that account must deactivate it there (keysentry checks again on its next poll)",
                ctx.row().redacted
            );
            ctx.note(step, "not in this account (NoSuchEntity)");
            ctx.wait(State::WaitingManual, reason)?;
            return Ok(None);
        }
        Answer::Err { status, code } => return Err(refused(ctx, step, ACTION, status, &code)),
    };
    let Some(user) = first(&xml, "UserName").and_then(|u| user_name(&u)) else {
        return Err(ctx.provider_error(
            step,
            "IAM's GetAccessKeyLastUsed answer names no user (check providers.aws.api_url)",
        ));
    };
    ctx.note(step, format!("the key belongs to IAM user {user}"));
    let mut data: AwsData = ctx.data();
    data.user = Some(user.clone());
    ctx.set_data(&data);
    Ok(Some(user))
}

/// A state at AWS a change brings about, checked before the change is sent.
#[derive(Clone, Copy)]
enum Want {
    Quarantined,
    Inactive,
    Deleted,
}

/// The key's status in `ListAccessKeys` (`None`: not listed, i.e. deleted).
async fn key_status(
    iam: &Iam,
    ctx: &mut Ctx<'_>,
    user: &str,
    key: &Secret,
) -> Result<Option<String>, StepError> {
    const ACTION: &str = "ListAccessKeys";
    let step = "aws:list-keys";
    match iam
        .call(ctx, step, ACTION, &[("UserName", user)], false)
        .await?
    {
        Answer::Ok(xml) => {
            let rows = members(&xml, "AccessKeyMetadata", &["AccessKeyId", "Status"]).ok_or_else(|| {
                ctx.provider_error(step, "IAM's ListAccessKeys answer is not IAM's XML (check providers.aws.api_url)")
            })?;
            Ok(rows
                .into_iter()
                .find(|r| r[0] == key.expose())
                .map(|r| r[1].clone()))
        }
        Answer::Err { code, .. } if code == "NoSuchEntity" => Ok(None),
        Answer::Err { status, code } => Err(refused(ctx, step, ACTION, status, &code)),
    }
}

/// Whether the quarantine policy is attached to `user`.
async fn attached(iam: &Iam, ctx: &mut Ctx<'_>, user: &str) -> Result<bool, StepError> {
    const ACTION: &str = "ListAttachedUserPolicies";
    let step = "aws:list-policies";
    let mut marker: Option<String> = None;
    // IAM allows 20 managed policies a user; pages are 100.
    for _ in 0..10 {
        let mut params = vec![("UserName", user)];
        if let Some(m) = &marker {
            params.push(("Marker", m.as_str()));
        }
        let xml = match iam.call(ctx, step, ACTION, &params, false).await? {
            Answer::Ok(xml) => xml,
            Answer::Err { status, code } => return Err(refused(ctx, step, ACTION, status, &code)),
        };
        let rows = members(&xml, "AttachedPolicies", &["PolicyArn"]).ok_or_else(|| {
            ctx.provider_error(step, "IAM's ListAttachedUserPolicies answer is not IAM's XML (check providers.aws.api_url)")
        })?;
        if rows.iter().any(|r| r[0] == QUARANTINE) {
            return Ok(true);
        }
        match (first(&xml, "IsTruncated").as_deref(), first(&xml, "Marker")) {
            (Some("true"), Some(m)) if !m.is_empty() => marker = Some(m),
            _ => return Ok(false),
        }
    }
    Ok(false)
}

/// Whether `want` is in effect at AWS now.
async fn holds(
    iam: &Iam,
    ctx: &mut Ctx<'_>,
    user: &str,
    key: &Secret,
    want: Want,
) -> Result<bool, StepError> {
    Ok(match want {
        Want::Quarantined => attached(iam, ctx, user).await?,
        Want::Inactive => key_status(iam, ctx, user, key).await?.as_deref() != Some("Active"),
        Want::Deleted => key_status(iam, ctx, user, key).await?.is_none(),
    })
}

/// Brings `want` about with `action`: checked first, sent only when not in
/// effect, and after an answer that may hide the change (timeout, 5xx)
/// checked again before anything is sent again.
async fn change(
    iam: &Iam,
    ctx: &mut Ctx<'_>,
    user: &str,
    key: &Secret,
    want: Want,
    action: &str,
    params: &[(&str, &str)],
) -> Result<&'static str, StepError> {
    let step = match want {
        Want::Quarantined => "aws:quarantine",
        Want::Inactive => "aws:deactivate",
        Want::Deleted => "aws:delete",
    };
    let mut attempt = 0;
    loop {
        if holds(iam, ctx, user, key, want).await? {
            return Ok(if attempt == 0 {
                "already in effect"
            } else {
                "took effect although the answer was lost"
            });
        }
        attempt += 1;
        let reason = match iam.call(ctx, step, action, params, true).await {
            Ok(Answer::Ok(_)) => return Ok("ok"),
            Ok(Answer::Err { status, code }) => {
                return Err(refused(ctx, step, action, status, &code))
            }
            Err(StepError::Uncertain { reason, .. }) => reason,
            Err(e) => return Err(e),
        };
        if attempt >= ctx.retry().max_attempts {
            return Err(ctx.provider_error(
                step,
                format!("{reason} ({attempt} attempts; IAM shows it did not take effect); will retry on the next run"),
            ));
        }
        tokio::time::sleep(ctx.retry().delay(attempt, None)).await;
    }
}

/// Attaches the quarantine policy and makes the key Inactive. `true` when
/// an earlier pass deleted the key already.
async fn quarantine_and_deactivate(
    iam: &Iam,
    ctx: &mut Ctx<'_>,
    user: &str,
    key: &Secret,
) -> Result<bool, StepError> {
    let mut data: AwsData = ctx.data();
    if !data.quarantined {
        let params = [("UserName", user), ("PolicyArn", QUARANTINE)];
        let how = change(
            iam,
            ctx,
            user,
            key,
            Want::Quarantined,
            "AttachUserPolicy",
            &params,
        )
        .await?;
        ctx.note(
            "quarantine",
            format!("AWSCompromisedKeyQuarantineV3 attached to IAM user {user} ({how})"),
        );
        data.quarantined = true;
        ctx.set_data(&data);
    }
    if !data.inactive {
        let params = [
            ("UserName", user),
            ("AccessKeyId", key.expose()),
            ("Status", "Inactive"),
        ];
        let how = change(
            iam,
            ctx,
            user,
            key,
            Want::Inactive,
            "UpdateAccessKey",
            &params,
        )
        .await?;
        ctx.note(
            "deactivate",
            format!("access key {} set Inactive ({how})", ctx.row().redacted),
        );
        data.inactive = true;
        ctx.set_data(&data);
    }
    // A key IAM no longer lists counts as Inactive here; a delete then
    // finds it gone ("already in effect").
    Ok(data.deleted)
}

async fn delete(iam: &Iam, ctx: &mut Ctx<'_>, user: &str, key: &Secret) -> Result<(), StepError> {
    let params = [("UserName", user), ("AccessKeyId", key.expose())];
    let how = change(
        iam,
        ctx,
        user,
        key,
        Want::Deleted,
        "DeleteAccessKey",
        &params,
    )
    .await?;
    ctx.note(
        "delete",
        format!("access key {} deleted ({how})", ctx.row().redacted),
    );
    let mut data: AwsData = ctx.data();
    data.deleted = true;
    ctx.set_data(&data);
    Ok(())
}

/// After a delete: IAM no longer lists the key, and STS rejects it.
async fn confirm(p: &AwsPlaybook, ctx: &mut Ctx<'_>) -> Result<Flow, StepError> {
    let Some(key) = ctx.secret() else {
        ctx.note("confirm", "skipped: no copy of the key in this process");
        ctx.advance(IncidentRow::confirm)?;
        return Ok(Flow::Next);
    };
    if let Ok(iam) = Iam::from_config(&p.aws) {
        if let Some(user) = ctx.data::<AwsData>().user {
            if key_status(&iam, ctx, &user, &key).await?.is_some() {
                ctx.wait(State::Revoked, "IAM accepted the delete but still lists the key; keysentry checks again on the next run".into())?;
                return Ok(Flow::Stop);
            }
        }
    }
    match liveness(p, ctx, &key, "confirm").await? {
        Some(Liveness::Live) => {
            ctx.wait(State::Revoked, "IAM deleted the key but STS still accepts it; keysentry checks again on the next run".into())?;
            return Ok(Flow::Stop);
        }
        Some(Liveness::Dead) => ctx.note("confirm", "the key is gone from IAM and STS rejects it"),
        None => ctx.note("confirm", "the key is gone from IAM"),
    }
    ctx.advance(IncidentRow::confirm)?;
    Ok(Flow::Next)
}
