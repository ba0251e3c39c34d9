//! keysentry-sim: simulators of the APIs keysentry calls, for tests and
//! benchmarks. Never a real provider: it listens on 127.0.0.1 only.
//!
//! Usage: `keysentry-sim [PORT]` (default 0, any free port). The first line
//! on stdout is `listening on http://127.0.0.1:PORT`; control and inspection
//! endpoints live under `/_sim/...`, one module per simulated API.
#![forbid(unsafe_code)]

mod github_api;

use std::io::Write;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let app = axum::Router::new().merge(github_api::router());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "listening on http://{}", listener.local_addr()?)?;
    out.flush()?;
    drop(out);
    axum::serve(listener, app).await
}
