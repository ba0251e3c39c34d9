//! Load generator for bench/webhook.sh: signed, real-shaped push deliveries
//! at a fixed rate (open loop: a slow answer does not slow the sender), each
//! pushing a commit that adds a distinct Tatum key, prepared in the GitHub
//! simulator first.
//!
//! Prints acknowledgement latency (request sent → 202 received) and, from the
//! simulator's call log, delivery → containment call (`PUT /v3/tatum/freeze`
//! carrying that key) percentiles, or with `--measure compare` (no engine
//! behind the webhook) delivery → diff fetched.
//!
//! `webhook-load --url URL --sim SIM --secret-env VAR [--rate 200] [--seconds 10]`

use clap::Parser;
use keysentry::github::WebhookSecret;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Parser)]
struct Args {
    /// The webhook endpoint.
    #[arg(long)]
    url: String,
    /// The keysentry-sim base URL.
    #[arg(long)]
    sim: String,
    /// Environment variable holding the webhook secret.
    #[arg(long)]
    secret_env: String,
    /// Deliveries per second.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// How long to wait for the last containment call.
    #[arg(long, default_value_t = 120)]
    drain_seconds: u64,
    /// `freeze`: time to the Tatum freeze call (an engine is behind the
    /// webhook); `compare`: time to the diff fetch (webhook alone).
    #[arg(long, default_value = "freeze")]
    measure: String,
}

const REPO: &str = "bench/app";

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

fn key(i: usize) -> String {
    let h: String = Sha256::digest(format!("bench-key-{i}"))
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("t-{}-{}", &h[..24], &h[24..48])
}

fn fingerprint(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A push payload of GitHub's size and shape (~7 KB).
fn payload(i: usize, before: &str, after: &str) -> Value {
    let urls: serde_json::Map<String, Value> = [
        "html",
        "forks",
        "keys",
        "collaborators",
        "teams",
        "hooks",
        "issue_events",
        "events",
        "assignees",
        "branches",
        "tags",
        "blobs",
        "git_tags",
        "git_refs",
        "trees",
        "statuses",
        "languages",
        "stargazers",
        "contributors",
        "subscribers",
        "subscription",
        "commits",
        "git_commits",
        "comments",
        "issue_comment",
        "contents",
        "compare",
        "merges",
        "archive",
        "downloads",
        "issues",
        "pulls",
        "milestones",
        "notifications",
        "labels",
        "releases",
        "deployments",
        "git",
        "ssh",
        "clone",
        "svn",
    ]
    .iter()
    .map(|n| {
        (
            format!("{n}_url"),
            json!(format!("https://api.github.com/repos/{REPO}/{n}{{/id}}")),
        )
    })
    .collect();
    let mut repository = json!({
        "id": 1, "node_id": "R_kgDOBench", "name": "app", "full_name": REPO, "private": true,
        "owner": {"name": "bench", "email": null, "login": "bench", "id": 2, "type": "Organization"},
        "description": "benchmark repository", "fork": false, "default_branch": "main",
        "master_branch": "main", "size": 1234, "stargazers_count": 0, "language": "Rust",
    });
    if let Some(obj) = repository.as_object_mut() {
        obj.extend(urls);
    }
    let author = json!({"name": "Dev", "email": "dev@example.com", "username": "dev"});
    let commit = json!({
        "id": after, "tree_id": "f".repeat(40), "distinct": true,
        "message": format!("configure service {i}"), "timestamp": "2024-05-01T10:00:00Z",
        "url": format!("https://github.com/{REPO}/commit/{after}"),
        "author": author, "committer": author,
        "added": [format!("svc{i}/.env")], "removed": [], "modified": []
    });
    json!({
        "ref": format!("refs/heads/b{i}"), "before": before, "after": after,
        "created": false, "deleted": false, "forced": false, "base_ref": null,
        "compare": format!("https://github.com/{REPO}/compare/{before}...{after}"),
        "commits": [commit], "head_commit": commit, "repository": repository,
        "pusher": {"name": "dev", "email": "dev@example.com"},
        "organization": {"login": "bench", "id": 2},
        "sender": {"login": "dev", "id": 3, "type": "User", "site_admin": false}
    })
}

async fn sim_post(http: &reqwest::Client, sim: &str, path: &str, body: Value) -> Value {
    let res = http.post(format!("{sim}{path}")).json(&body).send().await;
    match res {
        Ok(r) => r.json().await.unwrap_or(Value::Null),
        Err(e) => panic!("simulator {path}: {e}"),
    }
}

async fn sim_get(http: &reqwest::Client, sim: &str, path: &str) -> Vec<Value> {
    match http.get(format!("{sim}{path}")).send().await {
        Ok(r) => r.json::<Vec<Value>>().await.unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let args = Args::parse();
    let secret = WebhookSecret::new(std::env::var(&args.secret_env).unwrap_or_default());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(512)
        .build()
        .unwrap_or_default();
    let n = (args.rate * args.seconds as f64) as usize;

    sim_post(
        &http,
        &args.sim,
        "/_sim/github/repos",
        json!({"repo": REPO, "default_branch": "main"}),
    )
    .await;
    let base = sim_post(
        &http,
        &args.sim,
        "/_sim/github/commits",
        json!({
        "repo": REPO, "branch": "main", "files": {"README.md": "bench\n"},
        "author": {"name": "Dev", "email": "dev@example.com"}}),
    )
    .await["sha"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut deliveries = Vec::with_capacity(n);
    for i in 0..n {
        let env = format!(
            "# service {i}\nPORT=80{i}\nTATUM_API_KEY={}\nTATUM_TESTNET=false\n",
            key(i)
        );
        let head = sim_post(
            &http,
            &args.sim,
            "/_sim/github/commits",
            json!({
            "repo": REPO, "parent": base, "message": format!("configure service {i}"),
            "files": {format!("svc{i}/.env"): env},
            "author": {"name": "Dev", "email": "dev@example.com"}}),
        )
        .await["sha"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if args.measure == "freeze" {
            // A live key at the simulated Tatum, so the engine freezes it.
            let live = json!({"key": key(i), "testnet": false, "subscriptions": 0, "accounts": 0});
            sim_post(&http, &args.sim, "/_sim/tatum/keys", live).await;
        }
        let body = serde_json::to_vec(&payload(i, &base, &head)).unwrap_or_default();
        let sig = secret.sign(&body);
        deliveries.push((format!("bench-{i}-{}", now_ms()), body, sig, head));
    }
    eprintln!(
        "prepared {n} deliveries ({} bytes each); sending at {}/s",
        deliveries.first().map_or(0, |d| d.1.len()),
        args.rate
    );

    let started = Instant::now();
    let sent_at: Arc<std::sync::Mutex<HashMap<String, u128>>> = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    for (i, (id, body, sig, head)) in deliveries.into_iter().enumerate() {
        tick.tick().await;
        let http = http.clone();
        let url = args.url.clone();
        let sent_at = sent_at.clone();
        tasks.spawn(async move {
            let t0 = Instant::now();
            if let Ok(mut m) = sent_at.lock() {
                m.insert(fingerprint(&key(i)), now_ms());
                m.insert(head.clone(), now_ms());
            }
            let res = http
                .post(&url)
                .header("content-type", "application/json")
                .header("x-github-event", "push")
                .header("x-github-delivery", id)
                .header("x-hub-signature-256", sig)
                .header("user-agent", "GitHub-Hookshot/bench")
                .body(body)
                .send()
                .await;
            let ms = t0.elapsed().as_secs_f64() * 1000.0;
            (res.map(|r| r.status().as_u16()).unwrap_or(0), ms)
        });
    }
    let mut acks = Vec::with_capacity(n);
    let mut errors = 0;
    while let Some(Ok((status, ms))) = tasks.join_next().await {
        if status == 202 {
            acks.push(ms);
        } else {
            errors += 1;
        }
    }
    let send_secs = started.elapsed().as_secs_f64();
    acks.sort_by(f64::total_cmp);
    println!(
        "ack latency over {n} deliveries at {:.0}/s offered ({:.0}/s achieved): p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms, non-202 {errors}",
        args.rate,
        n as f64 / send_secs,
        pct(&acks, 50.0),
        pct(&acks, 90.0),
        pct(&acks, 99.0),
        acks.last().copied().unwrap_or(f64::NAN),
    );

    report_processing(&http, &args, n, &sent_at).await;
}

/// Delivery → containment call, or → diff fetched.
async fn report_processing(
    http: &reqwest::Client,
    args: &Args,
    n: usize,
    sent_at: &std::sync::Mutex<HashMap<String, u128>>,
) {
    let deadline = Instant::now() + Duration::from_secs(args.drain_seconds);
    let freeze = args.measure == "freeze";
    let label = if freeze {
        "delivery -> containment call (PUT /v3/tatum/freeze)"
    } else {
        "delivery -> diff fetched (GET /repos/.../compare/...)"
    };
    let mut latencies: Vec<f64>;
    loop {
        let sent = sent_at.lock().map(|m| m.clone()).unwrap_or_default();
        latencies = if freeze {
            sim_get(http, &args.sim, "/_sim/calls")
                .await
                .iter()
                .filter(|c| c["path"] == "/v3/tatum/freeze" && c["status"] == 200)
                .filter_map(|c| {
                    let fp = c["key_fingerprint"].as_str()?;
                    let at = c["at_unix_ms"].as_u64()? as u128;
                    sent.get(fp).map(|s| at.saturating_sub(*s) as f64)
                })
                .collect()
        } else {
            sim_get(http, &args.sim, "/_sim/github/calls")
                .await
                .iter()
                .filter(|c| c["status"] == 200)
                .filter_map(|c| {
                    let head = c["path"].as_str()?.rsplit("...").next()?;
                    let at = c["at_ms"].as_u64()? as u128;
                    sent.get(head).map(|s| at.saturating_sub(*s) as f64)
                })
                .collect()
        };
        if latencies.len() >= n || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    latencies.sort_by(f64::total_cmp);
    println!(
        "{label}: {} of {n}, p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        latencies.len(),
        pct(&latencies, 50.0),
        pct(&latencies, 99.0),
        latencies.last().copied().unwrap_or(f64::NAN),
    );
}
