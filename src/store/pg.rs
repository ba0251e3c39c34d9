//! The PostgreSQL backend: a small pool of `tokio-postgres` connections
//! driven by a runtime of their own, on a thread of their own.
//!
//! The store's API is synchronous (a query is one short call, never held
//! across an `.await`), and it is called from the daemon's async tasks, so
//! the connections cannot block on the caller's runtime. Each call sends an
//! owned query to the store's runtime and waits for the answer on a plain
//! channel, with a deadline: a server that hangs turns into an error, not a
//! wedged daemon.

use super::value::{DbError, Outcome, Result, Row, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use tokio_postgres::types::{to_sql_checked, FromSql, IsNull, ToSql, Type};

/// How long one statement may take before the store gives up on it (and on
/// its connection).
const QUERY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the store connects, as given in `store.url` (password removed for
/// messages).
#[derive(Clone)]
pub struct PgTarget {
    config: tokio_postgres::Config,
    tls: Option<tokio_postgres_rustls::MakeRustlsConnect>,
    shown: String,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

impl PgTarget {
    /// Parses a `postgres://` URL. `sslmode=require` (or `prefer`, the
    /// driver's default when a certificate store is given) connects with
    /// TLS (rustls; the server's certificate checked against the Mozilla
    /// roots, or against `sslrootcert=FILE` when the URL names one).
    pub fn parse(url: &str) -> std::result::Result<PgTarget, String> {
        let (base, root_cert) = take_param(url, "sslrootcert");
        let mut config: tokio_postgres::Config = base.parse().map_err(|e| {
            format!("`store.url` is not a PostgreSQL URL ({e}); write it as postgres://USER@HOST:PORT/DATABASE")
        })?;
        if config.get_hosts().is_empty() {
            return Err(
                "`store.url` names no host; write it as postgres://USER@HOST:PORT/DATABASE".into(),
            );
        }
        config.connect_timeout(CONNECT_TIMEOUT);
        if config.get_application_name().is_none() {
            config.application_name("keysentry");
        }
        let tls = match config.get_ssl_mode() {
            tokio_postgres::config::SslMode::Disable => None,
            _ => Some(tls_connector(root_cert.as_deref())?),
        };
        if tls.is_none() {
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
        }
        Ok(PgTarget {
            shown: redact_url(url),
            config,
            tls,
        })
    }

    /// The URL without its password.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

/// Removes `name=value` from a URL's query (tokio-postgres does not know
/// `sslrootcert`).
fn take_param(url: &str, name: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut found = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|kv| match kv.split_once('=') {
            Some((k, v)) if k == name => {
                found = Some(
                    percent_encoding::percent_decode_str(v)
                        .decode_utf8_lossy()
                        .into_owned(),
                );
                false
            }
            _ => true,
        })
        .collect();
    let url = if rest.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    (url, found)
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(not a URL)".into();
    };
    let (auth, host) = match rest.rsplit_once('@') {
        Some((a, h)) => (Some(a), h),
        None => (None, rest),
    };
    let host = host.split_once('?').map_or(host, |(h, _)| h);
    match auth {
        Some(a) => {
            let user = a.split_once(':').map_or(a, |(u, _)| u);
            let mark = if a.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{mark}@{host}")
        }
        None => format!("{scheme}://{host}"),
    }
}

fn tls_connector(
    root_cert: Option<&str>,
) -> std::result::Result<tokio_postgres_rustls::MakeRustlsConnect, String> {
    let mut roots = rustls::RootCertStore::empty();
    match root_cert {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                format!("cannot read `sslrootcert` {path}: {e}; name a readable PEM file of the server's CA")
            })?;
            let mut any = false;
            for cert in rustls_pemfile_certs(&pem) {
                roots
                    .add(cert)
                    .map_err(|e| format!("`sslrootcert` {path}: {e}"))?;
                any = true;
            }
            if !any {
                return Err(format!(
                    "`sslrootcert` {path} holds no PEM certificate; name the server's CA certificate"
                ));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// The certificates of a PEM file.
fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .filter_map(|c| c.ok())
        .collect()
}

struct Client {
    client: tokio_postgres::Client,
    statements: Mutex<HashMap<String, tokio_postgres::Statement>>,
    broken: AtomicBool,
}

struct PoolState {
    idle: Vec<Arc<Client>>,
    open: usize,
}

struct PoolInner {
    target: PgTarget,
    runtime: tokio::runtime::Handle,
    /// Idle connections and how many are open (or being opened), under one
    /// lock so that a waiter never misses a connection given back.
    state: Mutex<PoolState>,
    freed: Condvar,
    max: usize,
}

/// A pool of connections to one PostgreSQL database.
#[derive(Clone)]
pub struct PgPool {
    inner: Arc<PoolInner>,
}

impl std::fmt::Debug for PgPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgPool({})", self.inner.target.shown)
    }
}

impl PgPool {
    /// Starts the pool's runtime; connects lazily.
    pub fn new(target: PgTarget, max: usize) -> std::io::Result<PgPool> {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("keysentry-store".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                let _ = tx.send(Ok(rt.handle().clone()));
                rt.block_on(std::future::pending::<()>());
            })?;
        let runtime = rx
            .recv()
            .map_err(|_| std::io::Error::other("the store's runtime did not start"))??;
        Ok(PgPool {
            inner: Arc::new(PoolInner {
                target,
                runtime,
                state: Mutex::new(PoolState {
                    idle: Vec::new(),
                    open: 0,
                }),
                freed: Condvar::new(),
                max: max.max(1),
            }),
        })
    }

    /// A connection for one closure: an idle one, a new one, or the next one
    /// freed.
    pub fn session(&self) -> Result<PgSession> {
        let inner = &self.inner;
        let deadline = std::time::Instant::now() + QUERY_TIMEOUT;
        let mut st = lock(&inner.state);
        loop {
            while let Some(c) = st.idle.pop() {
                if c.client.is_closed() || c.broken.load(Ordering::Relaxed) {
                    st.open = st.open.saturating_sub(1);
                    continue;
                }
                return Ok(PgSession {
                    pool: self.clone(),
                    client: c,
                });
            }
            if st.open < inner.max {
                st.open += 1;
                drop(st);
                return match self.connect() {
                    Ok(c) => Ok(PgSession {
                        pool: self.clone(),
                        client: Arc::new(c),
                    }),
                    Err(e) => {
                        self.forget();
                        Err(e)
                    }
                };
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(DbError::Unavailable(format!(
                    "every one of the {} connections to {} stayed busy for {}s",
                    inner.max,
                    inner.target.shown,
                    QUERY_TIMEOUT.as_secs()
                )));
            }
            st = inner
                .freed
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    fn forget(&self) {
        let mut st = lock(&self.inner.state);
        st.open = st.open.saturating_sub(1);
        drop(st);
        self.inner.freed.notify_one();
    }

    fn connect(&self) -> Result<Client> {
        let target = self.inner.target.clone();
        let shown = target.shown.clone();
        let client = self.block(async move {
            let client = match target.tls {
                Some(tls) => {
                    let (client, conn) = target.config.connect(tls).await.map_err(pg_error)?;
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    client
                }
                None => {
                    let (client, conn) = target
                        .config
                        .connect(tokio_postgres::NoTls)
                        .await
                        .map_err(pg_error)?;
                    tokio::spawn(async move {
                        let _ = conn.await;
                    });
                    client
                }
            };
            Ok(client)
        });
        let client = client.map_err(|e| match e {
            DbError::Unavailable(m) => DbError::Unavailable(format!("{shown}: {m}")),
            other => other,
        })?;
        Ok(Client {
            client,
            statements: Mutex::new(HashMap::new()),
            broken: AtomicBool::new(false),
        })
    }

    /// Runs `fut` on the store's runtime and waits for it.
    fn block<T: Send + 'static>(
        &self,
        fut: impl std::future::Future<Output = Result<T>> + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.inner.runtime.spawn(async move {
            let _ = tx.send(fut.await);
        });
        match rx.recv_timeout(QUERY_TIMEOUT) {
            Ok(r) => r,
            Err(_) => Err(DbError::Unavailable(format!(
                "{} did not answer within {}s",
                self.inner.target.shown,
                QUERY_TIMEOUT.as_secs()
            ))),
        }
    }
}

/// One connection, taken from the pool for one closure and given back when
/// dropped (unless it broke).
pub struct PgSession {
    pool: PgPool,
    client: Arc<Client>,
}

impl Drop for PgSession {
    fn drop(&mut self) {
        if self.client.broken.load(Ordering::Relaxed) || self.client.client.is_closed() {
            self.pool.forget();
        } else {
            lock(&self.pool.inner.state).idle.push(self.client.clone());
            self.pool.inner.freed.notify_one();
        }
    }
}

impl PgSession {
    /// Marks the connection unusable: it is closed instead of reused.
    pub(super) fn poison(&self) {
        self.client.broken.store(true, Ordering::Relaxed);
    }

    /// Statements without parameters or results (`BEGIN`, DDL).
    pub(super) fn batch(&self, sql: &str) -> Result<()> {
        let client = self.client.clone();
        let sql = sql.to_owned();
        let r = self
            .pool
            .block(async move { client.client.batch_execute(&sql).await.map_err(pg_error) });
        if matches!(r, Err(DbError::Unavailable(_))) {
            self.poison();
        }
        r
    }

    pub(super) fn run(&self, sql: &str, params: Vec<Value>) -> Result<Outcome> {
        let cached = lock(&self.client.statements).get(sql).cloned();
        let client = self.client.clone();
        let key = sql.to_owned();
        let r = self.pool.block(async move {
            let stmt = match cached {
                Some(s) => s,
                None => {
                    let s = client
                        .client
                        .prepare(&translate(&key))
                        .await
                        .map_err(pg_error)?;
                    let mut cache = lock(&client.statements);
                    // The store's SQL is a fixed set; the cap only guards
                    // against a caller that formats values into it.
                    if cache.len() >= 512 {
                        cache.clear();
                    }
                    cache.insert(key, s.clone());
                    s
                }
            };
            if params.len() != stmt.params().len() {
                return Err(DbError::Conversion(format!(
                    "the statement takes {} parameters, {} were given",
                    stmt.params().len(),
                    params.len()
                )));
            }
            let refs: Vec<&(dyn ToSql + Sync)> =
                params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
            if stmt.columns().is_empty() {
                let n = client
                    .client
                    .execute(&stmt, &refs)
                    .await
                    .map_err(pg_error)?;
                return Ok(Outcome {
                    rows: Vec::new(),
                    changed: n as usize,
                });
            }
            let rows = client.client.query(&stmt, &refs).await.map_err(pg_error)?;
            let changed = rows.len();
            let rows = rows
                .iter()
                .map(|r| {
                    (0..r.len())
                        .map(|i| r.try_get::<_, Value>(i).map_err(pg_error))
                        .collect::<Result<Vec<_>>>()
                        .map(Row::new)
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Outcome { rows, changed })
        });
        if matches!(r, Err(DbError::Unavailable(_))) {
            self.poison();
        }
        r
    }
}

fn pg_error(e: tokio_postgres::Error) -> DbError {
    if let Some(db) = e.as_db_error() {
        return DbError::pg(
            Some(db.code().code()),
            format!("{}: {}", db.severity(), db.message()),
        );
    }
    if let Some(code) = e.code() {
        return DbError::pg(Some(code.code()), e.to_string());
    }
    // No SQLSTATE: the connection failed or broke (or a value did not
    // convert, which the message says). The causes say which.
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    if text.contains("error serializing") || text.contains("error deserializing") {
        return DbError::Conversion(format!("{text}: {e:?}"));
    }
    DbError::Unavailable(text)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

type BoxError = Box<dyn std::error::Error + Sync + Send>;

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<IsNull, BoxError> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(i) => match *ty {
                Type::INT8 => i.to_sql(ty, out),
                Type::INT4 => i32::try_from(*i)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*i)?.to_sql(ty, out),
                Type::BOOL => (*i != 0).to_sql(ty, out),
                Type::FLOAT8 => (*i as f64).to_sql(ty, out),
                Type::TEXT | Type::VARCHAR => i.to_string().to_sql(ty, out),
                _ => Err(format!("cannot bind an integer to a {ty} parameter").into()),
            },
            Value::Real(f) => match *ty {
                Type::FLOAT8 => f.to_sql(ty, out),
                Type::FLOAT4 => (*f as f32).to_sql(ty, out),
                _ => Err(format!("cannot bind a real to a {ty} parameter").into()),
            },
            Value::Text(s) => s.as_str().to_sql(ty, out),
            Value::Blob(b) => b.as_slice().to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for Value {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> std::result::Result<Value, BoxError> {
        Ok(match *ty {
            Type::INT8 => Value::Int(i64::from_sql(ty, raw)?),
            Type::INT4 => Value::Int(i32::from_sql(ty, raw)? as i64),
            Type::INT2 => Value::Int(i16::from_sql(ty, raw)? as i64),
            Type::BOOL => Value::Int(bool::from_sql(ty, raw)? as i64),
            Type::FLOAT8 => Value::Real(f64::from_sql(ty, raw)?),
            Type::FLOAT4 => Value::Real(f32::from_sql(ty, raw)? as f64),
            Type::BYTEA => Value::Blob(<Vec<u8>>::from_sql(ty, raw)?),
            _ => Value::Text(<&str>::from_sql(ty, raw)?.to_owned()),
        })
    }

    fn from_sql_null(_: &Type) -> std::result::Result<Value, BoxError> {
        Ok(Value::Null)
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// The store's SQL (written for both engines) in PostgreSQL's form:
/// `?N` and `?` placeholders become `$N`, and SQLite's clock expressions
/// become PostgreSQL's. Quoted strings and identifiers are left alone.
pub(super) fn translate(sql: &str) -> String {
    let sql = sql
        .replace(
            "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
            "to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')",
        )
        .replace(
            "strftime('%Y-%m-%dT%H:%M:%SZ', 'now')",
            "to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')",
        );
    let mut out = String::with_capacity(sql.len() + 8);
    let mut chars = sql.chars().peekable();
    let mut quote: Option<char> = None;
    let mut next = 1usize;
    while let Some(c) = chars.next() {
        if let Some(q) = quote {
            out.push(c);
            if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => {
                quote = Some(c);
                out.push(c);
            }
            '?' => {
                let mut digits = String::new();
                while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
                    digits.push(*d);
                    chars.next();
                }
                let n = if digits.is_empty() {
                    next
                } else {
                    digits.parse().unwrap_or(next)
                };
                next = next.max(n + 1);
                out.push('$');
                out.push_str(&n.to_string());
            }
            _ => out.push(c),
        }
    }
    out
}

/// Creates database `name` on the server `admin_url` names (tests and
/// the benchmark's fresh stores).
pub fn create_database(admin_url: &str, name: &str) -> std::result::Result<(), String> {
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(format!("`{name}` is not a plain database name"));
    }
    let pool = PgPool::new(PgTarget::parse(admin_url)?, 1).map_err(|e| e.to_string())?;
    let session = pool.session().map_err(|e| e.to_string())?;
    session
        .batch(&format!("CREATE DATABASE {name}"))
        .map_err(|e| e.to_string())
}

/// A new, empty database named `PREFIX_PID_N_NANOS` on the server
/// `admin_url` names; returns its URL (test and benchmark stores).
pub fn fresh_database(admin_url: &str, prefix: &str) -> std::result::Result<String, String> {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let name = format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0)
    );
    create_database(admin_url, &name)?;
    Ok(with_database(admin_url, &name))
}

/// `admin_url` with its database replaced by `name`.
pub fn with_database(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin_url, None),
    };
    let (scheme, rest) = base.split_once("://").unwrap_or(("postgres", base));
    let host = rest.split_once('/').map_or(rest, |(h, _)| h);
    match query {
        Some(q) => format!("{scheme}://{host}/{name}?{q}"),
        None => format!("{scheme}://{host}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_and_clock_become_postgres() {
        assert_eq!(
            translate("SELECT a FROM t WHERE b = ?2 AND c = ?1 AND d = '?3'"),
            "SELECT a FROM t WHERE b = $2 AND c = $1 AND d = '?3'"
        );
        assert_eq!(translate("VALUES (?, ?, ?)"), "VALUES ($1, $2, $3)");
        assert!(
            translate("SET t = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?1")
                .starts_with("SET t = to_char(clock_timestamp()")
        );
    }

    #[test]
    fn urls_lose_their_password_in_messages() {
        assert_eq!(
            redact_url("postgres://ks:hunter2@db:5432/keysentry?sslmode=require"),
            "postgres://ks:***@db:5432/keysentry"
        );
        assert_eq!(redact_url("postgres://db/k"), "postgres://db/k");
        let (url, cert) = take_param(
            "postgres://db/k?sslmode=require&sslrootcert=%2Ftmp%2Fca.pem",
            "sslrootcert",
        );
        assert_eq!(url, "postgres://db/k?sslmode=require");
        assert_eq!(cert.as_deref(), Some("/tmp/ca.pem"));
    }
}
