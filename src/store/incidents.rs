//! Incidents, their locations and the alerts sent about them.

use super::{Stage, State, Store, StoreError};
use crate::scan::Fingerprint;
use crate::store::db::{params, DbError, FromValue, OptionalExtension, Row, ToValue, Value};

/// A leaked key as the store knows it: fingerprint and redacted form only.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct IncidentRow {
    pub id: i64,
    pub fingerprint: Fingerprint,
    pub provider: String,
    pub rule_id: String,
    pub rule_name: String,
    pub redacted: String,
    pub owner: Option<String>,
    pub state: State,
    pub stage: Stage,
    pub action: Option<String>,
    pub reason: Option<String>,
    /// What the incident's playbook records beyond these columns; its keys
    /// appear at the top level of the JSON output (`testnet`, ...).
    #[serde(flatten)]
    pub playbook_data: PlaybookData,
    pub failures: u32,
    /// A failed or waiting incident is not tried again by the poller before
    /// this time (unix ms).
    pub retry_at_ms: Option<i64>,
    /// Polls in a row that found it still waiting (backs the polling off).
    pub waits: u32,
    /// When the owner was last alerted about it (unix ms).
    pub reminded_at_ms: Option<i64>,
    pub created_at: String,
    pub updated_at: String,
}

/// The `playbook_data` column: a JSON object only the incident's playbook
/// reads and writes, through a typed struct of its own ([`get`], [`set`]).
/// The store checks it is an object, nothing more.
///
/// [`get`]: PlaybookData::get
/// [`set`]: PlaybookData::set
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize)]
#[serde(transparent)]
pub struct PlaybookData(serde_json::Map<String, serde_json::Value>);

impl PlaybookData {
    /// The playbook's view of the data. Data it cannot read (written by a
    /// newer keysentry, edited by hand) reads as its default, and the error
    /// says why.
    pub fn get<T: serde::de::DeserializeOwned + Default>(&self) -> (T, Option<String>) {
        match serde_json::from_value(serde_json::Value::Object(self.0.clone())) {
            Ok(t) => (t, None),
            Err(e) => (T::default(), Some(e.to_string())),
        }
    }

    /// Replaces the data with `data` (a struct that serializes to an
    /// object; anything else leaves the data empty).
    pub fn set<T: serde::Serialize>(&mut self, data: &T) {
        self.0 = match serde_json::to_value(data) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
    }
}

impl ToValue for PlaybookData {
    fn to_value(&self) -> crate::store::db::Result<Value> {
        serde_json::to_string(&self.0)
            .map(Value::Text)
            .map_err(|e| DbError::Conversion(e.to_string()))
    }
}

impl FromValue for PlaybookData {
    fn from_value(v: &Value, column: usize) -> crate::store::db::Result<Self> {
        match serde_json::from_str(crate::store::db::text(v, column)?) {
            Ok(serde_json::Value::Object(map)) => Ok(PlaybookData(map)),
            Ok(_) => Err(DbError::Conversion(
                "playbook_data is not a JSON object".into(),
            )),
            Err(e) => Err(DbError::Conversion(format!("playbook_data: {e}"))),
        }
    }
}

/// Fingerprints are stored as their hex form and read back checked: a
/// malformed one is an error, not a silently dropped incident.
impl ToValue for Fingerprint {
    fn to_value(&self) -> crate::store::db::Result<Value> {
        Ok(Value::Text(self.as_str().to_owned()))
    }
}

impl FromValue for Fingerprint {
    fn from_value(v: &Value, column: usize) -> crate::store::db::Result<Self> {
        let s = crate::store::db::text(v, column)?;
        Fingerprint::parse(s).ok_or_else(|| {
            DbError::Conversion(format!(
                "`{}` is not a key fingerprint (64 lowercase hex digits)",
                s.chars().take(16).collect::<String>()
            ))
        })
    }
}

/// Every state an incident can be in, in the order of the playbooks;
/// `incidents list --state` accepts these.
pub const STATES: &[State] = State::ALL;

/// What a finding contributes to a new incident.
#[derive(Debug, Clone)]
pub struct NewIncident {
    pub fingerprint: Fingerprint,
    pub provider: String,
    pub rule_id: String,
    pub rule_name: String,
    pub redacted: String,
    pub owner: Option<String>,
    pub location: LocationRow,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LocationRow {
    /// `file`, `git`, `log`, `github`, `stdin`.
    pub source: String,
    pub path: String,
    pub line: u64,
    pub column: u64,
    pub commit: Option<String>,
    pub repo: Option<String>,
    pub author_email: Option<String>,
    pub rule_id: String,
    /// Empty on a location not yet stored.
    pub first_seen: String,
    /// The daemon (node name) that saw it: set by the store when recorded;
    /// empty for locations recorded before fleets.
    pub node: String,
}

impl LocationRow {
    /// `path:line`, `repo@commit:path:line` — how alerts and listings show it.
    pub fn display(&self) -> String {
        let mut s = String::new();
        if let Some(repo) = &self.repo {
            s.push_str(repo);
        }
        if let Some(commit) = &self.commit {
            s.push('@');
            s.push_str(&commit[..commit.len().min(12)]);
        }
        if !s.is_empty() {
            s.push(':');
        }
        s.push_str(&format!("{}:{}", self.path, self.line));
        s
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AlertRow {
    /// `change` (the incident moved on) or `reminder` (it still waits).
    pub kind: String,
    pub sent_at: String,
    pub body: String,
    pub deliveries: String,
}

pub(super) const INCIDENT_COLUMNS: &str =
    "id, fingerprint, provider, rule_id, rule_name, redacted, owner, \
     state, stage, action, reason, playbook_data, failures, retry_at_ms, created_at, updated_at, \
     waits, reminded_at_ms";

pub(super) fn incident_from_row(r: &Row) -> crate::store::db::Result<IncidentRow> {
    Ok(IncidentRow {
        id: r.get(0)?,
        fingerprint: r.get(1)?,
        provider: r.get(2)?,
        rule_id: r.get(3)?,
        rule_name: r.get(4)?,
        redacted: r.get(5)?,
        owner: r.get(6)?,
        state: r.get(7)?,
        stage: r.get(8)?,
        action: r.get(9)?,
        reason: r.get(10)?,
        playbook_data: r.get(11)?,
        failures: r.get::<_, i64>(12)?.clamp(0, u32::MAX as i64) as u32,
        retry_at_ms: r.get(13)?,
        created_at: r.get(14)?,
        updated_at: r.get(15)?,
        waits: r.get::<_, i64>(16)?.clamp(0, u32::MAX as i64) as u32,
        reminded_at_ms: r.get(17)?,
    })
}

impl Store {
    /// Records findings in one transaction: a new incident per unseen
    /// fingerprint (in state `detected`), and every location. Returns, in
    /// order, each finding's incident id and whether this call created it.
    pub fn record_findings(&self, items: &[NewIncident]) -> Result<Vec<(i64, bool)>, StoreError> {
        self.with_conn(|conn| {
            // IMMEDIATE: a deferred transaction that reads and then writes
            // fails at once with SQLITE_BUSY (no busy wait) when another
            // connection, such as the webhook's, wrote in between.
            let tx =
                conn.transaction_with_behavior(crate::store::db::TransactionBehavior::Immediate)?;
            let mut out = Vec::with_capacity(items.len());
            {
                let mut find =
                    tx.prepare_cached("SELECT id FROM incidents WHERE fingerprint = ?1")?;
                let mut insert = tx.prepare_cached(
                    "INSERT INTO incidents (fingerprint, provider, rule_id, rule_name, redacted, \
                     owner, state, stage) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'detected', 'detected') \
                     RETURNING id",
                )?;
                let mut locate = tx.prepare_cached(
                    "INSERT INTO locations (incident_id, source, path, line, col, \
                     commit_sha, repo, author_email, rule_id, node) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT DO NOTHING",
                )?;
                for item in items {
                    let existing: Option<i64> = find
                        .query_row([&item.fingerprint], |r| r.get(0))
                        .optional()?;
                    let (id, created) = match existing {
                        Some(id) => (id, false),
                        None => {
                            let id = insert.query_row(
                                params![
                                    item.fingerprint,
                                    item.provider,
                                    item.rule_id,
                                    item.rule_name,
                                    item.redacted,
                                    item.owner,
                                ],
                                |r| r.get(0),
                            )?;
                            (id, true)
                        }
                    };
                    let l = &item.location;
                    locate.execute(params![
                        id,
                        l.source,
                        l.path,
                        l.line as i64,
                        l.column as i64,
                        l.commit.as_deref().unwrap_or(""),
                        l.repo.as_deref().unwrap_or(""),
                        l.author_email,
                        l.rule_id,
                        self.node(),
                    ])?;
                    out.push((id, created));
                }
            }
            tx.commit()?;
            Ok(out)
        })
    }

    pub fn incident(&self, id: i64) -> Result<Option<IncidentRow>, StoreError> {
        self.with_conn(|c| {
            c.query_row(
                &format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = ?1"),
                [id],
                incident_from_row,
            )
            .optional()
        })
    }

    /// Every incident, oldest first.
    pub fn incidents(&self) -> Result<Vec<IncidentRow>, StoreError> {
        self.query_incidents("1 = 1 ORDER BY id", params![])
    }

    /// The incidents in `state` (any if `None`) of `provider` (any if
    /// `None`), oldest first.
    pub fn incidents_where(
        &self,
        state: Option<State>,
        provider: Option<&str>,
    ) -> Result<Vec<IncidentRow>, StoreError> {
        self.query_incidents(
            "(CAST(?1 AS TEXT) IS NULL OR state = ?1) AND (CAST(?2 AS TEXT) IS NULL OR provider = ?2) \
             ORDER BY id",
            params![state, provider],
        )
    }

    /// Up to `limit` incidents the engine still has work or waiting to do,
    /// with ids above `after`, oldest first. Callers page through them, so
    /// what they hold at once does not grow with the number of open
    /// incidents.
    pub fn open_incidents_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<IncidentRow>, StoreError> {
        self.query_incidents(
            "state NOT IN ('closed', 'not-live', 'resolved') AND id > ?1 ORDER BY id LIMIT ?2",
            params![after, limit as i64],
        )
    }

    pub(super) fn query_incidents(
        &self,
        filter: &str,
        params: impl crate::store::db::Params,
    ) -> Result<Vec<IncidentRow>, StoreError> {
        let values = params.values().map_err(|source| StoreError::Sql {
            path: self.path().to_path_buf(),
            source,
        })?;
        self.with_conn(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE {filter}"
            ))?;
            let rows = stmt.query_map(values.clone(), incident_from_row)?;
            rows.collect()
        })
    }

    /// Lets a failed incident be retried now rather than after its backoff.
    pub fn end_backoff(&self, id: i64) -> Result<(), StoreError> {
        self.with_conn(|c| {
            c.execute(
                "UPDATE incidents SET retry_at_ms = NULL WHERE id = ?1 AND state = 'failed'",
                [id],
            )
            .map(|_| ())
        })
    }

    /// Writes back every mutable column of `row`.
    pub fn save_incident(&self, row: &IncidentRow) -> Result<(), StoreError> {
        self.with_conn(|c| {
            c.execute(
                "UPDATE incidents SET owner = ?2, state = ?3, stage = ?4, action = ?5, \
                 reason = ?6, playbook_data = ?7, failures = ?8, retry_at_ms = ?9, \
                 waits = ?10, reminded_at_ms = ?11, updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?1",
                params![
                    row.id,
                    row.owner,
                    row.state,
                    row.stage,
                    row.action,
                    row.reason,
                    row.playbook_data,
                    row.failures as i64,
                    row.retry_at_ms,
                    row.waits as i64,
                    row.reminded_at_ms,
                ],
            )
            .map(|_| ())
        })
    }

    pub fn locations(&self, incident: i64) -> Result<Vec<LocationRow>, StoreError> {
        self.with_conn(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT source, path, line, col, commit_sha, repo, author_email, rule_id, \
                 first_seen, node FROM locations WHERE incident_id = ?1 ORDER BY id",
            )?;
            let rows = stmt.query_map([incident], |r| {
                let opt = |s: String| (!s.is_empty()).then_some(s);
                Ok(LocationRow {
                    source: r.get(0)?,
                    path: r.get(1)?,
                    line: r.get::<_, i64>(2)?.max(0) as u64,
                    column: r.get::<_, i64>(3)?.max(0) as u64,
                    commit: opt(r.get(4)?),
                    repo: opt(r.get(5)?),
                    author_email: r.get(6)?,
                    rule_id: r.get(7)?,
                    first_seen: r.get(8)?,
                    node: r.get(9)?,
                })
            })?;
            rows.collect()
        })
    }

    /// Takes the incident for process `pid` until `until_ms`, unless another
    /// process holds it: a lease is free when unset, expired, ours, or held
    /// by a process `alive` says is gone (a killed scan must not block the
    /// next one).
    pub fn try_lease(
        &self,
        id: i64,
        pid: u32,
        now_ms: i64,
        until_ms: i64,
        alive: impl Fn(u32) -> bool,
    ) -> Result<bool, StoreError> {
        let me = self.node();
        self.with_conn(|c| {
            let tx =
                c.transaction_with_behavior(crate::store::db::TransactionBehavior::Immediate)?;
            let held: Option<(Option<i64>, Option<i64>, Option<String>)> = tx
                .query_row(
                    "SELECT lease_pid, lease_until_ms, lease_node FROM incidents WHERE id = ?1",
                    [id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let free = match held {
                None => return Ok(false),
                Some((Some(holder), Some(until), node)) => {
                    // On another node a process id says nothing: only the
                    // lease's expiry frees it.
                    let here = node.as_deref().map_or(true, |n| n == me);
                    until < now_ms || (here && (holder == pid as i64 || !alive(holder as u32)))
                }
                Some(_) => true,
            };
            if free {
                tx.execute(
                    "UPDATE incidents SET lease_pid = ?2, lease_until_ms = ?3, lease_node = ?4 \
                     WHERE id = ?1",
                    params![id, pid, until_ms, me],
                )?;
            }
            tx.commit()?;
            Ok(free)
        })
    }

    pub fn release_lease(&self, id: i64, pid: u32) -> Result<(), StoreError> {
        self.with_conn(|c| {
            c.execute(
                "UPDATE incidents SET lease_pid = NULL, lease_until_ms = NULL, lease_node = NULL \
                 WHERE id = ?1 AND lease_pid = ?2 AND (lease_node IS NULL OR lease_node = ?3)",
                params![id, pid, self.node()],
            )
            .map(|_| ())
        })
    }

    /// Records an alert (already redacted) of `kind` (`change`, `reminder`)
    /// and how each channel took it.
    pub fn record_alert(
        &self,
        incident: i64,
        kind: &str,
        body: &str,
        deliveries: &str,
    ) -> Result<(), StoreError> {
        self.with_conn(|c| {
            // Milliseconds, as the journal's: `incidents show` orders the two.
            c.execute(
                "INSERT INTO alerts (incident_id, kind, sent_at, body, deliveries) \
                 VALUES (?1, ?2, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'), ?3, ?4)",
                params![incident, kind, body, deliveries],
            )
            .map(|_| ())
        })
    }

    pub fn alerts(&self, incident: i64) -> Result<Vec<AlertRow>, StoreError> {
        self.with_conn(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT kind, sent_at, body, deliveries FROM alerts WHERE incident_id = ?1 \
                 ORDER BY id",
            )?;
            let rows = stmt.query_map([incident], |r| {
                Ok(AlertRow {
                    kind: r.get(0)?,
                    sent_at: r.get(1)?,
                    body: r.get(2)?,
                    deliveries: r.get(3)?,
                })
            })?;
            rows.collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(fp: &str, path: &str) -> NewIncident {
        NewIncident {
            fingerprint: Fingerprint::of(fp.as_bytes()),
            provider: "github".into(),
            rule_id: "github.pat".into(),
            rule_name: "GitHub token".into(),
            redacted: "t-66…[51 chars]".into(),
            owner: None,
            location: LocationRow {
                source: "file".into(),
                path: path.into(),
                line: 3,
                column: 7,
                commit: None,
                repo: None,
                author_email: None,
                rule_id: "github.pat".into(),
                first_seen: String::new(),
                node: String::new(),
            },
        }
    }

    #[test]
    fn one_incident_per_fingerprint_with_every_location() {
        let store = Store::in_memory().unwrap();
        let first = store
            .record_findings(&[new("aa", "a.env"), new("aa", "b.env"), new("bb", "a.env")])
            .unwrap();
        assert_eq!(first[0], (first[1].0, true));
        assert!(!first[1].1);
        assert!(first[2].1 && first[2].0 != first[0].0);
        // Seen again at a known place: no new incident, no duplicate location.
        let again = store.record_findings(&[new("aa", "a.env")]).unwrap();
        assert_eq!(again, vec![(first[0].0, false)]);
        let locs = store.locations(first[0].0).unwrap();
        assert_eq!(
            locs.iter().map(|l| l.display()).collect::<Vec<_>>(),
            ["a.env:3", "b.env:3"]
        );
    }

    #[test]
    fn save_round_trips() {
        let store = Store::in_memory().unwrap();
        let id = store.record_findings(&[new("aa", "a")]).unwrap()[0].0;
        let mut row = store.incident(id).unwrap().unwrap();
        row.state = State::Contained;
        #[derive(serde::Serialize, serde::Deserialize, Default, PartialEq, Debug)]
        struct Data {
            subscriptions: Option<u64>,
            testnet: Option<bool>,
        }
        let data = Data {
            subscriptions: Some(2),
            testnet: Some(true),
        };
        row.playbook_data.set(&data);
        store.save_incident(&row).unwrap();
        let back = store.incident(id).unwrap().unwrap();
        assert_eq!(back.state, "contained");
        assert_eq!(back.playbook_data.get::<Data>(), (data, None));
        let json = serde_json::to_value(&back).unwrap();
        assert_eq!(
            (&json["subscriptions"], &json["state"]),
            (&2.into(), &"contained".into())
        );
        assert_eq!(store.open_incidents_after(0, 10).unwrap().len(), 1);
    }

    #[test]
    fn a_lease_excludes_other_live_processes_only() {
        let store = Store::in_memory().unwrap();
        let id = store.record_findings(&[new("aa", "a")]).unwrap()[0].0;
        let alive = |_| true;
        assert!(store.try_lease(id, 1, 0, 1000, alive).unwrap());
        assert!(
            store.try_lease(id, 1, 10, 1000, alive).unwrap(),
            "re-entrant"
        );
        assert!(
            !store.try_lease(id, 2, 10, 1000, alive).unwrap(),
            "held by 1"
        );
        assert!(
            store.try_lease(id, 2, 10, 1000, |pid| pid != 1).unwrap(),
            "1 died"
        );
        assert!(
            store.try_lease(id, 3, 2000, 3000, alive).unwrap(),
            "expired"
        );
        store.release_lease(id, 3).unwrap();
        assert!(
            store.try_lease(id, 4, 2001, 3000, alive).unwrap(),
            "released"
        );
    }
}
