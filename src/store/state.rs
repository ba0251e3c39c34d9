//! The incident state machine: [`State`] (what a user sees, `incidents list
//! --state`) and [`Stage`] (how far the playbook got), their SQL and text
//! forms, and the diagram of the transitions (methods of `IncidentRow` in
//! `transition.rs`) that move an incident between them.
//!
//! The spellings are a contract: they are stored (migration 0005 refuses any
//! other value with a `CHECK`), printed in JSON and accepted on the command
//! line. Every transition is a method on [`IncidentRow`] that names the
//! stages it may start from; an incident keysentry or its owner finished
//! (`closed`, `not-live`, `resolved`) starts none of the engine's. A refused
//! transition is a [`Refused`] error naming where the incident stood and
//! where it was asked to go, so a playbook bug surfaces instead of writing
//! an impossible pair.
//!
//! ```text
//!  detected ─verify─▶ verified ─contain─▶ contained ─inventory─▶ inventoried
//!     │                  │  │                                      │  │
//!     └─not_live─▶ not-live  └─revoke─▶ revoked ─┐          rotate─┘  └─expire─▶ expired ─┐
//!                                                │                                        │
//!            rotated ─propagate─▶ propagated ────┴──confirm──▶ confirmed ─close─▶ closed ◀┘
//! ```
//! Besides: `fail` and `wait` change the state only (the stage stays, so the
//! next pass resumes there); `resolve`/`reopen` are the owner's.

use std::fmt;
use std::str::FromStr;

/// Declares a string-backed enum with its one spelling per variant.
macro_rules! spelled {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            /// Every value, in the order of the playbooks.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownValue;

            fn from_str(s: &str) -> Result<Self, UnknownValue> {
                match s {
                    $($text => Ok($name::$variant),)*
                    _ => Err(UnknownValue {
                        what: stringify!($name),
                        found: s.chars().take(64).collect(),
                        valid: &[$($text,)*],
                    }),
                }
            }
        }
    };
}

spelled! {
    /// What a user sees of an incident.
    State {
        Detected = "detected",
        Verified = "verified",
        Contained = "contained",
        Rotated = "rotated",
        Expired = "expired",
        Revoked = "revoked",
        Confirmed = "confirmed",
        Closed = "closed",
        WaitingManual = "waiting-manual",
        NotLive = "not-live",
        Failed = "failed",
        /// Accepted by `incidents list --state` for older stores; no
        /// transition leads here.
        Planned = "planned",
        Resolved = "resolved",
    }
}

spelled! {
    /// The last playbook step that completed: a failed or interrupted
    /// incident resumes from here.
    Stage {
        Detected = "detected",
        Verified = "verified",
        Contained = "contained",
        Inventoried = "inventoried",
        Rotated = "rotated",
        Propagated = "propagated",
        Expired = "expired",
        Revoked = "revoked",
        Confirmed = "confirmed",
        Closed = "closed",
        NotLive = "not-live",
    }
}

impl State {
    /// Finished by keysentry (`closed`, `not-live`) or by its owner
    /// (`resolved`): the engine never takes it up again by itself.
    pub fn is_final(self) -> bool {
        matches!(self, State::Closed | State::NotLive | State::Resolved)
    }

    /// The key can no longer be used (frozen, revoked, rotated, expired).
    pub fn contains_key(self) -> bool {
        matches!(
            self,
            State::Contained
                | State::Rotated
                | State::Expired
                | State::Revoked
                | State::Confirmed
                | State::Closed
        )
    }

    /// The user-visible state of an incident whose playbook stands at
    /// `stage` (what `reopen` gives back to a resolved incident).
    pub fn of_stage(stage: Stage) -> State {
        match stage {
            Stage::Detected => State::Detected,
            Stage::Verified => State::Verified,
            Stage::Contained | Stage::Inventoried => State::Contained,
            Stage::Rotated | Stage::Propagated => State::Rotated,
            Stage::Expired => State::Expired,
            Stage::Revoked => State::Revoked,
            Stage::Confirmed => State::Confirmed,
            Stage::Closed => State::Closed,
            Stage::NotLive => State::NotLive,
        }
    }
}

/// A value that is not one of the spellings; names them all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{found}` is not a valid {what}; valid values: {}", valid.join(", "))]
pub struct UnknownValue {
    what: &'static str,
    found: String,
    valid: &'static [&'static str],
}

/// A transition the state machine does not allow from where the incident
/// stands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("incident {id} cannot {transition} from state {state} (stage {stage}); it is allowed from stage {allowed}")]
pub struct Refused {
    pub id: i64,
    pub transition: &'static str,
    pub state: State,
    pub stage: Stage,
    pub(super) allowed: String,
}

macro_rules! text_impls {
    ($($name:ident),*) => {$(
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl crate::store::db::ToValue for $name {
            fn to_value(&self) -> crate::store::db::Result<crate::store::db::Value> {
                Ok(crate::store::db::Value::Text(self.as_str().to_owned()))
            }
        }

        impl crate::store::db::FromValue for $name {
            fn from_value(v: &crate::store::db::Value, column: usize) -> crate::store::db::Result<Self> {
                crate::store::db::text(v, column)?
                    .parse()
                    .map_err(|e: UnknownValue| crate::store::db::DbError::Conversion(e.to_string()))
            }
        }

        /// Lets callers and tests compare with the spelling.
        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.as_str() == *other
            }
        }

        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.as_str() == other
            }
        }
    )*};
}

text_impls!(State, Stage);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::Fingerprint;
    use crate::store::db::OptionalExtension;
    use crate::store::IncidentRow;

    fn row(stage: Stage, state: State) -> IncidentRow {
        IncidentRow {
            id: 3,
            fingerprint: Fingerprint::of(b"k"),
            provider: "github".into(),
            rule_id: "github.pat".into(),
            rule_name: "GitHub PAT".into(),
            redacted: "ghp_…".into(),
            owner: None,
            state,
            stage,
            action: None,
            reason: Some("before".into()),
            playbook_data: Default::default(),
            failures: 2,
            retry_at_ms: Some(9),
            waits: 1,
            reminded_at_ms: None,
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    type Transition = fn(&mut IncidentRow) -> Result<(), Refused>;
    /// A transition's name, method, the stages it starts from, where it leads.
    type Case = (&'static str, Transition, &'static [Stage], (Stage, State));

    /// Every transition, the stages it starts from, and where it leads.
    const TABLE: &[Case] = &[
        (
            "verify",
            IncidentRow::verify,
            &[Stage::Detected],
            (Stage::Verified, State::Verified),
        ),
        (
            "skip_verify",
            IncidentRow::skip_verify,
            &[Stage::Detected],
            (Stage::Verified, State::Detected),
        ),
        (
            "not_live",
            IncidentRow::not_live,
            &[Stage::Detected],
            (Stage::NotLive, State::NotLive),
        ),
        (
            "contain",
            IncidentRow::contain,
            &[Stage::Verified],
            (Stage::Contained, State::Contained),
        ),
        (
            "inventory",
            IncidentRow::inventory,
            &[Stage::Contained],
            (Stage::Inventoried, State::Contained),
        ),
        (
            "rotate",
            IncidentRow::rotate,
            &[
                Stage::Detected,
                Stage::Verified,
                Stage::Contained,
                Stage::Inventoried,
                Stage::Rotated,
                Stage::Expired,
            ],
            (Stage::Rotated, State::Rotated),
        ),
        (
            "expire",
            IncidentRow::expire,
            &[Stage::Verified, Stage::Inventoried],
            (Stage::Expired, State::Expired),
        ),
        (
            "propagate",
            IncidentRow::propagate,
            &[Stage::Rotated],
            (Stage::Propagated, State::Rotated),
        ),
        (
            "revoke",
            IncidentRow::revoke,
            &[Stage::Verified],
            (Stage::Revoked, State::Revoked),
        ),
        (
            "confirm",
            IncidentRow::confirm,
            &[Stage::Propagated, Stage::Expired, Stage::Revoked],
            (Stage::Confirmed, State::Confirmed),
        ),
        (
            "close",
            IncidentRow::close,
            &[Stage::Confirmed],
            (Stage::Closed, State::Closed),
        ),
    ];

    #[test]
    fn every_transition_is_allowed_exactly_from_its_stages() {
        for (name, go, from, to) in TABLE {
            for &stage in Stage::ALL {
                for &state in State::ALL {
                    let mut r = row(stage, state);
                    let result = go(&mut r);
                    let allowed = from.contains(&stage) && !state.is_final();
                    if allowed {
                        assert_eq!(result, Ok(()), "{name} from {stage}/{state}");
                        assert_eq!((r.stage, r.state), *to, "{name}");
                        assert_eq!((r.reason, r.failures, r.waits), (None, 0, 0), "{name}");
                        assert_eq!(r.retry_at_ms, None, "{name}");
                    } else {
                        let e = result.expect_err(&format!("{name} from {stage}/{state}"));
                        assert_eq!((e.state, e.stage), (state, stage), "{name}");
                        assert_eq!((r.stage, r.state), (stage, state), "{name}: unchanged");
                        let msg = e.to_string();
                        assert!(
                            msg.contains(state.as_str()) && msg.contains(stage.as_str()),
                            "{msg}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn fail_and_wait_keep_the_stage_and_refuse_finished_incidents() {
        let mut r = row(Stage::Inventoried, State::Contained);
        r.fail("down".into()).unwrap();
        assert_eq!(
            (r.stage, r.state, r.failures),
            (Stage::Inventoried, State::Failed, 3)
        );
        r.wait_in(State::WaitingManual, "owner".into()).unwrap();
        assert_eq!(
            (r.stage, r.state, r.waits),
            (Stage::Inventoried, State::WaitingManual, 2)
        );
        assert!(
            r.wait_in(State::Closed, "x".into()).is_err(),
            "not a waiting state"
        );
        for done in [State::Closed, State::NotLive, State::Resolved] {
            let mut r = row(Stage::Closed, done);
            assert!(r.fail("x".into()).is_err(), "{done}");
            assert!(
                r.wait_in(State::WaitingManual, "x".into()).is_err(),
                "{done}"
            );
            assert_eq!(r.state, done);
        }
    }

    #[test]
    fn spellings_parse_back_and_unknown_ones_name_the_valid_values() {
        for s in State::ALL {
            assert_eq!(s.as_str().parse::<State>(), Ok(*s));
            assert_eq!(s.to_string(), s.as_str());
        }
        for s in Stage::ALL {
            assert_eq!(s.as_str().parse::<Stage>(), Ok(*s));
        }
        let e = "Closed".parse::<State>().unwrap_err().to_string();
        assert!(
            e.contains("`Closed`") && e.contains("waiting-manual, not-live"),
            "{e}"
        );
        let e = "inventory".parse::<Stage>().unwrap_err().to_string();
        assert!(e.contains("inventoried"), "{e}");
        assert_eq!(
            serde_json::to_string(&State::WaitingManual).unwrap(),
            "\"waiting-manual\""
        );
    }

    #[test]
    fn every_state_and_stage_round_trips_through_the_store() {
        let store = crate::store::Store::in_memory().unwrap();
        store
            .with_conn(|conn| {
                conn.execute_batch("CREATE TABLE t (state TEXT, stage TEXT)")?;
                for (i, state) in State::ALL.iter().enumerate() {
                    let stage = Stage::ALL[i % Stage::ALL.len()];
                    conn.execute("DELETE FROM t", crate::store::db::params![])?;
                    conn.execute(
                        "INSERT INTO t VALUES (?1, ?2)",
                        crate::store::db::params![state, stage],
                    )?;
                    let back: (State, Stage) = conn.query_row(
                        "SELECT state, stage FROM t",
                        crate::store::db::params![],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )?;
                    assert_eq!(back, (*state, stage));
                }
                conn.execute("UPDATE t SET state = 'frozen'", crate::store::db::params![])?;
                let bad = conn.query_row("SELECT state FROM t", crate::store::db::params![], |r| {
                    r.get::<_, State>(0)
                });
                let msg = bad.unwrap_err().to_string();
                assert!(
                    msg.contains("frozen") && msg.contains("valid values"),
                    "{msg}"
                );
                Ok(())
            })
            .unwrap();
    }

    /// A store at schema 0004 (before typed incidents) with an incident in
    /// every state, each with a location, a journal entry, an alert and a
    /// state event, and one with the columns migration 0005 moves.
    fn old_store(dir: &std::path::Path) {
        let conn = rusqlite::Connection::open(dir.join(super::super::DB_FILE)).unwrap();
        conn.pragma_update(None, "foreign_keys", "ON").unwrap();
        for (_, sql) in &super::super::MIGRATIONS[..4] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 4).unwrap();
        for (i, state) in State::ALL.iter().enumerate() {
            let stage = Stage::ALL[i % Stage::ALL.len()];
            let fp = Fingerprint::of(state.as_str().as_bytes());
            conn.execute(
                "INSERT INTO incidents (fingerprint, provider, rule_id, rule_name, redacted, \
                 state, stage) VALUES (?1, 'tatum', 'tatum.api-key', 'Tatum', 't-…', 'detected', ?2)",
                rusqlite::params![fp.as_str(), stage.as_str()],
            )
            .unwrap();
            let id = conn.last_insert_rowid();
            conn.execute(
                "INSERT INTO locations (incident_id, source, path, line, col, rule_id) \
                 VALUES (?1, 'file', 'a.env', 1, 1, 'tatum.api-key')",
                [id],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO journal (incident_id, step, outcome) VALUES (?1, 'verify', 'ok')",
                [id],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO alerts (incident_id, body, deliveries) VALUES (?1, '{}', 'log: ok')",
                [id],
            )
            .unwrap();
            // Through the 0004 trigger: one state event per incident (none
            // for the one that stays detected).
            conn.execute(
                "UPDATE incidents SET state = ?2 WHERE id = ?1",
                rusqlite::params![id, state.as_str()],
            )
            .unwrap();
        }
        conn.execute(
            "UPDATE incidents SET testnet = 1, subscriptions = 3, virtual_accounts = 0, \
             new_fingerprint = 'ab', new_redacted = 't-99…' WHERE state = 'rotated'",
            [],
        )
        .unwrap();
    }

    fn count(store: &crate::store::Store, table: &str) -> i64 {
        store
            .with_conn(|c| {
                c.query_row(
                    &format!("SELECT COUNT(*) FROM {table}"),
                    crate::store::db::params![],
                    |r| r.get(0),
                )
            })
            .unwrap()
    }

    #[test]
    fn migration_0005_keeps_every_row_and_moves_the_playbook_columns() {
        let dir = tempfile::tempdir().unwrap();
        old_store(dir.path());
        let store = crate::store::Store::open(dir.path()).unwrap();
        let rows = store.incidents().unwrap();
        let states: Vec<State> = rows.iter().map(|r| r.state).collect();
        assert_eq!(states, State::ALL, "every incident, in every state, kept");
        for (i, r) in rows.iter().enumerate() {
            assert_eq!(r.stage, Stage::ALL[i % Stage::ALL.len()]);
            assert_eq!(r.fingerprint, Fingerprint::of(r.state.as_str().as_bytes()));
            assert_eq!(store.locations(r.id).unwrap().len(), 1);
            assert_eq!(store.journal(r.id).unwrap().len(), 1);
            assert_eq!(store.alerts(r.id).unwrap().len(), 1);
        }
        let moved = rows.iter().find(|r| r.state == State::Rotated).unwrap();
        assert_eq!(
            serde_json::to_value(&moved.playbook_data).unwrap(),
            serde_json::json!({"testnet": true, "subscriptions": 3, "virtual_accounts": 0,
                "new_fingerprint": "ab", "new_redacted": "t-99…"})
        );
        let other = rows.iter().find(|r| r.state == State::Closed).unwrap();
        assert_eq!(other.playbook_data, Default::default());
        let n = State::ALL.len() as i64;
        assert_eq!(count(&store, "incident_events"), n - 1);
        // The rebuilt table still records state changes and refers nowhere
        // dangling; foreign keys are enforced again.
        let mut row = other.clone();
        row.state = State::Resolved;
        store.save_incident(&row).unwrap();
        assert_eq!(count(&store, "incident_events"), n);
        store
            .with_conn(|c| {
                let dangling: Option<String> = c
                    .query_row(
                        "PRAGMA foreign_key_check",
                        crate::store::db::params![],
                        |r| r.get(0),
                    )
                    .optional()?;
                assert_eq!(dangling, None);
                let fk: i64 =
                    c.query_row("PRAGMA foreign_keys", crate::store::db::params![], |r| {
                        r.get(0)
                    })?;
                assert_eq!(fk, 1);
                let index: i64 = c.query_row(
                    "SELECT COUNT(*) FROM sqlite_master WHERE name = 'incidents_state'",
                    crate::store::db::params![],
                    |r| r.get(0),
                )?;
                assert_eq!(index, 1);
                Ok(())
            })
            .unwrap();
        let orphan = store.with_conn(|c| {
            c.execute(
                "INSERT INTO locations (incident_id, source, path, line, col, rule_id) \
                 VALUES (9999, 'file', 'x', 1, 1, 'r')",
                crate::store::db::params![],
            )
        });
        assert!(orphan.is_err(), "a location of no incident is refused");
    }

    #[test]
    fn the_database_refuses_a_state_or_stage_outside_the_machine() {
        let store = crate::store::Store::in_memory().unwrap();
        let insert = |state: &str, stage: &str| {
            store.with_conn(|c| {
                c.execute(
                    "INSERT INTO incidents (fingerprint, provider, rule_id, rule_name, redacted, \
                     state, stage) VALUES (?1, 'github', 'github.pat', 'GitHub', 'ghp_…', ?2, ?3)",
                    crate::store::db::params![Fingerprint::of(state.as_bytes()), state, stage],
                )
            })
        };
        let refused = insert("frozen", "detected").unwrap_err().to_string();
        assert!(refused.to_lowercase().contains("check"), "{refused}");
        assert!(insert("detected", "inventory").is_err(), "bad stage");
        insert("waiting-manual", "inventoried").unwrap();
        let update = store.with_conn(|c| {
            c.execute(
                "UPDATE incidents SET state = 'Closed'",
                crate::store::db::params![],
            )
        });
        assert!(update.is_err(), "spelling is exact");
        let data = store.with_conn(|c| {
            c.execute(
                "UPDATE incidents SET playbook_data = '[1]'",
                crate::store::db::params![],
            )
        });
        assert!(data.is_err(), "playbook data is an object");
    }
}
