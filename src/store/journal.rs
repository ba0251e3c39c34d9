//! The remediation journal: a row per provider call or side effect,
//! inserted *before* it happens and completed after. After a crash, a row
//! with no `completed_at` is a call that may or may not have happened; the
//! engine resolves it (verify first) before doing anything that could repeat
//! it.

use super::{Store, StoreError};
use crate::store::db::{params, OptionalExtension};

/// How a journaled call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Definitely did not take effect (e.g. 4xx, 429).
    Failed,
    /// May have taken effect (timeout, 5xx, connection lost mid-call).
    Unknown,
    /// Found still open at startup: the process died during the call.
    Interrupted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Unknown => "unknown",
            Outcome::Interrupted => "interrupted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct JournalEntry {
    pub id: i64,
    pub incident_id: i64,
    pub step: String,
    pub started_at: String,
    pub completed_at: Option<String>,
    pub outcome: Option<String>,
    pub http_status: Option<u16>,
    pub detail: Option<String>,
}

impl JournalEntry {
    /// Started and completed with `ok`.
    pub fn is_ok(&self) -> bool {
        self.outcome.as_deref() == Some("ok")
    }
}

impl Store {
    /// Journals a call about to be made; returns the entry to complete.
    pub fn journal_start(&self, incident: i64, step: &str) -> Result<i64, StoreError> {
        self.with_conn(|c| {
            c.query_row(
                "INSERT INTO journal (incident_id, step) VALUES (?1, ?2) RETURNING id",
                params![incident, step],
                |r| r.get(0),
            )
        })
    }

    /// Completes a journal entry. `detail` must be redacted: no key, no
    /// response body.
    pub fn journal_complete(
        &self,
        entry: i64,
        outcome: Outcome,
        http_status: Option<u16>,
        detail: &str,
    ) -> Result<(), StoreError> {
        self.with_conn(|c| {
            c.prepare_cached(
                "UPDATE journal SET completed_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), \
                 outcome = ?2, http_status = ?3, detail = ?4 WHERE id = ?1",
            )?
            .execute(params![entry, outcome.as_str(), http_status, detail])
            .map(|_| ())
        })
    }

    /// Marks every open entry of `incident` interrupted and returns how many
    /// there were. Call only when no other task of this process works on
    /// the incident.
    pub fn close_interrupted(&self, incident: i64) -> Result<usize, StoreError> {
        self.with_conn(|c| {
            c.prepare_cached(
                "UPDATE journal SET completed_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), \
                 outcome = ?2, detail = 'keysentry stopped during this call' \
                 WHERE incident_id = ?1 AND completed_at IS NULL",
            )?
            .execute(params![incident, Outcome::Interrupted.as_str()])
        })
    }

    /// Every journal entry of an incident, oldest first.
    pub fn journal(&self, incident: i64) -> Result<Vec<JournalEntry>, StoreError> {
        self.with_conn(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, incident_id, step, started_at, completed_at, outcome, http_status, \
                 detail FROM journal WHERE incident_id = ?1 ORDER BY id",
            )?;
            let rows = stmt.query_map([incident], |r| {
                Ok(JournalEntry {
                    id: r.get(0)?,
                    incident_id: r.get(1)?,
                    step: r.get(2)?,
                    started_at: r.get(3)?,
                    completed_at: r.get(4)?,
                    outcome: r.get(5)?,
                    http_status: r.get(6)?,
                    detail: r.get(7)?,
                })
            })?;
            rows.collect()
        })
    }

    /// True when `step` completed `ok` for the incident at least once.
    pub fn step_done(&self, incident: i64, step: &str) -> Result<bool, StoreError> {
        self.with_conn(|c| {
            c.prepare_cached(
                "SELECT 1 FROM journal WHERE incident_id = ?1 AND step = ?2 AND outcome = 'ok' \
                 LIMIT 1",
            )?
            .query_row(params![incident, step], |_| Ok(()))
            .optional()
            .map(|r| r.is_some())
        })
    }

    /// True when an earlier attempt of `step` may have taken effect without
    /// keysentry learning the result (interrupted or unknown outcome).
    pub fn step_uncertain(&self, incident: i64, step: &str) -> Result<bool, StoreError> {
        self.with_conn(|c| {
            c.prepare_cached(
                "SELECT 1 FROM journal WHERE incident_id = ?1 AND step = ?2 \
                 AND (outcome IN ('unknown', 'interrupted') OR completed_at IS NULL) LIMIT 1",
            )?
            .query_row(params![incident, step], |_| Ok(()))
            .optional()
            .map(|r| r.is_some())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{LocationRow, NewIncident};

    fn incident(store: &Store) -> i64 {
        store
            .record_findings(&[NewIncident {
                fingerprint: crate::scan::Fingerprint::of(b"aa"),
                provider: "github".into(),
                rule_id: "github.pat".into(),
                rule_name: "GitHub token".into(),
                redacted: "t-…".into(),
                owner: None,
                location: LocationRow {
                    source: "stdin".into(),
                    path: "-".into(),
                    line: 1,
                    column: 1,
                    commit: None,
                    repo: None,
                    author_email: None,
                    rule_id: "github.pat".into(),
                    first_seen: String::new(),
                    node: String::new(),
                },
            }])
            .unwrap()[0]
            .0
    }

    #[test]
    fn an_open_entry_becomes_interrupted_and_uncertain() {
        let store = Store::in_memory().unwrap();
        let id = incident(&store);
        let done = store.journal_start(id, "freeze").unwrap();
        store
            .journal_complete(done, Outcome::Ok, Some(200), "ok")
            .unwrap();
        store.journal_start(id, "regenerate").unwrap();
        assert!(store.step_done(id, "freeze").unwrap());
        assert!(store.step_uncertain(id, "regenerate").unwrap());
        assert_eq!(store.close_interrupted(id).unwrap(), 1);
        let regenerate = store.journal(id).unwrap().pop().unwrap();
        assert_eq!(regenerate.step, "regenerate");
        assert!(regenerate.completed_at.is_some());
        assert!(store.step_uncertain(id, "regenerate").unwrap());
        assert!(!store.step_done(id, "regenerate").unwrap());
        assert_eq!(store.close_interrupted(id).unwrap(), 0);
    }
}
