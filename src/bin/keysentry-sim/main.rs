//! keysentry-sim: the third-party APIs keysentry talks to, simulated on
//! 127.0.0.1 for tests. One module per simulated API; each exposes a
//! `router()`, and control/inspection endpoints live under `/_sim/...`.
//!
//! Prints `listening on http://ADDR` as its first stdout line, so a test can
//! start it on port 0 and read the address.
#![forbid(unsafe_code)]

mod alert_sinks;

use clap::Parser;
use std::io::Write;

#[derive(Parser)]
#[command(
    name = "keysentry-sim",
    about = "Simulated provider APIs for keysentry's tests"
)]
struct Args {
    /// Address to listen on; port 0 picks a free one.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let app = axum::Router::new().merge(alert_sinks::router());
    let listener = tokio::net::TcpListener::bind(&args.listen).await?;
    let mut out = std::io::stdout();
    writeln!(out, "listening on http://{}", listener.local_addr()?)?;
    out.flush()?;
    axum::serve(listener, app).await?;
    Ok(())
}
