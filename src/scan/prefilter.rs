//! The keyword prefilter: finds every rule keyword in a chunk,
//! case-insensitively, and says which rules it wakes.
//!
//! One aho-corasick DFA over all keywords does both jobs: a plain search
//! finds where the next keyword ends, and an overlapping search over the few
//! bytes around it names every keyword there. With the built-in rules'
//! thousand-odd case-insensitive keywords no literal set is small enough for
//! a vectorised (Teddy) search, so the regex crate, which this used before,
//! fell back to its lazy DFA; the prebuilt aho-corasick DFA needs about a
//! third less CPU on the benchmark corpus (`bench/scan.sh`).
//!
//! The same automaton also finds the base64 forms of the keywords (see
//! `decode.rs`), so a chunk is walked once: as a second automaton of their
//! own, the forms cost a whole second pass over every byte, though they
//! almost never occur. Forms are case-sensitive and the automaton is not, so
//! a form's hit is kept only when its bytes match exactly.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, Input, MatchKind};

#[derive(Debug, thiserror::Error)]
#[error("cannot build the keyword prefilter: {0}; a rule keyword is too large or malformed")]
pub struct PrefilterError(String);

pub struct Prefilter {
    /// Finds and names keywords (standard semantics: a search reports the
    /// match that ends first).
    keywords: AhoCorasick,
    /// For each keyword, the rules that listed it; empty for base64 forms.
    rules: Vec<Vec<usize>>,
    /// Patterns from here on are base64 forms.
    forms_from: usize,
    /// The base64 forms, exactly as written.
    forms: Vec<Vec<u8>>,
    /// Length of the longest keyword.
    longest: usize,
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

impl Prefilter {
    /// `keywords[i]` wakes the rules `keyword_rules[i]`; `base64_forms` are
    /// found too, case-sensitively, and wake no rule.
    pub fn new(
        keywords: &[String],
        keyword_rules: &[Vec<usize>],
        base64_forms: &[String],
    ) -> Result<Self, PrefilterError> {
        let err = |e: &dyn std::fmt::Display| PrefilterError(e.to_string());
        let patterns = keywords.iter().chain(base64_forms);
        let keywords_ac = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .kind(Some(AhoCorasickKind::DFA))
            .build(patterns.clone())
            .map_err(|e| err(&e))?;
        let mut rules = keyword_rules.to_vec();
        rules.resize(keywords.len() + base64_forms.len(), Vec::new());
        Ok(Prefilter {
            keywords: keywords_ac,
            rules,
            forms_from: keywords.len(),
            forms: base64_forms.iter().map(|f| f.as_bytes().to_vec()).collect(),
            longest: patterns.map(String::len).max().unwrap_or(0),
        })
    }

    /// Every keyword occurrence, overlapping ones included, in order of
    /// start.
    pub fn hits<'p, 'd>(&'p self, data: &'d [u8]) -> Hits<'p, 'd> {
        Hits {
            pf: self,
            data,
            at: 0,
            batch: Vec::new(),
            next: 0,
        }
    }
}

/// Iterator over a chunk's keyword hits, in order of their start.
///
/// The plain search runs forward only and stops at `end`, the earliest end
/// of any keyword occurrence starting at or after `at`. No occurrence starting in
/// `[at, end]` can end past `end + longest`, and none can start before
/// `end - longest`, so the same automaton, run overlapping over
/// those few bytes, names every keyword starting in `[at, end]` — including
/// one that starts inside another (`token` in `auth_token`, `t-a` in
/// `secret-a`). The next search starts at `end + 1`.
pub struct Hits<'p, 'd> {
    pf: &'p Prefilter,
    data: &'d [u8],
    at: usize,
    batch: Vec<Hit<'p>>,
    next: usize,
}

impl<'p> Iterator for Hits<'p, '_> {
    type Item = Hit<'p>;

    fn next(&mut self) -> Option<Hit<'p>> {
        while self.next >= self.batch.len() {
            // No keywords: the empty alternation would match everywhere.
            if self.at > self.data.len() || self.pf.longest == 0 {
                return None;
            }
            let next = Input::new(self.data).span(self.at..self.data.len());
            let end = self.pf.keywords.find(next)?.end();
            let lo = end.saturating_sub(self.pf.longest).max(self.at);
            let hi = (end + self.pf.longest).min(self.data.len());
            self.batch.clear();
            self.next = 0;
            let input = Input::new(self.data).span(lo..hi);
            for m in self.pf.keywords.find_overlapping_iter(input) {
                let p = m.pattern().as_usize();
                let base64 = p >= self.pf.forms_from;
                if m.start() > end
                    || (base64 && self.data[m.range()] != *self.pf.forms[p - self.pf.forms_from])
                {
                    continue;
                }
                self.batch.push(Hit {
                    start: m.start(),
                    end: m.end(),
                    rules: &self.pf.rules[p],
                    base64,
                });
            }
            self.batch.sort_by_key(|h| (h.start, h.end));
            self.at = end + 1;
        }
        let hit = self.batch[self.next];
        self.next += 1;
        Some(hit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// The batching must neither lose nor repeat a hit, wherever hits fall.
    #[test]
    fn agrees_with_a_plain_overlapping_search() {
        let kws = ["ab", "abcd", "bc", "cde", "e", "xyzxyzxyzxyz"];
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
                    b"abcdexyzABC "[(seed >> 16) as usize % 12] as char
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
