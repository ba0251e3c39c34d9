//! Property tests of what parses untrusted bytes: the config loader and its
//! checks, the rule loader, and the scanner. Random and mutated inputs,
//! with real files as seeds: no panic, and a key planted anywhere never
//! comes out in an error. `PROPTEST_CASES` sets the cases per test (32 by
//! default here); bench/fuzz.sh runs a long campaign.

use crate::scan_cli::KEY;
use keysentry::check::check_text;
use keysentry::config::{Config, Env};
use keysentry::rules::RuleSet;
use keysentry::scan::{Allowlist, Scanner};
use keysentry::source::{stdin, ScanStats};
use proptest::prelude::*;
use proptest::test_runner::Config as ProptestConfig;
use std::path::Path;

const CONFIG_SEEDS: &[&str] = &[
    include_str!("../systemd/keysentry.yaml"),
    include_str!("../docs/CONFIG.md"),
    "remediation:\n  mode: auto\n  policy: {tatum: regenerate}\nalerts:\n  - {type: slack, url_env: S}\n",
];

const RULE_SEEDS: &[&str] = &[
    include_str!("../rules/tatum.yaml"),
    include_str!("../rules/github.yaml"),
    include_str!("../rules/generic.yaml"),
    crate::scan_cli::RULES,
];

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(32)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// What a mutation does at a position.
#[derive(Debug, Clone)]
enum Edit {
    Delete(usize),
    Insert(usize, char),
    /// The key, where a value or a name would be.
    Plant(usize),
    Duplicate(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let syntax = prop::sample::select(vec![
        '[', ']', '{', '}', ':', '-', ' ', '\n', '"', '\'', '#', '&', '*', '!', '|', '>', '(',
        '\\', '\t', '\u{0}', 'é',
    ]);
    prop_oneof![
        any::<usize>().prop_map(Edit::Delete),
        (any::<usize>(), syntax).prop_map(|(p, c)| Edit::Insert(p, c)),
        any::<usize>().prop_map(Edit::Plant),
        (any::<usize>(), 1..200usize).prop_map(|(p, n)| Edit::Duplicate(p, n)),
    ]
}

/// `seed` with `edits` applied, at char boundaries; the key is planted last
/// so no later edit splits it.
fn mutate(seed: &str, edits: &[Edit]) -> String {
    let mut text: Vec<char> = seed.chars().collect();
    let mut plants = Vec::new();
    for e in edits {
        let at = |p: usize, len: usize| if len == 0 { 0 } else { p % (len + 1) };
        match *e {
            Edit::Delete(p) if !text.is_empty() => {
                let i = p % text.len();
                text.remove(i);
            }
            Edit::Delete(_) => {}
            Edit::Insert(p, c) => {
                let i = at(p, text.len());
                text.insert(i, c);
            }
            Edit::Plant(p) => plants.push(p),
            Edit::Duplicate(p, n) => {
                let i = at(p, text.len());
                let end = (i + n).min(text.len());
                let copy: Vec<char> = text[i..end].to_vec();
                text.splice(i..i, copy);
            }
        }
    }
    for p in plants {
        let i = if text.is_empty() {
            0
        } else {
            p % (text.len() + 1)
        };
        text.splice(i..i, KEY.chars());
    }
    text.into_iter().collect()
}

fn no_key(what: &str, shown: &str) -> Result<(), TestCaseError> {
    prop_assert!(!shown.contains(KEY), "{} echoed the key: {}", what, shown);
    prop_assert!(
        !shown.contains(&KEY[4..20]),
        "{} echoed part of the key: {}",
        what,
        shown
    );
    Ok(())
}

/// Every scalar leaf of `v`, by a path of indices and keys.
fn leaves(
    v: &serde_yaml::Value,
    path: &mut Vec<serde_yaml::Value>,
    out: &mut Vec<Vec<serde_yaml::Value>>,
) {
    use serde_yaml::Value;
    match v {
        Value::Mapping(m) => {
            for (k, child) in m {
                path.push(k.clone());
                leaves(child, path, out);
                path.pop();
            }
        }
        Value::Sequence(s) => {
            for (i, child) in s.iter().enumerate() {
                path.push(Value::from(i as u64));
                leaves(child, path, out);
                path.pop();
            }
        }
        _ => out.push(path.clone()),
    }
}

fn full_example() -> &'static str {
    let doc = CONFIG_SEEDS[1];
    let start = doc.find("## A full example").unwrap_or(0);
    doc[start..]
        .split("```yaml\n")
        .nth(1)
        .and_then(|b| b.split("\n```").next())
        .unwrap_or("")
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn proptest_config_loader_survives_mutated_files(
        seed in 0..CONFIG_SEEDS.len(),
        edits in prop::collection::vec(edit(), 0..12),
    ) {
        let seed = if seed == 1 { full_example() } else { CONFIG_SEEDS[seed] };
        let text = mutate(seed, &edits);
        if let Err(e) = Config::parse(Path::new("fuzz.yaml"), &text) {
            no_key("Config::parse", &e.to_string())?;
        }
        for p in check_text(&text, &[], &Env::Process).problems {
            no_key("config check", &p.to_string())?;
        }
    }

    #[test]
    fn proptest_config_values_never_echo_a_planted_key(
        leaf in any::<prop::sample::Index>(),
        shape in prop::sample::select(vec!["{k}", "{k}(", "{k} not a url", "https://{k}@[", "[{k}", "5 {k}", "{k}:99999"]),
    ) {
        let mut root: serde_yaml::Value = serde_yaml::from_str(full_example()).unwrap();
        let mut all = Vec::new();
        leaves(&root, &mut Vec::new(), &mut all);
        let path = leaf.get(&all).clone();
        let mut node = &mut root;
        for k in &path {
            node = match k {
                serde_yaml::Value::Number(n) => &mut node[n.as_u64().unwrap_or(0) as usize],
                k => &mut node[k],
            };
        }
        *node = serde_yaml::Value::from(shape.replace("{k}", KEY));
        let text = serde_yaml::to_string(&root).unwrap();
        if let Err(e) = Config::parse(Path::new("fuzz.yaml"), &text) {
            no_key("Config::parse", &e.to_string())?;
        }
        for p in check_text(&text, &[], &Env::Process).problems {
            no_key("config check", &p.to_string())?;
        }
    }

    #[test]
    fn proptest_rule_loader_survives_mutated_files(
        seed in 0..RULE_SEEDS.len(),
        edits in prop::collection::vec(edit(), 0..12),
    ) {
        let text = mutate(RULE_SEEDS[seed], &edits);
        let mut set = RuleSet::default();
        if let Err(e) = set.add_file(Path::new("fuzz.yaml"), &text) {
            no_key("rule loader", &e.to_string())?;
        }
    }

    #[test]
    fn proptest_scanner_survives_random_and_mutated_input(
        seed in prop::sample::select(vec![
            format!("TATUM_API_KEY=t-66a8f1c2e4b0a1d2c3e4f5a6-0123abcd4567ef89ab01cd23\n"),
            "token: ghp_1234567890abcdefghijklmnopqrstuvwxyzAB\n".to_string(),
            "-----BEGIN RSA PRIVATE KEY-----\nMIIB\n-----END RSA PRIVATE KEY-----\n".to_string(),
            String::new(),
        ]),
        edits in prop::collection::vec(edit(), 0..16),
        noise in prop::collection::vec(any::<u8>(), 0..512),
    ) {
        let scanner = scanner();
        let mut input = mutate(&seed, &edits).into_bytes();
        input.extend_from_slice(&noise);
        let stats = ScanStats::default();
        let findings = keysentry::scan::driver::run(scanner, &mut stdin::Stream::stdin(&input[..], &stats));
        prop_assert!(findings.is_ok(), "{:?}", findings.err());
        for f in findings.unwrap_or_default() {
            let secret = f.secret.expose();
            prop_assert!(
                input.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "a finding's key is in the input"
            );
            if secret.len() >= 8 {
                let shown = format!("{f:?}");
                prop_assert!(!shown.contains(secret), "Debug shows the key: {}", shown);
            }
        }
    }
}

/// One scanner for every case: building it compiles every rule.
fn scanner() -> &'static Scanner {
    static SCANNER: std::sync::OnceLock<Scanner> = std::sync::OnceLock::new();
    SCANNER.get_or_init(|| {
        let rules = RuleSet::builtin().expect("built-in rules load");
        Scanner::new(&rules, Allowlist::new(&[], &[]).expect("empty allowlist"))
            .expect("scanner builds")
    })
}
