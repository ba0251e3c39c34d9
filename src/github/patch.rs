//! A file change's `patch` (unified-diff hunks, as GitHub returns them
//! without file headers) → the new-file side of each hunk as a `Chunk` placed
//! at its line number, plus which of those lines the patch added.
//!
//! Context lines stay in the chunks so that rules which need a keyword near
//! the key (a legacy Tatum UUID needs "tatum" nearby) still see it; the caller
//! keeps only findings on added lines, so a key that was already there is not
//! reported again.

use crate::scan::{Chunk, Origin};
use std::collections::HashSet;
use std::sync::Arc;

/// The new side of a patch.
#[derive(Debug, Default)]
pub struct NewSide {
    pub chunks: Vec<Chunk>,
    /// 1-based line numbers, in the new file, of the added lines.
    pub added: HashSet<u64>,
}

pub fn new_side(patch: &str, origin: &Arc<Origin>) -> NewSide {
    let mut out = NewSide::default();
    // (first line of the chunk, its bytes, the next new-file line number)
    let mut hunk: Option<(u64, Vec<u8>, u64)> = None;
    for line in patch.split('\n') {
        if line.starts_with("@@") {
            flush(&mut out, hunk.take(), origin);
            hunk = hunk_start(line).map(|start| (start, Vec::new(), start));
            continue;
        }
        let Some((_, data, next)) = hunk.as_mut() else {
            continue;
        };
        let (added, text) = match line.as_bytes().first() {
            Some(b'+') => (true, &line[1..]),
            Some(b' ') => (false, &line[1..]),
            // Removed lines are not in the new file; `\ No newline at end of
            // file` is not a line at all.
            _ => continue,
        };
        if added {
            out.added.insert(*next);
        }
        data.extend_from_slice(text.as_bytes());
        data.push(b'\n');
        *next += 1;
    }
    flush(&mut out, hunk, origin);
    out
}

fn flush(out: &mut NewSide, hunk: Option<(u64, Vec<u8>, u64)>, origin: &Arc<Origin>) {
    if let Some((first_line, data, _)) = hunk {
        if !data.is_empty() {
            out.chunks.push(Chunk {
                origin: origin.clone(),
                data,
                first_line,
                // A patch does not say where its hunk starts in bytes.
                base_offset: 0,
            });
        }
    }
}

/// The new-file start line of a `@@ -a,b +c,d @@` header (`+c` alone when
/// d is 1; `+0,0` for a deleted file).
fn hunk_start(header: &str) -> Option<u64> {
    let plus = header.split(' ').find(|p| p.starts_with('+'))?;
    let start = plus[1..].split(',').next()?;
    start.parse::<u64>().ok().map(|n| n.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin() -> Arc<Origin> {
        Arc::new(Origin::GitHub {
            repo: "acme/app".into(),
            commit: "c".into(),
            author_email: None,
            path: "a.env".into(),
            pusher: None,
        })
    }

    #[test]
    fn places_hunks_at_their_new_file_lines_and_marks_added_lines() {
        let patch = "@@ -1,3 +1,4 @@\n a\n-b\n+B\n+C\n d\n@@ -10 +11,2 @@\n x\n+y\n\\ No newline at end of file";
        let side = new_side(patch, &origin());
        assert_eq!(side.chunks.len(), 2);
        assert_eq!(side.chunks[0].first_line, 1);
        assert_eq!(side.chunks[0].data, b"a\nB\nC\nd\n");
        assert_eq!(side.chunks[1].first_line, 11);
        assert_eq!(side.chunks[1].data, b"x\ny\n");
        let mut added: Vec<u64> = side.added.into_iter().collect();
        added.sort();
        assert_eq!(added, [2, 3, 12]);
    }

    #[test]
    fn a_new_file_is_all_added_and_lines_before_a_hunk_are_ignored() {
        let side = new_side("--- a\n+++ b\n@@ -0,0 +1,2 @@\n+k=1\n+++x\n", &origin());
        assert_eq!(side.chunks.len(), 1);
        assert_eq!(side.chunks[0].data, b"k=1\n++x\n");
        assert_eq!(side.added.len(), 2);
    }
}
