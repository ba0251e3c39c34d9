//! The daemon's state: log offsets, known log globs and repository cursors.
//!
//! Sources never write here directly: they describe what to persist as a
//! [`DaemonWrite`], which travels through the pipeline behind the data it
//! covers and is applied only once that data's findings are with the
//! remediation engine.

use super::{Store, StoreError};
use crate::store::db::{params, OptionalExtension};
use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

/// A file's identity: survives renames, changes when a new file takes the
/// path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

/// How far a log file was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOffset {
    pub id: FileId,
    pub path: PathBuf,
    pub offset: u64,
    /// Newlines before `offset`.
    pub line: u64,
    pub head_len: u64,
    /// Lowercase hex SHA-256 of the first `head_len` bytes.
    pub head_hash: String,
}

/// One thing to persist once the data before it has been handed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonWrite {
    Offset(LogOffset),
    /// The file is finished (rotated away and drained, or deleted).
    Forget(FileId),
    /// A `watch.logs` glob has been watched: later files under it are new.
    GlobSeen(String),
    RepoTips {
        repo: String,
        tips: Vec<String>,
    },
}

// SQLite integers are i64; identities and offsets round-trip bit for bit.
fn to_sql(n: u64) -> i64 {
    n as i64
}

fn from_sql(n: i64) -> u64 {
    n as u64
}

impl Store {
    pub fn log_offsets(&self) -> Result<Vec<LogOffset>, StoreError> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare(
                "SELECT dev, ino, path, byte_offset, line, head_len, head_hash FROM log_offsets \
                 WHERE node = ?1",
            )?;
            let rows = stmt.query_map([self.node()], |r| {
                Ok(LogOffset {
                    id: FileId {
                        dev: from_sql(r.get(0)?),
                        ino: from_sql(r.get(1)?),
                    },
                    path: PathBuf::from(r.get::<_, String>(2)?),
                    offset: from_sql(r.get(3)?),
                    line: from_sql(r.get(4)?),
                    head_len: from_sql(r.get(5)?),
                    head_hash: r.get(6)?,
                })
            })?;
            rows.collect()
        })
    }

    pub fn known_log_globs(&self) -> Result<HashSet<String>, StoreError> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare("SELECT glob FROM log_globs WHERE node = ?1")?;
            let rows = stmt.query_map([self.node()], |r| r.get::<_, String>(0))?;
            rows.collect()
        })
    }

    pub fn repo_tips(&self, repo: &str) -> Result<Option<Vec<String>>, StoreError> {
        let json: Option<String> = self.with_conn(|conn| {
            conn.query_row(
                "SELECT tips FROM repo_cursors WHERE node = ?1 AND repo = ?2",
                [self.node(), repo],
                |r| r.get(0),
            )
            .optional()
        })?;
        // A cursor that does not parse is treated as absent: the repository
        // is scanned again in full, which re-finds but never misses.
        Ok(json.and_then(|j| serde_json::from_str(&j).ok()))
    }

    /// Applies writes in one transaction, in order.
    pub fn apply_daemon_writes(&self, writes: &[DaemonWrite]) -> Result<(), StoreError> {
        if writes.is_empty() {
            return Ok(());
        }
        self.with_conn(|conn| {
            let tx = conn.transaction()?;
            for w in writes {
                apply_one(&tx, self.node(), w)?;
            }
            tx.commit()
        })
    }

    /// Incident counts by state, for `/metrics`. Empty while the incident
    /// table does not exist yet.
    pub fn incident_counts(&self) -> BTreeMap<String, u64> {
        self.counts_by_state("incidents")
    }

    /// GitHub webhook deliveries by state (`pending`, `done`, `failed`), for
    /// `/metrics`.
    pub fn webhook_delivery_counts(&self) -> BTreeMap<String, u64> {
        self.counts_by_state("webhook_deliveries")
    }

    fn counts_by_state(&self, table: &str) -> BTreeMap<String, u64> {
        self.with_conn(|conn| counts_by_state(conn, table))
            .unwrap_or_default()
    }
}

/// Rows of `table` per `state`: incidents here, deliveries in the webhook
/// store too.
pub(super) fn counts_by_state(
    conn: &crate::store::db::Conn<'_>,
    table: &str,
) -> crate::store::db::Result<BTreeMap<String, u64>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT state, count(*) FROM {table} GROUP BY state"
    ))?;
    let rows = stmt.query_map(crate::store::db::params![], |r| {
        Ok((r.get::<_, String>(0)?, from_sql(r.get::<_, i64>(1)?)))
    })?;
    rows.collect()
}

fn apply_one(
    tx: &crate::store::db::Transaction<'_>,
    node: &str,
    w: &DaemonWrite,
) -> crate::store::db::Result<()> {
    match w {
        DaemonWrite::Offset(o) => {
            tx.prepare_cached(
                "INSERT INTO log_offsets (node, dev, ino, path, byte_offset, line, head_len, head_hash) \
                 VALUES (?8, ?1, ?2, ?3, ?4, ?5, ?6, ?7) \
                 ON CONFLICT (node, dev, ino) DO UPDATE SET path = excluded.path, \
                 byte_offset = excluded.byte_offset, line = excluded.line, head_len = excluded.head_len, \
                 head_hash = excluded.head_hash, \
                 updated_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now')",
            )?
            .execute(params![
                to_sql(o.id.dev),
                to_sql(o.id.ino),
                o.path.to_string_lossy().into_owned(),
                to_sql(o.offset),
                to_sql(o.line),
                to_sql(o.head_len),
                o.head_hash,
                node,
            ])?;
        }
        DaemonWrite::Forget(id) => {
            tx.prepare_cached("DELETE FROM log_offsets WHERE dev = ?1 AND ino = ?2 AND node = ?3")?
                .execute(params![to_sql(id.dev), to_sql(id.ino), node])?;
        }
        DaemonWrite::GlobSeen(glob) => {
            tx.prepare_cached(
                "INSERT INTO log_globs (node, glob) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
            )?
            .execute([node, glob.as_str()])?;
        }
        DaemonWrite::RepoTips { repo, tips } => {
            let json = serde_json::to_string(tips).unwrap_or_else(|_| "[]".to_string());
            tx.prepare_cached(
                "INSERT INTO repo_cursors (node, repo, tips) VALUES (?3, ?1, ?2) \
                 ON CONFLICT (node, repo) DO UPDATE SET tips = excluded.tips, \
                 updated_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now')",
            )?
            .execute(params![repo, json, node])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset(ino: u64, off: u64) -> LogOffset {
        LogOffset {
            id: FileId { dev: u64::MAX, ino },
            path: PathBuf::from("/var/log/app.log"),
            offset: off,
            line: 3,
            head_len: 10,
            head_hash: "ab".into(),
        }
    }

    #[test]
    fn writes_round_trip_and_forget_removes() {
        let store = Store::in_memory().unwrap();
        store
            .apply_daemon_writes(&[
                DaemonWrite::Offset(offset(1, 10)),
                DaemonWrite::Offset(offset(2, 20)),
                DaemonWrite::Offset(offset(1, 15)),
                DaemonWrite::Forget(FileId {
                    dev: u64::MAX,
                    ino: 2,
                }),
                DaemonWrite::GlobSeen("/var/log/*.log".into()),
                DaemonWrite::RepoTips {
                    repo: "/srv/repo".into(),
                    tips: vec!["abc".into()],
                },
            ])
            .unwrap();
        assert_eq!(store.log_offsets().unwrap(), vec![offset(1, 15)]);
        assert!(store.known_log_globs().unwrap().contains("/var/log/*.log"));
        assert_eq!(
            store.repo_tips("/srv/repo").unwrap(),
            Some(vec!["abc".to_string()])
        );
        assert_eq!(store.repo_tips("/elsewhere").unwrap(), None);
    }
}
