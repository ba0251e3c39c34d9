//! `rules check`: every rule's examples must match and its negative examples
//! must not, through the full scanner (prefilter, window, filters).
//!
//! It lives in `scan`, not `rules`: it drives the scanner that the rules
//! feed, so in `rules` it would make the two modules import each other.

use super::{Allowlist, Chunk, Origin, Scanner};
use crate::rules::RuleSet;

/// One example that did not behave.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckFailure {
    pub rule_id: String,
    /// `example` or `negative_example`.
    pub kind: &'static str,
    pub index: usize,
    pub message: String,
}

/// Runs all examples; an empty result means every rule behaves.
pub fn check_rules(rules: &RuleSet) -> Result<Vec<CheckFailure>, super::PrefilterError> {
    let scanner = Scanner::new(rules, Allowlist::default())?;
    let mut failures = Vec::new();
    for rule in rules.rules() {
        let id = rule.id();
        if let Some(e) = rule.pattern.compile_error() {
            failures.push(CheckFailure {
                rule_id: id.to_string(),
                kind: "pattern",
                index: 0,
                message: format!("does not compile: {e}; simplify the pattern"),
            });
            continue;
        }
        let hits = |text: &str| {
            super::driver::scan(
                &scanner,
                &Chunk::whole(Origin::Stdin, text.as_bytes().to_vec()),
            )
            .into_iter()
            .filter(|f| &*f.rule_id == id)
            .count()
        };
        if rule.spec.examples.is_empty() {
            failures.push(CheckFailure {
                rule_id: id.to_string(),
                kind: "example",
                index: 0,
                message: "has no examples; add at least one string the rule must match".into(),
            });
        }
        if rule.spec.negative_examples.is_empty() {
            failures.push(CheckFailure {
                rule_id: id.to_string(),
                kind: "negative_example",
                index: 0,
                message: "has no negative examples; add at least one near miss the rule must not match (a placeholder, a look-alike)".into(),
            });
        }
        for (i, ex) in rule.spec.examples.iter().enumerate() {
            if hits(ex) == 0 {
                failures.push(CheckFailure {
                    rule_id: id.to_string(),
                    kind: "example",
                    index: i + 1,
                    message: "does not match (check the pattern, keywords, min_entropy and the placeholder filter)".into(),
                });
            }
        }
        for (i, ex) in rule.spec.negative_examples.iter().enumerate() {
            if hits(ex) > 0 {
                failures.push(CheckFailure {
                    rule_id: id.to_string(),
                    kind: "negative_example",
                    index: i + 1,
                    message: "matches but must not".into(),
                });
            }
        }
    }
    Ok(failures)
}
