//! PostgreSQL for the fleet tests: the server `KEYSENTRY_TEST_PG_URL`
//! names (`.ci/run` starts a throw-away cluster with `.ci/postgres.sh`),
//! with a fresh database per test. A machine without it fails the test
//! with how to start one, never skips it.

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
    let admin = server_url();
    keysentry::store::pg::fresh_database(&admin, "ks_fleet")
        .unwrap_or_else(|e| panic!("CREATE DATABASE on {admin}: {e}"))
}
