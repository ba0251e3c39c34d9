//! The one place findings go: [`FindingSink`], its typed error and what it
//! answers per key.
//!
//! Every consumer of findings implements this trait: the remediation engine
//! (the daemon's log tails and repository watches, the GitHub webhook), a
//! collector in tests, a counter in the webhook benchmark. The producers do
//! not: sources only yield chunks (see [`super::driver`]) and the driver or
//! the daemon's pipeline hands what the scanner found to the sink.
//!
//! # Contract
//!
//! - **Who calls.** The daemon's sink stage (`daemon::pipeline`), one
//!   submission per lane slice, at most a few lanes at once; the webhook's
//!   processor, one submission per delivery. Both call from tokio tasks on
//!   the runtime, never from a scanner thread, so an implementation may
//!   await I/O but must not block the thread for long (use
//!   `spawn_blocking` for SQLite).
//! - **`Ok(handled)`.** The findings are durably recorded: the data they
//!   came from need never be read again. The caller then persists its
//!   progress (a log offset, a repository cursor: `DaemonWrite`; a
//!   delivery marked done). `handled` says, per key, whether it is now
//!   contained; it may be empty when the sink does not know.
//! - **`Err(SinkError::Transient(_))`.** Nothing may be assumed recorded.
//!   The caller does **not** persist progress and offers the *same*
//!   findings again, with backoff (the pipeline: 0.5 s doubling to 60 s;
//!   the webhook: the delivery stays pending and is rescheduled). A store
//!   that is locked or full, an engine being reopened, are transient.
//! - **`Err(SinkError::Permanent(_))`.** These findings can never be
//!   recorded (retrying cannot help). The caller records the failure and
//!   moves on instead of retrying forever: the daemon's pipeline logs each
//!   finding (fingerprint and redacted form, never the key), counts it on
//!   the `remediation` health entry and persists the progress, so the
//!   source does not stall behind it; the webhook marks the delivery
//!   `failed` with the reason in its delivery store (`webhook deliveries`).
//! - **Idempotent.** After a crash between `Ok` and the progress write the
//!   same findings arrive again; the engine keeps one incident per
//!   fingerprint, and so must any sink that records.
//! - **Where data about the owner lives.** On the finding's origin (e.g.
//!   the pusher of a GitHub push: [`super::Origin::pusher`]), never as a
//!   parameter: one sink serves every source.
//! - **Errors never quote a key.** The message ends up in logs and in
//!   `/healthz`.

use super::{Finding, Fingerprint};
use std::future::Future;
use std::pin::Pin;

/// A boxed, sendable future: what [`FindingSink`]'s methods return, so the
/// trait stays object-safe (`Arc<dyn FindingSink>`).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where findings go. See the module documentation for the contract.
pub trait FindingSink: Send + Sync {
    /// Records `findings` (at least one) and starts their remediation.
    fn submit(&self, findings: Vec<Finding>) -> BoxFuture<'_, Result<Vec<Handled>, SinkError>>;

    /// Periodic work the daemon calls every minute, on the runtime: resume
    /// what was interrupted or failed earlier. Never fails: problems are the
    /// sink's to log.
    fn retry_pending(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

/// What the sink did with one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    pub fingerprint: Fingerprint,
    /// The key can no longer be used (frozen, revoked, rotated...).
    pub contained: bool,
}

/// Why a sink did not take findings. The message names the cause, never a
/// key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SinkError {
    /// Try again later with the same findings; progress is not persisted.
    #[error("remediation failed (will retry): {0}")]
    Transient(String),
    /// Retrying cannot help; the caller records it and moves on.
    #[error("remediation refused the findings: {0}")]
    Permanent(String),
}

impl SinkError {
    pub fn is_transient(&self) -> bool {
        matches!(self, SinkError::Transient(_))
    }
}
