//! `keysentry scan -`: standard input, read in pieces that end on a line
//! boundary so memory stays bounded whatever is piped in. Files named on the
//! command line that are over the size limit are streamed the same way.

use super::{ScanStats, SourceError};
use crate::scan::driver::{Emit, Flow, Source};
use crate::scan::{Chunk, Origin};
use std::io::Read;
use std::sync::Arc;

const PIECE: usize = 8 << 20;

/// How much of a piece is scanned again with the next one; more than any
/// rule's window (PEM rules look 8 KiB around their keyword).
const OVERLAP: usize = 16 << 10;

/// Input of any length read in pieces with bounded memory, as a
/// [`Source`]: stdin (`Stream::stdin`), or a named file too large to read
/// whole. Its findings are placed at `origin` (counted as one file in
/// `stats`). The pieces overlap (see [`OVERLAP`]) and share one origin, so
/// the driver reports a key in an overlap once.
pub struct Stream<'a, R> {
    input: R,
    origin: Origin,
    stats: &'a ScanStats,
    piece: usize,
}

impl<'a, R: Read> Stream<'a, R> {
    pub fn new(input: R, origin: Origin, stats: &'a ScanStats) -> Self {
        Stream {
            input,
            origin,
            stats,
            piece: PIECE,
        }
    }

    /// Emits every piece at `seq`.
    pub fn emit_at(self, seq: u64, out: &dyn Emit) -> Result<Flow, SourceError> {
        emit_pieces(self.input, self.origin, seq, out, self.stats, self.piece)
    }
}

impl<'a, R: Read> Stream<'a, R> {
    /// `keysentry scan -`.
    pub fn stdin(input: R, stats: &'a ScanStats) -> Self {
        Stream::new(input, Origin::Stdin, stats)
    }
}

impl<R: Read> Source for Stream<'_, R> {
    type Error = SourceError;

    fn run(&mut self, out: &dyn Emit) -> Result<(), SourceError> {
        let origin = std::mem::replace(&mut self.origin, Origin::Stdin);
        emit_pieces(&mut self.input, origin, 0, out, self.stats, self.piece).map(|_| ())
    }
}

fn emit_pieces(
    mut input: impl Read,
    origin: Origin,
    seq: u64,
    out: &dyn Emit,
    stats: &ScanStats,
    piece: usize,
) -> Result<Flow, SourceError> {
    let name = match &origin {
        Origin::Stdin => "<stdin>".to_string(),
        other => other.path(),
    };
    let origin = Arc::new(origin);
    let mut buf: Vec<u8> = Vec::with_capacity(piece + OVERLAP);
    let (mut first_line, mut base_offset) = (1u64, 0u64);
    // Bytes at the front of `buf` emitted (and counted) with the last piece.
    let mut carried = 0usize;
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
        if out.chunk(seq, &chunk) == Flow::Stop {
            return Ok(Flow::Stop);
        }
        if eof {
            break;
        }
        // Carry the last lines into the next piece so that a multi-line key
        // (a PEM block) cut at the piece boundary is still seen whole.
        let keep = overlap_start(&chunk.data);
        let data = chunk.data;
        first_line += super::count_lines(&data[..keep]);
        base_offset += keep as u64;
        carried = data.len() - keep;
        let mut next = Vec::with_capacity(piece + OVERLAP);
        next.extend_from_slice(&data[keep..]);
        next.extend_from_slice(&buf);
        buf = next;
    }
    stats
        .files
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(Flow::Continue)
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
    use crate::scan::{Allowlist, Scanner};
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

    fn pieces(input: &[u8], stats: &ScanStats, piece: usize) -> Vec<crate::scan::Finding> {
        let mut stream = Stream::stdin(input, stats);
        stream.piece = piece;
        crate::scan::driver::run(&scanner(), &mut stream).unwrap()
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
            let found = pieces(text.as_bytes(), &stats, piece);
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
        let found = pieces(text.as_bytes(), &stats, 1024);
        assert_eq!(found.len(), 1);
        assert_eq!(ScanStats::get(&stats.bytes), text.len() as u64);
    }
}
