//! `keysentry scan -`: standard input, read in pieces that end on a line
//! boundary so memory stays bounded whatever is piped in. Files named on the
//! command line that are over the size limit are streamed the same way.

use super::{ScanStats, SourceError};
use crate::scan::driver::{Emit, Flow, Source};
use crate::scan::{Chunk, Origin};
use std::io::Read;
use std::sync::Arc;

const PIECE: usize = 8 << 20;

/// How much of a piece is scanned again with the next one: the widest
/// region the scanner searches around one keyword hit, so a key cut by a
/// piece's end lies whole in the next piece. That region is the keyword
/// (at most [`crate::rules::MAX_KEYWORD`]) and a window either side (at
/// most [`crate::rules::MAX_WINDOW`]; PEM rules take all of it), each
/// widened to the line's end by up to `MAX_LINE_EXTENSION`.
const OVERLAP: usize =
    2 * (crate::rules::MAX_WINDOW + crate::scan::MAX_LINE_EXTENSION) + crate::rules::MAX_KEYWORD;

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
    /// Scanning threads; `None`: every core when the driver scans inline.
    threads: Option<usize>,
}

impl<'a, R: Read> Stream<'a, R> {
    pub fn new(input: R, origin: Origin, stats: &'a ScanStats) -> Self {
        Stream {
            input,
            origin,
            stats,
            piece: PIECE,
            threads: None,
        }
    }

    /// Emits every piece at `seq`.
    pub fn emit_at(self, seq: u64, out: &dyn Emit) -> Result<Flow, SourceError> {
        let workers = self.threads.unwrap_or_else(|| scanners(out));
        emit_pieces(
            self.input,
            self.origin,
            seq,
            out,
            self.stats,
            self.piece,
            workers,
        )
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
        let workers = self.threads.unwrap_or_else(|| scanners(out));
        emit_pieces(
            &mut self.input,
            origin,
            0,
            out,
            self.stats,
            self.piece,
            workers,
        )
        .map(|_| ())
    }
}

fn emit_pieces(
    input: impl Read,
    origin: Origin,
    seq: u64,
    out: &dyn Emit,
    stats: &ScanStats,
    piece: usize,
    workers: usize,
) -> Result<Flow, SourceError> {
    let name = match &origin {
        Origin::Stdin => "<stdin>".to_string(),
        other => other.path(),
    };
    let mut pieces = Pieces {
        input,
        origin: Arc::new(origin),
        piece,
        buf: Vec::with_capacity(piece + OVERLAP),
        first_line: 1,
        base_offset: 0,
        carried: 0,
        eof: false,
    };
    let read = |pieces: &mut Pieces<_>| {
        pieces.next(stats).map_err(|source| SourceError::Io {
            path: name.clone(),
            source,
        })
    };
    let flow = if workers > 1 && out.scans_inline() {
        emit_parallel(&mut pieces, read, seq, out, workers)?
    } else {
        let mut flow = Flow::Continue;
        while let Some(chunk) = read(&mut pieces)? {
            if out.chunk(seq, &chunk) == Flow::Stop {
                flow = Flow::Stop;
                break;
            }
        }
        flow
    };
    if flow == Flow::Continue {
        stats
            .files
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    Ok(flow)
}

/// How many threads scan the pieces of one stream: every core when the
/// driver scans on the emitting thread (one-shot `keysentry scan`), one
/// when it queues in order (the daemon).
fn scanners(out: &dyn Emit) -> usize {
    match out.scans_inline() {
        true => std::thread::available_parallelism().map_or(1, |n| n.get()),
        false => 1,
    }
}

/// Reads the pieces on this thread and scans them on `workers` threads:
/// one large file or stdin keeps every core busy. At most `workers` pieces
/// wait for a scanner, so memory stays bounded (pieces in flight × piece
/// size). The driver orders the findings by piece (`base_offset`), so the
/// report is the same as a sequential one.
fn emit_parallel<R: Read>(
    pieces: &mut Pieces<R>,
    mut read: impl FnMut(&mut Pieces<R>) -> Result<Option<Chunk>, SourceError>,
    seq: u64,
    out: &dyn Emit,
    workers: usize,
) -> Result<Flow, SourceError> {
    use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
    let stop = AtomicBool::new(false);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Chunk>(workers);
    let rx = std::sync::Mutex::new(rx);
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let next = rx.lock().map(|rx| rx.recv());
                let Ok(Ok(chunk)) = next else { break };
                if out.chunk(seq, &chunk) == Flow::Stop {
                    stop.store(true, Relaxed);
                }
            });
        }
        let mut result = Ok(Flow::Continue);
        while !stop.load(Relaxed) {
            match read(pieces) {
                Ok(Some(chunk)) => {
                    if tx.send(chunk).is_err() {
                        break;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        drop(tx);
        result
    })
    .map(|flow| match stop.load(Relaxed) {
        true => Flow::Stop,
        false => flow,
    })
}

/// The pieces of one stream, each ending on a line break, each starting
/// with the last lines of the one before (see [`OVERLAP`]).
struct Pieces<R> {
    input: R,
    origin: Arc<Origin>,
    piece: usize,
    buf: Vec<u8>,
    first_line: u64,
    base_offset: u64,
    /// Bytes at the front of `buf` emitted (and counted) with the last piece.
    carried: usize,
    eof: bool,
}

impl<R: Read> Pieces<R> {
    fn next(&mut self, stats: &ScanStats) -> std::io::Result<Option<Chunk>> {
        if self.eof {
            return Ok(None);
        }
        let mut buf = std::mem::take(&mut self.buf);
        let filled = buf.len();
        buf.resize(filled + self.piece, 0);
        let n = read_full(&mut self.input, &mut buf[filled..])?;
        buf.truncate(filled + n);
        self.eof = n < self.piece;
        // End the piece on a line break; a line longer than a piece is cut
        // where the piece ends.
        let cut = match memchr::memrchr(b'\n', &buf) {
            Some(p) if !self.eof && p >= self.carried => p + 1,
            _ => buf.len(),
        };
        let rest = buf.split_off(cut);
        stats.add_bytes(cut - self.carried);
        let chunk = Chunk {
            origin: self.origin.clone(),
            data: buf,
            first_line: self.first_line,
            base_offset: self.base_offset,
        };
        if !self.eof {
            // Carry the last lines into the next piece so that a multi-line
            // key (a PEM block) cut at the piece boundary is still seen whole.
            let keep = overlap_start(&chunk.data);
            self.first_line += super::count_lines(&chunk.data[..keep]);
            self.base_offset += keep as u64;
            self.carried = chunk.data.len() - keep;
            let mut next = Vec::with_capacity(self.piece + OVERLAP);
            next.extend_from_slice(&chunk.data[keep..]);
            next.extend_from_slice(&rest);
            self.buf = next;
        }
        Ok(Some(chunk))
    }
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

    /// Pieces scanned on several threads report what one thread does, in
    /// the same order: every key once, at its line and offset.
    #[test]
    fn pieces_scanned_on_four_threads_report_as_one_thread_does() {
        let filler = "z".repeat(59) + "\n";
        let mut text = String::new();
        let mut want = Vec::new();
        for k in 0..60 {
            text.push_str(&filler.repeat(97 + k * 13));
            want.push((text.lines().count() as u64 + 1, text.len() as u64));
            text.push_str(&block());
        }
        let run = |threads| {
            let stats = ScanStats::default();
            let mut stream = Stream::stdin(text.as_bytes(), &stats);
            stream.piece = 16 << 10;
            stream.threads = Some(threads);
            let found = crate::scan::driver::run(&scanner(), &mut stream).unwrap();
            assert_eq!(ScanStats::get(&stats.bytes), text.len() as u64);
            found.iter().map(|f| (f.line, f.offset)).collect::<Vec<_>>()
        };
        assert_eq!(run(1), want);
        assert_eq!(run(4), want);
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
