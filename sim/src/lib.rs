//! `keysentry-sim`: every provider API keysentry talks to, simulated on one
//! local port, for tests and benchmarks. Never point it at the internet.
//!
//! It is a library so that tests run it in-process ([`spawn`]: a free port on
//! 127.0.0.1, stopped when the handle drops) and a thin binary
//! (`src/main.rs`) for the bench scripts. What it serves:
//! - Tatum `/v3/...` and the management templates `/mgmt/tatum/...` (tatum.rs)
//! - GitHub `POST /credentials/revoke`, `GET /user` (github.rs), the REST API
//!   the webhook target reads (github_api.rs)
//! - Slack `/api/auth.test`, `/api/auth.revoke` (slack.rs)
//! - GitLab `/api/v4/personal_access_tokens/self...` (gitlab.rs)
//! - list-then-delete revokes: npm, SendGrid, Twilio, Heroku
//!   (revoke_lists.rs); self-revokes: Cloudflare, Vercel, Doppler,
//!   Buildkite, DigitalOcean (revoke_self.rs); their keys (revoke_keys.rs)
//! - any provider's read-only verify call under `/_verify/{provider}/...`,
//!   each credential shape checked as the real API would (verify.rs)
//! - OpenAI's and Anthropic's admin APIs under `/openai`, `/anthropic`
//!   (admin_keys.rs)
//! - GitHub Actions secrets, sealed boxes opened (actions_secrets.rs)
//! - Kubernetes Secrets and deployment restarts (kubernetes.rs)
//! - AWS IAM's query API and STS GetCallerIdentity under `/_aws` (aws_iam.rs)
//! - alert receivers: webhook sinks and GitHub issues (alert_sinks.rs)
//! - control and inspection under `/_sim/...` ([`CONTROL_ENDPOINTS`])
//!
//! Each simulated API is one module with a `routes()`; adding one is one
//! line in [`router`].
#![forbid(unsafe_code)]

mod actions_secrets;
mod admin_keys;
mod alert_sinks;
mod aws_iam;
mod control;
mod github;
mod github_api;
mod gitlab;
mod kubernetes;
mod revoke_keys;
mod revoke_lists;
mod revoke_self;
mod slack;
mod state;
mod tatum;
mod verify;

use axum::Router;
use state::Sim;

/// The control and inspection endpoints, as `--help` lists them.
pub const CONTROL_ENDPOINTS: &[(&str, &str)] = &[
    (
        "POST /_sim/keys/{provider}",
        "add a key of a list-then-delete or self-revoking provider: {\"key\",\"pair\",\"id\",\"listed_twice\",\"others\"}",
    ),
    (
        "GET  /_sim/keys/{provider}/{fingerprint}",
        "that key's state (id, revoked, deletes)",
    ),
    (
        "GET  /_sim/calls",
        "every provider call received (method, path, status, key fingerprint)",
    ),
    (
        "POST /_sim/fault",
        "queue a fault: {\"path\",\"method\",\"count\",\"status\",\"hang_ms\",\"retry_after\"}",
    ),
    (
        "POST /_sim/tatum/keys",
        "add a Tatum key: {\"key\",\"state\",\"testnet\",\"subscriptions\",\"accounts\"}",
    ),
    (
        "GET  /_sim/tatum/keys/{fingerprint}",
        "a Tatum key's state (live, frozen, expired, replaced_by)",
    ),
    (
        "POST /_sim/tatum/keys/{fingerprint}/regenerate",
        "regenerate a key as the Dashboard would",
    ),
    (
        "POST /_sim/tatum/keys/{fingerprint}/expire",
        "expire a key as the Dashboard would",
    ),
    (
        "POST /_sim/verify/{provider}",
        "add a credential for ANY /_verify/{provider}/...: {\"key\",\"pair\",\"shape\":{\"type\":\"header|query|bearer|basic|hmac_query|aws_sigv4\",...},\"live\"}",
    ),
    (
        "POST /_sim/aws/admin | users | fault, GET /_sim/aws/state",
        "AWS IAM on /_aws: the admin credentials {\"key_id\",\"secret\",\"allow\"}, users and their keys {\"user\",\"keys\":[{\"id\",\"secret\",\"status\"}]}, a fault on one action {\"action\",\"count\",\"code\",\"hang_ms\"}, the account's state and calls per action",
    ),
    (
        "GET  /_sim/sink/{name}",
        "the alerts webhook sink {name} received (POST /_sink/webhook/{name})",
    ),
    (
        "PUT  /_sim/sink/{name}/behaviour",
        "make a sink answer {\"status\",\"delay_ms\"}",
    ),
    (
        "GET  /_sim/github/issues",
        "GitHub issues opened by the github_issue alert channel",
    ),
    (
        "PUT  /_sim/github/behaviour",
        "make the GitHub issues API fail",
    ),
    (
        "POST /_sim/github/repos",
        "add a repository to the GitHub REST API",
    ),
    (
        "POST /_sim/github/commits",
        "add a commit (files and patches) to a repository",
    ),
    ("POST /_sim/github/alerts", "add a secret-scanning alert"),
    (
        "POST /_sim/admin/{provider}/keys",
        "add an OpenAI or Anthropic key: {\"key\",\"name\",\"project\",\"admin\",\"hint\",\"id\"}",
    ),
    (
        "POST /_sim/admin/{provider}/projects",
        "add an OpenAI project: {\"id\",\"name\",\"status\"}",
    ),
    (
        "GET  /_sim/admin/{provider}/keys/{fingerprint}",
        "that key's state (id, deleted, status, changes)",
    ),
    (
        "POST /_sim/github/faults",
        "queue GitHub API faults (DELETE clears them)",
    ),
    (
        "POST /_sim/github/latency",
        "add latency to every GitHub API answer",
    ),
    ("GET  /_sim/github/calls", "GitHub API calls received"),
    (
        "GET  /_sim/github/comments",
        "comments posted on secret-scanning alerts",
    ),
];

/// Every simulated API on one router, with fresh state.
pub fn router() -> Router {
    let sim = Sim::default();
    Router::new()
        .merge(tatum::routes())
        .merge(github::routes())
        .merge(slack::routes())
        .merge(gitlab::routes())
        .merge(revoke_keys::routes())
        .merge(revoke_lists::routes())
        .merge(revoke_self::routes())
        .merge(verify::routes())
        .merge(control::routes())
        .merge(admin_keys::routes())
        .layer(axum::middleware::from_fn_with_state(
            sim.clone(),
            state::record_and_inject,
        ))
        .with_state(sim)
        .merge(alert_sinks::router())
        .merge(github_api::router())
        .merge(actions_secrets::router())
        .merge(kubernetes::router())
        .merge(aws_iam::router())
}

/// Serves [`router`] on `listener` until the future is dropped.
pub async fn serve(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    axum::serve(listener, router()).await
}

/// A simulator running in this process on its own thread and runtime, on a
/// free port of 127.0.0.1; dropping it stops the server (connections that
/// hang on purpose are cancelled, not waited for).
pub struct Running {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    /// `127.0.0.1:PORT`
    pub addr: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Starts a simulator in-process (see [`Running`]).
pub fn spawn() -> std::io::Result<Running> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?.to_string();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("keysentry-sim")
        .enable_all()
        .build()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("keysentry-sim".into())
        .spawn(move || {
            runtime.block_on(async move {
                let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                    return;
                };
                tokio::select! {
                    _ = serve(listener) => {}
                    _ = stopped => {}
                }
            });
            runtime.shutdown_background();
        })?;
    Ok(Running {
        url: format!("http://{addr}"),
        addr,
        stop: Some(stop),
        thread: Some(thread),
    })
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
