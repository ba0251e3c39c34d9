//! What can go wrong in the engine ([`RemediateError`]) and in one playbook
//! step ([`StepError`]). Neither ever holds a key.

use super::consumer::ConsumerError;
use super::http_action::TemplateError;
use crate::rules::RuleError;
use crate::store::{Refused, State, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RemediateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Rules(#[from] RuleError),
    #[error("cannot set up alert channels: {0}; fix `alerts` in the config")]
    Alerts(String),
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
    #[error("{}", .0.join("; "))]
    InsecureHttp(Vec<String>),
    #[error("no incident {0}; `keysentry incidents list` shows them")]
    NoIncident(i64),
    #[error("incident {id} is a {provider} key, whose playbook takes no new key by hand")]
    NoHandOver { id: i64, provider: String },
    #[error("incident {id} is already {state}; there is nothing to finish")]
    Finished { id: i64, state: State },
    #[error(
        "incident {0} is being handled by another task of this process; try again when it is done"
    )]
    Busy(i64),
    /// The playbook refused the key handed over (its message).
    #[error("{0}")]
    NewKey(String),
    #[error("incident {id}: {source}")]
    Step { id: i64, source: StepError },
    /// `incidents expire` refused (its message).
    #[error("{0}")]
    Expire(String),
}

/// Why a playbook step could not finish. Never holds a key.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("{provider} {step}: {reason}")]
    Provider {
        provider: String,
        step: String,
        reason: String,
    },
    /// A state-changing call whose effect is unknown (timeout, 5xx): the
    /// caller must verify before trying again.
    #[error("{provider} {step}: {reason}; it may or may not have taken effect")]
    Uncertain {
        provider: String,
        step: String,
        reason: String,
    },
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error(transparent)]
    Propagate(#[from] PropagateError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// `remediation.escrow` is configured but cannot be used, or a sealed
    /// key cannot be opened.
    #[error("escrow: {0}")]
    Escrow(String),
    /// A playbook asked for a transition the state machine refuses: a bug,
    /// reported rather than written.
    #[error(transparent)]
    Refused(#[from] Refused),
}

/// Why a hand-over did not reach every consumer (propagate.rs).
#[derive(Debug, thiserror::Error)]
pub enum PropagateError {
    #[error(transparent)]
    Consumer(#[from] ConsumerError),
    /// Some consumers did not get the new key; the others did.
    #[error("the new key did not reach every consumer: {}; keysentry retries on the next run", .failed.join("; "))]
    Failed { failed: Vec<String> },
}
