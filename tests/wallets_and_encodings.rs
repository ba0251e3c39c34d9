//! Wallet secrets (BIP-39 phrases, WIF and extended keys, Solana keypairs)
//! and keys hidden by base64, URL or JSON escaping, found by the built-in
//! rules through the real `keysentry scan`; `rules list` names checksums.
//!
//! Every key is made here from fixed bytes by the format's own steps (a
//! BIP-39 checksum by hand, Base58Check), none copied from anywhere.

use crate::support::{keysentry, write};
use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::Path;
use tempfile::TempDir;

fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| {
            (i as u8)
                .wrapping_mul(151)
                .wrapping_add(seed)
                .rotate_left(3)
                ^ 0xa5
        })
        .collect()
}

/// The BIP-39 English mnemonic of `entropy`: checksum = first ENT/32 bits
/// of SHA-256(entropy), then 11 bits a word.
fn mnemonic(entropy: &[u8]) -> Vec<&'static str> {
    let list = bip39::Language::English.word_list();
    let hash = Sha256::digest(entropy);
    let mut bits: Vec<bool> = entropy
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| b >> i & 1 == 1))
        .collect();
    bits.extend((0..entropy.len() / 4).map(|i| hash[i / 8] >> (7 - i % 8) & 1 == 1));
    bits.chunks(11)
        .map(|c| list[c.iter().fold(0usize, |n, &b| n << 1 | b as usize)])
        .collect()
}

/// The same phrase with a last word whose checksum bits are wrong.
fn broken(words: &[&'static str]) -> Vec<&'static str> {
    let list = bip39::Language::English.word_list();
    let mut out = words.to_vec();
    for w in list.iter() {
        out[words.len() - 1] = w;
        if bip39::Mnemonic::parse_in_normalized(bip39::Language::English, &out.join(" ")).is_err() {
            return out;
        }
    }
    unreachable!("every last word has a valid checksum")
}

fn scan(dir: &Path, extra: &[&str]) -> (Option<i32>, Vec<Value>, String) {
    let o = keysentry()
        .arg("scan")
        .arg(dir)
        .args(["--format", "json"])
        .args(extra)
        .env("RUST_LOG", "debug")
        .output()
        .expect("run keysentry");
    let all: Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}",
            String::from_utf8_lossy(&o.stdout)
        )
    });
    let found = all.as_array().cloned().unwrap_or_default();
    let mut output = String::from_utf8_lossy(&o.stderr).into_owned();
    output.push_str(&String::from_utf8_lossy(&o.stdout));
    (o.status.code(), found, output)
}

fn by_rule<'a>(found: &'a [Value], rule: &str) -> Vec<&'a Value> {
    found.iter().filter(|f| f["rule_id"] == rule).collect()
}

#[test]
fn a_seed_backup_file_is_a_high_confidence_finding_and_a_broken_phrase_none() {
    let dir = TempDir::new().unwrap();
    let words = mnemonic(&bytes(32, 1));
    // One word a line and nothing else: no keyword, the file name tells.
    write(dir.path(), "backup/seed.txt", &(words.join("\n") + "\n"));
    // A quoted array in code, and a broken phrase beside it.
    let twelve = mnemonic(&bytes(16, 2));
    let array = format!(
        "const mnemonic = [{}];\nconst old_mnemonic = [{}];\n",
        twelve
            .iter()
            .map(|w| format!("\"{w}\""))
            .collect::<Vec<_>>()
            .join(", "),
        broken(&twelve)
            .iter()
            .map(|w| format!("'{w}'"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    write(dir.path(), "src/wallet.js", &array);
    let (status, found, output) = scan(dir.path(), &[]);
    assert_eq!(status, Some(1), "{output}");
    let hits = by_rule(&found, "bip39.mnemonic");
    assert_eq!(hits.len(), 2, "{output}");
    let file = hits
        .iter()
        .find(|f| f["path"] == "backup/seed.txt")
        .unwrap();
    assert_eq!(file["confidence"], "high");
    assert_eq!(
        (file["line"].as_u64(), file["column"].as_u64()),
        (Some(1), Some(1))
    );
    let code = hits.iter().find(|f| f["path"] == "src/wallet.js").unwrap();
    assert_eq!(code["line"], 1, "only the phrase with a valid checksum");
    assert_eq!(code["column"], 20, "the first word, not the label");
    // One phrase, one fingerprint, however it is laid out.
    let joined = twelve.join(" ");
    assert_eq!(
        code["fingerprint"],
        keysentry::scan::Secret::new(joined.as_str())
            .fingerprint()
            .as_str()
    );
    // No two consecutive words of either phrase anywhere in the output.
    for w in [words.as_slice(), twelve.as_slice()] {
        for pair in w.windows(2) {
            assert!(!output.contains(&pair.join(" ")), "{output}");
            assert!(!output.contains(&pair.join("\n")), "{output}");
            assert!(!output.contains(&pair.join("\", \"")), "{output}");
        }
    }
}

#[test]
fn the_spec_placeholder_phrase_is_not_a_finding() {
    let dir = TempDir::new().unwrap();
    let abandon = format!("MNEMONIC=\"{}about\"\n", "abandon ".repeat(11));
    write(dir.path(), ".env", &abandon);
    let (status, found, output) = scan(dir.path(), &[]);
    assert!(by_rule(&found, "bip39.mnemonic").is_empty(), "{output}");
    assert_eq!(status, Some(if found.is_empty() { 0 } else { 1 }));
}

fn base58check(payload: &[u8]) -> String {
    bs58::encode(payload).with_check().into_string()
}

#[test]
fn wif_and_extended_keys_are_found_only_with_a_valid_checksum() {
    let dir = TempDir::new().unwrap();
    let mut wif_payload = vec![0x80];
    wif_payload.extend(bytes(32, 3));
    wif_payload.push(0x01);
    let wif = base58check(&wif_payload);
    assert!(wif.starts_with('K') || wif.starts_with('L'), "{wif}");
    let mut xprv_payload = vec![0x04, 0x88, 0xAD, 0xE4, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    xprv_payload.extend(bytes(32, 4));
    xprv_payload.push(0);
    xprv_payload.extend(bytes(32, 5));
    let xprv = base58check(&xprv_payload);
    assert!(xprv.starts_with("xprv"), "{xprv}");
    // One character changed: Base58 still, checksum gone.
    let flip = |s: &str| {
        let mut b = s.as_bytes().to_vec();
        b[20] = if b[20] == b'2' { b'3' } else { b'2' };
        String::from_utf8(b).unwrap()
    };
    write(
        dir.path(),
        ".env",
        &format!(
            "BTC_PRIVATE_KEY={wif}\nXPRV={xprv}\nOLD_PRIVATE_KEY={}\nOLD_XPRV={}\n",
            flip(&wif),
            flip(&xprv)
        ),
    );
    let (status, found, output) = scan(dir.path(), &[]);
    assert_eq!(status, Some(1), "{output}");
    let wifs = by_rule(&found, "bitcoin.wif-private-key");
    let xprvs = by_rule(&found, "bitcoin.extended-private-key");
    assert_eq!((wifs.len(), xprvs.len()), (1, 1), "{output}");
    assert_eq!(
        (wifs[0]["line"].as_u64(), xprvs[0]["line"].as_u64()),
        (Some(1), Some(2))
    );
    for f in [wifs[0], xprvs[0]] {
        assert_eq!(f["confidence"], "high");
    }
    for key in [&wif, &xprv] {
        assert!(!output.contains(&key[4..]), "{output}");
    }
}

#[test]
fn a_solana_id_json_is_found_by_its_name_and_the_same_bytes_elsewhere_are_not() {
    let dir = TempDir::new().unwrap();
    let keypair: Vec<String> = bytes(64, 6).iter().map(u8::to_string).collect();
    let array = format!("[{}]", keypair.join(","));
    write(dir.path(), ".config/solana/id.json", &array);
    write(dir.path(), "fixtures/pixels.json", &array);
    let (status, found, output) = scan(dir.path(), &[]);
    assert_eq!(status, Some(1), "{output}");
    let hits = by_rule(&found, "solana.keypair");
    assert_eq!(hits.len(), 1, "{output}");
    assert_eq!(hits[0]["path"], ".config/solana/id.json");
    assert!(!output.contains(&keypair[4..12].join(",")), "{output}");
}

/// A Tatum key (the built-in rule's shape) from fixed bytes.
fn tatum_key() -> String {
    let hex: String = bytes(24, 7).iter().map(|b| format!("{b:02x}")).collect();
    format!("t-{}-{}", &hex[..24], &hex[24..])
}

#[test]
fn a_base64_encoded_key_is_found_decoded_at_its_encoded_place() {
    let dir = TempDir::new().unwrap();
    let key = tatum_key();
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{key}\n"));
    write(
        dir.path(),
        "k8s/secret.yaml",
        &format!("apiVersion: v1\nkind: Secret\ndata:\n  TATUM_API_KEY: {encoded}\n"),
    );
    let (status, found, output) = scan(dir.path(), &["--show-secrets"]);
    assert_eq!(status, Some(1), "{output}");
    let hits = by_rule(&found, "tatum.api-key");
    assert_eq!(hits.len(), 1, "{output}");
    let f = hits[0];
    assert_eq!(f["encoding"], "base64");
    assert_eq!(f["secret"], key.as_str(), "the decoded key, for verify");
    assert_eq!(
        (f["line"].as_u64(), f["column"].as_u64()),
        (Some(4), Some(18))
    );
    // Without --show-secrets, neither form of the key is printed.
    let (_, _, output) = scan(dir.path(), &[]);
    assert!(!output.contains(&key[4..]), "{output}");
    assert!(!output.contains(&encoded[4..]), "{output}");
}

#[test]
fn url_and_json_escaped_keys_in_a_log_are_found() {
    let dir = TempDir::new().unwrap();
    // An AWS secret access key holds `+` and `/`, which a logged query
    // string escapes.
    let secret = "q7Zk2Lm9Xw4Rt8Vb1Nc6Hd3Fg+Js5Py0Ta/Ue4Wo";
    let escaped = secret.replace('+', "%2B").replace('/', "%2F");
    let hook_path = "T04AB12CD/B07EF34GH/Rk8sV2mQ9xLp4TzW7nCy1Hd6";
    let log = format!(
        "10.0.0.7 - - \"GET /upload?aws_secret_access_key={escaped}&region=eu-west-1 HTTP/1.1\" 200\n\
         {{\"level\":\"info\",\"hook\":\"https:\\/\\/hooks.slack.com\\/services\\/{}\"}}\n",
        hook_path.replace('/', "\\/")
    );
    write(dir.path(), "logs/access.log", &log);
    let (status, found, output) = scan(dir.path(), &["--show-secrets"]);
    assert_eq!(status, Some(1), "{output}");
    let aws = by_rule(&found, "aws.secret-access-key");
    assert_eq!(aws.len(), 1, "{output}");
    assert_eq!(aws[0]["encoding"], "url");
    assert_eq!(aws[0]["secret"], secret);
    assert_eq!(aws[0]["line"], 1);
    let slack = by_rule(&found, "slack.webhook-url");
    assert_eq!(slack.len(), 1, "{output}");
    assert_eq!(slack[0]["encoding"], "json");
    assert_eq!(slack[0]["line"], 2);
    assert!(
        slack[0]["secret"].as_str().unwrap().ends_with(hook_path),
        "{output}"
    );
    let (_, _, output) = scan(dir.path(), &[]);
    assert!(!output.contains(&escaped[4..]), "{output}");
    assert!(!output.contains(&secret[4..]), "{output}");
}

#[test]
fn rules_list_names_each_rules_checksum() {
    let o = keysentry().args(["rules", "list"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    let out = String::from_utf8_lossy(&o.stdout);
    let column = |id: &str| -> String {
        let line = out
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .unwrap_or_else(|| panic!("{id} not listed:\n{out}"));
        line.split_whitespace().nth(2).unwrap().to_string()
    };
    assert_eq!(column("github.personal-access-token"), "github-crc32");
    assert_eq!(column("npm.access-token"), "npm-crc32");
    assert_eq!(column("bitcoin.wif-private-key"), "base58check");
    assert_eq!(column("bitcoin.extended-private-key"), "base58check");
    assert_eq!(column("bip39.mnemonic"), "bip39");
    assert_eq!(column("tatum.api-key"), "-");
}
