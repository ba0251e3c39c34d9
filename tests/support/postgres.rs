//! PostgreSQL for the fleet tests: the server `KEYSENTRY_TEST_PG_URL`
//! names (`.ci/run` starts a throw-away cluster with `.ci/postgres.sh`),
//! with a fresh database per test. A machine without it fails the test
//! with how to start one, never skips it.

use std::sync::atomic::{AtomicUsize, Ordering};

pub fn server_url() -> String {
    std::env::var("KEYSENTRY_TEST_PG_URL").unwrap_or_else(|_| {
        panic!(
            "KEYSENTRY_TEST_PG_URL is unset: the fleet tests need a PostgreSQL server. .ci/run \
             starts one; by hand: export KEYSENTRY_TEST_PG_URL=$(bash .ci/postgres.sh start)"
        )
    })
}

/// The URL of a new, empty database on the test server.
pub fn fresh_database() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let admin = server_url();
    let name = format!(
        "ks_fleet_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    keysentry::store::pg::create_database(&admin, &name)
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name} on {admin}: {e}"));
    keysentry::store::pg::with_database(&admin, &name)
}
