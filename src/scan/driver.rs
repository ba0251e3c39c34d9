//! The driver: the one caller of [`Scanner::scan`]. Sources only produce
//! chunks; the driver scans them and hands on what it finds.
//!
//! ```text
//! Source::run ──Emit::chunk(seq, &Chunk)──▶ driver ──▶ one-shot: collected, ordered (keysentry scan)
//!  files, stdin, git history,                      └──▶ daemon: pipeline → FindingSink (engine)
//!  staged, log tail, repo watch, GitHub push
//! ```
//!
//! # The source contract ([`Source`])
//!
//! [`Source::run`] is called once, on a thread that may block (never on
//! the async runtime: the daemon calls it inside `spawn_blocking`). It
//! reads its place and calls [`Emit::chunk`] for every run of bytes to
//! scan, then returns. It may call `chunk` from several threads at once
//! (the directory walker's threads, git history's rayon bridge): `Emit` is
//! `Sync`. What it returns:
//!
//! - `Ok(())`: everything was emitted (or the driver said [`Flow::Stop`]:
//!   the source stops at once and returns `Ok`; the driver knows why).
//! - `Err(e)`: the place cannot be read as a whole (a missing root, git
//!   failing). Findings emitted before the error are kept by a one-shot
//!   run but not reported (the caller reports the error); the daemon
//!   writes no progress for it. Files that cannot be read one by one are
//!   not errors: the source records them in its `ScanStats`.
//!
//! A chunk's `seq` is its place in the report: findings come out ordered by
//! `seq` (then as [`Source::finish`] says). Chunks of one stream (stdin read
//! in pieces that overlap, a named file streamed) share one `Arc<Origin>`;
//! a key in an overlap is found twice at the same offset and reported once.
//!
//! # The emit contract ([`Emit`])
//!
//! Implemented by the driver, called by sources. [`Emit::chunk`] returns:
//!
//! - `Flow::Continue`: the chunk was scanned (one-shot) or queued in order
//!   for the scanner (daemon); go on. The chunk's bytes may be reused as
//!   soon as it returns (the walker keeps one buffer per thread).
//! - `Flow::Stop`: stop emitting and return. The daemon says so when it
//!   shuts down or reloads; the chunk was not queued and nothing of this
//!   run's progress is written, so it is read again on the next start.
//!
//! [`Emit::scans_inline`] says where scanning happens: `true` (one-shot)
//! means on the calling thread before `chunk` returns, so a source gains
//! by emitting from several threads; `false` (daemon) means the chunk is
//! queued and order matters, so a source emits from one thread, in `seq`
//! order.
//!
//! # Progress
//!
//! A source's progress (a log offset, a repository cursor: `DaemonWrite`)
//! is not the driver's: the daemon's pipeline writes it once every finding
//! of the chunks emitted before it was taken by the [`super::FindingSink`]
//! (see `sink`). When the sink fails transiently, the same findings are
//! offered again and the progress waits; when it fails permanently, the
//! failure is recorded and the progress is written.

use super::{Chunk, Finding, Scanner};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// What the driver tells a source after each chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on with the next chunk.
    Continue,
    /// Stop emitting and return `Ok`: the driver is shutting down.
    Stop,
}

/// Where a source hands its chunks; implemented by the driver (one-shot)
/// and the daemon's pipeline. See the module documentation.
pub trait Emit: Sync {
    /// Scans `chunk` (or queues it for the scanner), its findings placed at
    /// `seq` in the report. May be called from any thread, concurrently.
    fn chunk(&self, seq: u64, chunk: &Chunk) -> Flow;

    /// `true` when `chunk` scans on the calling thread (emit from several
    /// threads for speed); `false` when it queues (emit in order).
    fn scans_inline(&self) -> bool;
}

/// A place that yields chunks. See the module documentation.
pub trait Source {
    type Error;

    /// Emits every chunk of the place into `out`.
    fn run(&mut self, out: &dyn Emit) -> Result<(), Self::Error>;

    /// The findings of a one-shot run, sorted by `seq` (stable: within one
    /// `seq`, in the order found), into the order the report shows. The
    /// default drops the `seq`. Called once, after `run` returned `Ok`.
    fn finish(&self, found: Vec<(u64, Finding)>) -> Vec<Finding> {
        found.into_iter().map(|(_, f)| f).collect()
    }
}

/// Every finding in `chunk`: the one call of [`Scanner::scan`] outside
/// the scanner's own tests, for the one-shot driver, the daemon's scan
/// stage and the webhook alike.
pub fn scan(scanner: &Scanner, chunk: &Chunk) -> Vec<Finding> {
    scanner.scan(chunk)
}

/// Runs `source` to the end, scanning every chunk on the thread that emits
/// it, and returns its findings in report order.
pub fn run<S: Source + ?Sized>(
    scanner: &Scanner,
    source: &mut S,
) -> Result<Vec<Finding>, S::Error> {
    let collect = Collect {
        scanner,
        found: Mutex::new(Vec::new()),
    };
    source.run(&collect)?;
    let mut found = collect
        .found
        .into_inner()
        .unwrap_or_else(|p| p.into_inner());
    // By place, then by piece: the pieces of one stream may be scanned on
    // several threads at once (a chunk that is not a piece starts at 0).
    found.sort_by_key(|(seq, base, _)| (*seq, *base));
    let found = found.into_iter().map(|(seq, _, f)| (seq, f)).collect();
    Ok(source.finish(once_per_stream(found)))
}

/// The one-shot [`Emit`]: scans inline, collects.
struct Collect<'a> {
    scanner: &'a Scanner,
    /// (seq, the chunk's base offset, finding).
    found: Mutex<Vec<(u64, u64, Finding)>>,
}

impl Emit for Collect<'_> {
    fn chunk(&self, seq: u64, chunk: &Chunk) -> Flow {
        let found = scan(self.scanner, chunk);
        if !found.is_empty() {
            let mut all = self.found.lock().unwrap_or_else(|p| p.into_inner());
            let base = chunk.base_offset;
            all.extend(found.into_iter().map(|f| (seq, base, f)));
        }
        Flow::Continue
    }

    fn scans_inline(&self) -> bool {
        true
    }
}

/// Drops the second sighting of a key in the overlap of two chunks of one
/// stream: same origin (the same `Arc`, not an equal one: `a.env` under two
/// named directories is two files), same rule, same offset.
fn once_per_stream(found: Vec<(u64, Finding)>) -> Vec<(u64, Finding)> {
    let mut seen = HashSet::new();
    found
        .into_iter()
        .filter(|(_, f)| {
            seen.insert((Arc::as_ptr(&f.origin) as usize, f.rule_id.clone(), f.offset))
        })
        .collect()
}

/// First appearances of each (rule, key, path): later versions of a file
/// in git history repeat the keys earlier versions held, and a key kept
/// across edits is one leak, reported at the commit that first put it
/// there. Feed findings in history order.
#[derive(Debug, Default)]
pub struct FirstSeen {
    seen: HashSet<(Arc<str>, super::Fingerprint, String)>,
}

impl FirstSeen {
    /// Whether `f` is the first of its (rule, key, path).
    pub fn first(&mut self, f: &Finding) -> bool {
        self.seen
            .insert((f.rule_id.clone(), f.fingerprint.clone(), f.origin.path()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::RuleSet;
    use crate::scan::{Allowlist, Origin};

    fn scanner() -> Scanner {
        Scanner::new(&RuleSet::builtin().unwrap(), Allowlist::default()).unwrap()
    }

    fn key(i: u32) -> String {
        let h = crate::scan::Fingerprint::of(format!("driver {i}").as_bytes());
        let h = h.as_str();
        format!("t-{}-{}", &h[..24], &h[24..48])
    }

    /// Emits its chunks from two threads at once, in reverse order.
    struct Two(Vec<(u64, Chunk)>);

    impl Source for Two {
        type Error = ();
        fn run(&mut self, out: &dyn Emit) -> Result<(), ()> {
            assert!(out.scans_inline());
            let (a, b) = self.0.split_at(self.0.len() / 2);
            std::thread::scope(|s| {
                s.spawn(|| {
                    b.iter()
                        .rev()
                        .for_each(|(seq, c)| assert_eq!(out.chunk(*seq, c), Flow::Continue))
                });
                s.spawn(|| {
                    a.iter()
                        .rev()
                        .for_each(|(seq, c)| assert_eq!(out.chunk(*seq, c), Flow::Continue))
                });
            });
            Ok(())
        }
    }

    #[test]
    fn chunks_from_two_threads_reach_the_report_in_seq_order() {
        let chunks = (0..6u32)
            .map(|i| {
                let text = format!("line\nx-api-key: {}\n", key(i));
                let origin = Origin::File {
                    path: format!("f{i}.env"),
                };
                (u64::from(i), Chunk::whole(origin, text.into_bytes()))
            })
            .collect();
        let found = run(&scanner(), &mut Two(chunks)).unwrap();
        let paths: Vec<String> = found.iter().map(|f| f.origin.path()).collect();
        assert_eq!(
            paths,
            ["f0.env", "f1.env", "f2.env", "f3.env", "f4.env", "f5.env"]
        );
        assert_eq!(found[3].secret.expose(), key(3));
        assert_eq!(found[3].line, 2);
    }

    #[test]
    fn a_key_in_the_overlap_of_two_pieces_of_one_stream_is_reported_once() {
        let text = format!("head\nTATUM_API_KEY={}\ntail\n", key(7));
        let origin = Arc::new(Origin::Stdin);
        // Two pieces of one stream both hold the key's line.
        let piece = |seq: u64| {
            (
                seq,
                Chunk {
                    origin: origin.clone(),
                    data: text.clone().into_bytes(),
                    first_line: 1,
                    base_offset: 0,
                },
            )
        };
        let found = run(&scanner(), &mut Two(vec![piece(0), piece(1)])).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].secret.expose(), key(7));
        // The same bytes in two streams (two named files that both show as
        // `a.env`) are two findings.
        let two_files = |seq: u64| {
            let origin = Origin::File {
                path: "a.env".into(),
            };
            (seq, Chunk::whole(origin, text.clone().into_bytes()))
        };
        let found = run(&scanner(), &mut Two(vec![two_files(0), two_files(1)])).unwrap();
        assert_eq!(found.len(), 2);
    }
}
