//! gitleaks-format rule packs (`--rules FILE.toml`, `scan.rules`), so a team
//! keeps the custom rules it wrote for gitleaks.
//!
//! A `[[rules]]` entry becomes a keysentry rule `gitleaks.<id>`: `regex` is
//! the pattern with the `secretGroup`-th capture group (or, without one, the
//! only group, else the whole match) renamed `secret`; `keywords` feed the
//! prefilter (when a rule has none, the regex's literal prefixes do);
//! `entropy` is `min_entropy`; the rule's and the file's allowlists
//! (`regexes` with `regexTarget` secret or line, `stopwords`, `paths`,
//! `commits`, `condition`) become the rule's `allow` entries. Fields keysentry
//! does not act on are named in a warning, never ignored silently; a rule
//! that cannot run (no regex, no keyword to prefilter on) is skipped with a
//! warning that says why.

use super::schema::{RuleAllow, RuleSpec};
use super::RuleError;
use regex_syntax::ast::{self, Ast, GroupKind};
use serde::Deserialize;
use std::path::Path;

/// The subset of gitleaks' config keysentry reads; anything else lands in
/// `other` so it can be named.
#[derive(Debug, Default, Deserialize)]
struct GitleaksFile {
    /// A label only.
    #[serde(default)]
    #[allow(dead_code)]
    title: Option<String>,
    #[serde(default)]
    rules: Vec<GitleaksRule>,
    /// gitleaks < 8.21: one global `[allowlist]`.
    #[serde(default)]
    allowlist: Option<GitleaksAllow>,
    /// gitleaks ≥ 8.21: `[[allowlists]]`.
    #[serde(default)]
    allowlists: Vec<GitleaksAllow>,
    #[serde(flatten)]
    other: toml::Table,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GitleaksRule {
    #[serde(default)]
    id: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    regex: Option<String>,
    #[serde(default)]
    secret_group: Option<u32>,
    #[serde(default)]
    entropy: Option<f64>,
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    allowlist: Option<GitleaksAllow>,
    #[serde(default)]
    allowlists: Vec<GitleaksAllow>,
    /// Labels only; nothing to act on.
    #[serde(default)]
    #[allow(dead_code)]
    tags: Vec<String>,
    #[serde(flatten)]
    other: toml::Table,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GitleaksAllow {
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    regexes: Vec<String>,
    #[serde(default)]
    regex_target: Option<String>,
    #[serde(default)]
    stopwords: Vec<String>,
    #[serde(default)]
    paths: Vec<String>,
    #[serde(default)]
    commits: Vec<String>,
    #[serde(default)]
    condition: Option<String>,
    /// gitleaks ≥ 8.21 global allowlists may name the rules they apply to.
    #[serde(default)]
    target_rules: Vec<String>,
    #[serde(flatten)]
    other: toml::Table,
}

/// The rules of a gitleaks TOML file and the warnings about what in it
/// keysentry does not act on.
pub struct Loaded {
    pub specs: Vec<RuleSpec>,
    pub warnings: Vec<String>,
}

/// True for files loaded as gitleaks packs.
pub fn is_gitleaks_file(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "toml")
}

pub fn parse(path: &Path, text: &str) -> Result<Loaded, RuleError> {
    let file: GitleaksFile = toml::from_str(text).map_err(|e| RuleError::Toml {
        path: path.to_path_buf(),
        line: e
            .span()
            .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1)
            .unwrap_or(0),
        // Only the parser's own words: a quoted value may be a key.
        message: crate::mask::without_quoted_values(e.message()),
    })?;
    let mut warnings = Vec::new();
    let unsupported = |warnings: &mut Vec<String>, what: &str, table: &toml::Table| {
        for key in table.keys() {
            warnings.push(format!(
                "{}: {what}`{key}` is not supported by keysentry and has no effect",
                path.display()
            ));
        }
    };
    unsupported(&mut warnings, "", &file.other);
    let global: Vec<GitleaksAllow> = file.allowlist.into_iter().chain(file.allowlists).collect();
    for a in &global {
        unsupported(&mut warnings, "[allowlist] field ", &a.other);
    }
    let mut specs = Vec::new();
    for (i, rule) in file.rules.into_iter().enumerate() {
        let label = if rule.id.is_empty() {
            format!("rules[{i}]")
        } else {
            format!("rule `{}`", rule.id)
        };
        unsupported(&mut warnings, &format!("{label}: field "), &rule.other);
        for a in rule.allowlist.iter().chain(&rule.allowlists) {
            unsupported(
                &mut warnings,
                &format!("{label}: allowlist field "),
                &a.other,
            );
        }
        match convert(rule, &global, &mut warnings) {
            Ok(spec) => specs.push(spec),
            Err(why) => warnings.push(format!("{}: {label} skipped: {why}", path.display())),
        }
    }
    Ok(Loaded { specs, warnings })
}

fn convert(
    rule: GitleaksRule,
    global: &[GitleaksAllow],
    warnings: &mut Vec<String>,
) -> Result<RuleSpec, String> {
    if rule.id.is_empty() {
        return Err("it has no `id`".into());
    }
    let Some(regex) = rule.regex.as_deref().filter(|r| !r.is_empty()) else {
        return Err("it has no `regex` (path-only rules are not supported)".into());
    };
    let pattern = with_secret_group(regex, rule.secret_group.unwrap_or(0))?;
    let mut keywords: Vec<String> = rule
        .keywords
        .iter()
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
        .collect();
    if keywords.is_empty() {
        keywords = prefix_keywords(regex).ok_or(
            "it has no `keywords` and its regex has no literal prefix to search for; add `keywords = [...]`",
        )?;
    }
    let id = format!("gitleaks.{}", rule_name(&rule.id));
    let allow = rule
        .allowlist
        .iter()
        .chain(&rule.allowlists)
        .chain(
            global
                .iter()
                .filter(|a| a.target_rules.is_empty() || a.target_rules.contains(&rule.id)),
        )
        .map(|a| allow_entry(a, &id, warnings))
        .collect();
    Ok(RuleSpec {
        name: rule
            .description
            .clone()
            .unwrap_or_else(|| format!("gitleaks rule {}", rule.id)),
        description: rule.description,
        id,
        provider: "gitleaks".into(),
        keywords,
        pattern,
        min_entropy: rule.entropy.filter(|e| *e > 0.0),
        allow,
        ..RuleSpec::default()
    })
}

fn allow_entry(a: &GitleaksAllow, id: &str, warnings: &mut Vec<String>) -> RuleAllow {
    let _ = &a.description;
    let (secrets, lines) = match a.regex_target.as_deref() {
        None | Some("secret") => (a.regexes.clone(), Vec::new()),
        Some("line") => (Vec::new(), a.regexes.clone()),
        Some(other) => {
            warnings.push(format!(
                "rule `{id}`: allowlist regexTarget `{}` is checked against the whole line",
                crate::mask::without_quoted_values(other)
            ));
            (Vec::new(), a.regexes.clone())
        }
    };
    RuleAllow {
        secrets,
        lines,
        stopwords: a.stopwords.clone(),
        paths: a.paths.clone(),
        commits: a.commits.clone(),
        all: a
            .condition
            .as_deref()
            .is_some_and(|c| c.eq_ignore_ascii_case("and")),
    }
}

/// `My_Rule ID` → `my_rule-id`: keysentry ids are lowercase letters, digits,
/// `-`, `_` and `.`.
fn rule_name(id: &str) -> String {
    id.chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '-' | '_' | '.') => c,
            _ => '-',
        })
        .collect()
}

/// Renames capture group `n` (1-based; 0 = the only group, or the whole match
/// when there is not exactly one) to `secret`.
fn with_secret_group(regex: &str, n: u32) -> Result<String, String> {
    let mut parsed = ast::parse::Parser::new()
        .parse(regex)
        .map_err(|e| format!("its regex does not parse: {}", e.kind()))?;
    let mut groups = 0u32;
    count_groups(&parsed, &mut groups);
    let target = match n {
        0 if groups == 1 => 1,
        0 => 0,
        n if n <= groups => n,
        n => return Err(format!("secretGroup {n} but the regex has {groups} groups")),
    };
    let mut seen = 0u32;
    rename(&mut parsed, target, &mut seen);
    let mut out = String::new();
    ast::print::Printer::new()
        .print(&parsed, &mut out)
        .map_err(|e| format!("cannot print the regex: {e}"))?;
    Ok(if target == 0 {
        format!("(?P<secret>{out})")
    } else {
        out
    })
}

fn count_groups(node: &Ast, n: &mut u32) {
    match node {
        Ast::Group(g) => {
            if !matches!(g.kind, GroupKind::NonCapturing(_)) {
                *n += 1;
            }
            count_groups(&g.ast, n);
        }
        Ast::Repetition(r) => count_groups(&r.ast, n),
        Ast::Alternation(a) => a.asts.iter().for_each(|x| count_groups(x, n)),
        Ast::Concat(c) => c.asts.iter().for_each(|x| count_groups(x, n)),
        _ => {}
    }
}

/// Walks capture groups in the order their `(` opens (their index), names
/// the `target`-th one `secret`, and renames any other group already called
/// `secret` so the name stays unique.
fn rename(node: &mut Ast, target: u32, seen: &mut u32) {
    match node {
        Ast::Group(g) => {
            if !matches!(g.kind, GroupKind::NonCapturing(_)) {
                *seen += 1;
                let new_name = if *seen == target {
                    Some("secret")
                } else if matches!(&g.kind, GroupKind::CaptureName { name, .. } if name.name == "secret")
                {
                    Some("gitleaks_secret")
                } else {
                    None
                };
                if let Some(new_name) = new_name {
                    g.kind = GroupKind::CaptureName {
                        starts_with_p: true,
                        name: ast::CaptureName {
                            span: g.span,
                            name: new_name.into(),
                            index: *seen,
                        },
                    };
                }
            }
            rename(&mut g.ast, target, seen);
        }
        Ast::Repetition(r) => rename(&mut r.ast, target, seen),
        Ast::Alternation(a) => a.asts.iter_mut().for_each(|x| rename(x, target, seen)),
        Ast::Concat(c) => c.asts.iter_mut().for_each(|x| rename(x, target, seen)),
        _ => {}
    }
}

/// Keywords from the regex's literal prefixes when the rule gives none: every
/// match must start with one of them, and each must be at least 3 bytes so
/// the prefilter stays selective.
fn prefix_keywords(regex: &str) -> Option<Vec<String>> {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    let hir = regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .build()
        .parse(regex)
        .ok()?;
    let seq = Extractor::new()
        .kind(ExtractKind::Prefix)
        .limit_class(4)
        .limit_total(64)
        .extract(&hir);
    let lits = seq.literals()?;
    let mut words: Vec<String> = Vec::new();
    for lit in lits {
        let word = std::str::from_utf8(lit.as_bytes())
            .ok()?
            .to_ascii_lowercase();
        if word.len() < 3 {
            return None;
        }
        if !words.contains(&word) {
            words.push(word);
        }
    }
    (!words.is_empty()).then_some(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_group_is_renamed_by_index() {
        let p = with_secret_group(r"(key|token)\s*=\s*([a-z0-9]{32})", 2).unwrap();
        assert_eq!(p, r"(key|token)\s*=\s*(?P<secret>[a-z0-9]{32})");
        let only = with_secret_group(r"acme_(?:live|test)_([A-Z0-9]{20})", 0).unwrap();
        assert_eq!(only, r"acme_(?:live|test)_(?P<secret>[A-Z0-9]{20})");
        let whole = with_secret_group(r"acme_[A-Z0-9]{20}", 0).unwrap();
        assert_eq!(whole, r"(?P<secret>acme_[A-Z0-9]{20})");
        assert!(with_secret_group(r"(a)", 3).is_err());
    }

    #[test]
    fn keywords_come_from_literal_prefixes() {
        assert_eq!(
            prefix_keywords(r"(?:acme_live|acme_test)_[A-Z0-9]{20}"),
            Some(vec!["acme_live_".to_string(), "acme_test_".to_string()])
        );
        assert_eq!(prefix_keywords(r"[a-z0-9]{32}"), None);
    }

    #[test]
    fn ids_become_keysentry_ids() {
        assert_eq!(rule_name("Acme API_key v2"), "acme-api_key-v2");
    }
}
