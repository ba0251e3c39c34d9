//! `scan --staged`: what `git commit` would record, for a pre-commit hook.
//!
//! `git diff-index --cached -U0` against HEAD (the empty tree before the
//! first commit) names each staged file, its staged blob and the line ranges
//! the commit adds. Each staged blob is then scanned whole, so line numbers,
//! columns and offsets are those of the staged file and a key is matched
//! with its real surroundings, and a finding is kept only when its line is
//! one the commit adds: a key already committed in a file being edited is
//! history (`scan --git`), not this commit's doing.
//!
//! Findings are `source: "file"` with the path relative to the repository
//! root: staged content belongs to no commit yet, and a file finding is what
//! an editor or pre-commit shows next to the file.

use super::command::{GitError, Repo};
use super::history::{BlobId, BlobJob};
use super::pipeline::{describe_missing, read_failed, read_one, Answer, Failure};
use super::{revs, GitScan};
use crate::scan::driver::{Emit, Flow, Source};
use crate::scan::{Chunk, Finding, Origin, Scanner};
use crate::source::{ScanStats, SourceError};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

/// `git diff-index` arguments whose output [`parse_patch`] reads: no
/// renames (a moved file's keys are in the commit too), no external diff or
/// textconv (a repository's config must not run programs), full ids.
const DIFF_ARGS: &[&str] = &[
    "-c",
    "diff.renames=false",
    "diff-index",
    "--cached",
    "-p",
    "-U0",
    "--full-index",
    "--no-color",
    "--no-ext-diff",
    "--no-textconv",
    "--no-renames",
    "--no-relative",
    "--ignore-submodules",
    "--src-prefix=a/",
    "--dst-prefix=b/",
];

/// One staged file the commit adds lines to.
#[derive(Debug, PartialEq, Eq)]
struct Staged {
    path: String,
    blob: BlobId,
    /// `(first line, count)` of each added run, 1-based, in the staged file.
    added: Vec<(u64, u64)>,
}

/// Scans the index of the repository containing `repo`: [`Index`] run by
/// the one-shot driver.
pub fn scan_staged(
    repo: &Path,
    scanner: &Scanner,
    max_blob_size: u64,
    stats: &ScanStats,
) -> Result<GitScan, SourceError> {
    let mut index = Index {
        repo,
        max_blob_size,
        stats,
        added: Vec::new(),
        missing: Vec::new(),
    };
    let findings = crate::scan::driver::run(scanner, &mut index)?;
    Ok(GitScan {
        findings,
        tips: Vec::new(),
        missing: index.missing,
    })
}

/// The index of the repository containing `repo`, as a [`Source`]: each
/// staged blob that gains lines is emitted whole (`seq`: its place in the
/// diff), and [`Source::finish`] keeps the findings on added lines.
pub struct Index<'a> {
    pub repo: &'a Path,
    pub max_blob_size: u64,
    pub stats: &'a ScanStats,
    /// Per `seq`, the added runs `(first line, count)`.
    added: Vec<Vec<(u64, u64)>>,
    /// After `run`: blobs that could not be read.
    pub missing: Vec<String>,
}

impl Source for Index<'_> {
    type Error = SourceError;

    fn run(&mut self, out: &dyn Emit) -> Result<(), SourceError> {
        let (repo, max_blob_size, stats) = (self.repo, self.max_blob_size, self.stats);
        if !repo.exists() {
            return Err(SourceError::Missing {
                path: repo.display().to_string(),
            });
        }
        let repo = Repo::open(repo)?;
        if repo.bare {
            return Err(GitError::BareIndex {
                repo: repo.label.clone(),
            }
            .into());
        }
        let base = match revs::resolve(&repo, "HEAD") {
            Ok(head) => head,
            // Before the first commit everything staged is added.
            Err(GitError::UnknownRev { .. }) => {
                let out = repo.output(
                    &["hash-object", "-t", "tree", "--stdin"],
                    "hash-object",
                    b"",
                )?;
                String::from_utf8_lossy(&out).trim().to_string()
            }
            Err(e) => return Err(e.into()),
        };
        let mut args = DIFF_ARGS.to_vec();
        args.push(&base);
        let patch = repo.output(&args, "diff-index", b"")?;
        let (files, binary) = parse_patch(&patch).map_err(|detail| GitError::Protocol {
            repo: repo.label.clone(),
            command: "diff-index".into(),
            detail,
        })?;
        stats.skipped_binary.fetch_add(binary, Relaxed);
        self.added = files.iter().map(|f| f.added.clone()).collect();
        self.missing = emit_blobs(&repo, files, out, max_blob_size, stats)?;
        Ok(())
    }

    fn finish(&self, found: Vec<(u64, Finding)>) -> Vec<Finding> {
        found
            .into_iter()
            .filter(|(seq, f)| {
                self.added.get(*seq as usize).is_some_and(|added| {
                    added
                        .iter()
                        .any(|&(first, n)| (first..first + n).contains(&f.line))
                })
            })
            .map(|(_, f)| f)
            .collect()
    }
}

/// Reads each staged blob from one `git cat-file --batch` (fed from a
/// thread, so neither pipe can fill up and block the other side) and
/// emits each, in order. Returns the blobs that could not be read.
fn emit_blobs(
    repo: &Repo,
    files: Vec<Staged>,
    out: &dyn Emit,
    max_blob_size: u64,
    stats: &ScanStats,
) -> Result<Vec<String>, SourceError> {
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let mut cmd = repo.command(["cat-file", "--batch"]);
    cmd.stdin(Stdio::piped());
    let mut cat = repo.spawn(&mut cmd, "cat-file")?;
    let (Some(mut input), Some(output)) = (cat.stdin.take(), cat.stdout.take()) else {
        let err = cat.protocol_error("no pipes to cat-file".into());
        return Err(cat.fail(err).into());
    };
    let request: String = files.iter().map(|f| format!("{}\n", f.blob)).collect();
    let scanned = std::thread::scope(|s| {
        s.spawn(move || {
            // A failed write means cat-file stopped; reading says why.
            let _ = input.write_all(request.as_bytes());
        });
        let mut answers = BufReader::new(output);
        match read_answers(&mut answers, files, out, max_blob_size, stats) {
            Ok((missing, Flow::Continue)) => {
                drop(answers);
                cat.finish().map(|()| missing)
            }
            // Stopped: cat-file may be blocked on an answer nobody reads.
            Ok((missing, Flow::Stop)) => {
                drop(answers);
                cat.abort();
                Ok(missing)
            }
            // Killing cat-file here also frees the writer thread, which the
            // scope waits for.
            Err((job, failure)) => Err(read_failed(cat, &job, failure)),
        }
    });
    Ok(scanned?)
}

fn read_answers(
    answers: &mut impl BufRead,
    files: Vec<Staged>,
    out: &dyn Emit,
    max_blob_size: u64,
    stats: &ScanStats,
) -> Result<(Vec<String>, Flow), (BlobJob, Failure)> {
    let mut missing = Vec::new();
    let mut header = Vec::new();
    for (seq, file) in files.into_iter().enumerate() {
        let job = BlobJob {
            seq: seq as u64,
            id: file.blob,
            origin: Arc::new(Origin::File { path: file.path }),
        };
        let data = match read_one(answers, &mut header, &job, max_blob_size, stats) {
            Ok(Answer::Blob(data)) => data,
            Ok(Answer::Skipped) => continue,
            Ok(Answer::Missing) => {
                let what = describe_missing(&job);
                stats.record_unreadable(what.clone());
                missing.push(what);
                continue;
            }
            Err(failure) => return Err((job, failure)),
        };
        stats.files.fetch_add(1, Relaxed);
        let chunk = Chunk {
            origin: job.origin,
            data,
            first_line: 1,
            base_offset: 0,
        };
        if out.chunk(seq as u64, &chunk) == Flow::Stop {
            return Ok((missing, Flow::Stop));
        }
    }
    Ok((missing, Flow::Continue))
}

/// Reads `diff-index -p -U0` output into the staged files that gain lines,
/// and the number of binary files (git shows no lines for them). Counting
/// each hunk's lines is what tells a content line starting with `diff` or
/// `+++` from a header.
fn parse_patch(patch: &[u8]) -> Result<(Vec<Staged>, u64), String> {
    let mut files = Vec::new();
    let mut binary = 0;
    // (path, staged blob, added runs) of the file whose header is being read.
    type Current = Option<(Option<String>, Option<BlobId>, Vec<(u64, u64)>)>;
    let mut current: Current = None;
    let (mut old_left, mut new_left) = (0u64, 0u64);
    let mut finish = |cur: Current| {
        if let Some((Some(path), Some(blob), added)) = cur {
            if !added.is_empty() {
                files.push(Staged { path, blob, added });
            }
        }
    };
    // Errors give the patch line's number, never its text: a line of the
    // patch may hold a key.
    for (n, line) in patch.split(|&b| b == b'\n').enumerate() {
        let at = n + 1;
        // "\ No newline at end of file" follows a hunk's last line.
        if line.starts_with(b"\\") {
            continue;
        }
        if old_left + new_left > 0 {
            match line.first() {
                Some(b'+') if new_left > 0 => new_left -= 1,
                Some(b'-') if old_left > 0 => old_left -= 1,
                _ => return Err(format!("a hunk ended early at line {at} of the patch")),
            }
            continue;
        }
        // A conflicted file has no staged version yet; `git commit` refuses
        // until it is resolved, and the resolution is then scanned.
        if line.starts_with(b"* Unmerged path ") {
            continue;
        }
        if line.starts_with(b"diff --git ") {
            finish(current.take());
            current = Some((None, None, Vec::new()));
            continue;
        }
        let Some((path, blob, added)) = current.as_mut() else {
            if line.is_empty() {
                continue;
            }
            return Err(format!("expected `diff --git` at line {at} of the patch"));
        };
        if let Some(ids) = line.strip_prefix(b"index ") {
            let ids = ids.split(|&b| b == b' ').next().unwrap_or_default();
            let new = ids.split(|&b| b == b'.').next_back().unwrap_or_default();
            *blob = BlobId::from_hex(new).filter(|id| !id.is_null());
        } else if let Some(name) = line.strip_prefix(b"+++ ") {
            let name =
                unquote(name).ok_or_else(|| format!("bad path at line {at} of the patch"))?;
            *path = name.strip_prefix("b/").map(str::to_string);
        } else if line.starts_with(b"Binary files ") {
            binary += 1;
        } else if let Some(hunk) = line.strip_prefix(b"@@ -") {
            let (old, new) = parse_hunk(hunk)
                .ok_or_else(|| format!("bad hunk header at line {at} of the patch"))?;
            old_left = old;
            if new.1 > 0 {
                added.push(new);
            }
            new_left = new.1;
        }
    }
    if old_left + new_left > 0 {
        return Err("the patch ended inside a hunk".into());
    }
    finish(current.take());
    Ok((files, binary))
}

/// `a[,b] +c[,d] @@…` (after `@@ -`): the old line count and the new
/// `(first line, count)`; a missing count means 1.
fn parse_hunk(hunk: &[u8]) -> Option<(u64, (u64, u64))> {
    let text = std::str::from_utf8(hunk).ok()?;
    let (old, rest) = text.split_once(" +")?;
    let (new, _) = rest.split_once(" @@")?;
    let range = |r: &str| -> Option<(u64, u64)> {
        match r.split_once(',') {
            Some((start, count)) => Some((start.parse().ok()?, count.parse().ok()?)),
            None => Some((r.parse().ok()?, 1)),
        }
    };
    Some((range(old)?.1, range(new)?))
}

/// A path as git prints it in a patch header: verbatim, or C-quoted
/// (`"b/tab\there\303\251"`) when it holds special or non-ASCII bytes.
fn unquote(name: &[u8]) -> Option<String> {
    let Some(inner) = name.strip_prefix(b"\"").and_then(|n| n.strip_suffix(b"\"")) else {
        return Some(String::from_utf8_lossy(name).into_owned());
    };
    let mut out = Vec::with_capacity(inner.len());
    let mut bytes = inner.iter().copied();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        let escaped = match bytes.next()? {
            b'a' => 7,
            b'b' => 8,
            b't' => b'\t',
            b'n' => b'\n',
            b'v' => 11,
            b'f' => 12,
            b'r' => b'\r',
            d @ b'0'..=b'3' => {
                let mut v = u32::from(d - b'0');
                for _ in 0..2 {
                    let o = bytes.next().filter(|o| (b'0'..=b'7').contains(o))?;
                    v = v * 8 + u32::from(o - b'0');
                }
                u8::try_from(v).ok()?
            }
            other => other,
        };
        out.push(escaped);
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const OLD: &str = "1111111111111111111111111111111111111111";
    const NEW: &str = "2222222222222222222222222222222222222222";
    const ZERO: &str = "0000000000000000000000000000000000000000";

    #[test]
    fn added_ranges_paths_and_blobs_come_from_the_patch() {
        let patch = format!(
            "* Unmerged path conflicted.txt\ndiff --git a/app.env b/app.env\nindex {OLD}..{NEW} 100644\n--- a/app.env\n+++ b/app.env\n\
             @@ -2 +2,2 @@ ctx\n-old\n+++ not a header\n+diff --git a/x b/x\n@@ -9,0 +11 @@\n+tail\n\\ No newline at end of file\n\
             diff --git a/gone b/gone\ndeleted file mode 100644\nindex {OLD}..{ZERO}\n--- a/gone\n+++ /dev/null\n@@ -1 +0,0 @@\n-bye\n\
             diff --git a/b.bin b/b.bin\nnew file mode 100644\nindex {ZERO}..{NEW}\nBinary files /dev/null and b/b.bin differ\n\
             diff --git \"a/t\\tab\\303\\251\" \"b/t\\tab\\303\\251\"\nnew file mode 100644\nindex {ZERO}..{NEW}\n--- /dev/null\n+++ \"b/t\\tab\\303\\251\"\n@@ -0,0 +1 @@\n+x\n"
        );
        let (files, binary) = parse_patch(patch.as_bytes()).expect("parses");
        let new = BlobId::from_hex(NEW.as_bytes()).expect("id");
        assert_eq!(
            files,
            vec![
                Staged {
                    path: "app.env".into(),
                    blob: new,
                    added: vec![(2, 2), (11, 1)]
                },
                Staged {
                    path: "t\tab\u{e9}".into(),
                    blob: new,
                    added: vec![(1, 1)]
                },
            ]
        );
        assert_eq!(binary, 1);
    }

    #[test]
    fn a_truncated_patch_is_an_error() {
        let patch =
            format!("diff --git a/a b/a\nindex {OLD}..{NEW}\n+++ b/a\n@@ -1 +1,3 @@\n-x\n+y\n");
        assert!(parse_patch(patch.as_bytes()).is_err());
        assert!(parse_patch(b"garbage\n").is_err());
    }
}
