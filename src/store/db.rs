//! One query interface over the two store backends: SQLite (embedded, the
//! default) and PostgreSQL (a fleet's shared store).
//!
//! The store's query files are written once, against this module, in the
//! shape of `rusqlite`'s API (`execute`, `query_row`, `prepare_cached` +
//! `query_map`, transactions, `params!`, `.optional()`), in the SQL both
//! engines accept. PostgreSQL gets the same text with its placeholders and
//! the few SQLite-only functions rewritten ([`super::pg::translate`]).
//! Values cross as [`Value`]: integers, reals, text, bytes and NULL, the
//! types the schema uses.

use super::pg::PgSession;
pub(crate) use super::value::Outcome;
pub use super::value::{text, DbError, Dialect, FromValue, Result, Row, ToValue, Value};
use std::fmt;

/// The parameters of one statement.
pub trait Params {
    fn values(self) -> Result<Vec<Value>>;
}

impl Params for &[&dyn ToValue] {
    fn values(self) -> Result<Vec<Value>> {
        self.iter().map(|v| v.to_value()).collect()
    }
}

impl<T: ToValue, const N: usize> Params for [T; N] {
    fn values(self) -> Result<Vec<Value>> {
        self.iter().map(|v| v.to_value()).collect()
    }
}

impl Params for Vec<Value> {
    fn values(self) -> Result<Vec<Value>> {
        Ok(self)
    }
}

/// `params![a, b, c]`: the values of one statement, in placeholder order.
macro_rules! params {
    () => {
        &[] as &[&dyn $crate::store::db::ToValue]
    };
    ($($p:expr),+ $(,)?) => {
        &[$(&$p as &dyn $crate::store::db::ToValue),+] as &[&dyn $crate::store::db::ToValue]
    };
}
pub(crate) use params;

/// `.optional()` on a single-row result: no row is `None`, not an error.
pub trait OptionalExtension<T> {
    fn optional(self) -> Result<Option<T>>;
}

impl<T> OptionalExtension<T> for Result<T> {
    fn optional(self) -> Result<Option<T>> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(DbError::NoRows) | Err(DbError::Sqlite(rusqlite::Error::QueryReturnedNoRows)) => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

/// How a transaction starts. SQLite: `Immediate` takes the write lock at
/// once (no SQLITE_BUSY after a read). PostgreSQL: every transaction is
/// SERIALIZABLE, and the store runs it again when a concurrent one wins.
#[derive(Debug, Clone, Copy)]
pub enum TransactionBehavior {
    Deferred,
    Immediate,
}

/// The engine behind a connection or transaction, borrowed for one call.
#[derive(Clone, Copy)]
pub(super) enum Exec<'a> {
    Sqlite(&'a rusqlite::Connection),
    Pg(&'a PgSession),
}

impl Exec<'_> {
    fn run(&self, sql: &str, params: Vec<Value>) -> Result<Outcome> {
        match self {
            Exec::Sqlite(c) => sqlite_run(c, sql, params),
            Exec::Pg(s) => s.run(sql, params),
        }
    }

    fn dialect(&self) -> Dialect {
        match self {
            Exec::Sqlite(_) => Dialect::Sqlite,
            Exec::Pg(_) => Dialect::Postgres,
        }
    }
}

fn sqlite_run(c: &rusqlite::Connection, sql: &str, params: Vec<Value>) -> Result<Outcome> {
    let mut stmt = c.prepare_cached(sql)?;
    let bound: Vec<rusqlite::types::Value> = params
        .into_iter()
        .map(|v| match v {
            Value::Null => rusqlite::types::Value::Null,
            Value::Int(i) => rusqlite::types::Value::Integer(i),
            Value::Real(f) => rusqlite::types::Value::Real(f),
            Value::Text(s) => rusqlite::types::Value::Text(s),
            Value::Blob(b) => rusqlite::types::Value::Blob(b),
        })
        .collect();
    let columns = stmt.column_count();
    if columns == 0 {
        let changed = stmt.execute(rusqlite::params_from_iter(bound))?;
        return Ok(Outcome {
            rows: Vec::new(),
            changed,
        });
    }
    let mut rows = stmt.query(rusqlite::params_from_iter(bound))?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let mut values = Vec::with_capacity(columns);
        for i in 0..columns {
            use rusqlite::types::ValueRef;
            values.push(match r.get_ref(i)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(i) => Value::Int(i),
                ValueRef::Real(f) => Value::Real(f),
                ValueRef::Text(t) => Value::Text(
                    std::str::from_utf8(t)
                        .map_err(|_| DbError::Conversion(format!("column {i} is not UTF-8")))?
                        .to_owned(),
                ),
                ValueRef::Blob(b) => Value::Blob(b.to_vec()),
            });
        }
        out.push(Row::new(values));
    }
    drop(rows);
    let changed = c.changes() as usize;
    Ok(Outcome { rows: out, changed })
}

/// The query methods of connections and transactions.
macro_rules! query_methods {
    () => {
        /// Runs one statement; returns how many rows it changed.
        pub fn execute<P: Params>(&self, sql: &str, params: P) -> Result<usize> {
            Ok(self.exec().run(sql, params.values()?)?.changed)
        }

        /// The first row of a query, mapped by `f`; no row is
        /// [`DbError::NoRows`] (see [`OptionalExtension::optional`]).
        pub fn query_row<T, P: Params, F: FnOnce(&Row) -> Result<T>>(
            &self,
            sql: &str,
            params: P,
            f: F,
        ) -> Result<T> {
            let out = self.exec().run(sql, params.values()?)?;
            match out.rows.first() {
                Some(r) => f(r),
                None => Err(DbError::NoRows),
            }
        }

        pub fn prepare_cached(&self, sql: &str) -> Result<Statement<'_>> {
            Ok(Statement {
                exec: self.exec(),
                sql: sql.to_owned(),
            })
        }

        pub fn prepare(&self, sql: &str) -> Result<Statement<'_>> {
            self.prepare_cached(sql)
        }

        /// Runs several `;`-separated statements without parameters.
        pub fn execute_batch(&self, sql: &str) -> Result<()> {
            match self.exec() {
                Exec::Sqlite(c) => Ok(c.execute_batch(sql)?),
                Exec::Pg(s) => s.batch(sql),
            }
        }

        pub fn dialect(&self) -> Dialect {
            self.exec().dialect()
        }
    };
}

/// A statement ready to run (SQLite caches the prepared form; PostgreSQL
/// caches it per connection).
pub struct Statement<'a> {
    exec: Exec<'a>,
    sql: String,
}

impl Statement<'_> {
    pub fn execute<P: Params>(&mut self, params: P) -> Result<usize> {
        Ok(self.exec.run(&self.sql, params.values()?)?.changed)
    }

    pub fn query_row<T, P: Params, F: FnOnce(&Row) -> Result<T>>(
        &mut self,
        params: P,
        f: F,
    ) -> Result<T> {
        let out = self.exec.run(&self.sql, params.values()?)?;
        match out.rows.first() {
            Some(r) => f(r),
            None => Err(DbError::NoRows),
        }
    }

    /// Every row, mapped by `f`.
    pub fn query_map<T, P: Params, F: FnMut(&Row) -> Result<T>>(
        &mut self,
        params: P,
        mut f: F,
    ) -> Result<std::vec::IntoIter<Result<T>>> {
        let out = self.exec.run(&self.sql, params.values()?)?;
        Ok(out.rows.iter().map(&mut f).collect::<Vec<_>>().into_iter())
    }
}

/// A connection taken for one closure of [`super::Store::with_conn`].
pub enum Conn<'a> {
    Sqlite(&'a mut rusqlite::Connection),
    Pg(&'a PgSession),
}

impl Conn<'_> {
    fn exec(&self) -> Exec<'_> {
        match self {
            Conn::Sqlite(c) => Exec::Sqlite(c),
            Conn::Pg(s) => Exec::Pg(s),
        }
    }

    query_methods!();

    pub fn transaction(&mut self) -> Result<Transaction<'_>> {
        self.transaction_with_behavior(TransactionBehavior::Deferred)
    }

    pub fn transaction_with_behavior(
        &mut self,
        behavior: TransactionBehavior,
    ) -> Result<Transaction<'_>> {
        match self {
            Conn::Sqlite(c) => {
                let b = match behavior {
                    TransactionBehavior::Deferred => rusqlite::TransactionBehavior::Deferred,
                    TransactionBehavior::Immediate => rusqlite::TransactionBehavior::Immediate,
                };
                Ok(Transaction::Sqlite(c.transaction_with_behavior(b)?))
            }
            Conn::Pg(s) => {
                s.batch("BEGIN ISOLATION LEVEL SERIALIZABLE")?;
                Ok(Transaction::Pg(PgTransaction {
                    session: s,
                    open: true,
                }))
            }
        }
    }
}

/// An open transaction: rolled back when dropped without [`commit`].
///
/// [`commit`]: Transaction::commit
pub enum Transaction<'a> {
    Sqlite(rusqlite::Transaction<'a>),
    Pg(PgTransaction<'a>),
}

/// A PostgreSQL transaction: `ROLLBACK` when dropped while open.
pub struct PgTransaction<'a> {
    session: &'a PgSession,
    open: bool,
}

impl Transaction<'_> {
    fn exec(&self) -> Exec<'_> {
        match self {
            Transaction::Sqlite(t) => Exec::Sqlite(t),
            Transaction::Pg(t) => Exec::Pg(t.session),
        }
    }

    query_methods!();

    pub fn commit(self) -> Result<()> {
        match self {
            Transaction::Sqlite(t) => Ok(t.commit()?),
            Transaction::Pg(mut t) => {
                t.open = false;
                t.session.batch("COMMIT")
            }
        }
    }
}

impl Drop for PgTransaction<'_> {
    fn drop(&mut self) {
        // A failed rollback leaves the connection in an unknown state: the
        // session is then discarded rather than reused.
        if self.open && self.session.batch("ROLLBACK").is_err() {
            self.session.poison();
        }
    }
}

impl fmt::Debug for Conn<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Conn::Sqlite(_) => "Conn(SQLite)",
            Conn::Pg(_) => "Conn(PostgreSQL)",
        })
    }
}
