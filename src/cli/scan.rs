//! `keysentry scan`: the one-shot scan of a path, stdin or git history.

use super::summary::{print_summary, Run, Unit};
use anyhow::{Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use keysentry::config::{self, Config};
use keysentry::report::{read_baseline, write_report, Format, ReportOptions};
use keysentry::rules::RuleSet;
use keysentry::scan::{driver, Allowlist, Finding, Scanner};
use keysentry::source::archive::ArchiveLimits;
use keysentry::source::{fs, git, stdin, ScanStats};
use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct ScanArgs {
    /// Files or directories to scan; `-` (alone) reads stdin. A directory's
    /// findings are relative to it; a named file keeps the path as given.
    #[arg(default_value = ".", value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Scan every commit's added content in the repository's whole history.
    #[arg(long)]
    pub git: bool,
    /// With --git: only the commits HEAD has that REV has not (REV..HEAD).
    #[arg(long, value_name = "REV", requires = "git", conflicts_with = "range")]
    pub since: Option<String>,
    /// With --git: only the commits B has that A has not (a push:
    /// before..after; a pull request: base..head).
    #[arg(long, value_name = "A..B", requires = "git")]
    pub range: Option<String>,
    /// Scan what `git commit` would record: the lines the index adds, with
    /// paths and line numbers of the staged files (for pre-commit hooks).
    #[arg(long, conflicts_with = "git")]
    pub staged: bool,
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
    /// In a directory walk, skip files larger than this many bytes (default
    /// 20 MiB; reported as INCOMPLETE). Named files are always scanned.
    #[arg(long, value_name = "BYTES")]
    pub max_file_size: Option<u64>,
    /// Scan zip/jar/war, tar, tar.gz and gz files and container images as
    /// plain binary files (skipped) instead of expanding them.
    #[arg(long)]
    pub no_archives: bool,
    /// Archives nested in archives are expanded this many levels deep
    /// (default 3; the archive on disk is level 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=32))]
    pub max_archive_depth: Option<u32>,
    /// Stop expanding one archive after this many decompressed bytes
    /// (default 256 MiB, all levels together: a zip bomb stops there).
    #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_archive_size: Option<u64>,
}

pub fn run(args: ScanArgs) -> Result<ExitCode> {
    let started = Instant::now();
    if args.remediate && args.config.is_none() {
        anyhow::bail!("--remediate needs --config FILE (state_dir, remediation policy, providers)");
    }
    let stdin_named = args.paths.iter().any(|p| p == Path::new("-"));
    if stdin_named && args.paths.len() > 1 {
        anyhow::bail!(
            "`-` (stdin) cannot be combined with other paths; scan stdin in a run of its own"
        );
    }
    if (args.git || args.staged) && args.paths.len() > 1 {
        anyhow::bail!("--git and --staged scan one repository; run keysentry once per repository");
    }
    // The config is checked the way `config check` does; what only the
    // daemon or remediation needs from this machine (variables, consumer
    // files) is not this scan's business.
    let (config, rules) = match &args.config {
        Some(p) => {
            let (config, rules, _machine) =
                keysentry::check::load_checked(p, &args.rules, &config::Env::Process)?;
            (config, rules)
        }
        None => (Config::default(), RuleSet::load(&args.rules)?),
    };
    for w in rules.warnings() {
        eprintln!("warning: {w}");
    }
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
    let unit = if args.git { Unit::Blob } else { Unit::File };

    // A git scan that could not read every blob reports what it found,
    // then exits 2 naming what it missed.
    let mut incomplete = None;
    let findings = if stdin_named {
        let mut input = stdin::Stream::stdin(std::io::stdin().lock(), &stats);
        dedup(driver::run(&scanner, &mut input)?)
    } else if args.staged {
        let scan = git::scan_staged(&args.paths[0], &scanner, max_file_size, &stats)?;
        incomplete = scan.incomplete();
        scan.findings
    } else if args.git {
        let repo = &args.paths[0];
        let commits = match (&args.since, &args.range) {
            (Some(rev), _) => git::Commits::since(rev)?,
            (None, Some(range)) => git::Commits::range(range)?,
            (None, None) => git::Commits::All,
        };
        let opts = git::GitOptions {
            max_blob_size: max_file_size,
            commits,
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
            let scanned = git::scan_repo(repo, &scanner, &opts, &stats, &[]);
            done.store(true, Ordering::Relaxed);
            scanned
        });
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        let scan = scanned?;
        incomplete = scan.incomplete();
        dedup(scan.findings)
    } else {
        let bar = progress_bar("files");
        let opts = fs::FsOptions {
            max_file_size,
            archives: archive_limits(&args, &config.scan.archives, max_file_size),
            ..fs::FsOptions::default()
        };
        let tick = || {
            if let Some(b) = &bar {
                b.inc(1)
            }
        };
        let mut paths = fs::Paths {
            roots: &args.paths,
            opts: &opts,
            stats: &stats,
            on_file: &tick,
        };
        let found = driver::run(&scanner, &mut paths)?;
        if let Some(b) = bar {
            b.finish_and_clear();
        }
        // Not deduplicated across roots: `a.env` found under two named
        // directories is two files, even though both report `a.env`.
        found
    };

    let opts = ReportOptions {
        show_secrets: args.show_secrets,
        color: super::use_color(args.output.is_none() && std::io::stdout().is_terminal()),
        remediate: args.remediate,
    };
    match &args.output {
        Some(path) => {
            let what = || format!("cannot write the report to {}", path.display());
            let file = std::fs::File::create(path).with_context(what)?;
            let mut out = std::io::BufWriter::new(file);
            write_report(args.format, &findings, &rules, opts, &mut out).with_context(what)?;
            out.flush().with_context(what)?;
        }
        None => {
            let mut out = std::io::BufWriter::new(super::stdout());
            write_report(args.format, &findings, &rules, opts, &mut out)
                .context("cannot write the report to stdout")?;
            out.flush().context("cannot write the report to stdout")?;
        }
    }
    let run = Run {
        suppressed: scanner.suppressed(),
        unit,
        max_file_size,
        elapsed: started.elapsed(),
    };
    print_summary(&stats, &findings, &run);
    let found = !findings.is_empty();
    if args.remediate && found {
        super::incidents::remediate(&config, rules, findings)?;
    }
    if let Some(err) = incomplete {
        return Err(err.into());
    }
    Ok(if !found {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The archive limits from the flags, else `scan.archives`, else the
/// defaults; `None` when archives are off.
fn archive_limits(
    args: &ScanArgs,
    conf: &config::ArchivesConfig,
    max_file_size: u64,
) -> Option<ArchiveLimits> {
    if args.no_archives || conf.enabled == Some(false) {
        return None;
    }
    let d = ArchiveLimits::default();
    Some(ArchiveLimits {
        max_depth: args
            .max_archive_depth
            .or(conf.max_depth)
            .unwrap_or(d.max_depth),
        max_size: args
            .max_archive_size
            .or(conf.max_size)
            .unwrap_or(d.max_size),
        max_entries: conf.max_entries.unwrap_or(d.max_entries),
        max_file_size,
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
