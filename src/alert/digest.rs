//! Incidents whose key is not live (verify said it is dead or unknown) are
//! told in one digest per owner per interval, not one alert each: 1,500
//! made-up `t-…` strings in an access log must not bury the one alert that
//! matters under 1,500 others.
//!
//! The first not-live incident for an owner opens a window; every other one
//! in that window joins it; when the window ends one [`Alert`] with a
//! [`DigestSummary`] goes out, listing counts, fingerprints and redacted
//! forms (never a key). [`Digests`] only collects; the engine sends.

use super::render::MAX_LISTED;
use super::{Alert, DigestSummary};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// Interval when the config sets none.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(15 * 60);

/// One not-live incident, as a digest lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct DigestEntry {
    pub incident_id: i64,
    pub provider: String,
    pub redacted: String,
    pub fingerprint: String,
    /// Where it was first seen (`path:line`).
    pub location: Option<String>,
}

/// What is waiting for one owner.
#[derive(Debug, Default)]
struct Pending {
    /// The first [`MAX_LISTED`] entries; the rest are counted only, so a
    /// flood costs a counter, not memory.
    listed: Vec<DigestEntry>,
    count: usize,
    providers: BTreeMap<String, usize>,
}

/// The open windows, by owner (`None`: unassigned).
#[derive(Debug)]
pub struct Digests {
    interval: Duration,
    pending: Mutex<BTreeMap<Option<String>, Pending>>,
}

impl Digests {
    pub fn new(interval: Duration) -> Digests {
        Digests {
            interval,
            pending: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Option<String>, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds an entry to `owner`'s window. `true` when this opened the
    /// window: the caller sends [`Digests::take`] once the interval passed.
    pub fn add(&self, owner: Option<String>, entry: DigestEntry) -> bool {
        let mut pending = self.lock();
        let opened = !pending.contains_key(&owner);
        let p = pending.entry(owner).or_default();
        p.count += 1;
        *p.providers.entry(entry.provider.clone()).or_default() += 1;
        if p.listed.len() < MAX_LISTED {
            p.listed.push(entry);
        }
        opened
    }

    /// Closes `owner`'s window: the digest to send, with the incidents it
    /// lists (to record it on each). `None` if nothing waits.
    pub fn take(&self, owner: &Option<String>) -> Option<(Alert, Vec<i64>)> {
        let p = self.lock().remove(owner)?;
        Some(self.alert(owner.clone(), p))
    }

    /// Closes every window (at shutdown).
    pub fn take_all(&self) -> Vec<(Alert, Vec<i64>)> {
        let all = std::mem::take(&mut *self.lock());
        all.into_iter().map(|(o, p)| self.alert(o, p)).collect()
    }

    fn alert(&self, owner: Option<String>, p: Pending) -> (Alert, Vec<i64>) {
        let ids = p.listed.iter().map(|e| e.incident_id).collect();
        let provider = match p.providers.len() {
            1 => p.providers.keys().next().cloned().unwrap_or_default(),
            _ => "several".to_string(),
        };
        let locations = p
            .listed
            .iter()
            .map(|e| {
                let short = e.fingerprint.get(..12).unwrap_or(&e.fingerprint);
                match &e.location {
                    Some(at) => format!(
                        "{} ({}, fingerprint {short}) at {at}",
                        e.redacted, e.provider
                    ),
                    None => format!("{} ({}, fingerprint {short})", e.redacted, e.provider),
                }
            })
            .collect();
        let by_provider = p
            .providers
            .iter()
            .map(|(name, n)| format!("{name}: {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let alert = Alert {
            incident_id: 0,
            owner,
            provider,
            rule_id: "digest".into(),
            rule_name: "Strings that look like keys but are not live".into(),
            redacted: String::new(),
            fingerprint: String::new(),
            state: "not-live".into(),
            locations,
            actions: Vec::new(),
            bound: None,
            next_steps: vec![
                format!(
                    "Nothing to revoke: the provider rejected every one of these {} ({by_provider}). \
                     If they keep appearing, find what writes them (a scanner probing your service, \
                     test data) and add them to scan.allowlist.",
                    p.count
                ),
                "`keysentry incidents list --state not-live` lists them all.".into(),
            ],
            digest: Some(DigestSummary {
                count: p.count,
                listed: p.listed.len(),
                interval_secs: self.interval.as_secs(),
            }),
        };
        (alert, ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(i: i64) -> DigestEntry {
        DigestEntry {
            incident_id: i,
            provider: "tatum".into(),
            redacted: format!("t-{i:02}…[51 chars]"),
            fingerprint: format!("{i:064}"),
            location: Some(format!("/var/log/access.log:{i}")),
        }
    }

    #[test]
    fn one_digest_per_owner_per_window_counting_everything() {
        let d = Digests::new(Duration::from_secs(60));
        let alice = Some("alice@example.com".to_string());
        assert!(d.add(alice.clone(), entry(1)));
        for i in 2..=1500 {
            assert!(!d.add(alice.clone(), entry(i)));
        }
        assert!(d.add(None, entry(9999)));
        let (alert, ids) = d.take(&alice).unwrap();
        let digest = alert.digest.clone().unwrap();
        assert_eq!(digest.count, 1500);
        assert_eq!(alert.locations.len(), MAX_LISTED);
        assert_eq!(ids.len(), MAX_LISTED);
        assert_eq!(alert.owner, alice);
        assert!(
            alert.next_steps[0].contains("1500"),
            "{:?}",
            alert.next_steps
        );
        assert!(d.take(&alice).is_none(), "the window is closed");
        // The next one opens a new window.
        assert!(d.add(alice, entry(1501)));
        assert_eq!(d.take_all().len(), 2);
    }
}
