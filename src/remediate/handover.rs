//! After a rotation, for every playbook that rotates (Tatum's, and the
//! template playbook's `rotate:`): the new key sealed in escrow the moment
//! it arrives, recovered from there (or from a consumer an earlier pass
//! wrote) after a crash, handed to every consumer that holds the leaked
//! key, and each written copy read back before the incident closes.
//!
//! What a playbook keeps of it is a [`Rotation`] inside its own data; these
//! functions change it and the caller saves it with [`Ctx::set_data`].

use super::consumer::{self, ConsumerError, ConsumerReport, Holding};
use super::ctx::Ctx;
use super::http_action::Reply;
use super::{propagate, StepError};
use crate::config::{Consumer, ConsumerKind};
use crate::rules::HttpTemplate;
use crate::scan::{Fingerprint, Secret};
use crate::store::{Outcome, State};

/// What a playbook remembers of a rotation (no key, only its fingerprint
/// and redacted form).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Rotation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_fingerprint: Option<Fingerprint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_redacted: Option<String>,
    /// The new key was sealed in escrow (`incidents new-key`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub escrowed: bool,
    /// What the last hand-over did at each configured consumer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub consumers: Vec<ConsumerReport>,
}

impl Rotation {
    /// `incidents show`'s lines about the rotation of incident `id`.
    pub fn details(&self, id: i64) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if let Some(n) = &self.new_redacted {
            out.push(("new key", n.clone()));
        }
        if self.escrowed {
            out.push((
                "escrow",
                format!(
                    "the new key is sealed with age: `keysentry incidents new-key {id}` prints it for `age -d`"
                ),
            ));
        }
        if !self.consumers.is_empty() {
            out.push(("consumers", self.reports()));
        }
        out
    }

    /// Each consumer's report, `; `-separated.
    pub fn reports(&self) -> String {
        let each: Vec<String> = self.consumers.iter().map(|c| c.to_string()).collect();
        each.join("; ")
    }
}

/// The alert's line on how the owner opens the escrowed key of incident `id`.
pub(crate) fn escrow_step(id: i64) -> String {
    format!(
        "The new key is sealed with age (escrow): `keysentry incidents new-key {id} > new-key.age && age -d -i YOUR_AGE_IDENTITY new-key.age` recovers it."
    )
}

/// The new key in a rotation's answer, at the template's `new_key_pointer`
/// (else `default_pointer`), once it passed [`super::new_key`]'s checks;
/// the reason otherwise, which never holds the value.
pub(crate) fn key_in_answer(
    ctx: &Ctx<'_>,
    reply: &Reply,
    t: &HttpTemplate,
    default_pointer: &str,
) -> Result<Secret, String> {
    let pointer = t.new_key_pointer.as_deref().unwrap_or(default_pointer);
    let json = reply
        .json()
        .ok_or("the answer is not JSON (check new_key_pointer and the template's url)")?;
    let new = json
        .pointer(pointer)
        .and_then(|k| k.as_str())
        .map(Secret::new)
        .ok_or_else(|| {
            format!("the answer has no new key at `{pointer}` (check new_key_pointer)")
        })?;
    ctx.check_new_key(&new)
        .map_err(|why| format!("the new key in the answer was refused: {why}"))?;
    Ok(new)
}

/// Seals a new key in escrow: `true` when it is sealed. A failure (the
/// store full) is noted and does not stop the hand-over: the key is in
/// hand and the old one is dead, so the consumers still get it and the
/// alert says the key is not in escrow.
pub(crate) fn seal(ctx: &mut Ctx<'_>, new: &Secret) -> bool {
    match ctx.seal_new_key(new) {
        Ok(sealed) => sealed,
        Err(e) => {
            ctx.note(
                "escrow",
                format!("failed: {e}; the new key goes to the consumers only"),
            );
            false
        }
    }
}

/// A new key just arrived: sealed first ([`seal`]), before any consumer
/// sees it, then remembered.
pub(crate) fn arrived(ctx: &mut Ctx<'_>, rotation: &mut Rotation, new: Secret) {
    rotation.escrowed |= seal(ctx, &new);
    rotation.new_fingerprint = Some(new.fingerprint());
    rotation.new_redacted = Some(new.redacted());
    ctx.set_new_secret(Some(new));
}

/// The new key when this pass does not hold it: from escrow (a restart, a
/// retry), else from a consumer an earlier pass wrote it to.
pub(crate) async fn recover(
    ctx: &mut Ctx<'_>,
    consumers: &[Consumer],
    rotation: &mut Rotation,
) -> Result<Option<Secret>, StepError> {
    if let Some(key) = ctx.escrowed_key()? {
        let fp = key.fingerprint();
        if rotation.new_fingerprint.as_ref().map_or(true, |f| *f == fp) {
            let detail = format!("new key {} opened from escrow", key.redacted());
            let entry = ctx.journal_start("escrow:open")?;
            ctx.journal_complete(entry, Outcome::Ok, None, &detail)?;
            ctx.note("escrow:open", detail);
            if rotation.new_fingerprint.is_none() {
                // Sealed just before a crash that came before the rotation
                // was saved.
                rotation.new_fingerprint = Some(fp);
                rotation.new_redacted = Some(key.redacted());
                rotation.escrowed = true;
            }
            return Ok(Some(key));
        }
    }
    let Some(new_fp) = rotation.new_fingerprint.clone() else {
        return Ok(None);
    };
    let reach = ctx.consumer_reach();
    Ok(propagate::recover(&reach, consumers, &new_fp).await)
}

/// Whether a new key would go nowhere, before a rotation makes one: `None`
/// when the escrow is configured or one of `consumers` holds the leaked key
/// (or is declared to: a GitHub Actions secret cannot be read); otherwise
/// `Some(why unread)`, the errors of the consumers that could not be read
/// (they might hold it), as ` (…; …)` or empty. An escrow that is configured
/// but broken is an error: the owner asked for it, so nothing rotates
/// without it.
pub(crate) async fn nowhere<'c>(
    ctx: &Ctx<'_>,
    consumers: impl IntoIterator<Item = &'c Consumer>,
) -> Result<Option<String>, StepError> {
    if ctx.escrow_ready()? {
        return Ok(None);
    }
    let reach = ctx.consumer_reach();
    let mut unread = Vec::new();
    for c in consumers {
        match consumer::holding(c, &reach, &ctx.row().fingerprint, None).await {
            Ok(Holding::Old { .. } | Holding::Declared) => return Ok(None),
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => unread.push(e.to_string()),
        }
    }
    Ok(Some(match unread.is_empty() {
        true => String::new(),
        false => format!(" ({})", unread.join("; ")),
    }))
}

/// How a hand-over ended.
pub(crate) enum Handed {
    /// Every consumer holding the leaked key has the new one (or none held
    /// it).
    Written,
    /// This process has no copy of the new key: the consumers that would
    /// get it, and the errors of those that could not be read.
    NoKey {
        names: Vec<String>,
        errors: Vec<ConsumerError>,
    },
    /// These consumers could not be written (each line names one); the
    /// others were.
    Failed(Vec<String>),
}

/// Hands the new key (this pass's, or recovered) to every consumer holding
/// the leaked key; the reports land in `rotation`.
pub(crate) async fn hand_over(
    ctx: &mut Ctx<'_>,
    consumers: &[Consumer],
    rotation: &mut Rotation,
) -> Result<Handed, StepError> {
    let old_fp = ctx.row().fingerprint.clone();
    if ctx.new_secret().is_none() {
        let recovered = recover(ctx, consumers, rotation).await?;
        ctx.set_new_secret(recovered);
    }
    let Some(new) = ctx.new_secret() else {
        let (names, errors) = propagate::holders(ctx, consumers, &old_fp).await;
        return Ok(Handed::NoKey { names, errors });
    };
    let reports = propagate::propagate(ctx, consumers, &old_fp, &new).await?;
    let failed: Vec<String> = reports
        .iter()
        .filter(|r| r.failed())
        .map(|r| r.to_string())
        .collect();
    rotation.consumers = reports;
    Ok(match failed.is_empty() {
        true => Handed::Written,
        false => Handed::Failed(failed),
    })
}

/// Moves the incident on from a hand-over: `Ok(true)` when it goes on to
/// `propagated`, `Ok(false)` when it waits for the owner, who must bring
/// the new key (`missing(consumers that would get it)` says how), an error
/// naming the consumers that failed (retried; `by_hand` finishes it when
/// the key is not in escrow).
pub(crate) fn settle(
    ctx: &mut Ctx<'_>,
    handed: Handed,
    rotation: &Rotation,
    missing: impl FnOnce(&str) -> String,
    by_hand: &str,
) -> Result<bool, StepError> {
    match handed {
        Handed::Written => Ok(true),
        Handed::NoKey { names, errors } if names.is_empty() && errors.is_empty() => {
            ctx.note(
                "propagate",
                "no consumer held the leaked key: the new key was written nowhere",
            );
            Ok(true)
        }
        Handed::NoKey { names, errors } => {
            let names = match names.is_empty() {
                true => "no consumer".to_string(),
                false => names.join(", "),
            };
            let mut reason = missing(&names);
            for e in errors.iter().filter(|e| e.is_refused()) {
                reason.push_str(&format!("; {e}"));
            }
            ctx.wait(State::WaitingManual, reason)?;
            Ok(false)
        }
        Handed::Failed(failed) => {
            // The others have the new key; these get it on the next pass,
            // from escrow, once what stopped them is fixed.
            let from = match rotation.escrowed {
                true => "the new key is in escrow and keysentry writes it there on its next retry"
                    .to_string(),
                false => format!(
                    "keysentry retries while this process runs; otherwise finish with {by_hand}"
                ),
            };
            Err(ctx.provider_error(
                "propagate",
                format!(
                    "the new key could not be handed to {}; {from}",
                    failed.join("; ")
                ),
            ))
        }
    }
}

/// "New key hand-over so far: …" while a hand-over is under way.
pub(crate) fn progress(rotation: &Rotation) -> Option<String> {
    (!rotation.consumers.is_empty())
        .then(|| format!("New key hand-over so far: {}.", rotation.reports()))
}

/// The closing words of a rotation: `done`, then per consumer what
/// happened, never a hand-over that did not happen; `nowhere` is the fix
/// when the new key reached no consumer and is not in escrow.
pub(crate) fn closing(rotation: &Rotation, done: &str, nowhere: &str) -> String {
    let written = rotation.consumers.iter().any(|c| c.written);
    let rest = match (written, rotation.escrowed) {
        (true, _) => format!(
            "The new key was handed over: {}. Check that they run.",
            rotation.reports()
        ),
        (false, true) => "No configured consumer held the leaked key, so the new key was written to no consumer; it is in escrow (below): put it where the key is used.".to_string(),
        (false, false) => format!("No configured consumer held the leaked key, so keysentry wrote the new key nowhere: {nowhere}"),
    };
    format!("{done} {rest}")
}

/// The new key for confirm: this pass's, else read back from a consumer.
pub(crate) fn new_key(
    ctx: &Ctx<'_>,
    consumers: &[Consumer],
    rotation: &Rotation,
) -> Option<Secret> {
    ctx.new_secret().or_else(|| {
        let fp = rotation.new_fingerprint.as_ref()?;
        consumers.iter().find_map(|c| {
            propagate::current_value(c)
                .ok()
                .flatten()
                .filter(|v| v.fingerprint() == *fp)
        })
    })
}

/// Every consumer keysentry wrote holds exactly the new key now (Tatum KMS
/// must sign with the key Tatum knows): read back and compared by
/// fingerprint. A consumer whose values cannot be read (GitHub Actions)
/// keeps what its write's read-back said.
pub(crate) async fn check_copies(
    ctx: &mut Ctx<'_>,
    consumers: &[Consumer],
    rotation: &mut Rotation,
) -> Result<(), StepError> {
    let Some(new_fp) = rotation.new_fingerprint.clone() else {
        return Ok(());
    };
    let reach = ctx.consumer_reach();
    let mut wrong = Vec::new();
    for r in rotation.consumers.iter_mut().filter(|r| r.written) {
        let Some(c) = consumers.iter().find(|c| c.name == r.name) else {
            continue;
        };
        if c.kind() == Ok(ConsumerKind::GithubActions) {
            continue;
        }
        let step = format!("confirm:{}", c.name);
        let held = consumer::value(c, &reach).await;
        let fp: Option<Fingerprint> = held
            .as_ref()
            .ok()
            .and_then(|v| v.as_ref().map(Secret::fingerprint));
        if fp.as_ref() == Some(&new_fp) {
            r.verified = true;
            ctx.note(&step, "holds the new key");
            continue;
        }
        let why = match held {
            Ok(Some(_)) => "it holds another key now".to_string(),
            Ok(None) => format!("{} no longer holds a key", propagate::place(c)),
            Err(e) => e.to_string(),
        };
        ctx.note(&step, format!("does not hold the new key: {why}"));
        r.verified = false;
        wrong.push(format!("{}: {why}", c.name));
    }
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
