//! The scanner: the keyword prefilter (one case-insensitive regex over
//! every keyword finds where they are, an aho-corasick automaton names them)
//! gives candidate positions; only rules whose keywords hit run their regex —
//! from each hit when every match starts with a keyword, else on a window of
//! whole lines around the hits.

use super::filter::{checksum_confidence, is_placeholder, shannon_entropy, Allowlist};
use super::finding::{Chunk, Finding};
use super::pair::Pairs;
use super::prefilter::{Prefilter, PrefilterError};
use super::secret::Secret;
use crate::rules::{Rule, RuleSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Widening a window to whole lines stops after this many bytes, so a
/// minified file's single huge line does not make every window the file.
const MAX_LINE_EXTENSION: usize = 1024;

/// A line holding this marker is never reported.
pub const ALLOW_MARKER: &[u8] = b"keysentry:allow";

/// Compiled rules and filters. Pure and synchronous: share it behind an `Arc`
/// and call [`Scanner::scan`] from any thread.
pub struct Scanner {
    rules: Vec<CompiledRule>,
    prefilter: Prefilter,
    allowlist: Allowlist,
    pairs: Pairs,
    /// What the filters the user set dropped, for the scan summary.
    suppressed: [AtomicU64; 3],
}

/// Findings the user's filters dropped, by filter.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Suppressed {
    /// The fingerprint is in the `--baseline` report.
    pub baseline: u64,
    /// An allowlist path glob or secret regex matched.
    pub allowlist: u64,
    /// The line holds `keysentry:allow`.
    pub inline: u64,
}

const BASELINE: usize = 0;
const ALLOWLIST: usize = 1;
const INLINE: usize = 2;

struct CompiledRule {
    rule: Rule,
    id: Arc<str>,
    name: Arc<str>,
    provider: Arc<str>,
    generic: bool,
}

impl Scanner {
    pub fn new(rules: &RuleSet, allowlist: Allowlist) -> Result<Self, PrefilterError> {
        let mut keywords: Vec<String> = Vec::new();
        let mut pattern_rules: Vec<Vec<usize>> = Vec::new();
        for (i, rule) in rules.rules().iter().enumerate() {
            for kw in &rule.spec.keywords {
                let kw = kw.to_ascii_lowercase();
                match keywords.iter().position(|k| *k == kw) {
                    Some(p) => pattern_rules[p].push(i),
                    None => {
                        keywords.push(kw);
                        pattern_rules.push(vec![i]);
                    }
                }
            }
        }
        let prefilter = Prefilter::new(&keywords, &pattern_rules)?;
        let pairs = Pairs::new(rules);
        let rules = rules
            .rules()
            .iter()
            .map(|r| CompiledRule {
                id: r.spec.id.as_str().into(),
                name: r.spec.name.as_str().into(),
                provider: r.spec.provider.as_str().into(),
                generic: r.spec.provider == "generic",
                rule: r.clone(),
            })
            .collect();
        Ok(Scanner {
            rules,
            pairs,
            prefilter,
            allowlist,
            suppressed: Default::default(),
        })
    }

    /// Totals since the scanner was built.
    pub fn suppressed(&self) -> Suppressed {
        let get = |i: usize| self.suppressed[i].load(Relaxed);
        Suppressed {
            baseline: get(BASELINE),
            allowlist: get(ALLOWLIST),
            inline: get(INLINE),
        }
    }

    fn suppress(&self, why: usize) -> Option<Finding> {
        self.suppressed[why].fetch_add(1, Relaxed);
        None
    }

    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Every finding in `chunk`, in order of position, deduplicated per
    /// (rule, secret, location), after all filters.
    pub fn scan(&self, chunk: &Chunk) -> Vec<Finding> {
        let found = self.scan_unlisted(chunk);
        // An allowlisted path is still scanned, so that the summary can say
        // how many keys the allowlist hid.
        if !found.is_empty() && self.allowlist.path_allowed(&chunk.origin.path()) {
            self.suppressed[ALLOWLIST].fetch_add(found.len() as u64, Relaxed);
            return Vec::new();
        }
        found
    }

    fn scan_unlisted(&self, chunk: &Chunk) -> Vec<Finding> {
        let data = &chunk.data;
        // Per rule, where to search: merged windows around its keyword hits,
        // or, for a rule whose matches start with a keyword, each hit.
        let mut spans: Vec<Vec<(usize, usize)>> = vec![Vec::new(); self.rules.len()];
        let mut hit_any = false;
        for hit in self.prefilter.hits(data) {
            for &ri in hit.rules {
                let rule = &self.rules[ri].rule;
                let w = rule.window;
                let list = &mut spans[ri];
                if rule.pattern.keyword_anchored() {
                    list.push((hit.start, window_end(data, hit.end, w)));
                } else {
                    match list.last_mut() {
                        // Keywords cluster (a line of config, a log record):
                        // most hits land in the window the previous one opened.
                        Some(last) if hit.start.saturating_sub(w) <= last.1 => {
                            if hit.end + w > last.1 {
                                last.1 = window_end(data, hit.end, w);
                            }
                        }
                        _ => list.push(window(data, hit.start, hit.end, w)),
                    }
                }
                hit_any = true;
            }
        }
        if !hit_any {
            return Vec::new();
        }
        let mut candidates: Vec<Candidate> = Vec::new();
        for (ri, list) in spans.iter().enumerate() {
            if list.is_empty() {
                continue;
            }
            let pattern = &self.rules[ri].rule.pattern;
            let mut caps = pattern.captures();
            if pattern.keyword_anchored() {
                // An anchored search dies a few bytes past the keyword when
                // nothing matches, instead of crossing a whole window.
                for &(start, end) in list {
                    if let Some((_, Some(g))) = pattern.find(&mut caps, data, start, end, true) {
                        candidates.push(Candidate::new(ri, g));
                    }
                }
                continue;
            }
            for &(lo, hi) in list {
                let mut at = lo;
                while at <= hi {
                    let Some((whole, secret)) = pattern.find(&mut caps, data, at, hi, false) else {
                        break;
                    };
                    if let Some(g) = secret {
                        candidates.push(Candidate::new(ri, g));
                    }
                    at = if whole.end > at { whole.end } else { at + 1 };
                }
            }
        }
        // Overlapping spans can find the same key twice.
        candidates.sort_by_key(|c| (c.start, c.rule));
        candidates.dedup_by_key(|c| (c.start, c.rule));
        self.drop_generic_overlaps(&mut candidates);
        let mut positions = LinePositions::new(data);
        let mut found: Vec<Finding> = candidates
            .into_iter()
            .filter_map(|c| self.finish(chunk, c, &mut positions))
            .collect();
        self.pairs.attach(&mut found);
        found
    }

    /// A generic rule that matched the same bytes as a provider rule adds
    /// nothing but noise.
    fn drop_generic_overlaps(&self, candidates: &mut Vec<Candidate>) {
        let specific: Vec<(usize, usize)> = candidates
            .iter()
            .filter(|c| !self.rules[c.rule].generic)
            .map(|c| (c.start, c.end))
            .collect();
        if specific.is_empty() {
            return;
        }
        candidates.retain(|c| {
            !self.rules[c.rule].generic || !specific.iter().any(|&(s, e)| c.start < e && s < c.end)
        });
    }

    fn finish(&self, chunk: &Chunk, c: Candidate, pos: &mut LinePositions) -> Option<Finding> {
        let cr = &self.rules[c.rule];
        let raw = &chunk.data[c.start..c.end];
        let text = std::str::from_utf8(raw).ok()?;
        if let Some(min) = cr.rule.spec.min_entropy {
            if shannon_entropy(raw) < min {
                return None;
            }
        }
        if is_placeholder(text) {
            return None;
        }
        let (line_idx, line_start, line_end) = pos.locate(c.start);
        if memchr::memmem::find(&chunk.data[line_start..line_end], ALLOW_MARKER).is_some() {
            return self.suppress(INLINE);
        }
        let secret = Secret::new(text);
        let fingerprint = secret.fingerprint();
        if self.allowlist.in_baseline(&fingerprint) {
            return self.suppress(BASELINE);
        }
        if self.allowlist.secret_listed(text) {
            return self.suppress(ALLOWLIST);
        }
        if !cr.rule.allow.is_empty() {
            let path = chunk.origin.path();
            let candidate = crate::rules::AllowCandidate {
                secret: text,
                line: &chunk.data[line_start..line_end],
                path: &path,
                commit: chunk.origin.commit(),
            };
            if cr.rule.allow.iter().any(|a| a.allows(&candidate)) {
                return self.suppress(ALLOWLIST);
            }
        }
        let column = String::from_utf8_lossy(&chunk.data[line_start..c.start])
            .chars()
            .count() as u64
            + 1;
        Some(Finding {
            rule_id: cr.id.clone(),
            rule_name: cr.name.clone(),
            provider: cr.provider.clone(),
            confidence: checksum_confidence(&cr.provider, text),
            secret,
            fingerprint,
            origin: chunk.origin.clone(),
            line: chunk.first_line + line_idx as u64,
            column,
            offset: chunk.base_offset + c.start as u64,
        })
    }
}

struct Candidate {
    rule: usize,
    start: usize,
    end: usize,
}

impl Candidate {
    fn new(rule: usize, secret: std::ops::Range<usize>) -> Self {
        Candidate {
            rule,
            start: secret.start,
            end: secret.end,
        }
    }
}

/// The byte range around `[start, end)` widened by `w` bytes, then out to
/// the enclosing line breaks when they are near; inside a long (minified)
/// line the window stays `w` bytes either side.
fn window(data: &[u8], start: usize, end: usize, w: usize) -> (usize, usize) {
    let lo = start.saturating_sub(w);
    let lo_floor = lo.saturating_sub(MAX_LINE_EXTENSION);
    let lo = memchr::memrchr(b'\n', &data[lo_floor..lo])
        .map(|p| lo_floor + p + 1)
        .unwrap_or(lo);
    (lo, window_end(data, end, w))
}

fn window_end(data: &[u8], end: usize, w: usize) -> usize {
    let hi = (end + w).min(data.len());
    let hi_ceil = (hi + MAX_LINE_EXTENSION).min(data.len());
    memchr::memchr(b'\n', &data[hi..hi_ceil])
        .map(|p| hi + p)
        .unwrap_or(hi)
}

/// Maps byte offsets to (line index, line start, line end), walking forward
/// only: candidates are visited in position order.
struct LinePositions<'a> {
    data: &'a [u8],
    line_idx: usize,
    line_start: usize,
}

impl<'a> LinePositions<'a> {
    fn new(data: &'a [u8]) -> Self {
        LinePositions {
            data,
            line_idx: 0,
            line_start: 0,
        }
    }

    fn locate(&mut self, offset: usize) -> (usize, usize, usize) {
        if offset > self.line_start {
            let skipped = &self.data[self.line_start..offset];
            if let Some(last) = memchr::memrchr(b'\n', skipped) {
                self.line_idx += memchr::memchr_iter(b'\n', skipped).count();
                self.line_start += last + 1;
            }
        }
        let end = memchr::memchr(b'\n', &self.data[offset..])
            .map(|p| offset + p)
            .unwrap_or(self.data.len());
        (self.line_idx, self.line_start, end)
    }
}
