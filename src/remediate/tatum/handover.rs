//! Handing the new key over: propagate it to every consumer that holds the
//! leaked key, restart them, confirm both keys with Tatum. Also the entry
//! point of `tatum set-key`.

use super::super::ctx::Ctx;
use super::super::playbook::HandOverError;
use super::super::{new_key, propagate, StepError};
use super::{key_in, run, verify, Flow, Liveness, TatumData, TatumPlaybook};
use crate::config::Consumer;
use crate::rules::RuleSet;
use crate::scan::{Fingerprint, Secret};
use crate::store::{IncidentRow, Outcome, Stage, State};

/// What one hand-over did at one configured consumer (kept in the
/// incident's data, shown by `incidents show` and the alert).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct ConsumerReport {
    pub name: String,
    /// Holds the new key, written by keysentry.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub written: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub restarted: bool,
    /// Confirm read it back: it holds exactly the new key.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub verified: bool,
    /// Refused or failed, and why (never a key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
    /// Left alone, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

impl std::fmt::Display for ConsumerReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut done = Vec::new();
        if self.written {
            done.push("written");
        }
        if self.verified {
            done.push("verified");
        }
        if self.restarted {
            done.push("restarted");
        }
        write!(f, "{}: ", self.name)?;
        match (&self.failed, &self.skipped) {
            (Some(why), _) if done.is_empty() => write!(f, "FAILED ({why})"),
            (Some(why), _) => write!(f, "{}, then FAILED ({why})", done.join(", ")),
            (None, _) if !done.is_empty() => f.write_str(&done.join(", ")),
            (None, Some(why)) => write!(f, "left alone ({why})"),
            (None, None) => f.write_str("not written"),
        }
    }
}

/// What a configured consumer's env file holds now.
enum Holds {
    Old,
    New,
    /// Another key, none, or no file: left alone (why).
    Nothing(String),
    /// No safe place for a key (a symlink, writable by others): never read,
    /// never written.
    Refused(propagate::PropagateError),
    /// Could not be read: it might hold the leaked key.
    Unreadable(propagate::PropagateError),
}

fn holds(c: &Consumer, old_fp: &Fingerprint, new_fp: Option<&Fingerprint>) -> Holds {
    match propagate::current_fingerprint(c) {
        Ok(Some(fp)) if fp == *old_fp => Holds::Old,
        Ok(Some(fp)) if Some(&fp) == new_fp => Holds::New,
        Ok(Some(_)) => Holds::Nothing("it holds another key".into()),
        Ok(None) => Holds::Nothing(format!("{} is not set there", c.variable)),
        // A file that does not exist holds no key.
        Err(propagate::PropagateError::Read { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            Holds::Nothing(format!("{} does not exist", c.env_file.display()))
        }
        Err(e @ propagate::PropagateError::Refused { .. }) => Holds::Refused(e),
        Err(e) => Holds::Unreadable(e),
    }
}

/// The new key when this pass does not hold it: from escrow (a restart, a
/// retry), else from a consumer an earlier pass wrote it to.
fn recover_new_key(
    p: &TatumPlaybook,
    ctx: &mut Ctx<'_>,
    old_fp: &Fingerprint,
) -> Result<Option<Secret>, StepError> {
    let mut data: TatumData = ctx.data();
    if let Some(key) = ctx.escrowed_key()? {
        let fp = key.fingerprint();
        if data.new_fingerprint.as_ref().map_or(true, |f| *f == fp) {
            let detail = format!("new key {} opened from escrow", key.redacted());
            let entry = ctx.journal_start("escrow:open")?;
            ctx.journal_complete(entry, Outcome::Ok, None, &detail)?;
            ctx.note("escrow:open", detail);
            if data.new_fingerprint.is_none() {
                // Sealed just before a crash that came before the rotation
                // was saved.
                data.new_fingerprint = Some(fp);
                data.new_redacted = Some(key.redacted());
                data.escrowed = true;
                ctx.set_data(&data);
            }
            return Ok(Some(key));
        }
    }
    let Some(new_fp) = data.new_fingerprint else {
        return Ok(None);
    };
    let written: Vec<Consumer> = p
        .tatum
        .consumers
        .iter()
        .filter(|c| matches!(holds(c, old_fp, Some(&new_fp)), Holds::New))
        .cloned()
        .collect();
    Ok(key_in(&written, &new_fp))
}

pub(super) async fn hand_over(p: &TatumPlaybook, ctx: &mut Ctx<'_>) -> Result<Flow, StepError> {
    let old_fp = ctx.row().fingerprint.clone();
    if ctx.new_secret().is_none() {
        let recovered = recover_new_key(p, ctx, &old_fp)?;
        ctx.set_new_secret(recovered);
    }
    let new_fp = ctx.data::<TatumData>().new_fingerprint;
    let found: Vec<(Consumer, Holds)> = p
        .tatum
        .consumers
        .iter()
        .map(|c| (c.clone(), holds(c, &old_fp, new_fp.as_ref())))
        .collect();
    let Some(new) = ctx.new_secret() else {
        return without_new_key(ctx, &found);
    };
    let mut reports = Vec::new();
    for (c, h) in found {
        let mut r = ConsumerReport {
            name: c.name.clone(),
            ..ConsumerReport::default()
        };
        match h {
            Holds::Old => match write_new_key(ctx, &c, &old_fp, &new) {
                Ok(()) => {
                    r.written = true;
                    restart(ctx, &c, &mut r).await?;
                }
                Err(e) => r.failed = Some(e.to_string()),
            },
            Holds::New => {
                r.written = true;
                // Written by a pass that stopped before the restart completed.
                if ctx.step_done(&format!("restart:{}", c.name))? {
                    r.restarted = !c.restart.is_empty();
                } else {
                    restart(ctx, &c, &mut r).await?;
                }
            }
            Holds::Nothing(why) => {
                ctx.note(&format!("propagate:{}", c.name), format!("skipped: {why}"));
                r.skipped = Some(why);
            }
            Holds::Refused(e) | Holds::Unreadable(e) => {
                ctx.note(&format!("propagate:{}", c.name), e.to_string());
                r.failed = Some(e.to_string());
            }
        }
        reports.push(r);
    }
    let failed: Vec<String> = reports
        .iter()
        .filter(|r| r.failed.is_some())
        .map(|r| r.to_string())
        .collect();
    let mut data: TatumData = ctx.data();
    data.consumers = reports;
    let escrowed = data.escrowed;
    ctx.set_data(&data);
    if !failed.is_empty() {
        // The others have the new key; this one gets it on the next pass,
        // from escrow, once what stopped it is fixed.
        let from = if escrowed {
            "the new key is in escrow and keysentry writes it there on its next retry"
        } else {
            "keysentry retries while this process runs; otherwise finish with `keysentry tatum set-key`"
        };
        return Err(ctx.provider_error(
            "propagate",
            format!(
                "the new key could not be handed to {}; {from}",
                failed.join("; ")
            ),
        ));
    }
    ctx.advance(IncidentRow::propagate)?;
    Ok(Flow::Next)
}

/// The key was regenerated but this process has no new key (its answer
/// was lost, or the owner regenerated in the Dashboard).
fn without_new_key(ctx: &mut Ctx<'_>, found: &[(Consumer, Holds)]) -> Result<Flow, StepError> {
    let waiting: Vec<&str> = found
        .iter()
        .filter(|(_, h)| !matches!(h, Holds::Nothing(_)))
        .map(|(c, _)| c.name.as_str())
        .collect();
    if waiting.is_empty() {
        ctx.note(
            "propagate",
            "no consumer held the leaked key: the new key was written nowhere",
        );
        ctx.advance(IncidentRow::propagate)?;
        return Ok(Flow::Next);
    }
    let names: Vec<&str> = found
        .iter()
        .filter(|(_, h)| matches!(h, Holds::Old))
        .map(|(c, _)| c.name.as_str())
        .collect();
    let mut reason = format!(
        "the key was regenerated but keysentry does not have the new key; copy it from the Tatum Dashboard and run `keysentry tatum set-key {}` (it will update: {})",
        ctx.row().id,
        if names.is_empty() { "no consumer".to_string() } else { names.join(", ") }
    );
    for (_, h) in found {
        if let Holds::Refused(e) = h {
            reason.push_str(&format!("; {e}"));
        }
    }
    ctx.wait(State::WaitingManual, reason)?;
    Ok(Flow::Stop)
}

fn write_new_key(
    ctx: &mut Ctx<'_>,
    c: &Consumer,
    old_fp: &Fingerprint,
    new: &Secret,
) -> Result<(), StepError> {
    let step = format!("propagate:{}", c.name);
    let entry = ctx.journal_start(&step)?;
    let written = propagate::rewrite(c, old_fp, new);
    let (outcome, detail) = match &written {
        Ok(_) => (Outcome::Ok, c.env_file.display().to_string()),
        Err(e) => (Outcome::Failed, e.to_string()),
    };
    ctx.journal_complete(entry, outcome, None, &detail)?;
    if let Err(e) = written {
        ctx.note(&step, e.to_string());
        return Err(e.into());
    }
    let what = format!(
        "wrote the new key to {} ({})",
        c.env_file.display(),
        c.variable
    );
    ctx.note(&step, what);
    Ok(())
}

/// Runs the consumer's restart; a failure is the consumer's, recorded in
/// its report (the others still get the key). Only the store failing is an
/// error of the pass.
async fn restart(
    ctx: &mut Ctx<'_>,
    c: &Consumer,
    report: &mut ConsumerReport,
) -> Result<(), StepError> {
    if c.restart.is_empty() {
        return Ok(());
    }
    let step = format!("restart:{}", c.name);
    let entry = ctx.journal_start(&step)?;
    let ran = propagate::restart(c, ctx.restart_timeout()).await;
    let (outcome, detail) = match &ran {
        Ok(_) => (Outcome::Ok, c.restart.join(" ")),
        Err(e) => (Outcome::Failed, e.to_string()),
    };
    ctx.journal_complete(entry, outcome, None, &detail)?;
    match ran {
        Ok(_) => {
            report.restarted = true;
            ctx.note(&step, format!("ran `{}`", c.restart.join(" ")));
        }
        Err(e) => {
            ctx.note(&step, e.to_string());
            report.failed = Some(e.to_string());
        }
    }
    Ok(())
}

pub(super) async fn confirm(p: &TatumPlaybook, ctx: &mut Ctx<'_>) -> Result<Flow, StepError> {
    match ctx.secret() {
        Some(old) => match verify(p, ctx, &old, "confirm:old").await? {
            Liveness::Dead => ctx.note("confirm:old", "old key answers 401"),
            _ => {
                let state = ctx.row().state;
                ctx.wait(
                    state,
                    "the old key still works at Tatum; keysentry checks again on the next run"
                        .into(),
                )?;
                return Ok(Flow::Stop);
            }
        },
        None => ctx.note(
            "confirm:old",
            "skipped: this process has no copy of the old key",
        ),
    }
    if ctx.row().stage == Stage::Propagated {
        let new = ctx.new_secret().or_else(|| {
            let fp = ctx.data::<TatumData>().new_fingerprint?;
            key_in(&p.tatum.consumers, &fp)
        });
        match new {
            Some(new) => match verify(p, ctx, &new, "confirm:new").await? {
                Liveness::Dead => {
                    return Err(ctx.provider_error(
                        "confirm:new",
                        "the new key answers 401; regenerate again in the Tatum Dashboard and run `keysentry tatum set-key`",
                    ))
                }
                _ => ctx.note("confirm:new", "new key works (200)"),
            },
            None => ctx.note("confirm:new", "skipped: the new key is not available to this process"),
        }
        check_copies(p, ctx)?;
    }
    ctx.advance(IncidentRow::confirm)?;
    Ok(Flow::Next)
}

/// Every consumer keysentry wrote holds exactly the new key now (KMS must
/// sign with the key Tatum knows): read back and compared by fingerprint.
fn check_copies(p: &TatumPlaybook, ctx: &mut Ctx<'_>) -> Result<(), StepError> {
    let mut data: TatumData = ctx.data();
    let Some(new_fp) = data.new_fingerprint.clone() else {
        return Ok(());
    };
    let mut wrong = Vec::new();
    for r in data.consumers.iter_mut().filter(|r| r.written) {
        let Some(c) = p.tatum.consumers.iter().find(|c| c.name == r.name) else {
            continue;
        };
        let step = format!("confirm:{}", c.name);
        match propagate::current_fingerprint(c) {
            Ok(Some(fp)) if fp == new_fp => {
                r.verified = true;
                ctx.note(&step, "holds the new key");
            }
            other => {
                let why = match other {
                    Ok(Some(_)) => "it holds another key now".to_string(),
                    Ok(None) => format!("{} is no longer set", c.variable),
                    Err(e) => e.to_string(),
                };
                ctx.note(&step, format!("does not hold the new key: {why}"));
                r.verified = false;
                wrong.push(format!("{}: {why}", c.name));
            }
        }
    }
    ctx.set_data(&data);
    if wrong.is_empty() {
        return Ok(());
    }
    Err(ctx.provider_error(
        "confirm",
        format!(
            "a consumer keysentry wrote does not hold the new key ({}); check what changed it",
            wrong.join("; ")
        ),
    ))
}

/// Checks the key the owner pasted before the lease is taken: not the
/// leaked key, and a key of Tatum's rules. The messages are the CLI's
/// (`tatum set-key`).
pub(super) fn accept(
    rules: &RuleSet,
    row: &IncidentRow,
    key: &Secret,
) -> Result<(), HandOverError> {
    if key.fingerprint() == row.fingerprint {
        return Err(HandOverError::Refused(format!(
            "the key given is the leaked key itself (fingerprint {}); paste the NEW key from the Tatum Dashboard",
            row.fingerprint
        )));
    }
    new_key::check(rules, &row.provider, &row.fingerprint, key).map_err(|why| {
        HandOverError::Refused(format!(
            "the key given is not usable as the new key: {why}; paste the NEW key from the Tatum Dashboard"
        ))
    })
}

/// Finishes a manual rotation with the new key the owner pasted.
pub(super) async fn set_key(
    p: &TatumPlaybook,
    ctx: &mut Ctx<'_>,
    new: Secret,
) -> Result<(), HandOverError> {
    match verify(p, ctx, &new, "verify:new").await? {
        Liveness::Dead => return Err(HandOverError::Refused(
            "Tatum refused the new key (it answers 401); check that the whole new key was pasted"
                .into(),
        )),
        Liveness::Live { .. } => ctx.note("set-key", "new key accepted by Tatum (200)"),
        Liveness::Limited(s) => {
            ctx.note("set-key", format!("new key is live but rate-limited ({s})"))
        }
    }
    // Sealed before any consumer is written, as a key from a management
    // answer is.
    let escrowed = super::rotate::seal(ctx, &new);
    let mut data: TatumData = ctx.data();
    data.new_fingerprint = Some(new.fingerprint());
    data.new_redacted = Some(new.redacted());
    data.escrowed |= escrowed;
    ctx.set_data(&data);
    ctx.set_action("regenerate");
    ctx.set_new_secret(Some(new));
    if !matches!(ctx.row().stage, Stage::Propagated | Stage::Confirmed) {
        ctx.advance(IncidentRow::rotate)?;
    }
    run(p, ctx).await?;
    Ok(())
}
