//! The keyword prefilter: finds every rule keyword in a chunk,
//! case-insensitively, and says which rules it wakes.
//!
//! With the built-in rules' thousand-odd case-insensitive keywords and their
//! base64 forms (see `decode.rs`), an aho-corasick DFA over all of them is
//! megabytes of transitions: walking it costs a cache miss every few bytes,
//! and each byte's step waits on the last one. This filter instead looks at
//! every position independently. The four bytes there, case-folded (`| 0x20`
//! on each byte: bytes equal but for ASCII case fold alike), are hashed into
//! a bitset of every keyword's key, its least common four bytes (see
//! `commonness`); where a bit is set, a keyword of eight bytes or more must
//! also have its next four bytes after the key (a second bitset of the
//! pairs), and what passes both is checked against the keywords filed
//! under that key, in full. Keywords of three bytes are filed under each
//! folded byte that can follow them; those of one or two bytes have direct
//! tables of their own. Nothing is missed: a keyword's occurrence always
//! folds to its own entry.
//!
//! The base64 forms of the keywords are found by the same pass, so a chunk is
//! walked once. Forms are case-sensitive, so a form's hit is kept only when
//! its bytes match exactly.
//!
//! `bench/rules.sh` measures it against ea88400's 38 rules, `bench/compare.sh`
//! against ripgrep's search for the same keywords.

#[derive(Debug, thiserror::Error)]
#[error("cannot build the keyword prefilter: {0}; a rule keyword is too large or malformed")]
pub struct PrefilterError(String);

/// Bits of the four-byte hash: 2^20 bits are 128 KiB, which stays in cache,
/// and leave about one bit in a hundred set with the built-in rules.
const HASH_BITS: u32 = 20;
const BITSET_WORDS: usize = 1 << (HASH_BITS - 6);

pub struct Prefilter {
    /// Every keyword (lowercased) and base64 form (as written).
    patterns: Vec<Vec<u8>>,
    /// For each pattern, the rules that listed it; empty for base64 forms.
    rules: Vec<Vec<usize>>,
    /// Patterns from here on are base64 forms.
    forms_from: usize,
    /// Bit `hash(fold4)` is set when a pattern of three bytes or more
    /// begins with those folded bytes.
    bits: Box<[u64; BITSET_WORDS]>,
    /// Bit `hash(key)` is set for keys of patterns with no four bytes after
    /// their key (shorter than eight bytes): such a key is enough.
    alone: Box<[u64; BITSET_WORDS]>,
    /// Bit `hash2(key, next)` is set for the key of a longer pattern and the
    /// four bytes after it: `content` no longer stops at `contentstack`'s
    /// key, nor `stream` at `getstream`'s.
    pairs: Box<[u64; BITSET_WORDS]>,
    /// Entries sorted by bucket, and where each hash bucket's entries start
    /// (`HASH_BITS - BUCKET_SHIFT` bits of the hash).
    entries: Vec<Entry>,
    bucket_start: Vec<u32>,
    /// Patterns of one and two bytes, by their folded bytes.
    short: Vec<(u16, u32)>,
    short1: [u64; 4],
    short2: Box<[u64; 1 << 10]>,
    /// The largest offset of a key in its pattern.
    max_offset: usize,
}

const BUCKET_SHIFT: u32 = 6;

/// A pattern under one of its four-byte keys.
#[derive(Clone, Copy)]
struct Entry {
    /// The folded four bytes the bitset was set for.
    key: u32,
    /// The pattern's first (up to) eight bytes folded, and which of them
    /// count: most positions a key sends here are turned away by these
    /// without touching the pattern.
    head: u64,
    mask: u64,
    pattern: u32,
    /// Where in the pattern the key's four bytes are.
    offset: u32,
}

/// How common a byte is in text and code, roughly (English letter
/// frequencies, `_` and digits as in identifiers): a pattern is filed under
/// its least common four bytes, so that `statuspage` does not stop the
/// search at every `status`.
fn commonness(b: u8) -> u32 {
    match b.to_ascii_lowercase() {
        b'e' => 12,
        b't' => 9,
        b'a' | b'o' => 8,
        b'i' | b'n' => 7,
        b's' | b'r' | b'_' => 6,
        b'h' => 5,
        b'l' | b'd' => 4,
        b'c' | b'u' | b'-' | b'.' | b'0'..=b'9' => 3,
        b'm' | b'f' | b'p' | b'g' | b'w' | b'y' => 2,
        b'b' | b'v' | b'k' | b' ' => 1,
        _ => 0,
    }
}

/// The offset of the pattern's least common four bytes, among those the
/// fewest patterns are filed under yet (`used`, by folded key): keyword
/// families (`secret`, `secret_key`, `secretkey`…) and their base64 forms
/// then spread over several keys instead of queueing under one.
fn rarest_offset(pat: &[u8], used: &std::collections::HashMap<u32, u32>) -> usize {
    // With eight bytes or more, only keys with four bytes after them (see
    // `Prefilter::pairs`).
    let last = match pat.len() {
        n if n >= 8 => n - 8,
        n => n - 4,
    };
    (0..=last)
        .min_by_key(|&o| {
            let key = load4(pat, o) | FOLD4;
            let common: u32 = pat[o..o + 4].iter().map(|&b| commonness(b)).sum();
            (used.get(&key).copied().unwrap_or(0), common)
        })
        .unwrap_or(0)
}

const FOLD8: u64 = 0x2020_2020_2020_2020;

/// The (zero-padded) eight bytes at `at`, little-endian.
fn load8(data: &[u8], at: usize) -> u64 {
    match data.get(at..at + 8) {
        Some(w) => u64::from_le_bytes(w.try_into().unwrap()),
        None => {
            let mut w = [0u8; 8];
            let tail = &data[at.min(data.len())..];
            w[..tail.len()].copy_from_slice(tail);
            u64::from_le_bytes(w)
        }
    }
}

/// One keyword occurrence.
#[derive(Clone, Copy)]
pub struct Hit<'p> {
    pub start: usize,
    pub end: usize,
    pub rules: &'p [usize],
    /// A base64 form of a keyword, not a keyword (`rules` is empty).
    pub base64: bool,
}

/// The folding both sides of a comparison go through: ASCII letters lose
/// their case (other bytes may change too, alike on both sides).
const FOLD4: u32 = 0x2020_2020;

fn hash(folded: u32) -> u32 {
    folded.wrapping_mul(0x9E37_79B1) >> (32 - HASH_BITS)
}

fn hash2(key: u32, next: u32) -> u32 {
    ((key as u64) << 32 | next as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) as u32
        >> (32 - HASH_BITS)
}

/// Bit `h` of a bitset. Bitsets are arrays: a hash never exceeds their
/// size, so the hot loop's index goes unchecked.
fn test<const N: usize>(bits: &[u64; N], h: u32) -> bool {
    bits[(h >> 6) as usize] >> (h & 63) & 1 == 1
}

fn set<const N: usize>(bits: &mut [u64; N], h: u32) {
    bits[(h >> 6) as usize] |= 1 << (h & 63);
}

/// The (zero-padded) four bytes at `at`, little-endian.
fn load4(data: &[u8], at: usize) -> u32 {
    load8(data, at) as u32
}

impl Prefilter {
    /// `keywords[i]` wakes the rules `keyword_rules[i]`; `base64_forms` are
    /// found too, case-sensitively, and wake no rule.
    pub fn new(
        keywords: &[String],
        keyword_rules: &[Vec<usize>],
        base64_forms: &[String],
    ) -> Result<Self, PrefilterError> {
        let mut patterns: Vec<Vec<u8>> = Vec::new();
        for k in keywords.iter().chain(base64_forms) {
            if k.is_empty() {
                return Err(PrefilterError(
                    "an empty keyword would match everywhere".into(),
                ));
            }
            patterns.push(k.as_bytes().to_vec());
        }
        let mut rules = keyword_rules.to_vec();
        rules.resize(patterns.len(), Vec::new());
        let mut bits = Box::new([0u64; BITSET_WORDS]);
        let mut alone = Box::new([0u64; BITSET_WORDS]);
        let mut pairs = Box::new([0u64; BITSET_WORDS]);
        let mut entries: Vec<Entry> = Vec::new();
        let mut short: Vec<(u16, u32)> = Vec::new();
        let mut short1 = [0u64; 4];
        let mut short2 = Box::new([0u64; 1 << 10]);
        let mut used = std::collections::HashMap::new();
        // Shortest first: a short pattern has few keys to choose from, so it
        // takes its pick before the long ones spread over what is left.
        let mut order: Vec<usize> = (0..patterns.len()).collect();
        order.sort_by_key(|&p| patterns[p].len());
        for p in order {
            let pat = &patterns[p];
            let p = p as u32;
            let n = pat.len().min(8);
            let mask = u64::MAX >> (64 - 8 * n);
            let entry = |key: u32, offset: usize| Entry {
                key,
                head: (load8(pat, 0) | FOLD8) & mask,
                mask,
                pattern: p,
                offset: offset as u32,
            };
            match pat.len() {
                1 => {
                    let f = pat[0] | 0x20;
                    set(&mut short1, f as u32);
                    short.push((f as u16, p));
                }
                2 => {
                    let f = u16::from_le_bytes([pat[0], pat[1]]) | 0x2020;
                    set(&mut short2, f as u32);
                    short.push((f, p));
                }
                3 => {
                    // Whatever byte follows, folded: its bit 5 is set.
                    let head = u32::from_le_bytes([pat[0], pat[1], pat[2], 0]) | FOLD4;
                    for next in (0u32..256).filter(|b| b & 0x20 != 0) {
                        let f = head | next << 24;
                        set(&mut bits, hash(f));
                        set(&mut alone, hash(f));
                        entries.push(entry(f, 0));
                    }
                }
                _ => {
                    let offset = rarest_offset(pat, &used);
                    let f = load4(pat, offset) | FOLD4;
                    *used.entry(f).or_default() += 1;
                    set(&mut bits, hash(f));
                    match pat.get(offset + 4..offset + 8) {
                        Some(next) => set(&mut pairs, hash2(f, load4(next, 0) | FOLD4)),
                        None => set(&mut alone, hash(f)),
                    }
                    entries.push(entry(f, offset));
                }
            }
        }
        let bucket = |f: u32| hash(f) >> BUCKET_SHIFT;
        entries.sort_by_key(|e| {
            (
                bucket(e.key),
                e.key,
                patterns[e.pattern as usize].len(),
                e.pattern,
            )
        });
        short.sort_by_key(|&(f, p)| (f, patterns[p as usize].len(), p));
        let buckets = 1usize << (HASH_BITS - BUCKET_SHIFT);
        let mut bucket_start = vec![0u32; buckets + 1];
        for e in &entries {
            bucket_start[bucket(e.key) as usize + 1] += 1;
        }
        for b in 0..buckets {
            bucket_start[b + 1] += bucket_start[b];
        }
        let max_offset = entries.iter().map(|e| e.offset as usize).max().unwrap_or(0);
        Ok(Prefilter {
            patterns,
            rules,
            forms_from: keywords.len(),
            bits,
            alone,
            pairs,
            entries,
            bucket_start,
            short,
            short1,
            short2,
            max_offset,
        })
    }

    /// Every keyword occurrence, overlapping ones included, in order of
    /// start (then end).
    pub fn hits<'p, 'd>(&'p self, data: &'d [u8]) -> Hits<'p, 'd> {
        Hits {
            pf: self,
            data,
            at: 0,
            done: false,
            pending: std::collections::BinaryHeap::new(),
        }
    }

    /// The first position at or after `at` where a pattern may start.
    fn candidate(&self, data: &[u8], at: usize) -> Option<usize> {
        let shorts = !self.short.is_empty();
        let mut i = at;
        if !shorts {
            // The hot loop: a load, fold, hash and bit test a position; the
            // second test only where the first passes.
            let end = data.len().saturating_sub(7);
            while i < end {
                let w = u32::from_le_bytes(data[i..i + 4].try_into().unwrap()) | FOLD4;
                if test(&self.bits, hash(w)) {
                    let next = u32::from_le_bytes(data[i + 4..i + 8].try_into().unwrap());
                    if self.second(w, next | FOLD4) {
                        return Some(i);
                    }
                }
                i += 1;
            }
        }
        while i < data.len() {
            let w = load4(data, i);
            let (key, next) = (w | FOLD4, load4(data, i + 4) | FOLD4);
            if (test(&self.bits, hash(key)) && self.second(key, next))
                || (shorts && self.short_at(w))
            {
                return Some(i);
            }
            i += 1;
        }
        None
    }

    /// Whether a position whose four bytes `key` passed the first test holds
    /// a key of a short pattern, or of a long one followed by its `next` four.
    fn second(&self, key: u32, next: u32) -> bool {
        test(&self.alone, hash(key)) || test(&self.pairs, hash2(key, next))
    }

    fn short_at(&self, w: u32) -> bool {
        let f1 = (w as u8 | 0x20) as u32;
        let f2 = (w as u16 | 0x2020) as u32;
        test(&self.short1, f1) || test(&self.short2, f2)
    }

    fn matches(&self, p: u32, data: &[u8], at: usize) -> bool {
        let p = p as usize;
        let pat = &self.patterns[p];
        let Some(there) = data.get(at..at + pat.len()) else {
            return false;
        };
        if p >= self.forms_from {
            there == pat.as_slice()
        } else {
            there.eq_ignore_ascii_case(pat)
        }
    }

    /// Every pattern whose key (or, for one or two bytes, whose start) is
    /// at `at`.
    fn collect(&self, data: &[u8], at: usize, out: &mut std::collections::BinaryHeap<Pending>) {
        let w = load4(data, at);
        let mut push = |p: u32, start: usize| {
            if self.matches(p, data, start) {
                let end = start + self.patterns[p as usize].len();
                out.push(std::cmp::Reverse((start, end, p)));
            }
        };
        if !self.short.is_empty() {
            let f1 = (w as u8 | 0x20) as u16;
            let f2 = w as u16 | 0x2020;
            for &(f, p) in &self.short {
                let len = self.patterns[p as usize].len();
                if (len == 1 && f == f1) || (len == 2 && f == f2) {
                    push(p, at);
                }
            }
        }
        let f = w | FOLD4;
        let b = (hash(f) >> BUCKET_SHIFT) as usize;
        let range = self.bucket_start[b] as usize..self.bucket_start[b + 1] as usize;
        for e in &self.entries[range] {
            if e.key != f {
                continue;
            }
            let Some(start) = at.checked_sub(e.offset as usize) else {
                continue;
            };
            if (load8(data, start) | FOLD8) & e.mask == e.head {
                push(e.pattern, start);
            }
        }
    }
}

/// A hit found but not yet given out: (start, end, pattern), least first.
type Pending = std::cmp::Reverse<(usize, usize, u32)>;

/// A chunk's keyword hits, in order of their start, then their end.
///
/// A pattern is found at its key, which may lie up to `max_offset` bytes
/// past its start, so hits wait in a heap until the search has passed the
/// last position that could find one starting earlier: a chunk of keywords
/// end to end holds at most a key's offset of them, never the chunk's.
pub struct Hits<'p, 'd> {
    pf: &'p Prefilter,
    data: &'d [u8],
    /// Every position before this has been searched.
    at: usize,
    done: bool,
    pending: std::collections::BinaryHeap<Pending>,
}

impl<'p> Iterator for Hits<'p, '_> {
    type Item = Hit<'p>;

    fn next(&mut self) -> Option<Hit<'p>> {
        loop {
            if let Some(&std::cmp::Reverse((start, end, p))) = self.pending.peek() {
                // A later key gives a hit starting at `at - max_offset` or
                // after.
                if self.done || start + self.pf.max_offset < self.at {
                    self.pending.pop();
                    let p = p as usize;
                    return Some(Hit {
                        start,
                        end,
                        rules: &self.pf.rules[p],
                        base64: p >= self.pf.forms_from,
                    });
                }
            } else if self.done {
                return None;
            }
            match self.pf.candidate(self.data, self.at) {
                Some(c) => {
                    self.pf.collect(self.data, c, &mut self.pending);
                    self.at = c + 1;
                }
                None => self.done = true,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aho_corasick::AhoCorasickBuilder;

    fn prefilter(keywords: &[&str]) -> Prefilter {
        let kws: Vec<String> = keywords.iter().map(|k| k.to_string()).collect();
        let rules: Vec<Vec<usize>> = (0..kws.len()).map(|i| vec![i]).collect();
        Prefilter::new(&kws, &rules, &[]).unwrap()
    }

    fn hits(p: &Prefilter, text: &str) -> Vec<(usize, usize, Vec<usize>)> {
        p.hits(text.as_bytes())
            .map(|h| (h.start, h.end, h.rules.to_vec()))
            .collect()
    }

    #[test]
    fn finds_every_keyword_case_insensitively() {
        let p = prefilter(&["token", "auth_token", "AKIA"]);
        assert_eq!(
            hits(&p, "x AUTH_TOKEN=1 akia Token"),
            vec![
                (2, 12, vec![1]),
                (7, 12, vec![0]),
                (15, 19, vec![2]),
                (20, 25, vec![0])
            ]
        );
    }

    #[test]
    fn finds_a_keyword_that_starts_inside_another() {
        let p = prefilter(&["secret", "t-a"]);
        assert_eq!(
            hits(&p, "secret-abc"),
            vec![(0, 6, vec![0]), (5, 8, vec![1])]
        );
        assert_eq!(hits(&p, "t-abc"), vec![(0, 3, vec![1])]);
    }

    #[test]
    fn base64_forms_are_found_in_the_same_pass_and_only_as_written() {
        let kws = vec!["token".to_string()];
        let p = Prefilter::new(&kws, &[vec![0]], &["Z2hwXw".to_string()]).unwrap();
        let found: Vec<(usize, usize, bool)> = p
            .hits(b"a Z2hwXw z2hwxw TOKEN")
            .map(|h| (h.start, h.end, h.base64))
            .collect();
        assert_eq!(found, vec![(2, 8, true), (16, 21, false)]);
    }

    #[test]
    fn no_keywords_no_hits() {
        let p = prefilter(&[]);
        assert_eq!(hits(&p, "anything at all"), vec![]);
    }

    #[test]
    fn keywords_with_regex_syntax_are_literals() {
        let p = prefilter(&["SG.", "hooks.slack.com"]);
        assert_eq!(hits(&p, "SGx hooksxslack.com"), vec![]);
        assert_eq!(hits(&p, "sg.a"), vec![(0, 3, vec![0])]);
    }

    #[test]
    fn bytes_that_fold_alike_but_differ_are_not_a_match() {
        // `_` and DEL fold to the same byte, as do `@` and a backtick.
        let p = prefilter(&["api_key", "a@b"]);
        assert_eq!(hits(&p, "API\x7fKEY a`b"), vec![]);
        assert_eq!(
            hits(&p, "API_KEY A@B"),
            vec![(0, 7, vec![0]), (8, 11, vec![1])]
        );
    }

    #[test]
    fn a_keyword_is_found_from_any_of_its_bytes_at_a_chunk_edge() {
        // `statuspage` is filed under a four-byte run past its start; the
        // hit still starts at the keyword, and one cut by the chunk's end
        // is no hit.
        let p = prefilter(&["statuspage", "t-4"]);
        assert_eq!(hits(&p, "xSTATUSPAGE"), vec![(1, 11, vec![0])]);
        assert_eq!(hits(&p, "statuspag"), vec![]);
        assert_eq!(hits(&p, "t-4"), vec![(0, 3, vec![1])]);
        assert_eq!(hits(&p, "T-4x"), vec![(0, 3, vec![1])]);
    }

    #[test]
    fn a_chunk_of_keywords_end_to_end_holds_only_a_few_hits_at_a_time() {
        // A hostile file can be keywords and nothing else: hits are given
        // out as the search passes them, not gathered for the whole chunk.
        let p = prefilter(&["statuspage", "token"]);
        let text = "statuspagetoken".repeat(20_000);
        let mut hits = p.hits(text.as_bytes());
        let (mut n, mut most, mut last) = (0, 0, 0);
        while let Some(h) = hits.next() {
            assert!(h.start >= last, "out of order");
            last = h.start;
            n += 1;
            most = most.max(hits.pending.len());
        }
        assert_eq!(n, 40_000);
        assert!(most <= 4, "{most} hits waited at once");
    }

    /// The gathering must neither lose nor repeat a hit, wherever hits fall.
    #[test]
    fn agrees_with_a_plain_overlapping_search() {
        let kws = [
            "ab",
            "abcd",
            "bc",
            "cde",
            "e",
            "xyzxyzxyzxyz",
            "c_d",
            "zyx_yzab",
            "bcde_x",
        ];
        let p = prefilter(&kws);
        let ac = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .build(kws)
            .unwrap();
        let mut seed = 7u32;
        for _ in 0..200 {
            let text: String = (0..120)
                .map(|_| {
                    seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    b"abcdexyzABC _\x7f"[(seed >> 16) as usize % 14] as char
                })
                .collect();
            let mut want: Vec<(usize, usize, Vec<usize>)> = ac
                .find_overlapping_iter(&text)
                .map(|m| (m.start(), m.end(), vec![m.pattern().as_usize()]))
                .collect();
            want.sort();
            assert_eq!(hits(&p, &text), want, "{text}");
        }
    }
}
