//! Provider checksums, applied to a candidate after its rule's regex matched
//! (the rule's `checksum:` field). A checksum that holds raises the finding
//! to `high` confidence; one that fails either drops the candidate (formats
//! whose every real key carries it: Base58Check, BIP-39) or leaves it at
//! `medium` (GitHub and npm tokens: a token in an older or undocumented
//! variant still deserves a look).

pub use crate::rules::Checksum;
use bip39::{Language, Mnemonic};
use std::ops::Range;

/// What a checksum said about one candidate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    Valid {
        /// The part of the candidate that holds the key (a mnemonic's words
        /// without the labels the regex let in around them).
        range: Range<usize>,
        /// The key as reported, when it differs from the matched bytes: a
        /// mnemonic's words joined by single spaces, so one phrase has one
        /// fingerprint however it was laid out.
        normalized: Option<String>,
    },
    Invalid,
}

// The checks themselves live with the scanner; the kinds are rule data.
impl Checksum {
    /// The name used in rule YAML and `rules list`.
    pub fn name(self) -> &'static str {
        match self {
            Checksum::GithubCrc32 => "github-crc32",
            Checksum::NpmCrc32 => "npm-crc32",
            Checksum::Base58check => "base58check",
            Checksum::Bip39 => "bip39",
        }
    }

    /// A candidate whose checksum fails is not reported at all.
    pub fn required(self) -> bool {
        matches!(self, Checksum::Base58check | Checksum::Bip39)
    }

    /// The secret is not a random string, so entropy and placeholder
    /// filters do not apply (`example` and `dummy` are BIP-39 words); the
    /// checksum and the kind's own placeholder test stand in for them.
    pub fn replaces_filters(self) -> bool {
        matches!(self, Checksum::Bip39)
    }

    pub fn check(self, text: &str) -> Checked {
        let whole = || Checked::Valid {
            range: 0..text.len(),
            normalized: None,
        };
        let ok = match self {
            Checksum::GithubCrc32 => github_checksum_ok(text),
            Checksum::NpmCrc32 => prefixed_crc32_ok(text, &["npm"]),
            Checksum::Base58check => bs58::decode(text).with_check(None).into_vec().is_ok(),
            Checksum::Bip39 => return bip39_phrase(text).unwrap_or(Checked::Invalid),
        };
        if ok {
            whole()
        } else {
            Checked::Invalid
        }
    }
}

/// GitHub classic tokens (`ghp_` …) end in 6 base62 digits that encode the
/// CRC32 of the 30 random characters before them.
pub fn github_checksum_ok(token: &str) -> bool {
    prefixed_crc32_ok(token, &["ghp", "gho", "ghu", "ghs", "ghr"])
}

fn prefixed_crc32_ok(token: &str, prefixes: &[&str]) -> bool {
    let Some((prefix, rest)) = token.split_once('_') else {
        return false;
    };
    if !prefixes.contains(&prefix) || rest.len() != 36 || !rest.is_ascii() {
        return false;
    }
    let (body, check) = rest.split_at(30);
    base62_fixed(crc32(body.as_bytes()), 6) == check
}

pub fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

pub fn base62_fixed(mut n: u32, width: usize) -> String {
    const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8(out).unwrap_or_default()
}

/// Word counts BIP-39 defines, longest first: a 24-word phrase also holds
/// 12-word runs, and the whole phrase is the key.
const BIP39_LENGTHS: [usize; 5] = [24, 21, 18, 15, 12];

/// The first run of English BIP-39 words in `text` that forms a mnemonic
/// with a valid checksum. The regex lets labels in (`mnemonic`, `seed`,
/// numbering), so every window of every run of list words is tried.
fn bip39_phrase(text: &str) -> Option<Checked> {
    let words: Vec<(Range<usize>, bool)> = word_spans(text)
        .map(|r| {
            let known = Language::English.find_word(&text[r.clone()]).is_some();
            (r, known)
        })
        .collect();
    let mut i = 0;
    while i < words.len() {
        if !words[i].1 {
            i += 1;
            continue;
        }
        let run_end = (i..words.len())
            .find(|&j| !words[j].1)
            .unwrap_or(words.len());
        for start in i..run_end {
            for len in BIP39_LENGTHS {
                if start + len > run_end {
                    continue;
                }
                let span = &words[start..start + len];
                let phrase: Vec<&str> = span.iter().map(|(r, _)| &text[r.clone()]).collect();
                if looks_made_up(&phrase) {
                    continue;
                }
                let joined = phrase.join(" ");
                if Mnemonic::parse_in_normalized(Language::English, &joined).is_ok() {
                    return Some(Checked::Valid {
                        range: span[0].0.start..span[len - 1].0.end,
                        normalized: Some(joined),
                    });
                }
            }
        }
        i = run_end;
    }
    None
}

/// Documentation and test-vector phrases repeat words (`abandon` × 11 +
/// `about`, `legal winner thank year` × 3); in a random mnemonic even two
/// repeats are rare (24 draws from 2048 words: about 0.4 % have three or
/// more), so more than two marks a made-up phrase. Words in list order are
/// the word list itself (a random phrase is sorted once in 12! draws), whose
/// every window would otherwise pass the checksum one time in 16.
fn looks_made_up(phrase: &[&str]) -> bool {
    if phrase.windows(2).all(|w| w[0] <= w[1]) {
        return true;
    }
    let mut sorted = phrase.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    sorted.len() + 2 < phrase.len()
}

/// Byte ranges of the runs of ASCII lowercase letters in `text`.
fn word_spans(text: &str) -> impl Iterator<Item = Range<usize>> + '_ {
    let b = text.as_bytes();
    let mut at = 0;
    std::iter::from_fn(move || {
        while at < b.len() && !b[at].is_ascii_lowercase() {
            at += 1;
        }
        if at >= b.len() {
            return None;
        }
        let start = at;
        while at < b.len() && b[at].is_ascii_lowercase() {
            at += 1;
        }
        Some(start..at)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// A mnemonic built here from entropy by BIP-39's own steps (checksum =
    /// first ENT/32 bits of SHA-256(entropy), 11 bits per word), so the
    /// test does not lean on the crate it checks.
    fn mnemonic(entropy: &[u8]) -> String {
        let list = Language::English.word_list();
        let hash = Sha256::digest(entropy);
        let mut bits: Vec<bool> = entropy
            .iter()
            .flat_map(|b| (0..8).rev().map(move |i| b >> i & 1 == 1))
            .collect();
        let cs = entropy.len() * 8 / 32;
        bits.extend((0..cs).map(|i| hash[i / 8] >> (7 - i % 8) & 1 == 1));
        bits.chunks(11)
            .map(|c| list[c.iter().fold(0usize, |n, &b| n << 1 | b as usize)])
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn entropy(n: usize, seed: u8) -> Vec<u8> {
        (0..n)
            .map(|i| (i as u8).wrapping_mul(97).wrapping_add(seed) ^ 0x5a)
            .collect()
    }

    #[test]
    fn bip39_accepts_valid_phrases_of_every_length() {
        for n in [16, 20, 24, 28, 32] {
            let m = mnemonic(&entropy(n, 7));
            let text = format!("mnemonic: \"{m}\"");
            let Checked::Valid { range, normalized } = Checksum::Bip39.check(&text) else {
                panic!("{n} bytes of entropy: not accepted");
            };
            assert_eq!(&text[range], m);
            assert_eq!(normalized.as_deref(), Some(m.as_str()));
        }
    }

    #[test]
    fn bip39_reads_arrays_and_numbered_lines() {
        let m = mnemonic(&entropy(16, 3));
        let words: Vec<&str> = m.split(' ').collect();
        let array = format!("[\"{}\"]", words.join("\", \""));
        let numbered: String = words
            .iter()
            .enumerate()
            .map(|(i, w)| format!("{}. {w}\n", i + 1))
            .collect();
        for text in [array, numbered] {
            match Checksum::Bip39.check(&text) {
                Checked::Valid { normalized, .. } => assert_eq!(normalized.unwrap(), m),
                Checked::Invalid => panic!("not accepted: {text}"),
            }
        }
    }

    #[test]
    fn bip39_rejects_a_wrong_checksum_and_test_vectors() {
        let m = mnemonic(&entropy(16, 9));
        let mut words: Vec<&str> = m.split(' ').collect();
        // Another last word: its checksum bits change (1 in 16 keeps them,
        // so pick the neighbour that is checked to fail).
        let list = Language::English.word_list();
        let last = Language::English.find_word(words[11]).unwrap() as usize;
        let other = (1..16)
            .map(|d| list[(last + d) % 2048])
            .find(|w| {
                let mut t = words.clone();
                t[11] = w;
                Mnemonic::parse_in_normalized(Language::English, &t.join(" ")).is_err()
            })
            .unwrap();
        words[11] = other;
        assert_eq!(Checksum::Bip39.check(&words.join(" ")), Checked::Invalid);
        // The spec's all-"abandon" vector has a valid checksum; it is a
        // placeholder all the same.
        let abandon = format!("{}about", "abandon ".repeat(11));
        assert!(Mnemonic::parse_in_normalized(Language::English, &abandon).is_ok());
        assert_eq!(Checksum::Bip39.check(&abandon), Checked::Invalid);
        // Nor is the word list: its windows are in list order.
        let list = Language::English.word_list().join("\n");
        assert_eq!(Checksum::Bip39.check(&list), Checked::Invalid);
        // Eleven words are not a mnemonic.
        let short: Vec<&str> = m.split(' ').take(11).collect();
        assert_eq!(Checksum::Bip39.check(&short.join(" ")), Checked::Invalid);
    }

    #[test]
    fn github_and_npm_crc32() {
        let body = "Zx8Qm2LpR4tV6yB1nC3dF5gH7jK9wE";
        let check = base62_fixed(crc32(body.as_bytes()), 6);
        let token = format!("ghp_{body}{check}");
        assert!(github_checksum_ok(&token));
        assert!(Checksum::NpmCrc32.check(&format!("npm_{body}{check}")) != Checked::Invalid);
        assert_eq!(
            Checksum::NpmCrc32.check(&token),
            Checked::Invalid,
            "npm's check does not take GitHub prefixes"
        );
        let mut bad = token.clone();
        bad.replace_range(4..5, "Y");
        assert!(!github_checksum_ok(&bad));
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn base58check_accepts_only_intact_strings() {
        let payload: Vec<u8> = std::iter::once(0x80).chain(entropy(32, 1)).collect();
        let wif = bs58::encode(&payload).with_check().into_string();
        assert_ne!(Checksum::Base58check.check(&wif), Checked::Invalid);
        let mut bad: Vec<u8> = wif.clone().into_bytes();
        bad[10] = if bad[10] == b'2' { b'3' } else { b'2' };
        let bad = String::from_utf8(bad).unwrap();
        assert_eq!(Checksum::Base58check.check(&bad), Checked::Invalid);
        assert_eq!(Checksum::Base58check.check("0OIl"), Checked::Invalid);
    }
}
