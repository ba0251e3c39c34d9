//! Who is told about a finding: the first matching `owners` entry, else the
//! commit author, else `default_owner`.

use super::AlertError;
use crate::config::{Config, OwnerMatch};
use crate::scan::Finding;
use globset::{Glob, GlobMatcher};

/// The `owners` list compiled once (path globs) for many findings.
#[derive(Debug, Clone)]
pub struct OwnerResolver {
    entries: Vec<Entry>,
    default_owner: Option<String>,
}

#[derive(Debug, Clone)]
struct Entry {
    provider: Option<String>,
    rule: Option<String>,
    path: Option<GlobMatcher>,
    repo: Option<String>,
    email: String,
}

impl OwnerResolver {
    /// Fails on an `owners[i].match.path` that is not a valid glob, naming it.
    pub fn new(config: &Config) -> Result<OwnerResolver, AlertError> {
        let entries = config
            .owners
            .iter()
            .enumerate()
            .map(|(i, owner)| {
                Ok(Entry {
                    path: compile_path(i, &owner.matcher)?,
                    provider: owner.matcher.provider.clone(),
                    rule: owner.matcher.rule.clone(),
                    repo: owner.matcher.repo.clone(),
                    email: owner.email.clone(),
                })
            })
            .collect::<Result<_, AlertError>>()?;
        Ok(OwnerResolver {
            entries,
            default_owner: config.default_owner.clone(),
        })
    }

    pub fn resolve(&self, finding: &Finding) -> Option<String> {
        self.entries
            .iter()
            .find(|e| e.matches(finding))
            .map(|e| e.email.clone())
            .or_else(|| finding.origin.author_email().map(str::to_string))
            .or_else(|| self.default_owner.clone())
    }
}

impl Entry {
    /// Every field the entry gives must match; an entry that gives none
    /// matches everything (a catch-all that wins over commit authors).
    fn matches(&self, f: &Finding) -> bool {
        let origin = &f.origin;
        self.provider.as_deref().map_or(true, |p| p == &*f.provider)
            && self.rule.as_deref().map_or(true, |r| r == &*f.rule_id)
            && self
                .path
                .as_ref()
                .map_or(true, |g| g.is_match(origin.path()))
            && self
                .repo
                .as_deref()
                .map_or(true, |r| origin.repo() == Some(r))
    }
}

fn compile_path(index: usize, m: &OwnerMatch) -> Result<Option<GlobMatcher>, AlertError> {
    m.path
        .as_deref()
        .map(|glob| {
            Glob::new(glob)
                .map(|g| g.compile_matcher())
                .map_err(|e| AlertError::OwnerGlob {
                    index,
                    glob: glob.to_string(),
                    reason: e.kind().to_string(),
                })
        })
        .transpose()
}

/// Every invalid `owners[i].match.path` glob.
pub(crate) fn problems(config: &Config) -> Vec<AlertError> {
    config
        .owners
        .iter()
        .enumerate()
        .filter_map(|(i, o)| compile_path(i, &o.matcher).err())
        .collect()
}

/// The owner of a finding: the first matching `owners` entry, else the commit
/// author, else `default_owner`. An entry whose path glob is invalid never
/// matches; [`OwnerResolver::new`] (called by `Alerter::from_config`) reports it.
/// Callers with many findings should build one [`OwnerResolver`].
pub fn resolve_owner(config: &Config, finding: &Finding) -> Option<String> {
    let resolver = OwnerResolver::new(config).unwrap_or_else(|_| {
        // Keep the valid entries, in order, so one typo does not send every
        // alert to the default owner.
        let mut valid = config.clone();
        valid.owners.retain(|o| compile_path(0, &o.matcher).is_ok());
        OwnerResolver::new(&valid).unwrap_or(OwnerResolver {
            entries: Vec::new(),
            default_owner: config.default_owner.clone(),
        })
    });
    resolver.resolve(finding)
}
