//! `keysentry scan`: the one-shot scan of a path, stdin or git history.

use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use keysentry::config::{self, Config};
use keysentry::report::{read_baseline, write_report, Format, ReportOptions};
use keysentry::rules::RuleSet;
use keysentry::scan::{Allowlist, Finding, Scanner};
use keysentry::source::{fs, git, stdin, ScanStats};
use std::collections::{BTreeMap, HashSet};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct ScanArgs {
    /// File or directory to scan; `-` reads stdin.
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// Scan every commit's added content in the repository's whole history.
    #[arg(long)]
    pub git: bool,
    /// text, json, jsonl or sarif.
    #[arg(long, default_value = "text")]
    pub format: Format,
    /// Write the report here instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Extra rule directories (repeatable), added to the built-in rules.
    #[arg(long = "rules", value_name = "DIR")]
    pub rules: Vec<PathBuf>,
    /// Config file (allowlist, extra rules, remediation).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A previous JSON report: its fingerprints are not reported again.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Print the secrets themselves in the report.
    #[arg(long)]
    pub show_secrets: bool,
    /// Feed findings to the remediation engine (needs --config).
    #[arg(long)]
    pub remediate: bool,
    /// Skip files larger than this many bytes (default 20 MiB).
    #[arg(long, value_name = "BYTES")]
    pub max_file_size: Option<u64>,
}

pub fn run(args: ScanArgs) -> Result<ExitCode> {
    let started = Instant::now();
    if args.remediate && args.config.is_none() {
        anyhow::bail!("--remediate needs --config FILE (state_dir, remediation policy, providers)");
    }
    // The config is checked the way `config check` does; what only the
    // daemon or remediation needs from this machine (variables, consumer
    // files) is not this scan's business.
    let (config, rules) = match &args.config {
        Some(p) => {
            let (config, rules, _machine) =
                config::load_checked(p, &args.rules, &config::Env::Process)?;
            (config, rules)
        }
        None => (Config::default(), RuleSet::load(&args.rules)?),
    };
    let mut allowlist =
        Allowlist::new(&config.scan.allowlist.paths, &config.scan.allowlist.secrets)?;
    if let Some(b) = &args.baseline {
        allowlist.add_fingerprints(read_baseline(b)?);
    }
    let scanner = Scanner::new(&rules, allowlist)?;
    let stats = ScanStats::default();
    let max_file_size = args
        .max_file_size
        .or(config.scan.max_file_size)
        .unwrap_or(20 << 20);

    let findings = if args.path == Path::new("-") {
        stdin::scan_reader(std::io::stdin().lock(), &scanner, &stats)?
    } else if args.git {
        let opts = git::GitOptions {
            max_blob_size: max_file_size,
            ..git::GitOptions::default()
        };
        let bar = progress_bar("blobs");
        let done = AtomicBool::new(false);
        let scanned = std::thread::scope(|s| {
            if let Some(b) = &bar {
                s.spawn(|| {
                    while !done.load(Ordering::Relaxed) {
                        b.set_position(stats.blobs.load(Ordering::Relaxed));
                        std::thread::sleep(Duration::from_millis(100));
                    }
                });
            }
            let scanned = git::scan_repo(&args.path, &scanner, &opts, &stats, &[]);
            done.store(true, Ordering::Relaxed);
            scanned
        });
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        scanned?.findings
    } else {
        let bar = progress_bar("files");
        let opts = fs::FsOptions {
            max_file_size,
            ..fs::FsOptions::default()
        };
        let tick = || {
            if let Some(b) = &bar {
                b.inc(1)
            }
        };
        let found = fs::scan_tree(&args.path, &scanner, &opts, &stats, &tick)?;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        found
    };
    let findings = dedup(findings);

    let opts = ReportOptions {
        show_secrets: args.show_secrets,
        color: args.output.is_none() && std::io::stdout().is_terminal(),
    };
    match &args.output {
        Some(path) => {
            let what = || format!("cannot write the report to {}", path.display());
            let file = std::fs::File::create(path).with_context(what)?;
            let mut out = std::io::BufWriter::new(file);
            write_report(args.format, &findings, opts, &mut out).with_context(what)?;
            out.flush().with_context(what)?;
        }
        None => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            write_report(args.format, &findings, opts, &mut out)
                .context("cannot write the report to stdout")?;
            out.flush().context("cannot write the report to stdout")?;
        }
    }
    print_summary(&stats, &findings, started.elapsed());
    let found = !findings.is_empty();
    if args.remediate && found {
        super::incidents::remediate(&config, rules, findings)?;
    }
    Ok(if !found {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn dedup(findings: Vec<Finding>) -> Vec<Finding> {
    let mut seen = HashSet::new();
    findings
        .into_iter()
        .filter(|f| seen.insert(f.dedup_key()))
        .collect()
}

/// A spinner with a running count of `unit` (files, blobs), only when stderr
/// is a terminal: listing and scanning run together, so there is no total
/// to show up front.
fn progress_bar(unit: &str) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new_spinner();
    let template = format!("{{spinner}} scanned {{pos}} {unit} {{elapsed}}");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    Some(bar)
}

fn print_summary(stats: &ScanStats, findings: &[Finding], elapsed: Duration) {
    let get = ScanStats::get;
    let mut by_provider: BTreeMap<&str, usize> = BTreeMap::new();
    for f in findings {
        *by_provider.entry(&f.provider).or_default() += 1;
    }
    let providers = by_provider
        .iter()
        .map(|(p, n)| format!("{p}: {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let bytes = get(&stats.bytes);
    // Counts that are zero say nothing (a `--git` scan reads no files), but
    // a scan that read nothing says "0 files".
    let (files, blobs, commits) = (get(&stats.files), get(&stats.blobs), get(&stats.commits));
    let counts: Vec<String> = [(files, "files"), (blobs, "blobs"), (commits, "commits")]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| format!("{n} {what}"))
        .collect();
    let mut line = match counts.is_empty() {
        true => "scanned 0 files".to_string(),
        false => format!("scanned {}", counts.join(", ")),
    };
    line.push_str(&format!(
        ", {:.1} MB in {:.2}s",
        bytes as f64 / 1e6,
        elapsed.as_secs_f64()
    ));
    let (bin, large) = (get(&stats.skipped_binary), get(&stats.skipped_large));
    if bin + large > 0 {
        line.push_str(&format!("; skipped {bin} binary, {large} too large"));
    }
    eprintln!("{line}");
    if let Ok(list) = stats.unreadable.lock() {
        for u in list.iter() {
            eprintln!("warning: could not read {}", keysentry::report::escape(u));
        }
    }
    if findings.is_empty() {
        eprintln!("no findings");
    } else {
        eprintln!("{} findings ({providers})", findings.len());
    }
}
