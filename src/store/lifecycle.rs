//! What a person does to an incident from the CLI (`incidents resolve`,
//! `incidents reopen`), and the history of its states that `incidents show`
//! prints. State changes are recorded by a trigger (migration 0004), so the
//! engine's passes and these transitions alike leave an entry.

use super::incidents::{incident_from_row, INCIDENT_COLUMNS};
use super::{IncidentRow, Stage, State, Store, StoreError};
use crate::store::db::{params, OptionalExtension, TransactionBehavior};

/// One state change of an incident.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EventRow {
    pub at: String,
    pub from_state: Option<String>,
    pub to_state: Option<String>,
    /// The incident's reason after the change: why it failed, what it waits
    /// for, or the note given to `resolve`/`reopen`.
    pub detail: Option<String>,
    /// The id of the incident's last journal entry when it changed.
    pub after_journal: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum TransitionError {
    #[error("no incident {0}; `keysentry incidents list` shows them")]
    NoIncident(i64),
    #[error("incident {id} is already resolved; `keysentry incidents reopen {id}` puts it back in the engine's hands")]
    AlreadyResolved { id: i64 },
    #[error("incident {id} is already {state}: keysentry finished it, there is nothing to resolve (`keysentry incidents reopen {id}` starts it over)")]
    Finished { id: i64, state: State },
    #[error("incident {id} is being remediated right now by process {pid}; try again in a moment")]
    Busy { id: i64, pid: i64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What `reopen` did.
#[derive(Debug, Clone)]
pub struct Reopened {
    pub row: IncidentRow,
    /// The state before.
    pub was: State,
    /// It was open already: only its next poll was made due now.
    pub already_open: bool,
}

/// Who holds an incident: the caller may change it only when no other live
/// process has a current lease (its pass writes the whole row back).
struct Lease {
    pid: Option<i64>,
    until_ms: Option<i64>,
    /// The node of the holder: on another node a process id says nothing,
    /// only the lease's expiry frees it.
    node: Option<String>,
}

impl Lease {
    fn busy(
        &self,
        me: u32,
        my_node: &str,
        now_ms: i64,
        alive: &impl Fn(u32) -> bool,
    ) -> Option<i64> {
        let elsewhere = self.node.as_deref().is_some_and(|n| n != my_node);
        match (self.pid, self.until_ms) {
            (Some(holder), Some(until))
                if until >= now_ms
                    && (elsewhere || (holder != me as i64 && alive(holder as u32))) =>
            {
                Some(holder)
            }
            _ => None,
        }
    }
}

impl Store {
    fn sql_error(&self, source: crate::store::db::DbError) -> TransitionError {
        TransitionError::Store(StoreError::Sql {
            path: self.path().to_path_buf(),
            source,
        })
    }

    /// Every state change of `incident`, oldest first.
    pub fn events(&self, incident: i64) -> Result<Vec<EventRow>, StoreError> {
        self.with_conn(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT at, from_state, to_state, detail, after_journal FROM incident_events \
                 WHERE incident_id = ?1 ORDER BY id",
            )?;
            let rows = stmt.query_map([incident], |r| {
                Ok(EventRow {
                    at: r.get(0)?,
                    from_state: r.get(1)?,
                    to_state: r.get(2)?,
                    detail: r.get(3)?,
                    after_journal: r.get(4)?,
                })
            })?;
            rows.collect()
        })
    }

    /// The owner finished by hand: the incident becomes `resolved`, which
    /// the engine never takes up again (nor for new sightings of the key),
    /// with `note` as its reason. Refused while another live process works
    /// on it, and for incidents keysentry already finished.
    pub fn resolve(
        &self,
        id: i64,
        note: &str,
        me: u32,
        now_ms: i64,
        alive: impl Fn(u32) -> bool,
    ) -> Result<IncidentRow, TransitionError> {
        self.transition(id, me, now_ms, alive, |tx, row| {
            match row.state {
                State::Resolved => return Err(TransitionError::AlreadyResolved { id }),
                State::Closed | State::NotLive => {
                    return Err(TransitionError::Finished {
                        id,
                        state: row.state,
                    })
                }
                _ => {}
            }
            tx.execute(
                "UPDATE incidents SET state = ?3, reason = ?2, retry_at_ms = NULL, \
                 updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?1",
                params![id, note, State::Resolved],
            )
            .map_err(|e| self.sql_error(e))?;
            Ok(())
        })
    }

    /// Puts the incident back in the engine's hands, due at its next pass:
    /// a resolved one where its playbook stood, a closed or not-live one
    /// from the start (verify), an open one as it is (its backoff ended).
    pub fn reopen(
        &self,
        id: i64,
        reason: &str,
        me: u32,
        now_ms: i64,
        alive: impl Fn(u32) -> bool,
    ) -> Result<Reopened, TransitionError> {
        let mut was = State::Detected;
        let mut already_open = false;
        let row = self.transition(id, me, now_ms, alive, |tx, row| {
            was = row.state;
            let (stage, state) = match row.state {
                State::Resolved => (row.stage, State::of_stage(row.stage)),
                State::Closed | State::NotLive => (Stage::Detected, State::Detected),
                _ => {
                    already_open = true;
                    (row.stage, row.state)
                }
            };
            let reason = if already_open {
                row.reason.clone()
            } else {
                Some(reason.to_string())
            };
            tx.execute(
                "UPDATE incidents SET stage = ?2, state = ?3, reason = ?4, retry_at_ms = NULL, \
                 failures = 0, waits = 0, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') \
                 WHERE id = ?1",
                params![id, stage, state, reason],
            )
            .map_err(|e| self.sql_error(e))?;
            Ok(())
        })?;
        Ok(Reopened {
            row,
            was,
            already_open,
        })
    }

    /// Runs `change` on incident `id` in one immediate transaction, after
    /// checking that no other live process holds it; returns the row after.
    fn transition(
        &self,
        id: i64,
        me: u32,
        now_ms: i64,
        alive: impl Fn(u32) -> bool,
        mut change: impl FnMut(
            &crate::store::db::Transaction<'_>,
            &IncidentRow,
        ) -> Result<(), TransitionError>,
    ) -> Result<IncidentRow, TransitionError> {
        let select = format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = ?1");
        self.with_conn_or(
            |conn| {
                let sql = |source| self.sql_error(source);
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sql)?;
                let row = tx
                    .query_row(&select, [id], incident_from_row)
                    .optional()
                    .map_err(sql)?
                    .ok_or(TransitionError::NoIncident(id))?;
                let lease = tx
                    .query_row(
                        "SELECT lease_pid, lease_until_ms, lease_node FROM incidents WHERE id = ?1",
                        [id],
                        |r| {
                            Ok(Lease {
                                pid: r.get(0)?,
                                until_ms: r.get(1)?,
                                node: r.get(2)?,
                            })
                        },
                    )
                    .map_err(sql)?;
                if let Some(pid) = lease.busy(me, self.node(), now_ms, &alive) {
                    return Err(TransitionError::Busy { id, pid });
                }
                change(&tx, &row)?;
                let after = tx
                    .query_row(&select, [id], incident_from_row)
                    .map_err(sql)?;
                tx.commit().map_err(sql)?;
                Ok(after)
            },
            |e| match e {
                TransitionError::Store(StoreError::Sql { source, .. }) => Some(source),
                _ => None,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{LocationRow, NewIncident};

    fn store_with_one() -> (Store, i64) {
        let store = Store::in_memory().unwrap();
        let id = store
            .record_findings(&[NewIncident {
                fingerprint: crate::scan::Fingerprint::of(b"aa"),
                provider: "github".into(),
                rule_id: "github.pat".into(),
                rule_name: "GitHub token".into(),
                redacted: "t-66…[51 chars]".into(),
                owner: None,
                location: LocationRow {
                    source: "file".into(),
                    path: "a.env".into(),
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
            .0;
        (store, id)
    }

    fn set(store: &Store, id: i64, stage: &str, state: &str) {
        let mut row = store.incident(id).unwrap().unwrap();
        row.stage = stage.parse().unwrap();
        row.state = state.parse().unwrap();
        row.reason = Some(format!("now {state}"));
        store.save_incident(&row).unwrap();
    }

    #[test]
    fn every_state_change_is_recorded_once() {
        let (store, id) = store_with_one();
        set(&store, id, "verified", "verified");
        set(&store, id, "verified", "verified");
        set(&store, id, "inventoried", "waiting-manual");
        let moves: Vec<_> = store
            .events(id)
            .unwrap()
            .into_iter()
            .map(|e| {
                (
                    e.from_state.unwrap(),
                    e.to_state.unwrap(),
                    e.detail.unwrap(),
                )
            })
            .collect();
        assert_eq!(
            moves,
            [
                ("detected".into(), "verified".into(), "now verified".into()),
                (
                    "verified".into(),
                    "waiting-manual".into(),
                    "now waiting-manual".into()
                ),
            ]
        );
    }

    #[test]
    fn resolve_then_reopen_resumes_where_the_playbook_stood() {
        let (store, id) = store_with_one();
        set(&store, id, "inventoried", "waiting-manual");
        let alive = |_| true;
        let row = store.resolve(id, "done by hand", 1, 0, alive).unwrap();
        assert_eq!(
            (row.state.as_str(), row.reason.as_deref()),
            ("resolved", Some("done by hand"))
        );
        assert!(store.open_incidents_after(0, 10).unwrap().is_empty());
        assert!(matches!(
            store.resolve(id, "again", 1, 0, alive),
            Err(TransitionError::AlreadyResolved { .. })
        ));
        let back = store.reopen(id, "reopened", 1, 0, alive).unwrap();
        assert_eq!(back.was, "resolved");
        assert!(!back.already_open);
        assert_eq!(
            (back.row.stage.as_str(), back.row.state.as_str()),
            ("inventoried", "contained")
        );
        assert_eq!(store.open_incidents_after(0, 10).unwrap().len(), 1);
    }

    #[test]
    fn a_closed_incident_reopens_from_verify_and_cannot_be_resolved() {
        let (store, id) = store_with_one();
        set(&store, id, "closed", "closed");
        assert!(matches!(
            store.resolve(id, "x", 1, 0, |_| true),
            Err(TransitionError::Finished { .. })
        ));
        let back = store.reopen(id, "reopened", 1, 0, |_| true).unwrap();
        assert_eq!(
            (back.row.stage.as_str(), back.row.state.as_str()),
            ("detected", "detected")
        );
    }

    #[test]
    fn a_live_lease_of_another_process_blocks_a_transition() {
        let (store, id) = store_with_one();
        assert!(store.try_lease(id, 7, 0, 1000, |_| true).unwrap());
        assert!(matches!(
            store.resolve(id, "x", 1, 10, |_| true),
            Err(TransitionError::Busy { pid: 7, .. })
        ));
        // The holder died: the lease no longer counts.
        assert!(store.resolve(id, "x", 1, 10, |pid| pid != 7).is_ok());
        assert!(matches!(
            store.resolve(id, "x", 1, 10, |pid| pid != 7),
            Err(TransitionError::AlreadyResolved { .. })
        ));
    }
}
