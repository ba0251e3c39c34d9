//! A GitHub issue in a configured repository (octocrab), labelled `security`
//! and `keysentry`. The API base URL is configurable for GitHub Enterprise
//! and for tests.

use super::webhook::{error_chain, host_port, parse_http_url, snippet};
use super::{render, Alert, AlertError, EnvLookup};
use octocrab::service::middleware::retry::RetryConfig;
use octocrab::Octocrab;
use serde::Serialize;
use std::time::Duration;

pub(crate) const DEFAULT_API_URL: &str = "https://api.github.com";
const DEFAULT_TOKEN_ENV: &str = "GITHUB_TOKEN";
pub(crate) const LABELS: [&str; 2] = ["security", "keysentry"];

pub(crate) struct GithubIssue {
    api_url: reqwest::Url,
    owner: String,
    name: String,
    token: String,
    /// The variable the token came from, named when GitHub refuses it.
    token_source: String,
    at: String,
    timeout: Duration,
}

#[derive(Serialize)]
struct NewIssue<'a> {
    title: String,
    body: String,
    labels: &'a [&'a str],
}

pub(crate) struct Settings<'a> {
    pub repo: &'a str,
    pub api_url: Option<&'a str>,
    pub token_env: Option<&'a str>,
    /// The top-level `github:` section's, used when the channel gives none.
    pub github_api_url: Option<&'a str>,
    pub github_token_env: Option<&'a str>,
    pub timeout: Duration,
    pub allow_insecure_http: bool,
}

impl GithubIssue {
    pub(crate) fn new(
        at: &str,
        s: Settings<'_>,
        env: &EnvLookup<'_>,
    ) -> Result<GithubIssue, AlertError> {
        let (owner, name) = split_repo(s.repo).ok_or_else(|| AlertError::Invalid {
            at: format!("{at}.repo"),
            reason: format!("{:?} is not `owner/name`; write e.g. acme/security", s.repo),
        })?;
        let api_url = s.api_url.or(s.github_api_url).unwrap_or(DEFAULT_API_URL);
        let api_url = parse_http_url(api_url).map_err(|reason| AlertError::Invalid {
            at: format!("{at}.api_url"),
            reason,
        })?;
        // The GitHub token goes with every call.
        if let Some(reason) = crate::urls::insecure_reason(api_url.as_str(), s.allow_insecure_http)
        {
            return Err(AlertError::Invalid {
                at: format!("{at}.api_url"),
                reason,
            });
        }
        let (var, var_at) = match (s.token_env, s.github_token_env) {
            (Some(v), _) => (v, format!("{at}.token_env")),
            (None, Some(v)) => (v, "github.token_env".to_string()),
            (None, None) => (DEFAULT_TOKEN_ENV, format!("{at}.token_env (default)")),
        };
        let token =
            env(var)
                .filter(|t| !t.trim().is_empty())
                .ok_or_else(|| AlertError::MissingEnv {
                    at: var_at.clone(),
                    var: var.to_string(),
                })?;
        Ok(GithubIssue {
            api_url,
            owner: owner.to_string(),
            name: name.to_string(),
            token: token.trim().to_string(),
            token_source: format!("{var} ({var_at})"),
            at: at.to_string(),
            timeout: s.timeout,
        })
    }

    pub(crate) async fn deliver(&self, alert: &Alert) -> Result<(), String> {
        let host = host_port(&self.api_url);
        // Built per delivery: octocrab's client spawns a worker on the current
        // runtime, and `Alerter::from_config` may run outside one. Alerts are
        // rare, so the cost does not matter. Retries are the engine's job.
        let client = Octocrab::builder()
            .base_uri(self.api_url.as_str())
            .map_err(|e| format!("bad API URL in {}.api_url: {}", self.at, error_chain(&e)))?
            .personal_token(self.token.clone())
            .add_retry_config(RetryConfig::None)
            .set_connect_timeout(Some(self.timeout))
            .set_read_timeout(Some(self.timeout))
            .build()
            .map_err(|e| format!("cannot set up the GitHub client: {}", error_chain(&e)))?;
        let issue = NewIssue {
            title: render::headline(alert),
            body: render::markdown_body(alert),
            labels: &LABELS,
        };
        let route = format!("/repos/{}/{}/issues", self.owner, self.name);
        // The raw call, not `issues().create()`: a created issue must count
        // as delivered even when the answer does not fit octocrab's strict
        // `Issue` model (GitHub Enterprise versions differ).
        let response = client._post(route, Some(&issue)).await.map_err(|e| {
            format!(
                "cannot reach the GitHub API at {host}: {}; check {}.api_url and the network",
                error_chain(&e),
                self.at
            )
        })?;
        let status = response.status();
        let body = client.body_to_string(response).await.unwrap_or_default();
        if status.is_success() {
            return Ok(());
        }
        Err(format!(
            "GitHub ({host}) answered {status}{} creating an issue in {}/{}; {}",
            snippet(&body),
            self.owner,
            self.name,
            self.hint(status.as_u16())
        ))
    }

    fn hint(&self, status: u16) -> String {
        let repo = format!("{}/{}", self.owner, self.name);
        match status {
            401 => format!(
                "the token in {} is invalid or expired; replace it",
                self.token_source
            ),
            403 => format!(
                "the token in {} may not create issues in {repo} (needs the `issues: write` \
                 permission), or the API rate limit is exhausted",
                self.token_source
            ),
            404 => format!(
                "{repo} does not exist or the token in {} cannot see it; check {}.repo",
                self.token_source, self.at
            ),
            410 => format!("issues are disabled in {repo}; enable them or pick another repo"),
            422 => format!(
                "GitHub rejected the issue; check that the labels {LABELS:?} may be used in {repo}"
            ),
            _ => "GitHub failed; try again later".into(),
        }
    }
}

/// `owner/name`, each part made of the characters GitHub allows, so they can
/// go into a URL path unescaped.
fn split_repo(repo: &str) -> Option<(&str, &str)> {
    let (owner, name) = repo.split_once('/')?;
    let ok = |s: &str| {
        !s.is_empty()
            && s != "."
            && s != ".."
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    (ok(owner) && ok(name)).then_some((owner, name))
}

#[cfg(test)]
mod tests {
    use super::split_repo;

    #[test]
    fn repo_must_be_owner_slash_name() {
        assert_eq!(split_repo("acme/security"), Some(("acme", "security")));
        assert_eq!(split_repo("acme"), None);
        assert_eq!(split_repo("acme/sec/urity"), None);
        assert_eq!(split_repo("../x"), None);
    }
}
