//! `keysentry incidents [list|show ID]`, and the remediation step of
//! `keysentry scan --remediate`.

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use keysentry::config::Config;
use keysentry::remediate::{Engine, IncidentOutcome};
use keysentry::rules::RuleSet;
use keysentry::scan::Finding;
use keysentry::store::{IncidentRow, JournalEntry, Store};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
pub struct IncidentsArgs {
    #[command(subcommand)]
    command: Option<IncidentsCommand>,
    /// Config file naming the state directory (default: the standard one).
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum IncidentsCommand {
    /// One line per incident (the default).
    List,
    /// Everything about one incident: locations, every provider call, alerts.
    Show { id: i64 },
}

pub fn run(args: IncidentsArgs) -> Result<ExitCode> {
    let config = load_config(args.config.as_deref())?;
    let dir = keysentry::store::state_dir(config.state_dir.as_deref());
    let store = Store::open(&dir)?;
    match args.command.unwrap_or(IncidentsCommand::List) {
        IncidentsCommand::List => list(&store, args.json),
        IncidentsCommand::Show { id } => show(&store, id, args.json),
    }
}

pub fn load_config(path: Option<&Path>) -> Result<Config> {
    Ok(match path {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    })
}

/// The provider steps that succeeded, in order, each once.
fn actions_taken(journal: &[JournalEntry]) -> Vec<String> {
    let mut steps: Vec<String> = Vec::new();
    for e in journal.iter().filter(|e| e.is_ok()) {
        if !steps.contains(&e.step) {
            steps.push(e.step.clone());
        }
    }
    steps
}

fn list(store: &Store, json: bool) -> Result<ExitCode> {
    let rows = store.incidents()?;
    if json {
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut v = serde_json::to_value(r)?;
            v["actions"] = serde_json::to_value(actions_taken(&store.journal(r.id)?))?;
            out.push(v);
        }
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        eprintln!("no incidents in {}", store.path().display());
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:>5}  {:<12}  {:<8}  {:<14}  {:<20}  {:<20}  ACTIONS",
        "ID", "FINGERPRINT", "PROVIDER", "STATE", "CREATED", "UPDATED"
    );
    for r in &rows {
        let actions = actions_taken(&store.journal(r.id)?).join(",");
        println!(
            "{:>5}  {:<12}  {:<8}  {:<14}  {:<20}  {:<20}  {}",
            r.id,
            &r.fingerprint[..r.fingerprint.len().min(12)],
            r.provider,
            r.state,
            r.created_at,
            r.updated_at,
            if actions.is_empty() { "-" } else { &actions }
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn show(store: &Store, id: i64, json: bool) -> Result<ExitCode> {
    let row = store
        .incident(id)?
        .with_context(|| format!("no incident {id}; `keysentry incidents list` shows them"))?;
    let locations = store.locations(id)?;
    let journal = store.journal(id)?;
    let alerts = store.alerts(id)?;
    if json {
        let v = serde_json::json!({
            "incident": row,
            "locations": locations,
            "journal": journal,
            "alerts": alerts,
        });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    print_row(&row);
    println!("locations:");
    for l in &locations {
        let author = l.author_email.as_deref().unwrap_or("");
        println!(
            "  {}  ({}, first seen {}) {author}",
            l.display(),
            l.source,
            l.first_seen
        );
    }
    println!("actions:");
    for e in &journal {
        println!(
            "  {}  {:<24} {:<11} {:<4} {}",
            e.started_at,
            e.step,
            e.outcome.as_deref().unwrap_or("in-flight"),
            e.http_status.map(|s| s.to_string()).unwrap_or_default(),
            e.detail.as_deref().unwrap_or("")
        );
    }
    if let Some(last) = alerts.last() {
        println!("last alert ({}):", last.sent_at);
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&last.body) {
            for step in v["next_steps"].as_array().into_iter().flatten() {
                println!("  - {}", step.as_str().unwrap_or(""));
            }
        }
        for d in last.deliveries.lines() {
            println!("  delivered: {d}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_row(r: &IncidentRow) {
    println!("incident {}", r.id);
    println!("  fingerprint: {}", r.fingerprint);
    println!("  key:         {}", r.redacted);
    println!("  rule:        {} ({})", r.rule_id, r.rule_name);
    println!("  provider:    {}", r.provider);
    println!("  state:       {}", r.state);
    if let Some(reason) = &r.reason {
        println!("  reason:      {reason}");
    }
    if let Some(a) = &r.action {
        println!("  action:      {a}");
    }
    if let Some(o) = &r.owner {
        println!("  owner:       {o}");
    }
    if let Some(t) = r.testnet {
        println!("  network:     {}", if t { "testnet" } else { "mainnet" });
    }
    if r.subscriptions.is_some() || r.virtual_accounts.is_some() {
        let show = |n: Option<u64>| n.map_or("?".to_string(), |n| n.to_string());
        println!(
            "  bound:       {} subscriptions, {} virtual accounts",
            show(r.subscriptions),
            show(r.virtual_accounts)
        );
    }
    if let Some(n) = &r.new_redacted {
        println!("  new key:     {n}");
    }
    println!("  created:     {}", r.created_at);
    println!("  updated:     {}", r.updated_at);
}

/// `scan --remediate`: hands the findings to the engine and reports each
/// incident on stderr (stdout carries the scan report).
pub fn remediate(config: &Config, rules: RuleSet, findings: Vec<Finding>) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let outcomes = runtime.block_on(async {
        let engine = Engine::open_with_rules(config, rules)?;
        let outcomes = engine.process(findings).await;
        // A one-shot scan tells its not-live keys now, in one digest.
        engine.flush_digests().await;
        outcomes
    })?;
    for o in &outcomes {
        print_outcome(o);
    }
    Ok(())
}

pub fn print_outcome(o: &IncidentOutcome) {
    eprintln!(
        "incident {} {} {} (fingerprint {}): {}",
        o.incident_id,
        o.rule_id,
        o.redacted,
        &o.fingerprint[..o.fingerprint.len().min(12)],
        o.state
    );
    for a in &o.actions {
        eprintln!("  {}: {}", a.action, a.result);
    }
    if let Some(reason) = &o.reason {
        eprintln!(
            "  {}: {reason}",
            if o.state == "failed" {
                "failed"
            } else {
                "waiting"
            }
        );
    }
    for p in &o.plan {
        eprintln!("  plan: {p}");
    }
}
