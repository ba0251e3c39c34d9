//! The webhook alone, for bench/webhook.sh when no daemon is wanted: the
//! router and worker of `keysentry::github` with a sink that only counts,
//! served on 127.0.0.1. Prints `listening on http://ADDR` first.
//!
//! `webhook-serve --api-url SIM --state-dir DIR` (secret in `KEYSENTRY_BENCH_SECRET`)

use keysentry::config::Config;
use keysentry::github::{fixed_scanner, remediable_providers, GitHubWebhook, WebhookSettings};
use keysentry::rules::RuleSet;
use keysentry::scan::{Allowlist, BoxFuture, Finding, FindingSink, Handled, Scanner, SinkError};
use keysentry::server::{HttpGuard, HttpLimits};
use keysentry::store::webhook::DeliveryStore;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

#[derive(Default)]
struct Count(AtomicU64);

impl FindingSink for Count {
    fn submit(&self, findings: Vec<Finding>) -> BoxFuture<'_, Result<Vec<Handled>, SinkError>> {
        self.0.fetch_add(findings.len() as u64, Ordering::Relaxed);
        Box::pin(async { Ok(Vec::new()) })
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut api_url, mut state_dir) = (String::new(), String::new());
    while let (Some(flag), Some(value)) = (args.next(), args.next()) {
        match flag.as_str() {
            "--api-url" => api_url = value,
            "--state-dir" => state_dir = value,
            _ => anyhow::bail!("usage: webhook-serve --api-url URL --state-dir DIR"),
        }
    }
    let yaml = format!(
        "github:\n  api_url: {api_url}\n  webhook:\n    listen: 127.0.0.1:0\n    secret_env: KEYSENTRY_BENCH_SECRET\n"
    );
    let config = Config::parse(Path::new("bench.yaml"), &yaml)?;
    let settings = WebhookSettings::from_config(&config, &HttpGuard::new(HttpLimits::default()))?
        .ok_or_else(|| anyhow::anyhow!("no github.webhook section"))?;
    let rules = RuleSet::load(&[])?;
    let scanner = Arc::new(Scanner::new(&rules, Allowlist::default())?);
    let store = Arc::new(DeliveryStore::open(Path::new(&state_dir))?);
    let hook = GitHubWebhook::new(
        &config,
        settings,
        store,
        fixed_scanner(scanner),
        remediable_providers(&rules),
        Arc::new(Count::default()),
    )?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let mut out = std::io::stdout();
    writeln!(out, "listening on http://{}", listener.local_addr()?)?;
    out.flush()?;
    tokio::spawn(hook.worker.run(std::future::pending()));
    axum::serve(listener, hook.router).await?;
    Ok(())
}
