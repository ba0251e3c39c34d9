//! Which blobs each commit introduced, from `git log --raw -z`.
//!
//! Commits arrive parents-first (`--reverse --date-order`), merges diffed
//! against their first parent only. Every blob of every commit's tree then
//! shows up in some diff at or before that commit, so the first commit whose
//! diff names a blob is the one that introduced it: a blob a side branch added
//! is already seen when the merge's first-parent diff repeats it, and only
//! content the merge itself created (a conflict resolution) is new there.

use crate::scan::{hex, Origin};
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

/// `git log` arguments (after the global options) that produce what
/// [`LogParser`] reads. Revisions come on stdin.
pub const LOG_ARGS: &[&str] = &[
    "-c",
    "log.showRoot=true",
    "-c",
    "log.showSignature=false",
    "log",
    "--stdin",
    "--reverse",
    "--date-order",
    "--format=commit %H %ae",
    "--raw",
    "-z",
    "--no-abbrev",
    "--no-renames",
    "--no-relative",
    "--diff-merges=first-parent",
    "--no-color",
];

/// A git object id (SHA-1 or SHA-256), content-based identity of a blob.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlobId {
    bytes: [u8; 32],
    len: u8,
}

impl BlobId {
    /// Parses 40 (SHA-1) or 64 (SHA-256) hex digits.
    pub fn from_hex(text: &[u8]) -> Option<BlobId> {
        if text.len() != 40 && text.len() != 64 {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (i, pair) in text.chunks_exact(2).enumerate() {
            bytes[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Some(BlobId {
            bytes,
            len: (text.len() / 2) as u8,
        })
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// Git's all-zero id: "no object" (the new side of a deletion).
    pub fn is_null(&self) -> bool {
        self.as_bytes().iter().all(|&b| b == 0)
    }
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(self.as_bytes()))
    }
}

impl fmt::Debug for BlobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlobId({self})")
    }
}

/// A blob to read and scan, with the commit and path that introduced it.
#[derive(Debug)]
pub struct BlobJob {
    /// Position in history order; findings are reported in this order.
    pub seq: u64,
    pub id: BlobId,
    pub origin: Arc<Origin>,
}

struct Commit {
    sha: String,
    author_email: Option<String>,
}

/// Turns the NUL-separated tokens of `git log` (see [`LOG_ARGS`]) into
/// [`BlobJob`]s, each blob once.
pub struct LogParser {
    repo: String,
    commit: Option<Commit>,
    /// The new blob of a raw diff line whose path is the next token.
    pending: Option<Option<BlobId>>,
    seen: HashSet<BlobId>,
    next_seq: u64,
    pub commits: u64,
}

impl LogParser {
    pub fn new(repo: String) -> Self {
        LogParser {
            repo,
            commit: None,
            pending: None,
            seen: HashSet::new(),
            next_seq: 0,
            commits: 0,
        }
    }

    /// Feeds one token (without its NUL). Returns the job for a blob seen
    /// here for the first time; `Err` describes output it does not expect.
    pub fn token(&mut self, token: &[u8]) -> Result<Option<BlobJob>, String> {
        if let Some(blob) = self.pending.take() {
            return Ok(blob.and_then(|id| self.job(id, token)));
        }
        let token = trim_newlines(token);
        if token.is_empty() {
            return Ok(None);
        }
        if let Some(raw) = token.strip_prefix(b":") {
            self.pending = Some(parse_raw(raw)?);
            return Ok(None);
        }
        if let Some(header) = token.strip_prefix(b"commit ") {
            let text = String::from_utf8_lossy(header);
            let (sha, email) = text.split_once(' ').unwrap_or((&text, ""));
            self.commit = Some(Commit {
                sha: sha.to_string(),
                author_email: (!email.is_empty()).then(|| email.to_string()),
            });
            self.commits += 1;
            return Ok(None);
        }
        Err(format!(
            "expected a commit header or a raw diff line, got {:?}",
            String::from_utf8_lossy(&token[..token.len().min(80)])
        ))
    }

    fn job(&mut self, id: BlobId, path: &[u8]) -> Option<BlobJob> {
        let commit = self.commit.as_ref()?;
        if !self.seen.insert(id) {
            return None;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        Some(BlobJob {
            seq,
            id,
            origin: Arc::new(Origin::Git {
                repo: self.repo.clone(),
                commit: commit.sha.clone(),
                author_email: commit.author_email.clone(),
                path: String::from_utf8_lossy(path).into_owned(),
            }),
        })
    }
}

fn trim_newlines(mut t: &[u8]) -> &[u8] {
    while let [b'\n', rest @ ..] = t {
        t = rest;
    }
    t
}

/// `<old mode> <new mode> <old id> <new id> <status>` (the leading `:`
/// already removed). The new blob counts only if it is a regular file's
/// content: deletions have a null id, symlinks and submodules other modes.
fn parse_raw(raw: &[u8]) -> Result<Option<BlobId>, String> {
    let fields: Vec<&[u8]> = raw.split(|&b| b == b' ').collect();
    let bad = || format!("malformed raw diff line {:?}", String::from_utf8_lossy(raw));
    let [_, new_mode, _, new_id, _status] = fields[..] else {
        return Err(bad());
    };
    let id = BlobId::from_hex(new_id).ok_or_else(bad)?;
    let regular = new_mode.starts_with(b"100");
    Ok((regular && !id.is_null()).then_some(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "1111111111111111111111111111111111111111";
    const B: &str = "2222222222222222222222222222222222222222";
    const ZERO: &str = "0000000000000000000000000000000000000000";

    fn feed(stream: &str) -> Vec<BlobJob> {
        let mut p = LogParser::new("r".into());
        let mut jobs = Vec::new();
        for tok in stream.split('\0') {
            if let Some(j) = p.token(tok.as_bytes()).expect("parses") {
                jobs.push(j);
            }
        }
        jobs
    }

    fn describe(jobs: &[BlobJob]) -> Vec<(String, String, String)> {
        jobs.iter()
            .map(|j| {
                let o = &j.origin;
                (
                    j.id.to_string(),
                    o.commit().unwrap_or("").to_string(),
                    o.path(),
                )
            })
            .collect()
    }

    #[test]
    fn first_commit_naming_a_blob_wins_and_deletions_symlinks_submodules_are_skipped() {
        let stream = format!(
            "commit c1 a@x\0\n:000000 100644 {ZERO} {A} A\0a.txt\0\
             commit c2 b@x\0\n:100644 100644 {A} {B} M\0a.txt\0\
             :000000 120000 {ZERO} {B} A\0link\0\
             :000000 160000 {ZERO} {A} A\0sub\0\
             commit c3 \0\n:000000 100644 {ZERO} {A} A\0copy.txt\0\
             :100644 000000 {B} {ZERO} D\0a.txt\0"
        );
        let jobs = feed(&stream);
        assert_eq!(
            describe(&jobs),
            vec![
                (A.into(), "c1".into(), "a.txt".into()),
                (B.into(), "c2".into(), "a.txt".into()),
            ]
        );
        assert_eq!(jobs[1].origin.author_email(), Some("b@x"));
    }

    #[test]
    fn paths_are_taken_verbatim_even_when_they_look_like_headers() {
        let stream = format!("commit c1 a@x\0\n:000000 100755 {ZERO} {A} A\0commit x y\0");
        assert_eq!(describe(&feed(&stream))[0].2, "commit x y");
    }

    #[test]
    fn unexpected_output_is_an_error_not_a_silent_skip() {
        let mut p = LogParser::new("r".into());
        assert!(p.token(b"diff --git a/x b/x").is_err());
        assert!(p.token(b":100644 100644 zz").is_err());
    }

    #[test]
    fn blob_ids_round_trip_sha1_and_sha256() {
        let sha256 = "ab".repeat(32);
        for text in [A, sha256.as_str()] {
            let id = BlobId::from_hex(text.as_bytes()).expect("valid id");
            assert_eq!(id.to_string(), text);
        }
        assert!(BlobId::from_hex(b"xyz").is_none());
        assert!(BlobId::from_hex(ZERO.as_bytes()).is_some_and(|id| id.is_null()));
    }
}
