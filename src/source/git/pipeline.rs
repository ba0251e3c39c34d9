//! The streaming scan of history: three stages joined by bounded queues.
//!
//! ```text
//! git log ──▶ walker ──ids──▶ git cat-file --batch ──▶ reader ──blobs──▶ Emit (driver)
//!                  └────────────jobs (commit, path)──────────▶┘
//! ```
//!
//! The walker writes each new blob id to cat-file as soon as `git log` names
//! it and queues the job; the reader takes jobs in the same order and reads
//! cat-file's answer for each. Every queue is bounded, so a slow stage stalls
//! the ones before it instead of buffering history in memory. No stage waits
//! on a pipe that nobody drains: the reader always drains cat-file's stdout
//! while the walker writes its stdin, and a stage that fails kills the git
//! process it owns so the others see end-of-file rather than blocking.
//!
//! When the driver scans inline (one-shot), blobs are emitted from rayon's
//! threads (`par_bridge`), so scanning is parallel; when it queues (the
//! daemon), they are emitted from this thread in history order.

use super::command::{GitError, Process, Repo};
use super::history::{BlobJob, LogParser, LOG_ARGS};
use crate::scan::driver::{Emit, Flow};
use crate::scan::Chunk;
use crate::source::{looks_binary, ScanStats};
use rayon::prelude::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{ChildStdin, ChildStdout, Stdio};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// Jobs are small (an id and an origin); this many keeps cat-file busy.
const JOB_QUEUE: usize = 1024;
/// Blobs waiting for a scanner thread; each may be up to the size limit.
const BLOB_QUEUE: usize = 4;

/// Emits every blob the commits selected by `revs` (lines for `git log
/// --stdin`) introduced, once each, at its place in history order (`seq`),
/// its origin the commit and path that introduced it. Returns the blobs the
/// object store lacks or cannot decode, each with that path and commit:
/// the scan is incomplete by these.
pub fn emit_history(
    repo: &Repo,
    label: &str,
    revs: &[u8],
    out: &dyn Emit,
    max_blob_size: u64,
    stats: &ScanStats,
) -> Result<Vec<String>, GitError> {
    let mut log = spawn_piped(repo, LOG_ARGS, "log")?;
    // git reads all of --stdin before it writes anything, so this cannot
    // block on our not reading yet.
    if let Some(mut stdin) = log.stdin.take() {
        if let Err(e) = stdin.write_all(revs) {
            let err = log.io_error(e);
            return Err(log.fail(err));
        }
    }
    let mut cat = match spawn_piped(repo, &["cat-file", "--batch"], "cat-file") {
        Ok(c) => c,
        Err(e) => return Err(log.fail(e)),
    };
    let (Some(cat_in), Some(cat_out)) = (cat.stdin.take(), cat.stdout.take()) else {
        let err = cat.protocol_error("no pipes to cat-file".into());
        log.abort();
        return Err(cat.fail(err));
    };
    let (job_tx, job_rx) = sync_channel(JOB_QUEUE);
    let (blob_tx, blob_rx) = sync_channel(BLOB_QUEUE);
    let label = label.to_string();
    let (walked, read) = std::thread::scope(|s| {
        let walker = s.spawn(move || walk(log, label, cat_in, job_tx, stats));
        let reader =
            s.spawn(move || read_blobs(cat, cat_out, job_rx, blob_tx, max_blob_size, stats));
        // On `Stop` the receiver is dropped: the reader's next send fails,
        // it stops cat-file, and the walker sees its queue closed.
        if out.scans_inline() {
            let _ = blob_rx
                .into_iter()
                .par_bridge()
                .try_for_each(|(seq, chunk): (u64, Chunk)| match out.chunk(seq, &chunk) {
                    Flow::Continue => Ok(()),
                    Flow::Stop => Err(()),
                });
        } else {
            for (seq, chunk) in blob_rx {
                if out.chunk(seq, &chunk) == Flow::Stop {
                    break;
                }
            }
        }
        fn join<T>(h: std::thread::ScopedJoinHandle<'_, T>) -> T {
            h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
        }
        (join(walker), join(reader))
    });
    // The walker's failure is the cause when both fail (the reader then
    // only saw cat-file's input end early).
    walked?;
    read
}

fn spawn_piped(repo: &Repo, args: &[&str], name: &'static str) -> Result<Process, GitError> {
    let mut cmd = repo.command(args);
    cmd.stdin(Stdio::piped());
    repo.spawn(&mut cmd, name)
}

/// Parses `git log`, queues each new blob and asks cat-file for it.
fn walk(
    mut log: Process,
    label: String,
    mut cat_in: ChildStdin,
    jobs: SyncSender<BlobJob>,
    stats: &ScanStats,
) -> Result<(), GitError> {
    let Some(out) = log.stdout.take() else {
        let err = log.protocol_error("no pipe from git log".into());
        return Err(log.fail(err));
    };
    let mut out = BufReader::with_capacity(1 << 16, out);
    let mut parser = LogParser::new(label);
    let mut token = Vec::new();
    loop {
        token.clear();
        match out.read_until(0, &mut token) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                let err = log.io_error(e);
                return Err(log.fail(err));
            }
        }
        if token.last() == Some(&0) {
            token.pop();
        }
        let job = match parser.token(&token) {
            Ok(Some(job)) => job,
            Ok(None) => continue,
            Err(detail) => {
                let err = log.protocol_error(detail);
                return Err(log.fail(err));
            }
        };
        let request = format!("{}\n", job.id);
        // Either failure means the reader stopped; it reports why.
        if jobs.send(job).is_err() || cat_in.write_all(request.as_bytes()).is_err() {
            log.abort();
            return Ok(());
        }
    }
    stats.commits.fetch_add(parser.commits, Relaxed);
    drop(cat_in);
    log.finish()
}

/// Reads cat-file's answer for each job in order and hands text blobs to
/// the scanner threads. Returns the blobs that could not be read.
fn read_blobs(
    cat: Process,
    out: ChildStdout,
    jobs: Receiver<BlobJob>,
    blobs: SyncSender<(u64, Chunk)>,
    max_blob_size: u64,
    stats: &ScanStats,
) -> Result<Vec<String>, GitError> {
    let mut out = BufReader::with_capacity(1 << 18, out);
    let mut header = Vec::new();
    let mut missing = Vec::new();
    for job in jobs {
        let data = match read_one(&mut out, &mut header, &job, max_blob_size, stats) {
            Ok(Answer::Blob(data)) => {
                stats.blobs.fetch_add(1, Relaxed);
                data
            }
            Ok(Answer::Skipped) => continue,
            Ok(Answer::Missing) => {
                let what = describe_missing(&job);
                stats.record_unreadable(what.clone());
                missing.push(what);
                continue;
            }
            Err(failure) => return Err(read_failed(cat, &job, failure)),
        };
        let chunk = Chunk {
            origin: job.origin,
            data,
            first_line: 1,
            base_offset: 0,
        };
        if blobs.send((job.seq, chunk)).is_err() {
            // The driver said stop: cat-file may be blocked writing an
            // answer nobody will read, so it is killed, not waited for.
            drop(out);
            cat.abort();
            return Ok(missing);
        }
    }
    cat.finish()?;
    Ok(missing)
}

/// `<path> in commit <sha>: blob <id> is missing or corrupt`, for the
/// summary and the error that makes the scan exit 2.
pub fn describe_missing(job: &BlobJob) -> String {
    let commit = match job.origin.commit() {
        Some(c) if !c.is_empty() => format!(" in commit {c}"),
        _ => String::new(),
    };
    format!(
        "{}{commit}: blob {} is missing from the object store or corrupt (it was not fetched)",
        job.origin.path(),
        job.id
    )
}

/// Stops cat-file after `failure` reading `job`'s answer; the error names
/// the blob and where it comes from (git itself names neither the path nor,
/// when it dies mid-answer, the object).
pub fn read_failed(cat: Process, job: &BlobJob, failure: Failure) -> GitError {
    let err = match failure {
        Failure::Io(e) => cat.io_error(e),
        Failure::Protocol(detail) => cat.protocol_error(detail),
    };
    GitError::Blob {
        blob: describe_blob(job),
        cause: Box::new(cat.fail(err)),
    }
}

fn describe_blob(job: &BlobJob) -> String {
    match job.origin.commit() {
        Some(c) if !c.is_empty() => format!("{} ({} in commit {c})", job.id, job.origin.path()),
        _ => format!("{} ({})", job.id, job.origin.path()),
    }
}

/// cat-file's answer for one blob.
pub enum Answer {
    Blob(Vec<u8>),
    /// Binary, too large or not a blob; counted.
    Skipped,
    /// `missing`: a partial or damaged clone lacks it, or it does not
    /// decode (git reports a corrupt object as missing).
    Missing,
}

pub enum Failure {
    Io(std::io::Error),
    Protocol(String),
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Failure::Io(e)
    }
}

/// One `<id> <type> <size>\n<content>\n` answer.
pub fn read_one(
    out: &mut impl BufRead,
    header: &mut Vec<u8>,
    job: &BlobJob,
    max_blob_size: u64,
    stats: &ScanStats,
) -> Result<Answer, Failure> {
    header.clear();
    if out.read_until(b'\n', header)? == 0 {
        return Err(Failure::Protocol(format!(
            "ended before answering for blob {}",
            job.id
        )));
    }
    let text = String::from_utf8_lossy(header);
    let fields: Vec<&str> = text.trim_end().split(' ').collect();
    if fields.first() != Some(&job.id.to_string().as_str()) {
        return Err(Failure::Protocol(format!(
            "asked for {}, got {text:?}",
            job.id
        )));
    }
    let (kind, size) = match fields[1..] {
        [kind, size] => match size.parse::<u64>() {
            Ok(size) => (kind, size),
            Err(_) => return Err(Failure::Protocol(format!("bad object size in {text:?}"))),
        },
        ["missing"] => return Ok(Answer::Missing),
        _ => return Err(Failure::Protocol(format!("unexpected answer {text:?}"))),
    };
    if kind != "blob" || size > max_blob_size {
        std::io::copy(&mut out.take(size + 1), &mut std::io::sink())?;
        stats
            .skipped_large
            .fetch_add(u64::from(kind == "blob"), Relaxed);
        return Ok(Answer::Skipped);
    }
    let mut data = vec![0u8; size as usize];
    out.read_exact(&mut data)?;
    let mut newline = [0u8; 1];
    out.read_exact(&mut newline)?;
    if looks_binary(&data) {
        stats.skipped_binary.fetch_add(1, Relaxed);
        return Ok(Answer::Skipped);
    }
    stats.add_bytes(data.len());
    Ok(Answer::Blob(data))
}
