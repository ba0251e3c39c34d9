//! `keysentry-sim`: every provider API keysentry talks to, simulated on one
//! local port, for tests and benchmarks. Never point it at the internet.
//!
//! `keysentry-sim [--listen 127.0.0.1:0]` prints `listening on
//! http://127.0.0.1:PORT` as its first stdout line, then serves:
//! - Tatum `/v3/...` and the management templates `/mgmt/tatum/...` (tatum.rs)
//! - GitHub `POST /credentials/revoke`, `GET /user` (github.rs)
//! - Slack `/api/auth.test`, `/api/auth.revoke` (slack.rs)
//! - GitLab `/api/v4/personal_access_tokens/self...` (gitlab.rs)
//! - alert receivers: webhook sinks and GitHub issues (alert_sinks.rs)
//! - control and inspection under `/_sim/...` (control.rs, tatum.rs)
//!
//! Each simulated API is one module with a `routes()`; adding one is one
//! line in `router`.
#![forbid(unsafe_code)]

mod alert_sinks;
mod control;
mod github;
mod github_api;
mod gitlab;
mod slack;
mod state;
mod tatum;

use axum::Router;
use state::Sim;
use std::io::Write;
use std::process::ExitCode;

fn router(sim: Sim) -> Router {
    Router::new()
        .merge(tatum::routes())
        .merge(github::routes())
        .merge(slack::routes())
        .merge(gitlab::routes())
        .merge(control::routes())
        .layer(axum::middleware::from_fn_with_state(
            sim.clone(),
            state::record_and_inject,
        ))
        .with_state(sim)
        .merge(alert_sinks::router())
        .merge(github_api::router())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let mut listen = "127.0.0.1:0".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--listen", Some(addr)) => listen = addr,
            _ => {
                eprintln!("usage: keysentry-sim [--listen 127.0.0.1:0]");
                return ExitCode::from(2);
            }
        }
    }
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {listen}: {e}");
            return ExitCode::from(2);
        }
    };
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    println!("listening on http://{addr}");
    let _ = std::io::stdout().flush();
    match axum::serve(listener, router(Sim::default())).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
