//! A rule's compiled pattern, and whether its matches always begin at one
//! of its keywords (which lets the scanner search anchored at each keyword
//! hit instead of across a window around it).

use regex_automata::meta::{self, Regex};
use regex_automata::util::captures::Captures;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input};
use regex_syntax::hir::literal::{ExtractKind, Extractor};

/// Patterns are byte-oriented and ASCII: `\b`, `\w`, `\s` and `(?i)` mean
/// their ASCII forms. Keys are ASCII; Unicode word boundaries would also make
/// the lazy DFA give up on every non-ASCII byte and fall back to a slower
/// engine.
fn syntax_config() -> syntax::Config {
    syntax::Config::new().unicode(false).utf8(false)
}

/// The compiled form is built on first use when asked (`Pattern::lazy`):
/// compiling 600 regexes was most of a scan's start-up, and most of them
/// never see a keyword hit. The built-in rules are lazy; their regexes are
/// all compiled by `rules check` and the test suite, so one cannot fail
/// later. A user's rules compile at load, where an error names the file.
#[derive(Debug, Clone)]
pub struct Pattern {
    hir: std::sync::Arc<regex_syntax::hir::Hir>,
    regex: std::sync::Arc<std::sync::OnceLock<Result<Regex, String>>>,
    secret_group: usize,
    /// Every match starts with one of the rule's keywords.
    keyword_anchored: bool,
    /// Every key this pattern matches holds a run of at least this many
    /// bytes of this class (a 64-hex-digit key: 64 hex digits).
    run: Option<Run>,
}

/// A run of `len` bytes, each in `class` (a bitmap of the byte values).
#[derive(Debug, Clone)]
struct Run {
    class: [u64; 4],
    len: usize,
}

impl Run {
    fn holds(&self, b: u8) -> bool {
        self.class[(b >> 6) as usize] >> (b & 63) & 1 == 1
    }

    /// Whether `data` holds `len` class bytes in a row. Looks at the byte
    /// where a run would end first: one outside the class rules out every
    /// run through it, so most of a window is skipped `len` bytes at a time.
    fn found_in(&self, data: &[u8]) -> bool {
        let len = self.len.max(1);
        let mut end = len - 1; // the last byte of the run looked for
        while end < data.len() {
            if !self.holds(data[end]) {
                end += len;
                continue;
            }
            // Back from `end` while the bytes are in the class.
            let first = end + 1 - len;
            let mut start = end;
            while start > first && self.holds(data[start - 1]) {
                start -= 1;
            }
            if start == first {
                return true;
            }
            // `start - 1` is outside: a run begins at `start` or later.
            end = start + len - 1;
        }
        false
    }
}

/// Why a pattern does not compile; the caller adds file and rule id.
#[derive(Debug)]
pub enum PatternError {
    Syntax(String),
    NoSecretGroup,
}

impl Pattern {
    /// Parsed and compiled now: a compile error is returned here.
    pub fn new(pattern: &str, keywords: &[String]) -> Result<Pattern, PatternError> {
        let p = Pattern::lazy(pattern, keywords)?;
        if let Err(e) = p.compiled() {
            return Err(PatternError::Syntax(e.clone()));
        }
        Ok(p)
    }

    /// Parsed now (syntax errors and a missing `secret` group are returned
    /// here), compiled on first use.
    pub fn lazy(pattern: &str, keywords: &[String]) -> Result<Pattern, PatternError> {
        // Parsed once: the regex that runs and the keyword-anchoring check
        // see the same syntax tree.
        // The cause only: the error's own message repeats the pattern, and a
        // pattern may be a key pasted in by mistake.
        let hir = syntax::parse_with(pattern, &syntax_config()).map_err(|e| {
            PatternError::Syntax(match e {
                regex_syntax::Error::Parse(e) => e.kind().to_string(),
                regex_syntax::Error::Translate(e) => e.kind().to_string(),
                _ => "not a valid regular expression".to_string(),
            })
        })?;
        let secret = secret_capture(&hir).ok_or(PatternError::NoSecretGroup)?;
        let secret_group = secret.index as usize;
        let run = required_run(&secret.sub).filter(|r| r.len >= 16);
        Ok(Pattern {
            run,
            keyword_anchored: starts_with_keyword(&hir, keywords),
            hir: std::sync::Arc::new(hir),
            regex: Default::default(),
            secret_group,
        })
    }

    fn compiled(&self) -> &Result<Regex, String> {
        self.regex.get_or_init(|| {
            meta::Builder::new()
                .configure(
                    meta::Config::new()
                        .nfa_size_limit(Some(32 << 20))
                        // Context patterns (`tatum[\s\S]{0,300}?key…`) have
                        // large lazy DFAs; at the default 2 MiB cache they
                        // thrash and fall back to the NFA engine (28% more
                        // instructions measured on the benchmark corpus).
                        .hybrid_cache_capacity(8 << 20),
                )
                .build_from_hir(&self.hir)
                .map_err(|e| e.to_string())
        })
    }

    /// Why the pattern does not compile, compiling it now if it has not.
    pub fn compile_error(&self) -> Option<&str> {
        self.compiled().as_ref().err().map(String::as_str)
    }

    /// The compiled regex. A lazy pattern that fails to compile (only a
    /// built-in could be lazy, and `rules check` compiles them all) stops
    /// the scan with the cause rather than missing keys quietly.
    fn regex(&self) -> &Regex {
        match self.compiled() {
            Ok(r) => r,
            Err(e) => panic!("a built-in rule's pattern does not compile ({e}); `keysentry rules check` names it"),
        }
    }

    /// False when `data` cannot hold a match: the key needs a run of bytes
    /// of one class that `data` does not have. A window around a common
    /// keyword (`wallet`, `secret`) rarely holds the 64 hex digits or 51
    /// base58 characters the key is made of; this one pass over it costs
    /// a fraction of the regex's.
    pub fn may_match(&self, data: &[u8]) -> bool {
        let Some(run) = &self.run else {
            return true;
        };
        run.found_in(data)
    }

    pub fn keyword_anchored(&self) -> bool {
        self.keyword_anchored
    }

    /// Scratch space for [`Pattern::find`], reusable across calls.
    pub fn captures(&self) -> Captures {
        self.regex().create_captures()
    }

    /// The first match in `data[start..end]` — anchored at `start` if asked —
    /// as (whole match, secret group). Bytes outside the span are still seen
    /// by `\b` and other look-arounds.
    pub fn find(
        &self,
        caps: &mut Captures,
        data: &[u8],
        start: usize,
        end: usize,
        anchored: bool,
    ) -> Option<(std::ops::Range<usize>, Option<std::ops::Range<usize>>)> {
        let mut input = Input::new(data).span(start..end);
        if anchored {
            input = input.anchored(Anchored::Yes);
        }
        self.regex().search_captures(&input, caps);
        let whole = caps.get_match()?.range();
        Some((whole, caps.get_group(self.secret_group).map(|s| s.range())))
    }
}

/// The group named `secret`: its capture index (the compiled regex numbers
/// groups as the syntax tree does) and its syntax tree.
fn secret_capture(hir: &regex_syntax::hir::Hir) -> Option<&regex_syntax::hir::Capture> {
    use regex_syntax::hir::HirKind;
    let mut stack = vec![hir];
    while let Some(h) = stack.pop() {
        match h.kind() {
            HirKind::Capture(c) if c.name.as_deref() == Some("secret") => return Some(c),
            HirKind::Capture(c) => stack.push(&c.sub),
            HirKind::Repetition(r) => stack.push(&r.sub),
            HirKind::Concat(hs) | HirKind::Alternation(hs) => stack.extend(hs.iter()),
            _ => {}
        }
    }
    None
}

/// The longest run of one byte class that every match of `hir` holds:
/// a repeated class gives its minimum count; a concatenation its longest
/// part's run; an alternation the shortest of its branches' runs, over the
/// union of their classes (a branch without one: none).
fn required_run(hir: &regex_syntax::hir::Hir) -> Option<Run> {
    use regex_syntax::hir::HirKind;
    match hir.kind() {
        HirKind::Repetition(r) => {
            let HirKind::Class(c) = r.sub.kind() else {
                return None;
            };
            let mut class = [0u64; 4];
            for (lo, hi) in class_ranges(c) {
                if hi > 0xff {
                    return None;
                }
                for b in lo..=hi {
                    class[(b >> 6) as usize] |= 1 << (b & 63);
                }
            }
            Some(Run {
                class,
                len: r.min as usize,
            })
        }
        HirKind::Capture(c) => required_run(&c.sub),
        HirKind::Concat(hs) => hs.iter().filter_map(required_run).max_by_key(|r| r.len),
        HirKind::Alternation(hs) => {
            let mut out: Option<Run> = None;
            for h in hs {
                let r = required_run(h)?;
                out = Some(match out {
                    None => r,
                    Some(o) => Run {
                        class: [0, 1, 2, 3].map(|i| o.class[i] | r.class[i]),
                        len: o.len.min(r.len),
                    },
                });
            }
            out
        }
        _ => None,
    }
}

/// A class's ranges as code points (bytes for a byte class).
fn class_ranges(c: &regex_syntax::hir::Class) -> Vec<(u32, u32)> {
    use regex_syntax::hir::Class;
    match c {
        Class::Bytes(c) => c
            .ranges()
            .iter()
            .map(|r| (r.start() as u32, r.end() as u32))
            .collect(),
        Class::Unicode(c) => c
            .ranges()
            .iter()
            .map(|r| (r.start() as u32, r.end() as u32))
            .collect(),
    }
}

/// `hir` with every class that is one ASCII letter in both cases (what
/// `(?i)` makes of a letter) replaced by the lowercase letter.
fn fold_case(hir: &regex_syntax::hir::Hir) -> regex_syntax::hir::Hir {
    use regex_syntax::hir::{Capture, Hir, HirKind, Repetition};
    // The lowercase letter when the class is exactly it and its uppercase.
    let pair = |ranges: &mut dyn Iterator<Item = (u32, u32)>| {
        let (x, y) = (ranges.next()?, ranges.next()?);
        if ranges.next().is_some() || x.0 != x.1 || y.0 != y.1 {
            return None;
        }
        let (upper, lower) = (char::from_u32(x.0)?, char::from_u32(y.0)?);
        (upper.is_ascii_uppercase() && upper.to_ascii_lowercase() == lower).then_some(lower as u8)
    };
    let folded = match hir.kind() {
        HirKind::Class(c) => pair(&mut class_ranges(c).into_iter()),
        _ => None,
    };
    if let Some(l) = folded {
        return Hir::literal([l]);
    }
    match hir.kind() {
        HirKind::Concat(hs) => Hir::concat(hs.iter().map(fold_case).collect()),
        HirKind::Alternation(hs) => Hir::alternation(hs.iter().map(fold_case).collect()),
        HirKind::Repetition(r) => Hir::repetition(Repetition {
            sub: Box::new(fold_case(&r.sub)),
            ..r.clone()
        }),
        HirKind::Capture(c) => Hir::capture(Capture {
            sub: Box::new(fold_case(&c.sub)),
            ..c.clone()
        }),
        _ => hir.clone(),
    }
}

/// True when every string the pattern matches begins with one of
/// `keywords` (ASCII case-insensitively), judged from the pattern's prefix
/// literals. When the literals cannot be enumerated, or one is shorter than
/// any keyword it could start, the answer is no, which is always safe.
fn starts_with_keyword(hir: &regex_syntax::hir::Hir, keywords: &[String]) -> bool {
    // Only literal prefixes as long as the longest keyword matter. Small
    // limits keep extraction to a few milliseconds for the whole rule set:
    // classes up to 16 bytes (`t-[0-9a-f]`, ASCII case folding) are expanded,
    // larger ones end the literal, which can only answer "no". At most 256
    // literals: with 600 rules, 10,000 made this a quarter of a scan's
    // start-up, and a rule past 256 prefixes is rarely anchored anyway.
    let longest = keywords.iter().map(String::len).max().unwrap_or(0);
    let mut extractor = Extractor::new();
    extractor
        .kind(ExtractKind::Prefix)
        .limit_class(16)
        .limit_repeat(8)
        .limit_literal_len(longest.max(1))
        .limit_total(256);
    // Case-folded first: `(?i:secret[_.-]?key|token)` has hundreds of
    // case spellings, which the extractor's limit would give up on, but
    // only a few lowercase ones, and lowercase is what is compared below.
    let seq = extractor.extract(&fold_case(hir));
    let keywords: Vec<Vec<u8>> = keywords
        .iter()
        .map(|k| k.to_ascii_lowercase().into_bytes())
        .collect();
    seq.literals().is_some_and(|lits| {
        !lits.is_empty()
            && lits.iter().all(|lit| {
                let lit = lit.as_bytes().to_ascii_lowercase();
                keywords.iter().any(|k| lit.starts_with(k))
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn anchored(pattern: &str, keywords: &[&str]) -> bool {
        let kws: Vec<String> = keywords.iter().map(|k| k.to_string()).collect();
        Pattern::new(pattern, &kws).unwrap().keyword_anchored()
    }

    #[test]
    fn prefix_keyword_patterns_are_anchored() {
        assert!(anchored(r"\b(?P<secret>ghp_[0-9A-Za-z]{36})\b", &["ghp_"]));
        assert!(anchored(
            r"(?P<secret>(?:AKIA|ASIA)[A-Z2-7]{16})",
            &["AKIA", "ASIA"]
        ));
        assert!(anchored(
            r#"(?i:api[_-]?key|token)\s*=\s*(?P<secret>[0-9a-z]{20})"#,
            &["api_key", "api-key", "apikey", "token"]
        ));
        // Hundreds of case spellings, a few lowercase ones.
        assert!(anchored(
            r#"(?:(?i:api[_.-]?key|apikey|secret[_.-]?key|secret|token)[:=]|(?i:bearer) )(?P<secret>[0-9a-z]{20})"#,
            &["api_key", "api-key", "api.key", "apikey", "secret", "token", "bearer"]
        ));
    }

    #[test]
    fn patterns_that_may_start_elsewhere_are_not() {
        // The key comes before the keyword.
        assert!(!anchored(
            r"(?P<secret>[0-9a-f]{32})@[a-z.]*tatum\.io",
            &["tatum"]
        ));
        // A literal shorter than the keyword it might start.
        assert!(!anchored(r"(?P<secret>api[0-9]{8})", &["api_key"]));
        // Anything may come first.
        assert!(!anchored(
            r"(?i:tatum)[\s\S]{0,300}?(?P<secret>[0-9a-f]{32})",
            &["key"]
        ));
    }

    #[test]
    fn the_secret_group_is_numbered_as_the_compiled_regex_numbers_it() {
        for pattern in [
            r"(?P<secret>ghp_[0-9]{4})",
            r"(a)(?:b(c))?(?P<x>d)(?P<secret>e)",
            r"(?:(x)|(?P<secret>y))+(z)",
        ] {
            let p = Pattern::lazy(pattern, &["x".into()]).unwrap();
            assert!(p.regex.get().is_none(), "compiled before its first use");
            let want = p
                .regex()
                .group_info()
                .to_index(regex_automata::PatternID::ZERO, "secret");
            assert_eq!(want, Some(p.secret_group), "{pattern}");
        }
    }

    #[test]
    fn a_lazy_pattern_still_refuses_bad_syntax_and_a_missing_group_at_once() {
        assert!(matches!(
            Pattern::lazy(r"(?P<secret>[a-", &[]),
            Err(PatternError::Syntax(_))
        ));
        assert!(matches!(
            Pattern::lazy(r"[a-z]{4}", &[]),
            Err(PatternError::NoSecretGroup)
        ));
    }

    #[test]
    fn a_window_without_the_keys_run_of_characters_cannot_match() {
        let p = Pattern::new(
            r"wallet\s*=\s*(?:0x)?(?P<secret>[0-9a-fA-F]{64})\b",
            &["wallet".into()],
        )
        .unwrap();
        let key = "ab".repeat(32);
        assert!(p.may_match(format!("wallet = 0x{key}").as_bytes()));
        assert!(!p.may_match(format!("wallet = 0x{}", &key[..63]).as_bytes()));
        // The runs of the branches of an alternation, over their classes.
        let p = Pattern::new(r"(?P<secret>5[1-9A-H]{20}|c[a-z]{17})", &["x".into()]).unwrap();
        assert!(p.may_match(b"cabcdefghijklmnopq"));
        assert!(p.may_match(b"5ABCDEFGH12345678ABCD"));
        assert!(!p.may_match(b"cabcdefghijk-lmnopq"));
        // A branch with no run of its own: every window may match.
        let p = Pattern::new(r"(?P<secret>[0-9]{20}|[a-z]+[0-9])", &["x".into()]).unwrap();
        assert!(p.may_match(b"a1"));
        // A short run (under 16) is not worth the pass.
        let p = Pattern::new(r"(?P<secret>[0-9]{8})", &["x".into()]).unwrap();
        assert!(p.run.is_none());
    }

    /// The skipping search agrees with counting every byte.
    #[test]
    fn the_run_search_agrees_with_a_byte_by_byte_count() {
        let mut seed = 11u32;
        for len in [1usize, 2, 5, 16] {
            let run = Run {
                class: {
                    let mut c = [0u64; 4];
                    c[(b'a' >> 6) as usize] |= 1 << (b'a' & 63);
                    c[(b'b' >> 6) as usize] |= 1 << (b'b' & 63);
                    c
                },
                len,
            };
            for _ in 0..2000 {
                let n = (seed >> 8) as usize % 60;
                let data: Vec<u8> = (0..n)
                    .map(|_| {
                        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                        b"aab-"[(seed >> 16) as usize % 4]
                    })
                    .collect();
                let mut count = 0;
                let want = data.iter().any(|&b| {
                    count = if b == b'a' || b == b'b' { count + 1 } else { 0 };
                    count >= len
                });
                assert_eq!(
                    run.found_in(&data),
                    want,
                    "{len} {:?}",
                    String::from_utf8_lossy(&data)
                );
            }
        }
    }

    #[test]
    fn anchored_search_respects_the_byte_before_the_span() {
        let p = Pattern::new(r"\b(?P<secret>ghp_[0-9]{4})\b", &["ghp_".into()]).unwrap();
        let data = b"xghp_1234 ghp_5678";
        let mut caps = p.captures();
        assert_eq!(p.find(&mut caps, data, 1, data.len(), true), None);
        assert_eq!(
            p.find(&mut caps, data, 10, data.len(), true),
            Some((10..18, Some(10..18)))
        );
    }
}
