//! The incident store: what makes keysentry idempotent across runs,
//! restarts and, on a shared PostgreSQL, across a fleet of daemons.
//!
//! Two backends sit behind one [`Store`]: SQLite at
//! `<state_dir>/keysentry.db` (embedded, the default: one host needs
//! nothing installed) and PostgreSQL (`store.url`), shared by many daemons.
//! The query files (`incidents.rs`, `journal.rs`, ...) are written once
//! against [`db`], in SQL both engines accept.
//!
//! The schema is a list of numbered SQL files in `migrations/`, embedded in
//! the binary and applied in order when the store opens. SQLite records the
//! version in `PRAGMA user_version`; PostgreSQL in `keysentry_schema`, under
//! an advisory lock so daemons starting together migrate once.

mod daemon;
pub(crate) mod db;
mod escrow;
mod incidents;
mod journal;
mod lifecycle;
pub mod pg;
mod state;
pub mod timeline;
mod transition;
mod value;
mod views;
pub mod webhook;

pub use daemon::{DaemonWrite, FileId, LogOffset};
pub use db::DbError;
pub use escrow::EscrowRow;
pub use incidents::{AlertRow, IncidentRow, LocationRow, NewIncident, PlaybookData, STATES};
pub use journal::{JournalEntry, Outcome};
pub use lifecycle::{EventRow, Reopened, TransitionError};
pub use state::{Refused, Stage, State, UnknownValue};
pub use views::{
    actions_taken, needs_a_human, Day, IncidentFilter, IncidentList, IncidentSummary, IncidentView,
    Page, Stats, NEEDS_A_HUMAN,
};

use db::Conn;
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// SQLite's schema migrations, applied in order. To add one, add its file
/// and one line here (and the same change for PostgreSQL below, with the
/// same number); never edit or reorder a released migration.
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
    ("0007_fleet", include_str!("migrations/0007_fleet.sql")),
    (
        "0008_delivery_claims",
        include_str!("migrations/0008_delivery_claims.sql"),
    ),
];

/// PostgreSQL's migrations: `(version reached, name, SQL)`. The store
/// started on PostgreSQL at version 7, with one file holding what SQLite's
/// 0001-0007 built.
const PG_MIGRATIONS: &[(usize, &str, &str)] = &[
    (
        7,
        "0007_baseline",
        include_str!("migrations/postgres/0007_baseline.sql"),
    ),
    (
        8,
        "0008_delivery_claims",
        include_str!("migrations/postgres/0008_delivery_claims.sql"),
    ),
];

/// The schema version this keysentry writes, on both engines.
const SCHEMA_VERSION: usize = MIGRATIONS.len();

/// The advisory lock key under which PostgreSQL migrations run ("keys").
const MIGRATION_LOCK: i64 = 0x6b65_7973;

/// How many times a PostgreSQL transaction that lost to a concurrent one
/// runs again before the error is given up.
const PG_RETRIES: u32 = 12;

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
    Open { path: PathBuf, source: DbError },
    #[error("store {path}: migration {name} failed: {source}; the store was left at the previous version")]
    Migrate {
        path: PathBuf,
        name: &'static str,
        source: DbError,
    },
    #[error("store {path} has schema version {found}, newer than this keysentry knows ({known}); upgrade keysentry")]
    TooNew {
        path: PathBuf,
        found: usize,
        known: usize,
    },
    #[error("`store.url`: {0}")]
    Url(String),
    #[error("store {path}: {source}")]
    Sql { path: PathBuf, source: DbError },
}

enum Backend {
    /// One connection behind a mutex, taken for one query or transaction at
    /// a time and never across an `.await`.
    Sqlite(Mutex<Connection>),
    Postgres(pg::PgPool),
}

/// The store. `Send + Sync`.
pub struct Store {
    backend: Backend,
    /// Where it is, for messages: the SQLite file, or the PostgreSQL URL
    /// without its password.
    path: PathBuf,
    /// This daemon's name in a fleet: keys its per-host state, marks its
    /// locations and its leases.
    node: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("node", &self.node)
            .finish()
    }
}

/// This host's node name when the config names none: `$KEYSENTRY_NODE`
/// (a Kubernetes DaemonSet sets it from the node's name), else the
/// hostname.
pub fn default_node() -> String {
    if let Some(n) = std::env::var("KEYSENTRY_NODE")
        .ok()
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())
    {
        return n;
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "localhost".to_owned())
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
            source: source.into(),
        })?;
        restrict_mode(&path);
        Store::from_connection(conn, path, default_node())
    }

    /// The store a config names: PostgreSQL when `store.url` (or
    /// `store.url_env`) is set, else SQLite in the state directory.
    pub fn from_config(config: &crate::config::Config) -> Result<Store, StoreError> {
        let node = config.node.clone().unwrap_or_else(default_node);
        match config
            .store
            .as_ref()
            .map(|s| s.resolve_url())
            .transpose()
            .map(Option::flatten)
        {
            Err(e) => Err(StoreError::Url(e)),
            Ok(Some(url)) => {
                let max = config
                    .store
                    .as_ref()
                    .and_then(|s| s.max_connections)
                    .unwrap_or(4);
                Store::connect(&url, &node, max)
            }
            Ok(None) => {
                let mut store = Store::open(&state_dir(config.state_dir.as_deref()))?;
                store.set_node(node)?;
                Ok(store)
            }
        }
    }

    /// Connects to a PostgreSQL store and brings its schema up to date.
    pub fn connect(url: &str, node: &str, max_connections: usize) -> Result<Store, StoreError> {
        let target = pg::PgTarget::parse(url).map_err(StoreError::Url)?;
        let path = PathBuf::from(target.shown());
        let pool = pg::PgPool::new(target, max_connections).map_err(|e| StoreError::Open {
            path: path.clone(),
            source: DbError::Unavailable(e.to_string()),
        })?;
        let store = Store {
            backend: Backend::Postgres(pool),
            path,
            node: node.to_owned(),
        };
        store.migrate_pg()?;
        Ok(store)
    }

    /// A throwaway store, for tests and dry runs without a state directory.
    ///
    /// In this crate's own tests, `KEYSENTRY_TEST_BACKEND=postgres` makes
    /// it a fresh database on `KEYSENTRY_TEST_PG_URL` instead, so the same
    /// store tests run on both engines (`.ci/run` runs them twice).
    pub fn in_memory() -> Result<Store, StoreError> {
        #[cfg(test)]
        if std::env::var("KEYSENTRY_TEST_BACKEND").as_deref() == Ok("postgres") {
            return Ok(testing::fresh_pg_store());
        }
        let path = PathBuf::from(":memory:");
        let conn = Connection::open_in_memory().map_err(|source| StoreError::Open {
            path: path.clone(),
            source: source.into(),
        })?;
        Store::from_connection(conn, path, default_node())
    }

    fn from_connection(
        mut conn: Connection,
        path: PathBuf,
        node: String,
    ) -> Result<Store, StoreError> {
        let sql = |source: rusqlite::Error| StoreError::Sql {
            path: path.clone(),
            source: source.into(),
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
        let mut store = Store {
            backend: Backend::Sqlite(Mutex::new(conn)),
            path,
            node: String::new(),
        };
        store.set_node(node)?;
        Ok(store)
    }

    /// Names this store's daemon. A SQLite store has one host: per-host
    /// rows written before fleets (node '') or under an earlier hostname
    /// become this node's.
    fn set_node(&mut self, node: String) -> Result<(), StoreError> {
        self.node = node;
        if matches!(self.backend, Backend::Sqlite(_)) {
            let node = self.node.clone();
            self.with_conn(|c| {
                for table in ["log_offsets", "log_globs", "repo_cursors"] {
                    c.execute(
                        &format!("UPDATE {table} SET node = ?1 WHERE node <> ?1"),
                        [&node],
                    )?;
                }
                // Locations recorded before fleets were this host's too.
                c.execute("UPDATE locations SET node = ?1 WHERE node = ''", [&node])?;
                Ok(())
            })?;
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This daemon's node name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// Runs `f` on a connection and names the store in any error. On
    /// PostgreSQL, `f` runs again (up to [`PG_RETRIES`] times) when a
    /// concurrent transaction won; it must only touch the database.
    pub fn with_conn<T>(
        &self,
        mut f: impl FnMut(&mut Conn<'_>) -> db::Result<T>,
    ) -> Result<T, StoreError> {
        self.with_conn_or(
            |c| {
                f(c).map_err(|source| StoreError::Sql {
                    path: self.path.clone(),
                    source,
                })
            },
            |e| match e {
                StoreError::Sql { source, .. } => Some(source),
                _ => None,
            },
        )
    }

    /// As [`Store::with_conn`], for closures with an error type of their own;
    /// `db_error` finds the database's error in it (to tell whether to run
    /// again).
    pub(crate) fn with_conn_or<T, E: From<StoreError>>(
        &self,
        mut f: impl FnMut(&mut Conn<'_>) -> Result<T, E>,
        db_error: impl Fn(&E) -> Option<&DbError>,
    ) -> Result<T, E> {
        match &self.backend {
            Backend::Sqlite(m) => {
                // A panic while holding the lock leaves SQLite consistent
                // (statements are atomic), so a poisoned lock is safe to use.
                let mut guard = m.lock().unwrap_or_else(|p| p.into_inner());
                f(&mut Conn::Sqlite(&mut guard))
            }
            Backend::Postgres(pool) => {
                let mut attempt = 0;
                loop {
                    let session = pool.session().map_err(|source| StoreError::Sql {
                        path: self.path.clone(),
                        source,
                    })?;
                    match f(&mut Conn::Pg(&session)) {
                        Err(e)
                            if attempt < PG_RETRIES
                                && db_error(&e).is_some_and(|d| d.is_retryable()) =>
                        {
                            drop(session);
                            attempt += 1;
                            // Doubling waits with jitter, so that the
                            // transactions that collided do not collide again.
                            let base = 2u64 << attempt.min(6);
                            let jitter = u64::from(
                                std::time::SystemTime::now()
                                    .duration_since(std::time::UNIX_EPOCH)
                                    .map(|d| d.subsec_nanos())
                                    .unwrap_or(0),
                            ) % base;
                            std::thread::sleep(Duration::from_millis(base + jitter));
                        }
                        r => return r,
                    }
                }
            }
        }
    }

    fn migrate_pg(&self) -> Result<(), StoreError> {
        let path = self.path.clone();
        let Backend::Postgres(pool) = &self.backend else {
            return Ok(());
        };
        let session = pool.session().map_err(|source| StoreError::Open {
            path: path.clone(),
            source,
        })?;
        let conn = Conn::Pg(&session);
        let open = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        // One daemon migrates; the others wait on the lock, then find the
        // schema current. The version table too is created under the lock:
        // two `CREATE TABLE IF NOT EXISTS` at once can both miss the table
        // and one fail on the catalog (42710, or 23505).
        conn.execute_batch("BEGIN").map_err(open)?;
        let result = (|| {
            conn.query_row("SELECT pg_advisory_xact_lock(?1)", [MIGRATION_LOCK], |_| {
                Ok(())
            })
            .map_err(open)?;
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS keysentry_schema (version BIGINT NOT NULL)",
            )
            .map_err(open)?;
            let version: usize = conn
                .query_row(
                    "SELECT MAX(version) FROM keysentry_schema",
                    db::params![],
                    |r| r.get::<_, Option<i64>>(0),
                )
                .map_err(open)?
                .unwrap_or(0)
                .try_into()
                .unwrap_or(0);
            if version > SCHEMA_VERSION {
                return Err(StoreError::TooNew {
                    path: path.clone(),
                    found: version,
                    known: SCHEMA_VERSION,
                });
            }
            for (reached, name, sql) in PG_MIGRATIONS {
                if *reached <= version {
                    continue;
                }
                let fail = |source| StoreError::Migrate {
                    path: path.clone(),
                    name,
                    source,
                };
                conn.execute_batch(sql).map_err(fail)?;
                conn.execute("DELETE FROM keysentry_schema", db::params![])
                    .map_err(fail)?;
                conn.execute(
                    "INSERT INTO keysentry_schema (version) VALUES (?1)",
                    [*reached as i64],
                )
                .map_err(fail)?;
            }
            Ok(())
        })();
        match result {
            Ok(()) => conn.execute_batch("COMMIT").map_err(open),
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                Err(e)
            }
        }
    }
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let version: usize = conn
        .pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))
        .map_err(|source| StoreError::Sql {
            path: path.to_path_buf(),
            source: source.into(),
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
    let sql = |source: rusqlite::Error| StoreError::Sql {
        path: path.to_path_buf(),
        source: source.into(),
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
        let fail = |source: rusqlite::Error| StoreError::Migrate {
            path: path.to_path_buf(),
            name,
            source: source.into(),
        };
        let tx = conn.transaction().map_err(fail)?;
        tx.execute_batch(sql).map_err(fail)?;
        let dangling: Option<String> = rusqlite::OptionalExtension::optional(tx.query_row(
            "PRAGMA foreign_key_check",
            [],
            |r| r.get(0),
        ))
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

/// PostgreSQL for this crate's tests: a server named by
/// `KEYSENTRY_TEST_PG_URL` (`.ci/run` starts one with `.ci/postgres.sh`),
/// and a fresh database on it per store.
#[cfg(test)]
pub(crate) mod testing {
    use super::Store;

    pub fn pg_url() -> String {
        std::env::var("KEYSENTRY_TEST_PG_URL").unwrap_or_else(|_| {
            panic!(
                "KEYSENTRY_TEST_PG_URL is unset: the PostgreSQL store tests need a server. \
                 .ci/run starts one; by hand: export KEYSENTRY_TEST_PG_URL=$(bash .ci/postgres.sh start)"
            )
        })
    }

    /// A URL of a new, empty database on the test server.
    pub fn fresh_pg_url() -> String {
        super::pg::fresh_database(&pg_url(), "ks_unit").expect("CREATE DATABASE on the test server")
    }

    pub fn fresh_pg_store() -> Store {
        Store::connect(&fresh_pg_url(), "test-node", 4).expect("connect to the test database")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_applies_every_migration_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let version: i64 = store
            .with_conn(|c| c.query_row("PRAGMA user_version", db::params![], |r| r.get(0)))
            .unwrap();
        assert_eq!(version, MIGRATIONS.len() as i64);
        drop(store);
        // Reopening must not re-run migration 0001 (CREATE TABLE would fail).
        Store::open(dir.path()).unwrap();
    }

    /// PostgreSQL: more callers than connections wait their turn; none is
    /// refused, and a transaction that loses a race runs again.
    #[test]
    fn a_small_pool_serves_many_threads_and_concurrent_transactions() {
        let store = Store::connect(&testing::fresh_pg_url(), "pool-test", 2).unwrap();
        std::thread::scope(|s| {
            for t in 0..12 {
                let store = &store;
                s.spawn(move || {
                    for i in 0..20 {
                        store
                            .record_findings(&[NewIncident {
                                fingerprint: crate::scan::Fingerprint::of(
                                    format!("shared-{}", i % 5).as_bytes(),
                                ),
                                provider: "tatum".into(),
                                rule_id: "tatum.api-key".into(),
                                rule_name: "Tatum".into(),
                                redacted: "t-…".into(),
                                owner: None,
                                location: LocationRow {
                                    source: "log".into(),
                                    path: format!("/var/log/t{t}.log"),
                                    line: i,
                                    column: 1,
                                    commit: None,
                                    repo: None,
                                    author_email: None,
                                    rule_id: "tatum.api-key".into(),
                                    first_seen: String::new(),
                                    node: String::new(),
                                },
                            }])
                            .unwrap();
                    }
                });
            }
        });
        let all = store.incidents().unwrap();
        assert_eq!(all.len(), 5, "one incident per fingerprint");
        let locations: usize = all
            .iter()
            .map(|i| store.locations(i.id).unwrap().len())
            .sum();
        assert_eq!(locations, 12 * 20);
    }

    /// PostgreSQL: daemons that start together on an empty database all
    /// open it (one migrates, the others wait and find it current). Each
    /// round races eight openings through a barrier.
    #[test]
    fn many_stores_opened_at_once_on_an_empty_database_all_succeed() {
        for _ in 0..6 {
            let url = testing::fresh_pg_url();
            let start = std::sync::Barrier::new(8);
            let opened: Vec<Result<Store, String>> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..8)
                    .map(|n| {
                        let (url, start) = (&url, &start);
                        s.spawn(move || {
                            start.wait();
                            Store::connect(url, &format!("node-{n}"), 1).map_err(|e| e.to_string())
                        })
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            for o in &opened {
                assert!(o.is_ok(), "{:?}", o.as_ref().err());
            }
        }
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .with_conn(|c| c.execute_batch("PRAGMA user_version = 999"))
            .unwrap();
        drop(store);
        let err = Store::open(dir.path()).unwrap_err();
        assert!(
            matches!(err, StoreError::TooNew { found: 999, .. }),
            "{err}"
        );
    }
}
