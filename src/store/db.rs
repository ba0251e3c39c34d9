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
use std::fmt;

/// One SQL value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::Null => "NULL",
            Value::Int(_) => "an integer",
            Value::Real(_) => "a real",
            Value::Text(_) => "text",
            Value::Blob(_) => "bytes",
        }
    }
}

/// Which engine a connection talks to (for the few queries whose SQL must
/// differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

/// An error of either engine, or of a value that does not fit its column.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Postgres(String),
    /// The database could not be reached or the connection broke.
    #[error("the PostgreSQL store is unreachable: {0}; check that the server runs and `store.url` names it (the daemon retries)")]
    Unavailable(String),
    #[error("query returned no rows")]
    NoRows,
    #[error("column {column}: expected {expected}, found {found}")]
    Type {
        column: usize,
        expected: &'static str,
        found: &'static str,
    },
    #[error("{0}")]
    Conversion(String),
}

impl DbError {
    /// PostgreSQL's SQLSTATE, when the server answered with one.
    pub(super) fn pg(code: Option<&str>, message: String) -> DbError {
        match code {
            Some(code) => DbError::Postgres(format!("{message} (SQLSTATE {code})")),
            None => DbError::Unavailable(message),
        }
    }

    fn sqlstate(&self) -> Option<&str> {
        match self {
            DbError::Postgres(m) => m
                .rsplit_once("(SQLSTATE ")
                .and_then(|(_, c)| c.strip_suffix(')')),
            _ => None,
        }
    }

    /// A constraint (unique, check, foreign key) refused the write.
    pub fn is_constraint_violation(&self) -> bool {
        match self {
            DbError::Sqlite(e) => {
                e.sqlite_error_code() == Some(rusqlite::ErrorCode::ConstraintViolation)
            }
            _ => self.sqlstate().is_some_and(|c| c.starts_with("23")),
        }
    }

    /// The value was too big for the engine.
    pub fn is_too_big(&self) -> bool {
        match self {
            DbError::Sqlite(e) => e.sqlite_error_code() == Some(rusqlite::ErrorCode::TooBig),
            _ => self.sqlstate() == Some("54000"),
        }
    }

    /// A concurrent transaction won: running the same transaction again is
    /// correct (serialization failure, deadlock, a unique key inserted by a
    /// concurrent transaction).
    pub(super) fn is_retryable(&self) -> bool {
        matches!(self.sqlstate(), Some("40001" | "40P01" | "23505"))
    }

    /// The server is down or the connection broke.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, DbError::Unavailable(_))
    }
}

pub type Result<T, E = DbError> = std::result::Result<T, E>;

/// A value that can be bound to a placeholder.
pub trait ToValue {
    fn to_value(&self) -> Result<Value>;
}

/// A value that can be read from a column.
pub trait FromValue: Sized {
    fn from_value(v: &Value, column: usize) -> Result<Self>;
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Result<Value> {
        (**self).to_value()
    }
}

impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Result<Value> {
        match self {
            Some(v) => v.to_value(),
            None => Ok(Value::Null),
        }
    }
}

macro_rules! int_to_value {
    ($($t:ty),*) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Result<Value> {
                i64::try_from(*self)
                    .map(Value::Int)
                    .map_err(|_| DbError::Conversion(format!("{} does not fit a 64-bit integer", self)))
            }
        }
        impl FromValue for $t {
            fn from_value(v: &Value, column: usize) -> Result<Self> {
                match v {
                    Value::Int(i) => <$t>::try_from(*i).map_err(|_| {
                        DbError::Conversion(format!("column {column}: {i} is out of range"))
                    }),
                    other => Err(DbError::Type { column, expected: "an integer", found: other.kind() }),
                }
            }
        }
    )*};
}
int_to_value!(i64, i32, u32, u64, usize, u16, u8);

impl ToValue for bool {
    fn to_value(&self) -> Result<Value> {
        Ok(Value::Int(*self as i64))
    }
}

impl FromValue for bool {
    fn from_value(v: &Value, column: usize) -> Result<Self> {
        i64::from_value(v, column).map(|i| i != 0)
    }
}

impl ToValue for f64 {
    fn to_value(&self) -> Result<Value> {
        Ok(Value::Real(*self))
    }
}

impl FromValue for f64 {
    fn from_value(v: &Value, column: usize) -> Result<Self> {
        match v {
            Value::Real(f) => Ok(*f),
            Value::Int(i) => Ok(*i as f64),
            other => Err(DbError::Type {
                column,
                expected: "a real",
                found: other.kind(),
            }),
        }
    }
}

impl ToValue for str {
    fn to_value(&self) -> Result<Value> {
        Ok(Value::Text(self.to_owned()))
    }
}

impl ToValue for String {
    fn to_value(&self) -> Result<Value> {
        Ok(Value::Text(self.clone()))
    }
}

impl FromValue for String {
    fn from_value(v: &Value, column: usize) -> Result<Self> {
        match v {
            Value::Text(s) => Ok(s.clone()),
            other => Err(DbError::Type {
                column,
                expected: "text",
                found: other.kind(),
            }),
        }
    }
}

impl ToValue for [u8] {
    fn to_value(&self) -> Result<Value> {
        Ok(Value::Blob(self.to_vec()))
    }
}

impl ToValue for Vec<u8> {
    fn to_value(&self) -> Result<Value> {
        Ok(Value::Blob(self.clone()))
    }
}

impl FromValue for Vec<u8> {
    fn from_value(v: &Value, column: usize) -> Result<Self> {
        match v {
            Value::Blob(b) => Ok(b.clone()),
            other => Err(DbError::Type {
                column,
                expected: "bytes",
                found: other.kind(),
            }),
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value, column: usize) -> Result<Self> {
        match v {
            Value::Null => Ok(None),
            v => T::from_value(v, column).map(Some),
        }
    }
}

impl ToValue for Value {
    fn to_value(&self) -> Result<Value> {
        Ok(self.clone())
    }
}

/// A text column's value.
pub fn text(v: &Value, column: usize) -> Result<&str> {
    match v {
        Value::Text(s) => Ok(s),
        other => Err(DbError::Type {
            column,
            expected: "text",
            found: other.kind(),
        }),
    }
}

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

/// A column position (a trait, as in rusqlite, so that `r.get(0)` takes the
/// literal as a `usize`).
pub trait RowIndex {
    fn index(self) -> usize;
}

impl RowIndex for usize {
    fn index(self) -> usize {
        self
    }
}

/// One result row.
#[derive(Debug)]
pub struct Row {
    values: Vec<Value>,
}

impl Row {
    pub(super) fn new(values: Vec<Value>) -> Row {
        Row { values }
    }

    /// Column `idx` as a `T`. (The unused type parameter keeps rusqlite's
    /// `get::<_, T>` call shape.)
    pub fn get<I: RowIndex, T: FromValue>(&self, idx: I) -> Result<T> {
        let idx = idx.index();
        let v = self
            .values
            .get(idx)
            .ok_or_else(|| DbError::Conversion(format!("no column {idx}")))?;
        T::from_value(v, idx)
    }
}

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

/// What one statement gave back.
pub(super) struct Outcome {
    pub rows: Vec<Row>,
    pub changed: usize,
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
