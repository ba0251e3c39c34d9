//! Who works on an incident: a task of this process (the `active` set) and,
//! through a lease in the store, no other process at the same time.

use super::{lock, now_ms, Inner};
use std::time::Duration;

/// How long a process may hold an incident before another may take it
/// over, unless `remediation.lease_secs` says otherwise; longer than any
/// pass (retries, timeouts, restart commands).
pub(super) const LEASE: Duration = Duration::from_secs(10 * 60);

/// The lease a config asks for.
pub fn lease_of(config: &crate::config::Config) -> Duration {
    config
        .remediation
        .lease_secs
        .map(|s| Duration::from_secs(s.max(1)))
        .unwrap_or(LEASE)
}

/// Marks an incident as being worked on by this task until dropped: no other
/// task of this process, and (through a lease in the store) no other process
/// runs its playbook meanwhile.
pub(super) struct ActiveGuard<'a> {
    inner: &'a Inner,
    id: i64,
}

impl<'a> ActiveGuard<'a> {
    /// As [`ActiveGuard::claim`], waiting up to `wait` while another task of
    /// this process holds the incident (not another process).
    pub(super) async fn claim_after_local(
        inner: &'a Inner,
        id: i64,
        wait: Duration,
    ) -> Option<ActiveGuard<'a>> {
        let start = std::time::Instant::now();
        loop {
            if let Some(guard) = ActiveGuard::claim(inner, id) {
                return Some(guard);
            }
            if !lock(&inner.active).contains(&id) || start.elapsed() >= wait {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(super) fn claim(inner: &'a Inner, id: i64) -> Option<ActiveGuard<'a>> {
        if !lock(&inner.active).insert(id) {
            return None;
        }
        let now = now_ms();
        let leased = inner.store.try_lease(
            id,
            std::process::id(),
            now,
            now + lease_of(&inner.config).as_millis() as i64,
            process_alive,
        );
        match leased {
            Ok(true) => Some(ActiveGuard { inner, id }),
            other => {
                if let Err(e) = other {
                    tracing::error!(incident = id, error = %e, "cannot lease incident");
                }
                lock(&inner.active).remove(&id);
                None
            }
        }
    }
}

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.inner.store.release_lease(self.id, std::process::id()) {
            tracing::warn!(incident = self.id, error = %e, "cannot release incident lease");
        }
        lock(&self.inner.active).remove(&self.id);
    }
}

/// Whether a process still exists (a lease held by a dead one is free).
/// Where `/proc` is missing, every holder counts as alive and its lease
/// simply expires.
pub fn process_alive(pid: u32) -> bool {
    let proc = std::path::Path::new("/proc");
    !proc.join("self").exists() || proc.join(pid.to_string()).exists()
}
