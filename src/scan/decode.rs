//! Keys hidden in encoded text: base64 (Kubernetes Secret `data`, Helm
//! values, basic-auth headers), URL escaping (`%2B` in a logged query
//! string) and JSON escaping (`\u002b`, `\/`). The engine decodes only
//! where a keyword points: an automaton of its own finds the base64 forms
//! of every rule keyword, so only base64 runs that hold a keyword are
//! decoded, and escapes are undone only on lines that hold a keyword hit.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::{alphabet, Engine};
use std::ops::Range;

/// How a finding's key was written, when not as itself (`encoding` in the
/// finding JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    Base64,
    Url,
    Json,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Base64 => "base64",
            Encoding::Url => "url",
            Encoding::Json => "json",
        }
    }
}

/// Base64 characters that must appear for a keyword's encoded form to be
/// worth a prefilter entry: shorter ones occur by chance in every base64
/// blob and would make each a decode.
const MIN_ENCODED_KEYWORD: usize = 4;

/// A base64 run is decoded at most this many characters either side of the
/// keyword that pointed at it (a megabyte data: URL stays one small decode).
const MAX_BASE64_REACH: usize = 1024;

/// Shorter runs cannot hold a key.
const MIN_BASE64_RUN: usize = 16;

/// Escapes are undone on at most this many bytes either side of a hit.
const MAX_ESCAPED_REACH: usize = 1024;

/// The base64 text that `keyword` becomes at each of the three byte
/// alignments, in the spellings it is likely written in (as in the rule,
/// lower case, upper case: the prefilter's case folding does not carry
/// through base64), cut to the characters that depend on the keyword alone.
pub fn base64_forms(keyword: &str) -> Vec<String> {
    let mut spellings = vec![
        keyword.to_string(),
        keyword.to_ascii_lowercase(),
        keyword.to_ascii_uppercase(),
    ];
    spellings.dedup();
    let mut out = Vec::new();
    for s in &spellings {
        let bytes = s.as_bytes();
        for pad in 0..3usize {
            let mut input = vec![0u8; pad];
            input.extend_from_slice(bytes);
            let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(&input);
            // Character i holds bits [6i, 6i+6) of the input; only those
            // wholly inside the keyword's bits are fixed.
            let (lo_bit, hi_bit) = (8 * pad, 8 * (pad + bytes.len()));
            let first = lo_bit.div_ceil(6);
            let last = hi_bit / 6; // exclusive
            if last > first && last - first >= MIN_ENCODED_KEYWORD && last <= encoded.len() {
                let form = encoded[first..last].to_string();
                if !out.contains(&form) {
                    out.push(form);
                }
            }
        }
    }
    out
}

fn is_base64_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_')
}

/// The base64 run around `hit` (an encoded keyword's position), cut to at
/// most [`MAX_BASE64_REACH`] either side and kept on a 4-character boundary
/// from the run's start, so that it decodes as the original did.
pub fn base64_run(data: &[u8], hit: Range<usize>) -> Option<Range<usize>> {
    let floor = hit.start.saturating_sub(MAX_BASE64_REACH * 4);
    let mut start = hit.start;
    while start > floor && is_base64_byte(data[start - 1]) {
        start -= 1;
    }
    let ceil = (hit.end + MAX_BASE64_REACH).min(data.len());
    let mut end = hit.end;
    while end < ceil && is_base64_byte(data[end]) {
        end += 1;
    }
    // A run longer than the reach: start on a group boundary near the hit.
    let skip = hit
        .start
        .saturating_sub(start)
        .saturating_sub(MAX_BASE64_REACH)
        / 4
        * 4;
    let start = start + skip;
    (end - start >= MIN_BASE64_RUN).then_some(start..end)
}

/// `run` decoded as standard or URL-safe base64, padding optional; a
/// trailing partial group is dropped.
pub fn decode_base64(run: &[u8]) -> Option<Vec<u8>> {
    let url_safe = run.iter().any(|&b| b == b'-' || b == b'_');
    let alphabet = if url_safe {
        &alphabet::URL_SAFE
    } else {
        &alphabet::STANDARD
    };
    let engine = GeneralPurpose::new(
        alphabet,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(true),
    );
    let usable = if run.len() % 4 == 1 {
        &run[..run.len() - 1]
    } else {
        run
    };
    engine.decode(usable).ok()
}

/// Where a decoded byte came from: decoded offset `d` of a base64 run that
/// starts at `run_start` sits at this raw offset.
pub fn base64_raw_offset(run_start: usize, d: usize) -> usize {
    run_start + d / 3 * 4 + (d % 3)
}

/// Text with its URL and JSON escapes undone, and for each decoded byte the
/// raw offset it came from (one more entry for the end).
pub struct Unescaped {
    pub bytes: Vec<u8>,
    pub raw: Vec<usize>,
    pub encoding: Encoding,
}

impl Unescaped {
    /// The raw range that decoded range `r` was written as.
    pub fn raw_range(&self, r: &Range<usize>) -> Range<usize> {
        self.raw[r.start]..self.raw[r.end]
    }
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// The bytes around `at` (at most [`MAX_ESCAPED_REACH`] either side, within
/// the line) with `%XX`, `\uXXXX` (ASCII only: keys are ASCII) and `\/`
/// undone (`None` when it holds none of them), and the span looked at.
/// Offsets are relative to `data`.
pub fn unescape_around(data: &[u8], at: usize) -> (Range<usize>, Option<Unescaped>) {
    let lo_floor = at.saturating_sub(MAX_ESCAPED_REACH);
    let lo = memchr::memrchr(b'\n', &data[lo_floor..at])
        .map(|p| lo_floor + p + 1)
        .unwrap_or(lo_floor);
    let hi_ceil = (at + MAX_ESCAPED_REACH).min(data.len());
    let hi = memchr::memchr(b'\n', &data[at..hi_ceil])
        .map(|p| at + p)
        .unwrap_or(hi_ceil);
    (lo..hi, unescape(lo, &data[lo..hi]))
}

/// Whether `line` holds an escape [`unescape`] undoes: most lines with a
/// `%` or `\` hold none (`printf("%s\n")`), and are not copied.
fn has_escape(line: &[u8]) -> bool {
    memchr::memchr2_iter(b'%', b'\\', line).any(|i| match &line[i..] {
        [b'%', h, l, ..] => h.is_ascii_hexdigit() && l.is_ascii_hexdigit(),
        [b'\\', b'/', ..] => true,
        [b'\\', b'u', b'0', b'0', b'0'..=b'7', l, ..] => l.is_ascii_hexdigit(),
        _ => false,
    })
}

fn unescape(lo: usize, line: &[u8]) -> Option<Unescaped> {
    if !has_escape(line) {
        return None;
    }
    let mut bytes = Vec::with_capacity(line.len());
    let mut raw = Vec::with_capacity(line.len() + 1);
    let (mut url, mut json) = (false, false);
    let mut i = 0;
    while i < line.len() {
        let rest = &line[i..];
        let (byte, used) = match rest {
            [b'%', h, l, ..] if hex_val(*h).is_some() && hex_val(*l).is_some() => {
                url = true;
                ((hex_val(*h)? << 4) | hex_val(*l)?, 3)
            }
            [b'\\', b'/', ..] => {
                json = true;
                (b'/', 2)
            }
            [b'\\', b'u', b'0', b'0', h @ b'0'..=b'7', l, ..] if hex_val(*l).is_some() => {
                json = true;
                ((hex_val(*h)? << 4) | hex_val(*l)?, 6)
            }
            _ => (rest[0], 1),
        };
        bytes.push(byte);
        raw.push(lo + i);
        i += used;
    }
    raw.push(lo + line.len());
    if !url && !json {
        return None;
    }
    let encoding = if url { Encoding::Url } else { Encoding::Json };
    Some(Unescaped {
        bytes,
        raw,
        encoding,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;

    #[test]
    fn encoded_keyword_forms_are_found_in_encoded_text_at_any_alignment() {
        let forms = base64_forms("ghp_");
        for pad in ["", "x", "xy", "xyz"] {
            let encoded = STANDARD.encode(format!("{pad}token ghp_Zx8Qm2LpR4"));
            assert!(
                forms.iter().any(|f| encoded.contains(f.as_str())),
                "{pad:?}: {encoded} holds none of {forms:?}"
            );
        }
        // Too short to be worth a prefilter entry at some alignments.
        assert!(base64_forms("ab").is_empty());
    }

    #[test]
    fn a_run_decodes_from_its_start_whatever_the_hit() {
        let key = "secret: ghp_Zx8Qm2LpR4tV6yB1nC3dF5gH7jK9wE";
        let data = format!("data:\n  token: {}\n", STANDARD.encode(key));
        let form = base64_forms("ghp_")
            .into_iter()
            .find(|f| data.contains(f.as_str()))
            .unwrap();
        let at = data.find(&form).unwrap();
        let run = base64_run(data.as_bytes(), at..at + form.len()).unwrap();
        let decoded = decode_base64(&data.as_bytes()[run.clone()]).unwrap();
        assert_eq!(decoded, key.as_bytes());
        let d = key.find("ghp_").unwrap();
        let raw = base64_raw_offset(run.start, d);
        assert!(raw <= at && at < raw + 4, "{raw} vs {at}");
    }

    #[test]
    fn url_and_json_escapes_are_undone_with_positions() {
        let line = b"GET /cb?key=ab%2Bcd%2Fef&x=1 HTTP/1.1";
        let (span, u) = unescape_around(line, 10);
        assert_eq!(span, 0..line.len());
        let u = u.unwrap();
        assert_eq!(u.encoding, Encoding::Url);
        let text = String::from_utf8(u.bytes.clone()).unwrap();
        let s = text.find("ab+cd/ef").unwrap();
        let raw = u.raw_range(&(s..s + 8));
        assert_eq!(&line[raw], b"ab%2Bcd%2Fef");

        let (_, u) = unescape_around(br#"{"url":"https:\/\/x.test\/a\u002bb"}"#, 3);
        let u = u.unwrap();
        assert_eq!(u.encoding, Encoding::Json);
        assert_eq!(u.bytes, br#"{"url":"https://x.test/a+b"}"#);
        assert!(unescape_around(b"plain \"line\" 100%", 2).1.is_none());
    }
}
