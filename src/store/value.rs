//! The values, rows and errors both store backends share (kept apart from
//! [`super::db`] and [`super::pg`] so that neither needs the other's).

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
    pub(crate) fn kind(&self) -> &'static str {
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
    pub(crate) fn pg(code: Option<&str>, message: String) -> DbError {
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
    pub(crate) fn is_retryable(&self) -> bool {
        matches!(self.sqlstate(), Some("40001" | "40P01" | "23505"))
    }
}

pub type Result<T, E = DbError> = std::result::Result<T, E>;

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
    pub(crate) fn new(values: Vec<Value>) -> Row {
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

/// What one statement gave back.
pub(crate) struct Outcome {
    pub(crate) rows: Vec<Row>,
    pub(crate) changed: usize,
}

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
