//! Line diffs for the GitHub simulator: unified-diff hunks with three lines
//! of context, the shape of the `patch` field GitHub returns.

/// `(patch, additions, deletions)` turning `old` into `new`.
pub fn unified(old: &str, new: &str) -> (String, u64, u64) {
    let (a, b) = (lines(old), lines(new));
    let ops = edit_script(&a, &b);
    let additions = ops.iter().filter(|o| matches!(o, Op::Add(_))).count() as u64;
    let deletions = ops.iter().filter(|o| matches!(o, Op::Del(_))).count() as u64;
    (hunks(&ops, &a, &b), additions, deletions)
}

fn lines(s: &str) -> Vec<&str> {
    let mut v: Vec<&str> = s.split('\n').collect();
    if v.last() == Some(&"") {
        v.pop();
    }
    v
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    /// (old index, new index)
    Same(usize, usize),
    Del(usize),
    Add(usize),
}

/// Longest common subsequence by dynamic programming; files too large for
/// that are replaced wholesale, which is still a valid patch.
fn edit_script(a: &[&str], b: &[&str]) -> Vec<Op> {
    let (n, m) = (a.len(), b.len());
    if n.saturating_mul(m) > 4_000_000 {
        let mut ops: Vec<Op> = (0..n).map(Op::Del).collect();
        ops.extend((0..m).map(Op::Add));
        return ops;
    }
    let w = m + 1;
    let mut t = vec![0u32; (n + 1) * w];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            t[i * w + j] = if a[i] == b[j] {
                t[(i + 1) * w + j + 1] + 1
            } else {
                t[(i + 1) * w + j].max(t[i * w + j + 1])
            };
        }
    }
    let (mut i, mut j, mut ops) = (0, 0, Vec::new());
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push(Op::Same(i, j));
            i += 1;
            j += 1;
        } else if i < n && (j == m || t[(i + 1) * w + j] >= t[i * w + j + 1]) {
            // Removals first on a tie, as git prints them.
            ops.push(Op::Del(i));
            i += 1;
        } else {
            ops.push(Op::Add(j));
            j += 1;
        }
    }
    ops
}

const CONTEXT: usize = 3;

fn hunks(ops: &[Op], a: &[&str], b: &[&str]) -> String {
    // Ranges of `ops` to print: every change plus CONTEXT around it, merged.
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for (k, op) in ops.iter().enumerate() {
        if matches!(op, Op::Same(..)) {
            continue;
        }
        let (lo, hi) = (k.saturating_sub(CONTEXT), (k + CONTEXT + 1).min(ops.len()));
        match ranges.last_mut() {
            Some(last) if lo <= last.1 => last.1 = hi,
            _ => ranges.push((lo, hi)),
        }
    }
    let mut out = String::new();
    for (lo, hi) in ranges {
        // Lines of each side before the hunk start.
        let (mut old_before, mut new_before) = (0, 0);
        for op in &ops[..lo] {
            match op {
                Op::Same(..) => {
                    old_before += 1;
                    new_before += 1;
                }
                Op::Del(_) => old_before += 1,
                Op::Add(_) => new_before += 1,
            }
        }
        let body = &ops[lo..hi];
        let old_len = body.iter().filter(|o| !matches!(o, Op::Add(_))).count();
        let new_len = body.iter().filter(|o| !matches!(o, Op::Del(_))).count();
        let start = |before: usize, len: usize| if len == 0 { before } else { before + 1 };
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&format!(
            "@@ -{},{} +{},{} @@",
            start(old_before, old_len),
            old_len,
            start(new_before, new_len),
            new_len
        ));
        for op in body {
            let (sign, text) = match *op {
                Op::Same(i, _) => (' ', a[i]),
                Op::Del(i) => ('-', a[i]),
                Op::Add(j) => ('+', b[j]),
            };
            out.push('\n');
            out.push(sign);
            out.push_str(text);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_file_is_one_added_hunk() {
        let (p, add, del) = unified("", "a\nb\n");
        assert_eq!(p, "@@ -0,0 +1,2 @@\n+a\n+b");
        assert_eq!((add, del), (2, 0));
    }

    #[test]
    fn change_in_the_middle_has_context() {
        let old = "1\n2\n3\n4\n5\n6\n7\n8\n9\n";
        let new = "1\n2\n3\n4\nX\n6\n7\n8\n9\n";
        let (p, add, del) = unified(old, new);
        assert_eq!(p, "@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+X\n 6\n 7\n 8");
        assert_eq!((add, del), (1, 1));
    }
}
