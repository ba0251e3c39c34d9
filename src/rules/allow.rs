//! A rule's own allowlist entries ([`RuleAllow`]), compiled once.

use super::schema::RuleAllow;
use regex::Regex;

/// What a finding is checked against.
pub struct Candidate<'a> {
    pub secret: &'a str,
    pub line: &'a [u8],
    pub path: &'a str,
    pub commit: Option<&'a str>,
}

#[derive(Debug, Clone)]
pub struct CompiledAllow {
    secrets: Vec<Regex>,
    lines: Vec<regex::bytes::Regex>,
    stopwords: Vec<String>,
    paths: Vec<Regex>,
    commits: Vec<String>,
    all: bool,
}

impl CompiledAllow {
    /// Compiles an entry; the error names which list and which position
    /// (never the regex itself, which may hold a key).
    pub fn new(a: &RuleAllow) -> Result<CompiledAllow, String> {
        fn regexes(list: &[String], what: &str) -> Result<Vec<Regex>, String> {
            list.iter()
                .enumerate()
                .map(|(i, r)| {
                    Regex::new(r).map_err(|e| {
                        format!("allow {what}[{i}] is not a valid regex: {}", short(&e))
                    })
                })
                .collect()
        }
        let lines = a
            .lines
            .iter()
            .enumerate()
            .map(|(i, r)| {
                regex::bytes::Regex::new(r)
                    .map_err(|e| format!("allow lines[{i}] is not a valid regex: {}", short(&e)))
            })
            .collect::<Result<_, _>>()?;
        Ok(CompiledAllow {
            secrets: regexes(&a.secrets, "secrets")?,
            lines,
            stopwords: a.stopwords.iter().map(|w| w.to_ascii_lowercase()).collect(),
            paths: regexes(&a.paths, "paths")?,
            commits: a.commits.iter().map(|c| c.to_ascii_lowercase()).collect(),
            all: a.all,
        })
    }

    /// True when this entry suppresses the candidate.
    pub fn allows(&self, c: &Candidate) -> bool {
        let lower = c.secret.to_ascii_lowercase();
        let mut checks: Vec<bool> = Vec::with_capacity(5);
        if !self.secrets.is_empty() {
            checks.push(self.secrets.iter().any(|r| r.is_match(c.secret)));
        }
        if !self.lines.is_empty() {
            checks.push(self.lines.iter().any(|r| r.is_match(c.line)));
        }
        if !self.stopwords.is_empty() {
            checks.push(self.stopwords.iter().any(|w| lower.contains(w.as_str())));
        }
        if !self.paths.is_empty() {
            checks.push(self.paths.iter().any(|r| r.is_match(c.path)));
        }
        if !self.commits.is_empty() {
            let commit = c.commit.map(str::to_ascii_lowercase);
            checks.push(commit.is_some_and(|sha| {
                self.commits
                    .iter()
                    .any(|p| p.len() >= 7 && sha.starts_with(p.as_str()))
            }));
        }
        if self.all {
            !checks.is_empty() && checks.iter().all(|&b| b)
        } else {
            checks.iter().any(|&b| b)
        }
    }
}

/// The regex crate's error without the pattern it quotes.
fn short(e: &regex::Error) -> String {
    match e {
        regex::Error::CompiledTooBig(n) => format!("compiled size exceeds {n} bytes"),
        _ => e
            .to_string()
            .lines()
            .filter(|l| l.trim_start().starts_with("error:"))
            .map(|l| l.trim().to_string())
            .next()
            .unwrap_or_else(|| "syntax error".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand<'a>(secret: &'a str, line: &'a str, path: &'a str) -> Candidate<'a> {
        Candidate {
            secret,
            line: line.as_bytes(),
            path,
            commit: Some("0123456789abcdef0123456789abcdef01234567"),
        }
    }

    #[test]
    fn any_criterion_or_all_of_them() {
        let any = CompiledAllow::new(&RuleAllow {
            stopwords: vec!["Fixture".into()],
            paths: vec![r"^test/".into()],
            ..RuleAllow::default()
        })
        .unwrap();
        assert!(any.allows(&cand("acme_fixture_1", "k=acme_fixture_1", "src/a")));
        assert!(any.allows(&cand("acme_9f8e7d", "k=acme_9f8e7d", "test/a")));
        assert!(!any.allows(&cand("acme_9f8e7d", "k=acme_9f8e7d", "src/a")));
        let all = CompiledAllow::new(&RuleAllow {
            lines: vec!["sandbox".into()],
            commits: vec!["0123456".into()],
            all: true,
            ..RuleAllow::default()
        })
        .unwrap();
        assert!(all.allows(&cand("acme_9f8e7d", "sandbox k=acme_9f8e7d", "a")));
        assert!(!all.allows(&cand("acme_9f8e7d", "k=acme_9f8e7d", "a")));
    }

    #[test]
    fn a_bad_regex_error_does_not_quote_it() {
        let err = CompiledAllow::new(&RuleAllow {
            secrets: vec!["t-66a8f1c2e4b0a1d2c3e4f5a6(".into()],
            ..RuleAllow::default()
        })
        .unwrap_err();
        assert!(err.contains("secrets[0]"), "{err}");
        assert!(!err.contains("t-66a8"), "{err}");
    }
}
