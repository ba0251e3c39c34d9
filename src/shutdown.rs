//! One way to stop: every long-running task (a source, the pipeline, a
//! server, a worker) is handed a [`Shutdown`] and ends soon after it fires.
//!
//! The caller that owns the process (the binary on SIGTERM, a test) holds the
//! [`Trigger`]; firing it is the only way to ask for a stop, and it cannot be
//! undone. A `Shutdown` is cheap to clone: one per task.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let (trigger, mut shutdown) = keysentry::shutdown::channel();
//! let task = tokio::spawn(async move { shutdown.wait().await; "stopped" });
//! trigger.fire();
//! assert_eq!(task.await.unwrap(), "stopped");
//! # }
//! ```

use std::sync::Arc;
use tokio::sync::watch;

/// Asks every [`Shutdown`] made from it to stop. Dropping the trigger
/// without firing it also stops them: nothing is left waiting on an owner
/// that is gone.
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

/// A task's view of the stop request.
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
    /// For [`Shutdown::never`]: the sender no one fires, kept alive so the
    /// channel does not read as closed.
    _never: Option<Arc<watch::Sender<bool>>>,
}

/// A new trigger and the first `Shutdown` it controls (clone it for more, or
/// call [`Trigger::subscribe`]).
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown { rx, _never: None })
}

impl Trigger {
    /// Asks for the stop. Idempotent.
    pub fn fire(&self) {
        self.0.send_replace(true);
    }

    /// Another `Shutdown`, for a task started later.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown {
            rx: self.0.subscribe(),
            _never: None,
        }
    }
}

impl Shutdown {
    /// A `Shutdown` that never fires (for one-shot work that ends by itself).
    pub fn never() -> Shutdown {
        let (tx, rx) = watch::channel(false);
        Shutdown {
            rx,
            _never: Some(Arc::new(tx)),
        }
    }

    /// Whether the stop was asked for (or the trigger is gone).
    pub fn is_stopping(&self) -> bool {
        *self.rx.borrow() || self.rx.has_changed().is_err()
    }

    /// Resolves once the stop is asked for (at once if it already was, or
    /// if the trigger is gone). Cancel-safe: use it in `select!`.
    pub async fn wait(&mut self) {
        let _ = self.rx.wait_for(|stop| *stop).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn every_clone_sees_the_stop_even_one_made_after_it() {
        let (trigger, first) = channel();
        let mut a = first.clone();
        assert!(!a.is_stopping());
        trigger.fire();
        let mut late = trigger.subscribe();
        tokio::time::timeout(Duration::from_secs(1), a.wait())
            .await
            .expect("a clone wakes");
        tokio::time::timeout(Duration::from_secs(1), late.wait())
            .await
            .expect("a late subscriber wakes at once");
        assert!(first.is_stopping());
    }

    #[tokio::test]
    async fn a_dropped_trigger_stops_its_tasks() {
        let (trigger, mut shutdown) = channel();
        drop(trigger);
        assert!(shutdown.is_stopping());
        tokio::time::timeout(Duration::from_secs(1), shutdown.wait())
            .await
            .expect("wakes when the owner is gone");
    }

    #[tokio::test(start_paused = true)]
    async fn never_does_not_fire() {
        let mut never = Shutdown::never();
        assert!(!never.is_stopping());
        let waited = tokio::time::timeout(Duration::from_secs(3600), never.wait()).await;
        assert!(waited.is_err(), "never() must not resolve");
    }
}
