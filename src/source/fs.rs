//! Files under a path: every file, .gitignored ones included (a leaked key in
//! an ignored `.env` is still leaked), `.git/` skipped, binary and oversized
//! files skipped and counted. Files are scanned in parallel.

use super::{looks_binary, ScanStats, SourceError};
use crate::scan::{Chunk, Finding, Origin, Scanner};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;

#[derive(Debug, Clone)]
pub struct FsOptions {
    /// Files larger than this are skipped and counted.
    pub max_file_size: u64,
}

impl Default for FsOptions {
    fn default() -> Self {
        FsOptions {
            max_file_size: 20 << 20,
        }
    }
}

/// Lists the files to scan under `root` (or `root` itself if it is a file).
pub fn list_files(root: &Path) -> Result<Vec<PathBuf>, SourceError> {
    if !root.exists() {
        return Err(SourceError::Missing {
            path: root.display().to_string(),
        });
    }
    if root.is_file() {
        return Ok(vec![root.to_path_buf()]);
    }
    let walker = ignore::WalkBuilder::new(root)
        .standard_filters(false)
        .follow_links(false)
        .filter_entry(|e| e.file_name() != ".git")
        .build();
    let mut files = Vec::new();
    for entry in walker {
        match entry {
            Ok(e) if e.file_type().is_some_and(|t| t.is_file()) => files.push(e.into_path()),
            Ok(_) => {}
            Err(e) => {
                return Err(SourceError::Io {
                    path: root.display().to_string(),
                    source: std::io::Error::other(e.to_string()),
                })
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The path a finding reports: relative to the scanned root.
pub fn relative(root: &Path, file: &Path) -> String {
    let rel = if root.is_file() {
        file.file_name().map(Path::new).unwrap_or(file)
    } else {
        file.strip_prefix(root).unwrap_or(file)
    };
    rel.to_string_lossy().replace('\\', "/")
}

/// Scans every file; `on_file` is called once per file (progress bars).
pub fn scan_files(
    root: &Path,
    files: &[PathBuf],
    scanner: &Scanner,
    opts: &FsOptions,
    stats: &ScanStats,
    on_file: &(dyn Fn() + Sync),
) -> Vec<Finding> {
    let mut findings: Vec<Finding> = files
        .par_iter()
        .flat_map_iter(|file| {
            let found = scan_file(root, file, scanner, opts, stats);
            on_file();
            found
        })
        .collect();
    findings.sort_by_key(|a| (a.origin.path(), a.offset));
    findings
}

fn scan_file(
    root: &Path,
    file: &Path,
    scanner: &Scanner,
    opts: &FsOptions,
    stats: &ScanStats,
) -> Vec<Finding> {
    let rel = relative(root, file);
    match std::fs::metadata(file) {
        Ok(m) if m.len() > opts.max_file_size => {
            stats.skipped_large.fetch_add(1, Relaxed);
            return Vec::new();
        }
        Ok(_) => {}
        Err(e) => {
            stats.record_unreadable(format!("{rel}: {e}"));
            return Vec::new();
        }
    }
    let data = match std::fs::read(file) {
        Ok(d) => d,
        Err(e) => {
            stats.record_unreadable(format!("{rel}: {e}"));
            return Vec::new();
        }
    };
    if looks_binary(&data) {
        stats.skipped_binary.fetch_add(1, Relaxed);
        return Vec::new();
    }
    stats.files.fetch_add(1, Relaxed);
    stats.add_bytes(data.len());
    scanner.scan(&Chunk::whole(Origin::File { path: rel }, data))
}
