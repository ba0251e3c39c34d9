//! Handing a new key to the services that use the old one (Tatum KMS above
//! all: it must hold exactly the key that broadcasts transactions), for any
//! provider that rotates: each consumer of `providers.<p>.consumers` that
//! holds the leaked key is written, read back and restarted, journaled step
//! by step, and reported ([`ConsumerReport`]). A consumer that fails does not
//! stop the others; the pass then fails naming it, and the next pass
//! retries it (the written ones read as holding the new key and are only
//! restarted if that had not happened).
//!
//! The kinds and how each is found, written and read back are
//! [`super::consumer`]'s.

use super::consumer::{self, ConsumerError, ConsumerReport, Holding, Reach};
use super::ctx::Ctx;
use super::StepError;
use crate::config::{Consumer, ConsumerKind};
use crate::scan::{Fingerprint, Secret};
use crate::store::Outcome;

pub use super::error::PropagateError;

/// Why one consumer's hand-over stopped: the consumer (reported, the others
/// go on) or the journal (the pass stops: nothing unjournaled is done).
enum Stop {
    Consumer(ConsumerError),
    Step(StepError),
}

impl From<ConsumerError> for Stop {
    fn from(e: ConsumerError) -> Self {
        Stop::Consumer(e)
    }
}

impl From<StepError> for Stop {
    fn from(e: StepError) -> Self {
        Stop::Step(e)
    }
}

/// Where `c` keeps the key, for notes, plans and the journal (no key).
pub fn place(c: &Consumer) -> String {
    if let Some(v) = &c.vault {
        return format!("Vault {} {}/{} field {}", v.addr, v.mount, v.path, v.field);
    }
    if let Some(g) = &c.github_actions {
        let at = match (&g.org, &g.repo, &g.environment) {
            (Some(org), _, _) => format!("organisation {org}"),
            (_, Some(r), Some(e)) => format!("{r} environment {e}"),
            (_, Some(r), None) => r.clone(),
            _ => "?".into(),
        };
        return format!("GitHub Actions secret {} of {at}", g.name);
    }
    if let Some(k) = &c.kubernetes {
        return format!(
            "Kubernetes secret {}/{} key {}",
            k.namespace, k.secret, k.key
        );
    }
    match (&c.env_file, &c.variable) {
        (Some(f), Some(v)) => format!("{} ({v})", f.display()),
        (Some(f), None) => f.display().to_string(),
        _ => "?".into(),
    }
}

/// The value of an env-file consumer's variable (other kinds: `None`).
/// Synchronous, for the key a playbook recovers at the start of a pass.
pub fn current_value(c: &Consumer) -> Result<Option<Secret>, ConsumerError> {
    match c.kind() {
        Ok(ConsumerKind::EnvFile) => consumer::file_value(c),
        _ => Ok(None),
    }
}

/// Why keysentry refuses to read or write an env-file consumer, if it does
/// (`config check`). A file that cannot be opened at all is not judged.
pub fn refusal(c: &Consumer) -> Option<String> {
    match current_value(c) {
        Err(ConsumerError::Refused { why, .. }) => Some(why),
        _ => None,
    }
}

/// The new key, read back from a consumer an earlier pass wrote it to.
pub async fn recover(reach: &Reach, consumers: &[Consumer], new: &Fingerprint) -> Option<Secret> {
    for c in consumers {
        if let Ok(Some(v)) = consumer::value(c, reach).await {
            if v.fingerprint() == *new {
                return Some(v);
            }
        }
    }
    None
}

/// Which consumers hold the leaked key now (or are declared to), and the
/// errors of those that could not be read: what a pass without the new key
/// tells the owner.
pub async fn holders(
    ctx: &mut Ctx<'_>,
    consumers: &[Consumer],
    old: &Fingerprint,
) -> (Vec<String>, Vec<ConsumerError>) {
    let reach = ctx.consumer_reach();
    let (mut names, mut errors) = (Vec::new(), Vec::new());
    for c in consumers {
        match consumer::holding(c, &reach, old, None).await {
            Ok(Holding::Old { .. } | Holding::Declared) => names.push(c.name.clone()),
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => {
                ctx.note(&format!("propagate:{}", c.name), e.to_string());
                errors.push(e);
            }
        }
    }
    (names, errors)
}

/// Hands `new` to every consumer holding `old`: one report each, in config
/// order. Every write and restart is journaled before it happens.
pub async fn propagate(
    ctx: &mut Ctx<'_>,
    consumers: &[Consumer],
    old: &Fingerprint,
    new: &Secret,
) -> Result<Vec<ConsumerReport>, StepError> {
    let reach = ctx.consumer_reach();
    let mut reports = Vec::with_capacity(consumers.len());
    for c in consumers {
        let mut report = ConsumerReport::new(c);
        match one(ctx, &reach, c, old, new, &mut report).await {
            Ok(()) => {}
            Err(Stop::Consumer(e)) => {
                ctx.note(&format!("propagate:{}", c.name), e.to_string());
                report.error = Some(e.to_string());
            }
            Err(Stop::Step(e)) => return Err(e),
        }
        reports.push(report);
    }
    Ok(reports)
}

/// The error a pass ends with when some consumer failed, if any did.
pub fn failure(reports: &[ConsumerReport]) -> Option<PropagateError> {
    // Each error names its consumer already.
    let failed: Vec<String> = reports.iter().filter_map(|r| r.error.clone()).collect();
    (!failed.is_empty()).then_some(PropagateError::Failed { failed })
}

async fn one(
    ctx: &mut Ctx<'_>,
    reach: &Reach,
    c: &Consumer,
    old: &Fingerprint,
    new: &Secret,
    report: &mut ConsumerReport,
) -> Result<(), Stop> {
    let step = format!("propagate:{}", c.name);
    let holding = match consumer::holding(c, reach, old, Some(&new.fingerprint())).await {
        Err(e) if e.is_not_found() => Holding::Missing,
        other => other?,
    };
    let write_now = match holding {
        Holding::Other => {
            report.skipped = Some(format!("{} holds another key", place(c)));
            ctx.note(
                &step,
                format!("left alone: {} does not hold the leaked key", place(c)),
            );
            return Ok(());
        }
        Holding::Missing => {
            report.skipped = Some(format!("{} does not exist", place(c)));
            ctx.note(&step, format!("skipped: {} does not exist", place(c)));
            return Ok(());
        }
        Holding::New => false,
        // Values cannot be read back: written once per incident.
        Holding::Declared => !ctx.step_done(&step)?,
        Holding::Old { .. } => true,
    };
    if write_now {
        let version = match &holding {
            Holding::Old { version } => version.clone(),
            _ => None,
        };
        let entry = ctx.journal_start(&step)?;
        let written = consumer::write(c, reach, old, new, version).await;
        let (outcome, detail) = match &written {
            Ok(true) => (Outcome::Ok, place(c)),
            Ok(false) => (
                Outcome::Failed,
                format!("{}: no longer holds the leaked key", place(c)),
            ),
            Err(e) => (Outcome::Failed, e.to_string()),
        };
        ctx.journal_complete(entry, outcome, None, &detail)?;
        if !written? {
            report.skipped = Some(format!("{} no longer holds the leaked key", place(c)));
            ctx.note(
                &step,
                format!("left alone: {} no longer holds the leaked key", place(c)),
            );
            return Ok(());
        }
        ctx.note(&step, format!("wrote the new key to {}", place(c)));
    }
    report.written = true;
    report.verified = consumer::read_back(c, reach, new).await?;
    if !report.verified {
        return Err(Stop::Consumer(ConsumerError::Remote {
            consumer: c.name.clone(),
            kind: c.kind().unwrap_or(ConsumerKind::EnvFile),
            why: format!(
                "the new key was written but {} does not hold it when read back",
                place(c)
            ),
        }));
    }
    let what = consumer::restart::describe(c);
    if what.is_empty() {
        return Ok(());
    }
    let rstep = format!("restart:{}", c.name);
    if !write_now && ctx.step_done(&rstep)? {
        // Written and restarted by an earlier pass.
        report.restarted = true;
        return Ok(());
    }
    let entry = ctx.journal_start(&rstep)?;
    let ran = consumer::restart::restart(c, reach).await;
    let (outcome, detail) = match &ran {
        Ok(_) => (Outcome::Ok, what.join(", ")),
        Err(e) => (Outcome::Failed, e.to_string()),
    };
    ctx.journal_complete(entry, outcome, None, &detail)?;
    report.restarted = ran?;
    ctx.note(&rstep, what.join(", ").replacen("run ", "ran ", 1));
    Ok(())
}
