//! The scanner: the keyword prefilter (one case-insensitive regex over
//! every keyword finds where they are, an aho-corasick automaton names them)
//! gives candidate positions; only rules whose keywords hit run their regex —
//! from each hit when every match starts with a keyword, else on a window of
//! whole lines around the hits. Base64 forms of the keywords point at
//! encoded runs, which are decoded and searched the same way, as are lines
//! holding a hit and URL or JSON escapes (decode.rs).

use super::checksum::Checked;
use super::decode::{self, Encoding};
use super::filter::{is_placeholder, shannon_entropy, Allowlist};
use super::finding::{Chunk, Confidence, Finding};
use super::pair::Pairs;
use super::prefilter::{Prefilter, PrefilterError};
use super::secret::Secret;
use crate::rules::{Rule, RuleSet};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

/// Widening a window to whole lines stops after this many bytes, so a
/// minified file's single huge line does not make every window the file.
pub const MAX_LINE_EXTENSION: usize = 1024;

/// Rules with `files:` read a matching file whole only up to this size;
/// past it they wait for keyword hits like every rule.
const WHOLE_FILE_MAX: usize = 256 << 10;

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
    /// Rules with `files:` path regexes.
    whole_file_rules: Vec<usize>,
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
        let mut index: std::collections::HashMap<String, usize> = Default::default();
        for (i, rule) in rules.rules().iter().enumerate() {
            for kw in &rule.spec.keywords {
                let kw = kw.to_ascii_lowercase();
                match index.get(&kw) {
                    Some(&p) => pattern_rules[p].push(i),
                    None => {
                        index.insert(kw.clone(), keywords.len());
                        keywords.push(kw);
                        pattern_rules.push(vec![i]);
                    }
                }
            }
        }
        // The base64 forms of every keyword, found by the prefilter's own
        // pass (prefilter.rs says why).
        let mut forms: Vec<String> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for rule in rules.rules() {
            for form in rule
                .spec
                .keywords
                .iter()
                .flat_map(|k| decode::base64_forms(k))
            {
                if seen.insert(form.clone()) {
                    forms.push(form);
                }
            }
        }
        let prefilter = Prefilter::new(&keywords, &pattern_rules, &forms)?;
        let pairs = Pairs::new(rules);
        let whole_file_rules = (0..rules.len())
            .filter(|&i| !rules.rules()[i].files.is_empty())
            .collect();
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
            whole_file_rules,
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
        let whole: Vec<usize> = if self.whole_file_rules.is_empty() || data.len() > WHOLE_FILE_MAX {
            Vec::new()
        } else {
            let path = chunk.origin.path();
            self.whole_file_rules
                .iter()
                .copied()
                .filter(|&ri| self.rules[ri].rule.files.iter().any(|r| r.is_match(&path)))
                .collect()
        };
        let mut candidates = self.candidates(data, &whole, true);
        if candidates.is_empty() {
            return Vec::new();
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

    /// Every rule match in `data`: rules in `whole` over all of it, the
    /// others around their keyword hits; with `decode`, also in the base64
    /// runs and escaped lines those hits point at (one level deep).
    fn candidates(&self, data: &[u8], whole: &[usize], decode: bool) -> Vec<Candidate> {
        // Per rule, where to search: merged windows around its keyword hits,
        // or, for a rule whose matches start with a keyword, each hit.
        let mut spans: Vec<Vec<(usize, usize)>> = vec![Vec::new(); self.rules.len()];
        for &ri in whole {
            spans[ri].push((0, data.len()));
        }
        let mut base64_hits: Vec<(usize, usize)> = Vec::new();
        let mut hit_starts: Vec<usize> = Vec::new();
        let escapes = decode && memchr::memchr2(b'%', b'\\', data).is_some();
        let mut hit_any = !whole.is_empty();
        for hit in self.prefilter.hits(data) {
            if hit.base64 {
                if decode {
                    base64_hits.push((hit.start, hit.end));
                }
                continue;
            }
            for &ri in hit.rules {
                if escapes && hit_starts.last() != Some(&hit.start) {
                    hit_starts.push(hit.start);
                }
                if whole.contains(&ri) {
                    continue;
                }
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
        let mut candidates: Vec<Candidate> = Vec::new();
        if hit_any {
            self.search(data, &spans, whole, &mut candidates);
        }
        if !base64_hits.is_empty() {
            self.decode_base64(data, &base64_hits, &mut candidates);
        }
        if !hit_starts.is_empty() {
            self.decode_escapes(data, &hit_starts, &mut candidates);
        }
        candidates
    }

    fn search(
        &self,
        data: &[u8],
        spans: &[Vec<(usize, usize)>],
        whole: &[usize],
        candidates: &mut Vec<Candidate>,
    ) {
        for (ri, list) in spans.iter().enumerate() {
            if list.is_empty() {
                continue;
            }
            let pattern = &self.rules[ri].rule.pattern;
            let mut caps = pattern.captures();
            if pattern.keyword_anchored() && !whole.contains(&ri) {
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
                if !pattern.may_match(&data[lo..hi]) {
                    continue;
                }
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
    }

    /// Keys in the base64 runs that encoded keywords point at, placed at
    /// the encoded bytes.
    fn decode_base64(&self, data: &[u8], hits: &[(usize, usize)], out: &mut Vec<Candidate>) {
        let mut done_until = 0;
        for &(start, end) in hits {
            if start < done_until {
                continue;
            }
            let Some(run) = decode::base64_run(data, start..end) else {
                continue;
            };
            done_until = run.end;
            let Some(decoded) = decode::decode_base64(&data[run.clone()]) else {
                continue;
            };
            for c in self.candidates(&decoded, &[], false) {
                let Ok(text) = std::str::from_utf8(&decoded[c.start..c.end]) else {
                    continue;
                };
                out.push(Candidate {
                    rule: c.rule,
                    start: decode::base64_raw_offset(run.start, c.start),
                    end: decode::base64_raw_offset(run.start, c.end).min(run.end),
                    decoded: Some((text.to_string(), Encoding::Base64)),
                });
            }
        }
    }

    /// Keys written with URL or JSON escapes on lines that hold a keyword.
    fn decode_escapes(&self, data: &[u8], hit_starts: &[usize], out: &mut Vec<Candidate>) {
        let mut done_until = 0;
        for &at in hit_starts {
            if at < done_until {
                continue;
            }
            let (span, unescaped) = decode::unescape_around(data, at);
            done_until = span.end.max(at + 1);
            let Some(u) = unescaped else {
                continue;
            };
            for c in self.candidates(&u.bytes, &[], false) {
                let raw = u.raw_range(&(c.start..c.end));
                let decoded = &u.bytes[c.start..c.end];
                // Written as itself: the plain search has it.
                if data[raw.clone()] == *decoded {
                    continue;
                }
                let Ok(text) = std::str::from_utf8(decoded) else {
                    continue;
                };
                out.push(Candidate {
                    rule: c.rule,
                    start: raw.start,
                    end: raw.end,
                    decoded: Some((text.to_string(), u.encoding)),
                });
            }
        }
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
        let (matched, encoding) = match &c.decoded {
            Some((text, encoding)) => (text.as_str(), Some(*encoding)),
            None => (std::str::from_utf8(&chunk.data[c.start..c.end]).ok()?, None),
        };
        let mut start = c.start;
        let mut text = std::borrow::Cow::Borrowed(matched);
        let mut confidence = Confidence::Medium;
        let checksum = cr.rule.spec.checksum;
        if let Some(kind) = checksum {
            match kind.check(matched) {
                Checked::Valid { range, normalized } => {
                    confidence = Confidence::High;
                    if encoding.is_none() {
                        start += range.start;
                    }
                    text = match normalized {
                        Some(n) => n.into(),
                        None => matched[range].into(),
                    };
                }
                Checked::Invalid if kind.required() => return None,
                Checked::Invalid => {}
            }
        }
        if !checksum.is_some_and(|k| k.replaces_filters()) {
            if let Some(min) = cr.rule.spec.min_entropy {
                if shannon_entropy(text.as_bytes()) < min {
                    return None;
                }
            }
            if is_placeholder(&text) {
                return None;
            }
        }
        let text: &str = &text;
        let (line_idx, line_start, line_end) = pos.locate(start);
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
        let column = String::from_utf8_lossy(&chunk.data[line_start..start])
            .chars()
            .count() as u64
            + 1;
        Some(Finding {
            rule_id: cr.id.clone(),
            rule_name: cr.name.clone(),
            provider: cr.provider.clone(),
            confidence,
            encoding,
            secret,
            fingerprint,
            origin: chunk.origin.clone(),
            line: chunk.first_line + line_idx as u64,
            column,
            offset: chunk.base_offset + start as u64,
        })
    }
}

struct Candidate {
    rule: usize,
    /// The matched bytes in the chunk (for a decoded key: the bytes that
    /// encode it).
    start: usize,
    end: usize,
    /// A key found in decoded text: itself, and how it was written.
    decoded: Option<(String, Encoding)>,
}

impl Candidate {
    fn new(rule: usize, secret: std::ops::Range<usize>) -> Self {
        Candidate {
            rule,
            start: secret.start,
            end: secret.end,
            decoded: None,
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
