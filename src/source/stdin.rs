//! `keysentry scan -`: standard input, read in pieces that end on a line
//! boundary so memory stays bounded whatever is piped in. Files named on the
//! command line that are over the size limit are streamed the same way.

use super::{ScanStats, SourceError};
use crate::scan::{Chunk, Finding, Origin, Scanner};
use std::collections::HashSet;
use std::io::Read;
use std::sync::Arc;

const PIECE: usize = 8 << 20;

/// How much of a piece is scanned again with the next one; more than any
/// rule's window (PEM rules look 8 KiB around their keyword).
const OVERLAP: usize = 16 << 10;

pub fn scan_reader(
    input: impl Read,
    scanner: &Scanner,
    stats: &ScanStats,
) -> Result<Vec<Finding>, SourceError> {
    scan_pieces(input, Origin::Stdin, scanner, stats, PIECE)
}

/// Scans `input` of any length with bounded memory, its findings placed at
/// `origin` (counted as one file in `stats`).
pub fn scan_stream(
    input: impl Read,
    origin: Origin,
    scanner: &Scanner,
    stats: &ScanStats,
) -> Result<Vec<Finding>, SourceError> {
    scan_pieces(input, origin, scanner, stats, PIECE)
}

fn scan_pieces(
    mut input: impl Read,
    origin: Origin,
    scanner: &Scanner,
    stats: &ScanStats,
    piece: usize,
) -> Result<Vec<Finding>, SourceError> {
    let name = match &origin {
        Origin::Stdin => "<stdin>".to_string(),
        other => other.path(),
    };
    let origin = Arc::new(origin);
    let mut findings: Vec<Finding> = Vec::new();
    let mut buf: Vec<u8> = Vec::with_capacity(piece + OVERLAP);
    let (mut first_line, mut base_offset) = (1u64, 0u64);
    // Bytes at the front of `buf` scanned (and counted) with the last piece,
    // and what that piece found there.
    let mut carried = 0usize;
    let mut seen_in_carried: HashSet<(Arc<str>, u64)> = HashSet::new();
    loop {
        let filled = buf.len();
        buf.resize(filled + piece, 0);
        let n = read_full(&mut input, &mut buf[filled..]).map_err(|source| SourceError::Io {
            path: name.clone(),
            source,
        })?;
        buf.truncate(filled + n);
        let eof = n < piece;
        // End the piece on a line break; a line longer than a piece is cut
        // where the piece ends.
        let cut = match memchr::memrchr(b'\n', &buf) {
            Some(p) if !eof && p >= carried => p + 1,
            _ => buf.len(),
        };
        let rest = buf.split_off(cut);
        stats.add_bytes(cut - carried);
        let chunk = Chunk {
            origin: origin.clone(),
            data: std::mem::replace(&mut buf, rest),
            first_line,
            base_offset,
        };
        let found = scanner.scan(&chunk);
        let keep = if eof {
            chunk.data.len()
        } else {
            overlap_start(&chunk.data)
        };
        let tail_from = base_offset + keep as u64;
        let mut next_seen = HashSet::new();
        for f in found {
            let id = (f.rule_id.clone(), f.offset);
            if f.offset >= tail_from {
                next_seen.insert(id.clone());
            }
            if !seen_in_carried.contains(&id) {
                findings.push(f);
            }
        }
        if eof {
            break;
        }
        // Carry the last lines into the next piece so that a multi-line key
        // (a PEM block) cut at the piece boundary is still seen whole.
        let data = chunk.data;
        first_line += super::count_lines(&data[..keep]);
        base_offset = tail_from;
        carried = data.len() - keep;
        seen_in_carried = next_seen;
        let mut next = Vec::with_capacity(piece + OVERLAP);
        next.extend_from_slice(&data[keep..]);
        next.extend_from_slice(&buf);
        buf = next;
    }
    stats
        .files
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(findings)
}

/// Where the carried-over tail of a piece starts: the first line break at
/// least `OVERLAP` bytes before its end.
fn overlap_start(data: &[u8]) -> usize {
    let from = data.len().saturating_sub(OVERLAP);
    memchr::memrchr(b'\n', &data[..from])
        .map(|p| p + 1)
        .unwrap_or(from)
}

fn read_full(input: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleSet;
    use crate::scan::Allowlist;
    use std::path::Path;

    const RULE: &str = r#"
rules:
  - id: t.block
    name: block
    provider: t
    keywords: ["BEGIN KSQ"]
    pattern: '(?P<secret>BEGIN KSQ\n[0-9a-f\n]{64,4000}?\nEND KSQ)'
    window: 8192
"#;

    fn scanner() -> Scanner {
        let mut rules = RuleSet::default();
        rules.add_file(Path::new("t.yaml"), RULE).unwrap();
        Scanner::new(&rules, Allowlist::default()).unwrap()
    }

    fn block() -> String {
        let lines: Vec<String> = (0..40u32)
            .map(|i| format!("{:08x}{:08x}", i.wrapping_mul(2654435761), i ^ 0x5bd1e995))
            .collect();
        format!("BEGIN KSQ\n{}\nEND KSQ\n", lines.join("\n"))
    }

    /// A multi-line key that straddles two pieces is found once, at its
    /// real line and offset.
    #[test]
    fn key_across_a_piece_boundary_is_found_once() {
        let piece = 64 << 10;
        for lead in [piece - 300, piece - 10, piece + 5, 3 * piece - 100] {
            let filler = "z".repeat(59) + "\n";
            let mut text = filler.repeat(lead / 60);
            let (line, offset) = (text.lines().count() as u64 + 1, text.len() as u64);
            text.push_str(&block());
            text.push_str(&filler.repeat(2000));
            let stats = ScanStats::default();
            let found =
                scan_pieces(text.as_bytes(), Origin::Stdin, &scanner(), &stats, piece).unwrap();
            assert_eq!(found.len(), 1, "lead {lead}");
            assert_eq!(
                (found[0].line, found[0].offset),
                (line, offset),
                "lead {lead}"
            );
            assert_eq!(ScanStats::get(&stats.bytes), text.len() as u64);
        }
    }

    #[test]
    fn a_line_longer_than_a_piece_does_not_grow_memory_without_bound() {
        let text = "y".repeat(5 * 1024) + &block();
        let stats = ScanStats::default();
        let found = scan_pieces(text.as_bytes(), Origin::Stdin, &scanner(), &stats, 1024).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(ScanStats::get(&stats.bytes), text.len() as u64);
    }
}
