//! The SQLite store at `<state_dir>/keysentry.db`: what makes keysentry
//! idempotent across runs and restarts.
//!
//! The schema is a list of numbered SQL files in `migrations/`, embedded in
//! the binary and applied in order when the store opens; `PRAGMA
//! user_version` records how many have run. Each area keeps its queries in its
//! own file here (`incidents.rs`, `journal.rs`, ...) as `impl Store` blocks or
//! functions over [`Store::with_conn`].

mod daemon;
mod escrow;
mod incidents;
mod journal;
mod lifecycle;
mod state;
pub mod timeline;
mod transition;
mod views;
pub mod webhook;

pub use daemon::{DaemonWrite, FileId, LogOffset};
pub use escrow::EscrowRow;
pub use incidents::{AlertRow, IncidentRow, LocationRow, NewIncident, PlaybookData, STATES};
pub use journal::{JournalEntry, Outcome};
pub use lifecycle::{EventRow, Reopened, TransitionError};
pub use state::{Refused, Stage, State, UnknownValue};
pub use views::{
    actions_taken, needs_a_human, Day, IncidentFilter, IncidentList, IncidentSummary, IncidentView,
    Page, Stats, NEEDS_A_HUMAN,
};

use rusqlite::{Connection, OptionalExtension};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Schema migrations, applied in order. To add one, add its file and one line
/// here; never edit or reorder a released migration.
const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_remediation",
        include_str!("migrations/0001_remediation.sql"),
    ),
    ("0002_daemon", include_str!("migrations/0002_daemon.sql")),
    ("0003_webhook", include_str!("migrations/0003_webhook.sql")),
    (
        "0004_incident_lifecycle",
        include_str!("migrations/0004_incident_lifecycle.sql"),
    ),
    (
        "0005_typed_incidents",
        include_str!("migrations/0005_typed_incidents.sql"),
    ),
    ("0006_escrow", include_str!("migrations/0006_escrow.sql")),
];

/// The database file name inside the state directory.
pub const DB_FILE: &str = "keysentry.db";

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the state directory {path}: {source}; create it or set `state_dir` in the config to a writable directory")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the store {path}: {source}; check its permissions, or move it aside if it is corrupt")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("store {path}: migration {name} failed: {source}; the store was left at the previous version")]
    Migrate {
        path: PathBuf,
        name: &'static str,
        source: rusqlite::Error,
    },
    #[error("store {path} has schema version {found}, newer than this keysentry knows ({known}); upgrade keysentry")]
    TooNew {
        path: PathBuf,
        found: usize,
        known: usize,
    },
    #[error("store {path}: {source}")]
    Sql {
        path: PathBuf,
        source: rusqlite::Error,
    },
}

/// The store. `Send + Sync`: the connection sits behind a mutex, taken for
/// one query or transaction at a time and never across an `.await`.
pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

impl Store {
    /// Opens (creating if needed) `<state_dir>/keysentry.db` and brings its
    /// schema up to date.
    pub fn open(state_dir: &Path) -> Result<Store, StoreError> {
        create_private_dir(state_dir).map_err(|source| StoreError::CreateDir {
            path: state_dir.to_path_buf(),
            source,
        })?;
        let path = state_dir.join(DB_FILE);
        let conn = Connection::open(&path).map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        restrict_mode(&path);
        Store::from_connection(conn, path)
    }

    /// A throwaway store, for tests and dry runs without a state directory.
    pub fn in_memory() -> Result<Store, StoreError> {
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        Store::from_connection(conn, path)
    }

    fn from_connection(mut conn: Connection, path: PathBuf) -> Result<Store, StoreError> {
        let sql = |source| StoreError::Sql {
            path: path.clone(),
            source,
        };
        conn.busy_timeout(Duration::from_secs(10)).map_err(sql)?;
        // WAL lets `incidents list` read while a daemon writes. NORMAL
        // synchronisation is durable against a killed process (the failure the
        // journal exists for); only a power cut can lose the last commit.
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(sql)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sql)?;
        migrate(&mut conn, &path)?;
        Ok(Store {
            conn: Mutex::new(conn),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection, for other areas' query files. Hold it for one query or
    /// transaction; never across an `.await`.
    pub fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (statements
        // are atomic), so a poisoned lock is safe to keep using.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the connection and names the store in any error.
    pub fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut conn = self.conn();
        f(&mut conn).map_err(|source| StoreError::Sql {
            path: self.path.clone(),
            source,
        })
    }
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let version: usize = conn
        .pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))
        .map_err(|source| StoreError::Sql {
            path: path.to_path_buf(),
            source,
        })?
        .try_into()
        .unwrap_or(0);
    if version > MIGRATIONS.len() {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: version,
            known: MIGRATIONS.len(),
        });
    }
    if version == MIGRATIONS.len() {
        return Ok(());
    }
    // A migration that rebuilds a table (SQLite's way to add a CHECK) drops
    // it while other tables point at it: foreign keys are off meanwhile (the
    // pragma is a no-op inside a transaction, hence out here) and checked
    // before each migration commits.
    let sql = |source| StoreError::Sql {
        path: path.to_path_buf(),
        source,
    };
    conn.pragma_update(None, "foreign_keys", "OFF")
        .map_err(sql)?;
    let migrated = apply(conn, path, version);
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(sql)?;
    migrated
}

fn apply(conn: &mut Connection, path: &Path, version: usize) -> Result<(), StoreError> {
    for (i, (name, sql)) in MIGRATIONS.iter().enumerate().skip(version) {
        let fail = |source| StoreError::Migrate {
            path: path.to_path_buf(),
            name,
            source,
        };
        let tx = conn.transaction().map_err(fail)?;
        tx.execute_batch(sql).map_err(fail)?;
        let dangling: Option<String> = tx
            .query_row("PRAGMA foreign_key_check", [], |r| r.get(0))
            .optional()
            .map_err(fail)?;
        if let Some(table) = dangling {
            return Err(fail(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CONSTRAINT_FOREIGNKEY),
                Some(format!("rows of {table} point at no incident")),
            )));
        }
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(fail)?;
        tx.commit().map_err(fail)?;
    }
    Ok(())
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

/// The store holds no keys, but it does map fingerprints to where keys
/// leaked: readable by its owner only.
fn restrict_mode(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// The state directory a config names, else `$KEYSENTRY_STATE_DIR`, else
/// `$XDG_STATE_HOME/keysentry`, else `~/.local/state/keysentry`, else
/// `/var/lib/keysentry`.
pub fn state_dir(configured: Option<&Path>) -> PathBuf {
    if let Some(dir) = configured {
        return dir.to_path_buf();
    }
    let env = |name| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(dir) = env("KEYSENTRY_STATE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = env("XDG_STATE_HOME") {
        return PathBuf::from(dir).join("keysentry");
    }
    if let Some(home) = env("HOME") {
        return PathBuf::from(home).join(".local/state/keysentry");
    }
    PathBuf::from("/var/lib/keysentry")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_applies_every_migration_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let version: i64 = store
            .with_conn(|c| c.pragma_query_value(None, "user_version", |r| r.get(0)))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        drop(store);
        // Reopening must not re-run migration 0001 (CREATE TABLE would fail).
        Store::open(dir.path()).unwrap();
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .with_conn(|c| c.pragma_update(None, "user_version", 999))
            .unwrap();
        drop(store);
        let err = Store::open(dir.path()).unwrap_err();
        assert!(
            matches!(err, StoreError::TooNew { found: 999, .. }),
            "{err}"
        );
    }
}
