//! The webhook delivery queue (`migrations/0003_webhook.sql`): deliveries
//! stored before they are acknowledged, claimed by the worker, and finished,
//! rescheduled or failed; plus the commit comments already posted.
//!
//! Every method is synchronous (rusqlite); async callers run them on the
//! blocking pool.

use super::{Store, StoreError};
use crate::store::db::{params, OptionalExtension};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum WebhookStoreError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("store {path}: a query task failed: {message}; restart keysentry")]
    Task { path: String, message: String },
}

/// What `insert` did with a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    New,
    /// The id was stored before: acknowledge, do not process again.
    Duplicate,
}

/// A pending delivery whose time has come.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub id: String,
    pub event: String,
    pub job: String,
    pub attempts: u32,
}

/// A delivery's state, for inspection and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryStatus {
    pub state: String,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// The commit comment a finding got: one per (repo, commit, path, line, key).
#[derive(Debug, Clone)]
pub struct CommentKey {
    pub repo: String,
    pub commit: String,
    pub path: String,
    pub line: u64,
    pub fingerprint: String,
}

/// The webhook's queries over the process's one store handle (the daemon
/// shares it with the engine and the sources). Each query holds the
/// connection for one statement or transaction, so an acknowledgement waits
/// at most one short query behind the engine, never a provider call.
pub struct DeliveryStore {
    store: Arc<Store>,
}

/// How long a replica holds a delivery it runs before another replica of
/// the fleet may take it (longer than any run: GitHub calls time out well
/// before).
const CLAIM_MS: i64 = 10 * 60 * 1000;

impl DeliveryStore {
    /// The webhook's view of an open store.
    pub fn new(store: Arc<Store>) -> DeliveryStore {
        DeliveryStore { store }
    }

    /// Opens `<state_dir>/keysentry.db` through the store's migration runner
    /// (for tools and tests that have no store yet).
    pub fn open(state_dir: &Path) -> Result<DeliveryStore, WebhookStoreError> {
        Ok(DeliveryStore::new(Arc::new(Store::open(state_dir)?)))
    }

    pub fn path(&self) -> &Path {
        self.store.path()
    }

    fn with<T>(
        &self,
        mut f: impl FnMut(&crate::store::db::Conn<'_>) -> crate::store::db::Result<T>,
    ) -> Result<T, WebhookStoreError> {
        Ok(self.store.with_conn(|c| f(c))?)
    }

    /// Stores a delivery unless its id is known.
    pub fn insert(
        &self,
        id: &str,
        event: &str,
        job: &str,
        now_ms: i64,
    ) -> Result<Enqueued, WebhookStoreError> {
        let n = self.with(|c| {
            c.execute(
                "INSERT INTO webhook_deliveries
                   (id, event, job, state, attempts, next_attempt_at, received_at)
                 VALUES (?1, ?2, ?3, 'pending', 0, ?4, ?4) ON CONFLICT DO NOTHING",
                params![id, event, job, now_ms],
            )
        })?;
        Ok(if n == 1 {
            Enqueued::New
        } else {
            Enqueued::Duplicate
        })
    }

    /// Up to `limit` pending deliveries due at `now_ms`, oldest first, minus
    /// those in `running`.
    pub fn due(
        &self,
        now_ms: i64,
        limit: usize,
        running: &HashSet<String>,
    ) -> Result<Vec<DueDelivery>, WebhookStoreError> {
        let fetch = (limit + running.len()) as i64;
        let node = self.store.node().to_owned();
        let rows = self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, event, job, attempts FROM webhook_deliveries
                 WHERE state = 'pending' AND next_attempt_at <= ?1
                   AND (claimed_until IS NULL OR claimed_until < ?1 OR claimed_by = ?3)
                 ORDER BY next_attempt_at, received_at LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![now_ms, fetch, node], |r| {
                Ok(DueDelivery {
                    id: r.get(0)?,
                    event: r.get(1)?,
                    job: r.get(2)?,
                    attempts: r.get(3)?,
                })
            })?;
            rows.collect::<crate::store::db::Result<Vec<_>>>()
        })?;
        // Another replica of the fleet may have taken a delivery between
        // the read and now: only those this node claims are run here.
        let mut claimed = Vec::new();
        for d in rows.into_iter().filter(|d| !running.contains(&d.id)) {
            if claimed.len() == limit {
                break;
            }
            let took = self.with(|c| {
                c.execute(
                    "UPDATE webhook_deliveries SET claimed_by = ?2, claimed_until = ?3
                     WHERE id = ?1 AND state = 'pending'
                       AND (claimed_until IS NULL OR claimed_until < ?4 OR claimed_by = ?2)",
                    params![d.id, node, now_ms + CLAIM_MS, now_ms],
                )
            })?;
            if took == 1 {
                claimed.push(d);
            }
        }
        Ok(claimed)
    }

    /// When the earliest pending delivery not yet due at `now_ms` is due.
    pub fn next_due_after(&self, now_ms: i64) -> Result<Option<i64>, WebhookStoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT MIN(next_attempt_at) FROM webhook_deliveries
                 WHERE state = 'pending' AND next_attempt_at > ?1",
                params![now_ms],
                |r| r.get(0),
            )
        })
    }

    pub fn mark_done(&self, id: &str, now_ms: i64) -> Result<(), WebhookStoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE webhook_deliveries
                 SET state = 'done', attempts = attempts + 1, finished_at = ?2, last_error = NULL,
                     claimed_by = NULL, claimed_until = NULL
                 WHERE id = ?1",
                params![id, now_ms],
            )
        })
        .map(drop)
    }

    /// Leaves the delivery pending, to be tried again at `at_ms`.
    pub fn reschedule(&self, id: &str, at_ms: i64, error: &str) -> Result<(), WebhookStoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE webhook_deliveries
                 SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3,
                     claimed_by = NULL, claimed_until = NULL
                 WHERE id = ?1",
                params![id, at_ms, error],
            )
        })
        .map(drop)
    }

    /// A delivery that cannot succeed (bad job, repository gone): kept, with
    /// the reason, for an operator to look at.
    pub fn mark_failed(&self, id: &str, now_ms: i64, error: &str) -> Result<(), WebhookStoreError> {
        self.with(|c| {
            c.execute(
                "UPDATE webhook_deliveries
                 SET state = 'failed', attempts = attempts + 1, finished_at = ?2, last_error = ?3,
                     claimed_by = NULL, claimed_until = NULL
                 WHERE id = ?1",
                params![id, now_ms, error],
            )
        })
        .map(drop)
    }

    pub fn status(&self, id: &str) -> Result<Option<DeliveryStatus>, WebhookStoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT state, attempts, last_error FROM webhook_deliveries WHERE id = ?1",
                params![id],
                |r| {
                    Ok(DeliveryStatus {
                        state: r.get(0)?,
                        attempts: r.get(1)?,
                        last_error: r.get(2)?,
                    })
                },
            )
            .optional()
        })
    }

    /// Number of deliveries per state.
    pub fn counts(&self) -> Result<BTreeMap<String, u64>, WebhookStoreError> {
        self.with(|c| super::daemon::counts_by_state(c, "webhook_deliveries"))
    }

    pub fn comment_posted(&self, key: &CommentKey) -> Result<bool, WebhookStoreError> {
        self.with(|c| {
            c.query_row(
                "SELECT 1 FROM webhook_comments
                 WHERE repo = ?1 AND commit_sha = ?2 AND path = ?3 AND line = ?4 AND fingerprint = ?5",
                params![key.repo, key.commit, key.path, key.line as i64, key.fingerprint],
                |_| Ok(()),
            )
            .optional()
            .map(|r| r.is_some())
        })
    }

    pub fn record_comment(&self, key: &CommentKey, now_ms: i64) -> Result<(), WebhookStoreError> {
        self.with(|c| {
            c.execute(
                "INSERT INTO webhook_comments
                   (repo, commit_sha, path, line, fingerprint, posted_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
                params![
                    key.repo,
                    key.commit,
                    key.path,
                    key.line as i64,
                    key.fingerprint,
                    now_ms
                ],
            )
        })
        .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, DeliveryStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = DeliveryStore::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn a_known_delivery_id_is_a_duplicate() {
        let (_d, s) = store();
        assert_eq!(s.insert("a", "push", "{}", 1).unwrap(), Enqueued::New);
        assert_eq!(s.insert("a", "push", "{}", 2).unwrap(), Enqueued::Duplicate);
        s.mark_done("a", 3).unwrap();
        assert_eq!(s.insert("a", "push", "{}", 4).unwrap(), Enqueued::Duplicate);
    }

    #[test]
    fn rescheduled_deliveries_wait_and_running_ones_are_skipped() {
        let (_d, s) = store();
        s.insert("a", "push", "{}", 10).unwrap();
        s.insert("b", "push", "{}", 11).unwrap();
        s.reschedule("a", 100, "GitHub answered 502").unwrap();
        let due = s.due(50, 10, &HashSet::new()).unwrap();
        assert_eq!(due.iter().map(|d| d.id.as_str()).collect::<Vec<_>>(), ["b"]);
        let running: HashSet<String> = ["b".to_string()].into();
        assert!(s.due(50, 10, &running).unwrap().is_empty());
        assert_eq!(s.next_due_after(50).unwrap(), Some(100));
        let a = s.status("a").unwrap().unwrap();
        assert_eq!((a.state.as_str(), a.attempts), ("pending", 1));
        assert_eq!(s.due(100, 10, &running).unwrap()[0].id, "a");
    }

    /// Two replicas on one store: a delivery one of them runs is not run
    /// by the other until the first gives it back or its claim expires.
    #[test]
    fn a_delivery_claimed_by_one_replica_is_not_run_by_another() {
        let url = crate::store::testing::fresh_pg_url();
        let a = DeliveryStore::new(Arc::new(Store::connect(&url, "replica-a", 2).unwrap()));
        let b = DeliveryStore::new(Arc::new(Store::connect(&url, "replica-b", 2).unwrap()));
        assert_eq!(a.insert("d", "push", "{}", 10).unwrap(), Enqueued::New);
        assert_eq!(
            b.insert("d", "push", "{}", 11).unwrap(),
            Enqueued::Duplicate
        );
        let none = HashSet::new();
        assert_eq!(a.due(20, 10, &none).unwrap().len(), 1, "a takes it");
        assert!(b.due(20, 10, &none).unwrap().is_empty(), "b leaves it");
        // a's run fails and gives it back: the next due time is for anyone.
        a.reschedule("d", 30, "GitHub answered 502").unwrap();
        assert_eq!(b.due(30, 10, &none).unwrap().len(), 1, "b takes the retry");
        assert!(a.due(31, 10, &none).unwrap().is_empty());
        // b dies with it: a takes it over once the claim expired.
        assert_eq!(a.due(30 + CLAIM_MS + 1, 10, &none).unwrap().len(), 1);
    }

    #[test]
    fn schema_applies_twice() {
        let dir = tempfile::tempdir().unwrap();
        DeliveryStore::open(dir.path())
            .unwrap()
            .insert("x", "push", "{}", 1)
            .unwrap();
        let again = DeliveryStore::open(dir.path()).unwrap();
        assert_eq!(again.counts().unwrap().get("pending"), Some(&1));
    }
}
