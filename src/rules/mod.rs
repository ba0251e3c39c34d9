//! Rules as data: the YAML schema, loading (built-ins embedded at build time
//! plus any number of directories) and `rules check`.

mod allow;
mod gitleaks;
mod pattern;
mod schema;
mod steps;
pub mod template;

pub use allow::{Candidate as AllowCandidate, CompiledAllow};
pub use pattern::{Pattern, PatternError};
pub use schema::{
    Checksum, Find, HttpTemplate, PairSpec, QuerySignature, Revoke, RuleAllow, RuleFile, RuleSpec,
    Step, HTTP_METHODS,
};

use crate::limits;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/builtin_rules.rs"));

/// The default regex window either side of a keyword hit.
pub const DEFAULT_WINDOW: usize = 256;

/// The widest window a rule may ask for. A match lies within a window
/// either side of its keyword; streamed input (stdin, large files) is cut
/// into pieces that overlap by two windows and the keyword (and the line
/// ends the scanner widens to: `source::stdin`'s OVERLAP), so a key cut by
/// one piece's end is whole in the next.
pub const MAX_WINDOW: usize = 8192;

/// The longest keyword a rule may name (keywords are words and prefixes;
/// the overlap of streamed pieces counts one in).
pub const MAX_KEYWORD: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("cannot read rules from {path}: {source}; check that the path exists and is readable")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: malformed rule YAML: {message}; fix the YAML syntax or field names (see the rule format in README.md)")]
    Yaml {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}:{line}: malformed gitleaks TOML: {message}; fix the TOML syntax (gitleaks' config format: [[rules]] with id, regex, keywords)")]
    Toml {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: rule `{id}`: invalid pattern: {message}; fix the regex (Rust regex syntax, ASCII mode: no look-around, no backreferences, no \\p{{..}} classes)")]
    Regex {
        path: PathBuf,
        id: String,
        message: String,
    },
    #[error("{path}: rule `{id}`: {message}")]
    Invalid {
        path: PathBuf,
        id: String,
        message: String,
    },
    #[error("rules file {path} {source}")]
    Limit {
        path: PathBuf,
        source: crate::limits::LimitError,
    },
    #[error("duplicate rule id `{id}` in {second} (first defined in {first}); rule ids must be unique, rename one")]
    Duplicate {
        id: String,
        first: PathBuf,
        second: PathBuf,
    },
    #[error("no rule files (*.yaml, or gitleaks *.toml) in {0}; point --rules at a directory of rule files or at one file")]
    Empty(PathBuf),
}

/// The farthest a rule's partner may be (`pair.within`), in lines.
pub const MAX_PAIR_LINES: u32 = 200;

/// A validated, compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub spec: RuleSpec,
    /// The file the rule came from, for error messages.
    pub source: PathBuf,
    pub pattern: Pattern,
    pub window: usize,
    /// The rule's own allowlist entries, compiled.
    pub allow: Vec<CompiledAllow>,
    /// `files:`, compiled: paths whose small files the rule reads whole.
    pub files: Vec<regex::Regex>,
}

impl Rule {
    pub fn id(&self) -> &str {
        &self.spec.id
    }
}

#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    /// What loading passed over (a gitleaks field keysentry does not act
    /// on, a rule that cannot run): the CLI prints these.
    warnings: Vec<String>,
}

impl RuleSet {
    /// The rules compiled into the binary.
    pub fn builtin() -> Result<RuleSet, RuleError> {
        let mut set = RuleSet::default();
        set.extend(builtin_specs()?, true)?;
        Ok(set)
    }

    /// Built-in rules plus every `*.yaml` in `dirs`.
    pub fn load(dirs: &[PathBuf]) -> Result<RuleSet, RuleError> {
        let mut set = RuleSet::default();
        let mut specs = Vec::new();
        for dir in dirs {
            specs.extend(dir_specs(dir, &mut set.warnings)?);
        }
        set.extend(builtin_specs()?, true)?;
        set.extend(specs, false)?;
        Ok(set)
    }

    /// Only the rules in `dir` (what `rules check DIR` validates).
    pub fn from_dir(dir: &Path) -> Result<RuleSet, RuleError> {
        let mut set = RuleSet::default();
        set.add_dir(dir)?;
        Ok(set)
    }

    pub fn add_dir(&mut self, dir: &Path) -> Result<(), RuleError> {
        let specs = dir_specs(dir, &mut self.warnings)?;
        self.extend(specs, false)
    }

    pub fn add_file(&mut self, path: &Path, text: &str) -> Result<(), RuleError> {
        let specs = file_specs(path, text, &mut self.warnings)?;
        self.extend(specs, false)
    }

    /// What loading passed over, one sentence each (see [`RuleSet`]).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Adds rules after checking their ids are unique. Regex compilation is
    /// most of a scan's start-up time, so rules compile in parallel (the
    /// built-in ones, `lazy`, on first use: see `Pattern`); the first error
    /// in file order is the one reported.
    fn extend(&mut self, specs: Vec<(PathBuf, RuleSpec)>, lazy: bool) -> Result<(), RuleError> {
        use rayon::prelude::*;
        let mut seen: HashMap<&str, &Path> = self
            .rules
            .iter()
            .map(|r| (r.spec.id.as_str(), r.source.as_path()))
            .collect();
        for (path, spec) in &specs {
            if let Some(first) = seen.insert(&spec.id, path) {
                return Err(RuleError::Duplicate {
                    id: crate::mask::without_key_like_runs(&spec.id),
                    first: first.to_path_buf(),
                    second: path.clone(),
                });
            }
        }
        let compiled: Vec<Result<Rule, RuleError>> = specs
            .into_par_iter()
            .map(|(path, spec)| compile(&path, spec, lazy))
            .collect();
        for rule in compiled {
            self.rules.push(rule?);
        }
        self.check_pairs()
    }

    /// Every `pair:` names a rule of the set.
    fn check_pairs(&self) -> Result<(), RuleError> {
        let shown = crate::mask::without_key_like_runs;
        for r in &self.rules {
            let Some(pair) = &r.spec.pair else { continue };
            if self.get(&pair.rule).is_none() {
                return Err(RuleError::Invalid {
                    path: r.source.clone(),
                    id: shown(&r.spec.id),
                    message: format!(
                        "pair names rule `{}`, which is not loaded; name an existing rule id (`keysentry rules list`)",
                        shown(&pair.rule)
                    ),
                });
            }
        }
        Ok(())
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.spec.id == id)
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }
}

fn builtin_specs() -> Result<Vec<(PathBuf, RuleSpec)>, RuleError> {
    let mut specs = Vec::new();
    let mut warnings = Vec::new();
    for (name, text) in BUILTIN_RULES {
        specs.extend(file_specs(Path::new(name), text, &mut warnings)?);
    }
    Ok(specs)
}

/// The rules of every `*.yaml`/`*.yml` (keysentry) and `*.toml` (gitleaks)
/// file in `dir` (or of `dir` itself if it is a file), in file name order.
fn dir_specs(
    dir: &Path,
    warnings: &mut Vec<String>,
) -> Result<Vec<(PathBuf, RuleSpec)>, RuleError> {
    let io = |source| RuleError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(dir).map_err(io)?;
    let mut files: Vec<PathBuf> = if meta.is_file() {
        vec![dir.to_path_buf()]
    } else {
        std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .is_some_and(|e| e == "yaml" || e == "yml" || e == "toml")
            })
            .collect()
    };
    if files.is_empty() {
        return Err(RuleError::Empty(dir.to_path_buf()));
    }
    files.sort();
    let mut specs = Vec::new();
    for file in files {
        let text =
            limits::read_capped(&file, limits::MAX_RULES_BYTES, "rules").map_err(|e| match e {
                limits::ReadError::Io(source) => RuleError::Io {
                    path: file.clone(),
                    source,
                },
                limits::ReadError::Limit(source) => RuleError::Limit {
                    path: file.clone(),
                    source,
                },
            })?;
        specs.extend(file_specs(&file, &text, warnings)?);
    }
    Ok(specs)
}

fn file_specs(
    path: &Path,
    text: &str,
    warnings: &mut Vec<String>,
) -> Result<Vec<(PathBuf, RuleSpec)>, RuleError> {
    limits::check_depth(text, "rules").map_err(|source| RuleError::Limit {
        path: path.to_path_buf(),
        source,
    })?;
    if gitleaks::is_gitleaks_file(path) {
        let loaded = gitleaks::parse(path, text)?;
        warnings.extend(loaded.warnings);
        return Ok(loaded
            .specs
            .into_iter()
            .map(|spec| (path.to_path_buf(), spec))
            .collect());
    }
    let file: RuleFile = serde_yaml::from_str(text).map_err(|e| RuleError::Yaml {
        path: path.to_path_buf(),
        line: e.location().map(|l| l.line()).unwrap_or(0),
        message: crate::mask::safe_message(&e.to_string()),
    })?;
    Ok(file
        .rules
        .into_iter()
        .map(|spec| (path.to_path_buf(), spec))
        .collect())
}

fn compile(path: &Path, spec: RuleSpec, lazy: bool) -> Result<Rule, RuleError> {
    // Ids and values are shown, but never a key-like word: a key pasted
    // into the wrong field of a rule must not come out in the error.
    let shown = crate::mask::without_key_like_runs;
    let invalid = |id: &str, message: String| RuleError::Invalid {
        path: path.to_path_buf(),
        id: shown(id),
        message: shown(&message),
    };
    let id = spec.id.clone();
    let valid_id = id.split_once('.').is_some_and(|(p, n)| {
        !p.is_empty()
            && !n.is_empty()
            && id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    });
    if !valid_id {
        return Err(invalid(
            &id,
            "id must look like `<provider>.<name>` in lowercase letters, digits, `-` and `_`"
                .into(),
        ));
    }
    if !id.starts_with(&format!("{}.", spec.provider)) {
        return Err(invalid(
            &id,
            format!("id must start with its provider `{}.`", spec.provider),
        ));
    }
    if let Some(k) = spec.keywords.iter().find(|k| k.len() > MAX_KEYWORD) {
        return Err(invalid(
            &id,
            format!(
                "keyword of {} bytes is over {MAX_KEYWORD}; a keyword is a word or prefix near the key",
                k.len()
            ),
        ));
    }
    if spec.keywords.is_empty() || spec.keywords.iter().any(|k| k.trim().is_empty()) {
        return Err(invalid(
            &id,
            "needs at least one non-empty keyword for the prefilter".into(),
        ));
    }
    if let Some(e) = spec.min_entropy {
        if !(0.0..=8.0).contains(&e) {
            return Err(invalid(
                &id,
                format!("min_entropy {e} is outside 0..=8 bits per byte"),
            ));
        }
    }
    if let Some(Revoke::Steps(steps)) = &spec.revoke {
        steps::validate_steps(steps).map_err(|m| invalid(&id, format!("revoke: {m}")))?;
        let pair = steps.iter().any(|s| {
            let mut texts = vec![s.url.as_str()];
            texts.extend(s.body.as_deref());
            texts.extend(s.headers.values().map(String::as_str));
            texts.iter().any(|t| template::uses(t, "pair"))
        });
        if pair && spec.pair.is_none() {
            return Err(invalid(
                &id,
                "revoke uses {{pair}} but the rule has no `pair:`; add `pair: {rule: <partner rule id>, within: 5}`".into(),
            ));
        }
    }
    let revoke_call = spec.revoke.as_ref().and_then(Revoke::call);
    if spec.rotate.is_some() && spec.verify.is_none() {
        // Whether a rotate happened after a lost answer, and whether the
        // new key works, are known only through verify.
        return Err(invalid(
            &id,
            "rotate needs a verify template (to tell whether an interrupted rotate took effect); add `verify:`".into(),
        ));
    }
    if let Some(t) = &spec.rotate {
        if t.new_key_pointer.is_none() {
            return Err(invalid(
                &id,
                "rotate needs `new_key_pointer`: the JSON pointer of the new key in its answer, e.g. /token".into(),
            ));
        }
    }
    let checked = [
        ("verify", spec.verify.as_ref()),
        ("revoke", revoke_call),
        ("rotate", spec.rotate.as_ref()),
    ];
    for (what, t) in checked {
        if let Some(t) = t {
            validate_template(t).map_err(|m| invalid(&id, format!("{what}: {m}")))?;
            if uses_pair(t) && spec.pair.is_none() {
                return Err(invalid(
                    &id,
                    format!("{what} uses {{{{pair}}}} but the rule has no `pair:`; add `pair: {{rule: <partner rule id>, within: 5}}`"),
                ));
            }
        }
    }
    if let Some(pair) = &spec.pair {
        if pair.rule == id {
            return Err(invalid(
                &id,
                "pair names the rule itself; name the rule that finds the partner key".into(),
            ));
        }
        if !(1..=MAX_PAIR_LINES).contains(&pair.within) {
            return Err(invalid(
                &id,
                format!("pair.within must be 1 to {MAX_PAIR_LINES} lines"),
            ));
        }
    }
    let pattern = match lazy {
        true => Pattern::lazy(&spec.pattern, &spec.keywords),
        false => Pattern::new(&spec.pattern, &spec.keywords),
    };
    let pattern = pattern.map_err(|e| match e {
        PatternError::Syntax(message) => RuleError::Regex {
            path: path.to_path_buf(),
            id: shown(&id),
            message,
        },
        PatternError::NoSecretGroup => invalid(
            &id,
            "pattern needs a named group `(?P<secret>...)` around the key".into(),
        ),
    })?;
    let window = spec.window.unwrap_or(DEFAULT_WINDOW);
    if window > MAX_WINDOW {
        return Err(invalid(
            &id,
            format!("window {window} is over {MAX_WINDOW} bytes, the most a key may span around its keyword (streamed input overlaps by twice that); narrow the pattern"),
        ));
    }
    let allow = spec
        .allow
        .iter()
        .enumerate()
        .map(|(i, a)| CompiledAllow::new(a).map_err(|m| invalid(&id, format!("allow[{i}]: {m}"))))
        .collect::<Result<_, _>>()?;
    let files = spec
        .files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            regex::Regex::new(f).map_err(|e| {
                invalid(
                    &id,
                    format!("files[{i}]: {}", crate::mask::regex_cause(f, &e)),
                )
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Rule {
        spec,
        source: path.to_path_buf(),
        pattern,
        window,
        allow,
        files,
    })
}

/// Checks an HTTP template's shape and every placeholder in it; returns
/// what to fix.
pub fn validate_template(t: &HttpTemplate) -> Result<(), String> {
    if !HTTP_METHODS.contains(&t.method.to_ascii_uppercase().as_str()) {
        // Neither the method nor the URL is quoted: a template pasted with a
        // key in the wrong field must not print it.
        return Err(format!("method is not one of {}", HTTP_METHODS.join(", ")));
    }
    if !(t.url.starts_with("http://") || t.url.starts_with("https://") || t.url.starts_with("{{")) {
        return Err("url must start with http://, https:// or a {{setting}}".to_string());
    }
    if let Some(base) = &t.api_url {
        let ok = (base.starts_with("https://") || base.starts_with("http://"))
            && !base.contains("{{")
            && reqwest::Url::parse(base).is_ok_and(|u| u.host().is_some());
        if !ok {
            return Err(
                "api_url must be an http:// or https:// URL with a host and no placeholder".into(),
            );
        }
    }
    for status in t.live.iter().chain(&t.dead).chain(&t.ok) {
        if !(100..=599).contains(status) {
            return Err(format!("{status} is not an HTTP status code"));
        }
    }
    // The URL and body come first; the request's parts exist only for the
    // headers and the query signature, which may sign them.
    let mut fields: Vec<(String, &str, bool)> = vec![("url".into(), t.url.as_str(), false)];
    if let Some(b) = &t.body {
        fields.push(("body".into(), b, false));
    }
    for (name, value) in &t.headers {
        fields.push((format!("header {name}"), value, true));
    }
    if let Some(q) = &t.query_signature {
        let param_ok = !q.param.is_empty()
            && q.param
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !param_ok {
            return Err("query_signature.param must be a plain query parameter name".into());
        }
        fields.push(("query_signature.value".into(), &q.value, true));
    }
    for (at, text, request_vars) in fields {
        template::parse(text, request_vars).map_err(|e| format!("{at}: {e}"))?;
    }
    Ok(())
}

/// Whether a template uses `{{pair}}` anywhere.
fn uses_pair(t: &HttpTemplate) -> bool {
    let mut texts = vec![t.url.as_str()];
    texts.extend(t.body.as_deref());
    texts.extend(t.headers.values().map(String::as_str));
    texts.extend(t.query_signature.as_ref().map(|q| q.value.as_str()));
    texts.iter().any(|text| template::uses(text, "pair"))
}

#[cfg(test)]
mod window_tests {
    use super::RuleSet;
    use std::path::Path;

    fn with_window(window: usize) -> Result<(), String> {
        let yaml = format!(
            "rules:\n  - id: t.wide\n    name: wide\n    provider: t\n    keywords: [\"kw\"]\n    pattern: 'kw(?P<secret>[0-9a-f]{{32}})'\n    window: {window}\n"
        );
        let mut rules = RuleSet::default();
        rules
            .add_file(Path::new("t.yaml"), &yaml)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Streamed pieces overlap by twice the widest window: a wider one
    /// could miss a key cut at a piece's end, so it is refused with why.
    #[test]
    fn a_window_wider_than_streamed_pieces_overlap_is_refused() {
        assert!(with_window(super::MAX_WINDOW).is_ok());
        let e = with_window(super::MAX_WINDOW + 1).unwrap_err();
        assert!(e.contains("window 8193 is over 8192 bytes"), "{e}");
    }
}
