//! `keysentry incidents list|show|resolve|reopen`, the store lookup every
//! store-reading command shares, and the remediation step of
//! `keysentry scan --remediate`.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use keysentry::config::Config;
use keysentry::remediate::{incident_details, process_alive, Engine, IncidentOutcome};
use keysentry::rules::RuleSet;
use keysentry::scan::{Allowlist, Chunk, Finding, Origin, Scanner};
use keysentry::store::{
    IncidentFilter, IncidentRow, IncidentSummary, IncidentView, Page, State, Store, STATES,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
pub struct IncidentsArgs {
    #[command(subcommand)]
    command: Option<IncidentsCommand>,
    /// The config naming the state directory [default: $KEYSENTRY_CONFIG,
    /// else /etc/keysentry/keysentry.yaml, the service's].
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
enum IncidentsCommand {
    /// One line per incident (the default).
    List {
        /// Only incidents in this state.
        #[arg(long, value_name = "S", value_parser = clap::builder::PossibleValuesParser::new(STATES.iter().map(|s| s.as_str())))]
        state: Option<String>,
        /// Only incidents of this provider (`tatum`, `github`, ...).
        #[arg(long, value_name = "P")]
        provider: Option<String>,
    },
    /// Everything about one incident: where it was found and its whole
    /// timeline (provider calls, state changes, alerts, notes).
    Show { id: i64 },
    /// The owner finished by hand: keysentry makes no more provider calls
    /// for this incident (nor for new sightings of its key).
    Resolve {
        id: i64,
        /// What was done, for the timeline (never paste the key).
        #[arg(long, value_name = "TEXT")]
        note: String,
    },
    /// Hand the incident back to the engine: its next pass takes it up (a
    /// resolved one where its playbook stood, a closed one from verify).
    Reopen {
        id: i64,
        /// Why, for the timeline.
        #[arg(long, value_name = "TEXT")]
        note: Option<String>,
    },
    /// Print the incident's new key as sealed in escrow (ASCII-armored age),
    /// for `age -d -i YOUR_IDENTITY`. Never the key in clear.
    NewKey { id: i64 },
    /// Expire the incident's key rather than regenerate it (Tatum). Expiring
    /// deletes the virtual accounts and notification subscriptions bound to
    /// the key, irreversibly: with any bound, it takes --force.
    Expire {
        id: i64,
        /// Expire even though virtual accounts or subscriptions are bound
        /// (or not yet counted); they are deleted.
        #[arg(long)]
        force: bool,
    },
}

pub fn run(args: IncidentsArgs) -> Result<ExitCode> {
    let (config, _) = store_config(args.config.as_deref())?;
    let store = Store::from_config(&config)?;
    let json = args.json;
    match args.command.unwrap_or(IncidentsCommand::List {
        state: None,
        provider: None,
    }) {
        IncidentsCommand::List { state, provider } => {
            list(&store, state.as_deref(), provider.as_deref(), json)
        }
        IncidentsCommand::Show { id } => show(&store, id, json),
        IncidentsCommand::Resolve { id, note } => resolve(&config, &store, id, &note, json),
        IncidentsCommand::Reopen { id, note } => reopen(&config, &store, id, note.as_deref(), json),
        IncidentsCommand::NewKey { id } => new_key(&store, id, json),
        IncidentsCommand::Expire { id, force } => {
            let said = keysentry::remediate::request_expire(&store, id, force)?;
            if json {
                println!(
                    "{}",
                    json!({ "incident": id, "expire": true, "force": force, "result": said })
                );
            } else {
                println!("{said}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `incidents new-key ID`: the escrowed ciphertext, as `age -d` reads it.
fn new_key(store: &Store, id: i64, json: bool) -> Result<ExitCode> {
    store
        .incident(id)?
        .with_context(|| format!("no incident {id}; `keysentry incidents list` shows them"))?;
    let Some(row) = store.escrow(id)? else {
        bail!(
            "incident {id} has no new key in escrow: keysentry seals a new key there only when \
             `remediation.escrow` is configured and a rotation gave it one (`incidents show {id}` \
             says what happened to its key)"
        );
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&row)?);
    } else {
        print!("{}", row.ciphertext);
        eprintln!(
            "sealed {} to: {} (decrypt with `age -d -i IDENTITY`)",
            row.created_at,
            row.recipients.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The config every store-reading command uses when given none: the
/// service's.
pub const DEFAULT_CONFIG: &str = "/etc/keysentry/keysentry.yaml";

/// The config file to read, and how it was chosen: `--config`, else
/// `$KEYSENTRY_CONFIG`, else [`DEFAULT_CONFIG`].
pub fn config_path(flag: Option<&Path>) -> (PathBuf, &'static str) {
    if let Some(p) = flag {
        return (p.to_path_buf(), "--config");
    }
    match std::env::var_os("KEYSENTRY_CONFIG").filter(|v| !v.is_empty()) {
        Some(p) => (PathBuf::from(p), "KEYSENTRY_CONFIG"),
        None => (PathBuf::from(DEFAULT_CONFIG), "the default"),
    }
}

/// The config of the store a command reads, once that store is known to
/// exist. A named config must load; the default one may be absent (a
/// user's own `scan --remediate` store is then read). No store there is an
/// error that says where keysentry looked and how to point it elsewhere,
/// and nothing is created.
pub fn store_config(flag: Option<&Path>) -> Result<(Config, PathBuf)> {
    let (path, how) = config_path(flag);
    let (config, from) = if how != "the default" || path.exists() {
        (
            Config::load(&path)?,
            format!("config {} ({how})", path.display()),
        )
    } else {
        (
            Config::default(),
            format!(
                "no config ({} does not exist, KEYSENTRY_CONFIG is unset)",
                path.display()
            ),
        )
    };
    if let Some(url) = config
        .store
        .as_ref()
        .and_then(|s| s.resolve_url().transpose())
    {
        // A shared store: it is there or the connection says why not.
        let url = url.map_err(|e| anyhow::anyhow!("`store.url`: {e}"))?;
        return Ok((
            config,
            PathBuf::from(keysentry::store::pg::redact_url(&url)),
        ));
    }
    let dir = keysentry::store::state_dir(config.state_dir.as_deref());
    let db = dir.join(keysentry::store::DB_FILE);
    if !db.is_file() {
        let dir_from = if config.state_dir.is_some() {
            "its `state_dir`"
        } else {
            "the default state directory, as it sets no `state_dir`"
        };
        bail!(
            "no keysentry store at {}: looked with {from} and {dir_from} ({}). Point keysentry at \
             the config of the daemon or scan that made the store with `--config FILE` or \
             `KEYSENTRY_CONFIG=FILE` (or set `state_dir` in it); a store is made by the daemon \
             or `keysentry scan PATH --remediate`",
            db.display(),
            dir.display()
        );
    }
    Ok((config, db))
}

fn list(
    store: &Store,
    state: Option<&str>,
    provider: Option<&str>,
    json: bool,
) -> Result<ExitCode> {
    // clap accepts only the spellings, so this parse cannot fail on input.
    let filter = IncidentFilter {
        state: state.map(str::parse::<State>).transpose()?,
        provider: provider.map(str::to_string),
        oldest_first: true,
        ..IncidentFilter::default()
    };
    let rows = store.incident_list(&filter, Page::ALL)?.incidents;
    if json {
        let out: Vec<_> = rows
            .iter()
            .map(|r| {
                let mut v = serde_json::to_value(r)?;
                // The dashboard's field; this output keeps its shape.
                if let Some(o) = v.as_object_mut() {
                    o.remove("needs_a_human");
                }
                Ok(v)
            })
            .collect::<Result<_, serde_json::Error>>()?;
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        let filter = match (state, provider) {
            (None, None) => String::new(),
            (s, p) => format!(
                " matching{}{}",
                s.map(|s| format!(" --state {s}")).unwrap_or_default(),
                p.map(|p| format!(" --provider {p}")).unwrap_or_default()
            ),
        };
        eprintln!("no incidents{filter} in {}", store.path().display());
        return Ok(ExitCode::SUCCESS);
    }
    let mut table = Vec::with_capacity(rows.len());
    for IncidentSummary {
        row: r, locations, ..
    } in &rows
    {
        let place = match locations.split_first() {
            None => "-".to_string(),
            Some((first, [])) => first.clone(),
            Some((first, rest)) => format!("{first} +{}", rest.len()),
        };
        table.push(vec![
            r.id.to_string(),
            r.state.to_string(),
            r.provider.clone(),
            r.rule_id.clone(),
            r.redacted.clone(),
            seconds(&r.created_at),
            place,
            r.owner.clone().unwrap_or_else(|| "-".into()),
        ]);
    }
    let header = [
        "ID",
        "STATE",
        "PROVIDER",
        "RULE",
        "KEY",
        "FIRST SEEN",
        "LOCATIONS",
        "OWNER",
    ];
    print!("{}", aligned(&header, &table));
    Ok(ExitCode::SUCCESS)
}

/// `2026-12-01T09:30:00.123Z` → `2026-12-01T09:30:00Z`.
fn seconds(at: &str) -> String {
    match at.split_once('.') {
        Some((s, _)) => format!("{s}Z"),
        None => at.to_string(),
    }
}

/// Columns padded to their widest cell (in characters: redacted keys hold
/// a `…`), two spaces apart, no trailing blanks.
fn aligned(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| h.to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (cell, w) in row.iter().zip(&widths) {
            line.push_str(cell);
            line.extend(std::iter::repeat(' ').take(w - cell.chars().count() + 2));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

fn show(store: &Store, id: i64, json: bool) -> Result<ExitCode> {
    let view = store
        .incident_view(id)?
        .with_context(|| format!("no incident {id}; `keysentry incidents list` shows them"))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(ExitCode::SUCCESS);
    }
    let IncidentView {
        incident: row,
        next_check,
        locations,
        alerts,
        timeline,
        ..
    } = view;
    print_row(&row);
    if let Some(at) = &next_check {
        let backoff = if row.waits > 1 {
            format!(" (still waiting after {} checks: backing off)", row.waits)
        } else {
            String::new()
        };
        println!("  next check:  {at}{backoff}");
    }
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
    println!("timeline:");
    print!("{}", keysentry::store::timeline::text(&timeline));
    if let Some(last) = alerts.last() {
        println!("next steps (from the last alert, {}):", last.sent_at);
        if let Ok(v) = serde_json::from_str::<Value>(&last.body) {
            for step in v["next_steps"].as_array().into_iter().flatten() {
                println!("  - {}", step.as_str().unwrap_or(""));
            }
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
    for (label, value) in incident_details(r) {
        println!("  {:<13}{value}", format!("{label}:"));
    }
    println!("  created:     {}", r.created_at);
    println!("  updated:     {}", r.updated_at);
}

/// Who runs this command, for the timeline: the `sudo` caller if any.
fn who() -> String {
    ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "unknown user".into())
}

/// A note goes into the store: refuse one that holds a key (the store never
/// does), naming it only by its redacted form.
fn check_note(config: &Config, note: &str) -> Result<String> {
    let note = note.trim();
    if note.is_empty() {
        bail!("the note is empty; say what was done, e.g. --note \"regenerated in the Dashboard, KMS updated\"");
    }
    if note.len() > 4096 {
        bail!("the note is {} bytes; keep it under 4096", note.len());
    }
    let rules = RuleSet::load(&config.scan.rules)?;
    let scanner = Scanner::new(&rules, Allowlist::new(&[], &[])?)?;
    let found = scanner.scan(&Chunk::whole(Origin::Stdin, note.as_bytes().to_vec()));
    if let Some(f) = found.first() {
        bail!(
            "the note holds what looks like a {} ({}); keysentry never stores keys: write the note without it",
            f.rule_name,
            f.secret.redacted()
        );
    }
    Ok(note.to_string())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn resolve(config: &Config, store: &Store, id: i64, note: &str, json: bool) -> Result<ExitCode> {
    let note = check_note(config, note)?;
    let was = store
        .incident(id)?
        .map(|r| r.state.to_string())
        .unwrap_or_default();
    let reason = format!("resolved by hand ({}): {note}", who());
    let row = store.resolve(id, &reason, std::process::id(), now_ms(), process_alive)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&row)?);
    } else {
        println!(
            "incident {id} resolved (was {was}): keysentry makes no more provider calls for it; \
             `keysentry incidents reopen {id}` hands it back"
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn reopen(
    config: &Config,
    store: &Store,
    id: i64,
    note: Option<&str>,
    json: bool,
) -> Result<ExitCode> {
    let reason = match note {
        Some(n) => format!("reopened by hand ({}): {}", who(), check_note(config, n)?),
        None => format!("reopened by hand ({})", who()),
    };
    let done = store.reopen(id, &reason, std::process::id(), now_ms(), process_alive)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&done.row)?);
    } else if done.already_open {
        println!(
            "incident {id} is open already ({}); its next check is due now",
            done.row.state
        );
    } else {
        println!(
            "incident {id} reopened: {} → {}; the engine takes it up on its next pass (the \
             daemon's next retry, or `keysentry scan PATH --remediate` where the key is)",
            done.was, done.row.state
        );
    }
    Ok(ExitCode::SUCCESS)
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
        o.fingerprint.short(),
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
