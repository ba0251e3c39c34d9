//! The scan summary on stderr: what was read, what was found (findings and
//! distinct keys), what the user's filters hid, and, last and loud, what
//! could not be scanned.

use super::{plural, size, use_color};
use keysentry::scan::{Finding, Suppressed};
use keysentry::source::ScanStats;
use std::collections::{BTreeMap, HashSet};
use std::io::IsTerminal;
use std::time::Duration;

/// What a skipped item is called in the INCOMPLETE line.
#[derive(Clone, Copy)]
pub enum Unit {
    File,
    Blob,
}

impl Unit {
    fn name(self) -> &'static str {
        match self {
            Unit::File => "file",
            Unit::Blob => "blob",
        }
    }
}

/// What the summary reports on, besides the counters.
pub struct Run {
    pub suppressed: Suppressed,
    pub unit: Unit,
    /// The directory-walk size limit, for the too-large warnings.
    pub max_file_size: u64,
    pub elapsed: Duration,
}

pub fn print_summary(stats: &ScanStats, findings: &[Finding], run: &Run) {
    for line in summary_lines(stats, findings, run) {
        eprintln!("{line}");
    }
}

fn summary_lines(stats: &ScanStats, findings: &[Finding], run: &Run) -> Vec<String> {
    let (suppressed, unit, elapsed) = (run.suppressed, run.unit, run.elapsed);
    let get = ScanStats::get;
    let mut lines = Vec::new();
    // Warnings first, so that the INCOMPLETE line closing the summary can
    // point up at them.
    let mut warned = 0;
    if let Ok(list) = stats.too_large.lock() {
        for (path, bytes) in list.iter() {
            // A file inside an archive cannot be named on the command line.
            let or_name = match path.contains("!/") {
                true => "",
                false => ", or name the file on the command line",
            };
            lines.push(format!(
                "warning: {} not scanned: {} is over the {} limit; raise --max-file-size \
                 (or scan.max_file_size){or_name}",
                visible(path),
                size(*bytes),
                size(run.max_file_size)
            ));
            warned += 1;
        }
    }
    if let Ok(list) = stats.unreadable.lock() {
        for u in list.iter() {
            lines.push(format!("warning: could not read {}", visible(u)));
            warned += 1;
        }
    }

    // Counts that are zero say nothing (a `--git` scan reads no files), but
    // a scan that read nothing says "0 files".
    let (files, blobs, commits) = (get(&stats.files), get(&stats.blobs), get(&stats.commits));
    let counts: Vec<String> = [(files, "file"), (blobs, "blob"), (commits, "commit")]
        .into_iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, what)| plural(n, what))
        .collect();
    let mut line = match counts.is_empty() {
        true => "scanned 0 files".to_string(),
        false => format!("scanned {}", counts.join(", ")),
    };
    line.push_str(&format!(
        ", {} in {:.2}s",
        size(get(&stats.bytes)),
        elapsed.as_secs_f64()
    ));
    let archives = get(&stats.archives);
    if archives > 0 {
        line.push_str(&format!("; expanded {}", plural(archives, "archive")));
    }
    let binary = get(&stats.skipped_binary);
    if binary > 0 {
        line.push_str(&format!("; skipped {binary} binary"));
    }
    lines.push(line);

    if findings.is_empty() {
        lines.push("no findings".into());
    } else {
        let mut by_provider: BTreeMap<&str, usize> = BTreeMap::new();
        for f in findings {
            *by_provider.entry(&f.provider).or_default() += 1;
        }
        let providers = by_provider
            .iter()
            .map(|(p, n)| format!("{p}: {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let keys: HashSet<&str> = findings.iter().map(|f| f.fingerprint.as_str()).collect();
        lines.push(format!(
            "{}, {} ({providers})",
            plural(findings.len() as u64, "finding"),
            plural(keys.len() as u64, "distinct key"),
        ));
    }

    let hidden: Vec<String> = [
        (suppressed.baseline, "by the baseline"),
        (suppressed.allowlist, "by the allowlist"),
        (suppressed.inline, "inline (keysentry:allow)"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, why)| format!("{n} {why}"))
    .collect();
    if !hidden.is_empty() {
        let total = suppressed.baseline + suppressed.allowlist + suppressed.inline;
        lines.push(format!(
            "suppressed {}: {}",
            plural(total, "finding"),
            hidden.join(", ")
        ));
    }

    let (large, unreadable) = (
        get(&stats.skipped_large),
        stats.unreadable.lock().map(|l| l.len() as u64).unwrap_or(0),
    );
    if large + unreadable > 0 {
        let parts: Vec<String> = [(large, "too large"), (unreadable, "unreadable")]
            .into_iter()
            .filter(|(n, _)| *n > 0)
            .map(|(n, why)| format!("{n} {why}"))
            .collect();
        let pointer = if warned > 0 {
            "see warnings above"
        } else {
            "raise --max-file-size to include them"
        };
        let (bold, reset) = match use_color(std::io::stderr().is_terminal()) {
            true => ("\x1b[1;31m", "\x1b[0m"),
            false => ("", ""),
        };
        lines.push(format!(
            "{bold}INCOMPLETE{reset}: {} not scanned ({}) — {pointer}",
            plural(large + unreadable, unit.name()),
            parts.join(", ")
        ));
    }
    lines
}

/// A file name as text that cannot move the cursor or recolour the
/// terminal: control characters are shown escaped (`\u{1b}`).
fn visible(name: &str) -> String {
    name.chars()
        .map(|c| match c.is_control() {
            true => c.escape_default().to_string(),
            false => c.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::visible;

    #[test]
    fn control_characters_in_names_are_escaped() {
        assert_eq!(visible("a\x1b[2Jb.env"), "a\\u{1b}[2Jb.env");
        assert_eq!(visible("tab\there"), "tab\\there");
        assert_eq!(visible("clé.env"), "clé.env");
    }
}
