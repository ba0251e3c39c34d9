//! The scanner: one aho-corasick automaton over every rule's keywords finds
//! candidate positions; only rules whose keywords hit run their regex, and
//! only on a window of whole lines around the hits.

use super::filter::{checksum_confidence, is_placeholder, shannon_entropy, Allowlist};
use super::finding::{Chunk, Finding};
use super::secret::Secret;
use crate::rules::{Rule, RuleSet};
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use std::collections::HashSet;
use std::sync::Arc;

/// Widening a window to whole lines stops after this many bytes, so a
/// minified file's single huge line does not make every window the file.
const MAX_LINE_EXTENSION: usize = 1024;

/// A line holding this marker is never reported.
pub const ALLOW_MARKER: &[u8] = b"keysentry:allow";

#[derive(Debug, thiserror::Error)]
#[error("cannot build the keyword prefilter: {0}; a rule keyword is too large or malformed")]
pub struct PrefilterError(String);

/// Compiled rules and filters. Pure and synchronous: share it behind an `Arc`
/// and call [`Scanner::scan`] from any thread.
pub struct Scanner {
    rules: Vec<CompiledRule>,
    prefilter: AhoCorasick,
    /// For each automaton pattern, the rules that listed it as a keyword.
    pattern_rules: Vec<Vec<usize>>,
    allowlist: Allowlist,
}

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
        let prefilter = AhoCorasickBuilder::new()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .build(&keywords)
            .map_err(|e| PrefilterError(e.to_string()))?;
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
            prefilter,
            pattern_rules,
            allowlist,
        })
    }

    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Every finding in `chunk`, in order of position, deduplicated per
    /// (rule, secret, location), after all filters.
    pub fn scan(&self, chunk: &Chunk) -> Vec<Finding> {
        if self.allowlist.path_allowed(&chunk.origin.path()) {
            return Vec::new();
        }
        let data = &chunk.data;
        // Per rule, the merged windows its keywords hit.
        let mut windows: Vec<Vec<(usize, usize)>> = vec![Vec::new(); self.rules.len()];
        let mut hit_any = false;
        for m in self.prefilter.find_overlapping_iter(data) {
            for &ri in &self.pattern_rules[m.pattern().as_usize()] {
                let w = self.rules[ri].rule.window;
                let (lo, hi) = window(data, m.start(), m.end(), w);
                let list = &mut windows[ri];
                match list.last_mut() {
                    Some(last) if lo <= last.1 => last.1 = last.1.max(hi),
                    _ => list.push((lo, hi)),
                }
                hit_any = true;
            }
        }
        if !hit_any {
            return Vec::new();
        }
        let mut candidates: Vec<Candidate> = Vec::new();
        for (ri, list) in windows.iter().enumerate() {
            let rule = &self.rules[ri].rule;
            let mut seen = HashSet::new();
            for &(lo, hi) in list {
                // Searching `data[..hi]` from `lo` (not the slice `data[lo..hi]`)
                // lets `\b` and `^` see the byte before the window, so a
                // window that starts inside a long line cannot invent a word
                // boundary.
                let hay = &data[..hi];
                let mut at = lo;
                while let Some(caps) = rule.regex.captures_at(hay, at) {
                    let Some(whole) = caps.get(0) else { break };
                    if let Some(g) = caps.get(rule.secret_group) {
                        if seen.insert(g.start()) {
                            candidates.push(Candidate {
                                rule: ri,
                                start: g.start(),
                                end: g.end(),
                            });
                        }
                    }
                    at = if whole.end() > at {
                        whole.end()
                    } else {
                        at + 1
                    };
                    if at > hi {
                        break;
                    }
                }
            }
        }
        self.drop_generic_overlaps(&mut candidates);
        candidates.sort_by_key(|c| (c.start, c.rule));
        let mut positions = LinePositions::new(data);
        candidates
            .into_iter()
            .filter_map(|c| self.finish(chunk, c, &mut positions))
            .collect()
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
            return None;
        }
        let secret = Secret::new(text);
        let fingerprint = secret.fingerprint();
        if self.allowlist.secret_allowed(text, &fingerprint) {
            return None;
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

/// The byte range around `[start, end)` widened by `w` bytes, then out to
/// the enclosing line breaks when they are near; inside a long (minified)
/// line the window stays `w` bytes either side.
fn window(data: &[u8], start: usize, end: usize, w: usize) -> (usize, usize) {
    let lo = start.saturating_sub(w);
    let lo_floor = lo.saturating_sub(MAX_LINE_EXTENSION);
    let lo = memchr::memrchr(b'\n', &data[lo_floor..lo])
        .map(|p| lo_floor + p + 1)
        .unwrap_or(lo);
    let hi = (end + w).min(data.len());
    let hi_ceil = (hi + MAX_LINE_EXTENSION).min(data.len());
    let hi = memchr::memchr(b'\n', &data[hi..hi_ceil])
        .map(|p| hi + p)
        .unwrap_or(hi);
    (lo, hi)
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
