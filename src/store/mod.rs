//! The SQLite store at `<state_dir>/keysentry.db`. Each area keeps its own
//! schema file under `migrations/` and its queries in its own module.

pub mod webhook;
