//! The GitHub REST calls the webhook needs, through octocrab.
//!
//! Authentication is a token from `github.token_env`, or a GitHub App (its id
//! and private key sign a JWT, exchanged for a token per installation, minted
//! and refreshed by octocrab). octocrab's own retries are off: a rate limit or an outage
//! becomes an [`ApiError`] saying how long to wait, and the delivery stays
//! pending in the store until then, across restarts.

use crate::config::GitHubConfig;
use crate::scan::Secret;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use octocrab::service::middleware::retry::RetryConfig;
use octocrab::Octocrab;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// Waiting longer than this for a rate limit is capped; the next attempt
/// learns the new reset time.
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(3600);
/// Commits per page of a compare (GitHub's most for `per_page`).
const COMPARE_COMMITS_PAGE: usize = 100;
/// Files of a commit per page of `GET /repos/{r}/commits/{sha}` (GitHub's most).
const FILES_PAGE: usize = 300;
/// Files of a commit GitHub lists at all, over every page.
const COMMIT_FILES_MAX: usize = 3000;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("github.api_url `{url}` is not a valid URL; use e.g. {DEFAULT_API_URL}")]
    BadUrl { url: String },
    #[error("cannot read the GitHub App private key {path}: {source}; check github.app.private_key_path")]
    AppKey {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the GitHub App private key {path} is not an RSA PEM key: {message}; download a new private key from the App's settings")]
    AppKeyFormat { path: PathBuf, message: String },
    #[error("cannot build the GitHub client: {0}")]
    Build(String),
    #[error("{what}: the delivery names no installation, but github.app needs one to get a token; send the webhook from the GitHub App, or set github.token_env")]
    NoInstallation { what: String },
    #[error("{what}: GitHub rate limit reached; retrying in {}s", .wait.as_secs())]
    RateLimited { what: String, wait: Duration },
    #[error("{what}: GitHub answered {status}; retrying with backoff")]
    Server { what: String, status: u16 },
    #[error("{what}: GitHub answered 401 ({message}); check the token in github.token_env or the App's private key; retrying with backoff")]
    Unauthorized { what: String, message: String },
    #[error("{what}: cannot reach GitHub: {message}; retrying with backoff")]
    Transport { what: String, message: String },
    #[error("{what}: GitHub answered {status}: {message}")]
    Refused {
        what: String,
        status: u16,
        message: String,
    },
    #[error("{what}: unexpected response from GitHub: {message}; retrying with backoff")]
    Decode { what: String, message: String },
    /// A name from a payload or an answer that is unfit for an API path;
    /// never retried, and never sent.
    #[error("{what}: `{field}` {problem}; nothing was requested with it")]
    Invalid {
        what: String,
        field: &'static str,
        problem: &'static str,
    },
}

impl ApiError {
    /// Whether trying again later can succeed: rate limits, outages, network
    /// trouble, a garbled answer (a proxy's error page) and credentials an
    /// operator may fix. A 404 or 422 cannot.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ApiError::RateLimited { .. }
                | ApiError::Server { .. }
                | ApiError::Unauthorized { .. }
                | ApiError::Transport { .. }
                | ApiError::Decode { .. }
        )
    }

    /// The wait GitHub asked for, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ApiError::RateLimited { wait, .. } => Some(*wait),
            _ => None,
        }
    }
}

/// Authenticated access to GitHub: one client, or one per App installation.
pub struct GitHubApi {
    base: Octocrab,
    app: bool,
    installations: Mutex<HashMap<u64, Arc<Octocrab>>>,
}

impl GitHubApi {
    /// Builds the client from the `github` section. Must run inside a tokio
    /// runtime (octocrab spawns its connection pool there).
    pub fn from_config(config: &GitHubConfig) -> Result<GitHubApi, ApiError> {
        let url = config.api_url.as_deref().unwrap_or(DEFAULT_API_URL);
        let mut builder = Octocrab::builder()
            .base_uri(url)
            .map_err(|_| ApiError::BadUrl {
                url: url.to_string(),
            })?
            .add_retry_config(RetryConfig::None)
            .set_connect_timeout(Some(Duration::from_secs(10)))
            .set_read_timeout(Some(Duration::from_secs(60)));
        let app = config.app.is_some();
        if let Some(app) = &config.app {
            let pem = std::fs::read(&app.private_key_path).map_err(|source| ApiError::AppKey {
                path: app.private_key_path.clone(),
                source,
            })?;
            builder = builder
                .app_from_rsa_pem(app.app_id.into(), pem)
                .map_err(|e| ApiError::AppKeyFormat {
                    path: app.private_key_path.clone(),
                    message: e.to_string(),
                })?;
        } else if let Some(token) = config
            .token_env
            .as_deref()
            .and_then(|name| std::env::var(name).ok())
            .filter(|t| !t.is_empty())
        {
            builder = builder.personal_token(token);
        }
        let base = builder
            .build()
            .map_err(|e| ApiError::Build(e.to_string()))?;
        Ok(GitHubApi {
            base,
            app,
            installations: Mutex::new(HashMap::new()),
        })
    }

    /// The client for calls about a delivery from `installation` (present
    /// when the webhook belongs to a GitHub App).
    pub fn client(&self, installation: Option<u64>) -> Result<RepoClient, ApiError> {
        if !self.app {
            return Ok(RepoClient {
                crab: Arc::new(self.base.clone()),
            });
        }
        let id = installation.ok_or_else(|| ApiError::NoInstallation {
            what: "installation token".into(),
        })?;
        let mut cache = self
            .installations
            .lock()
            .map_err(|_| ApiError::Build("installation cache poisoned".into()))?;
        if let Some(crab) = cache.get(&id) {
            return Ok(RepoClient { crab: crab.clone() });
        }
        let crab = Arc::new(
            self.base
                .installation(id.into())
                .map_err(|e| ApiError::Build(e.to_string()))?,
        );
        cache.insert(id, crab.clone());
        Ok(RepoClient { crab })
    }
}

/// The REST calls, each returning a typed response or a classified error.
#[derive(Clone)]
pub struct RepoClient {
    crab: Arc<Octocrab>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Compare {
    /// Every commit of the comparison, not only the first page's.
    #[serde(default)]
    pub total_commits: Option<usize>,
    #[serde(default)]
    pub commits: Vec<CommitData>,
    #[serde(default)]
    pub files: Vec<FileChange>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CommitData {
    pub sha: String,
    pub commit: CommitMeta,
    /// Only in `GET /commits/{sha}`.
    #[serde(default)]
    pub files: Vec<FileChange>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CommitMeta {
    #[serde(default)]
    pub author: Option<GitPerson>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct GitPerson {
    #[serde(default)]
    pub email: Option<String>,
}

/// One file of a diff. `patch` is absent when GitHub judged the diff too
/// large (or the file binary).
#[derive(Debug, Clone, Deserialize)]
pub struct FileChange {
    pub filename: String,
    pub status: String,
    #[serde(default)]
    pub additions: u64,
    #[serde(default)]
    pub patch: Option<String>,
    /// The blob after the change.
    #[serde(default)]
    pub sha: Option<String>,
}

/// A secret scanning alert with the secret GitHub found.
#[derive(Debug, Clone)]
pub struct ScanningAlert {
    pub number: u64,
    pub secret_type: String,
    pub state: String,
    pub secret: Option<Secret>,
}

/// Where GitHub saw an alert's secret.
#[derive(Debug, Clone, Default)]
pub struct AlertLocation {
    pub path: Option<String>,
    pub line: Option<u64>,
    pub commit: Option<String>,
}

impl RepoClient {
    pub async fn compare(&self, repo: &str, base: &str, head: &str) -> Result<Compare, ApiError> {
        let path = format!(
            "/repos/{repo}/compare/{}...{}",
            crate::report::uri_path(base),
            crate::report::uri_path(head)
        );
        // Commits come a page at a time (files only on the first page).
        let page_of = |n: usize| format!("{path}?per_page={COMPARE_COMMITS_PAGE}&page={n}");
        let mut cmp: Compare = self.get_json(&page_of(1)).await?;
        let total = cmp.total_commits.unwrap_or(0);
        let mut page = 1;
        while cmp.commits.len() < total {
            page += 1;
            let more: Compare = self.get_json(&page_of(page)).await?;
            if more.commits.is_empty() {
                break;
            }
            cmp.commits.extend(more.commits);
        }
        Ok(cmp)
    }

    /// A commit with every file GitHub lists for it: its files come 300 a
    /// page, up to 3,000 (GitHub lists no more; a warning says so).
    pub async fn commit(&self, repo: &str, sha: &str) -> Result<CommitData, ApiError> {
        let path = format!("/repos/{repo}/commits/{}", crate::report::uri_path(sha));
        let page_of = |n: usize| format!("{path}?per_page={FILES_PAGE}&page={n}");
        let mut data: CommitData = self.get_json(&page_of(1)).await?;
        let mut last = data.files.len();
        let mut page = 1;
        while last == FILES_PAGE && page * FILES_PAGE < COMMIT_FILES_MAX {
            page += 1;
            let more: CommitData = self.get_json(&page_of(page)).await?;
            last = more.files.len();
            data.files.extend(more.files);
        }
        if data.files.len() >= COMMIT_FILES_MAX {
            tracing::warn!(
                repo, commit = sha, files = data.files.len(),
                "GitHub lists at most 3000 files of a commit; files past them were not scanned (scan a clone with `keysentry scan --git`)"
            );
        }
        Ok(data)
    }

    /// The repository's default branch, checked as a branch name: it goes
    /// into compare URLs.
    pub async fn default_branch(&self, repo: &str) -> Result<String, ApiError> {
        let path = format!("/repos/{repo}");
        let r: RawRepo = self.get_json(&path).await?;
        if let Some(problem) = super::untrusted::branch_problem(&r.default_branch) {
            return Err(ApiError::Invalid {
                what: format!("GET {path}"),
                field: "default_branch",
                problem,
            });
        }
        Ok(r.default_branch)
    }

    pub async fn blob(&self, repo: &str, sha: &str) -> Result<Vec<u8>, ApiError> {
        let what = format!("GET /repos/{repo}/git/blobs/{sha}");
        let b: RawBlob = self
            .get_json(&format!(
                "/repos/{repo}/git/blobs/{}",
                crate::report::uri_path(sha)
            ))
            .await?;
        blob_bytes(&what, b)
    }

    pub async fn comment_on_commit(
        &self,
        repo: &str,
        sha: &str,
        body: &str,
    ) -> Result<(), ApiError> {
        let path = format!(
            "/repos/{repo}/commits/{}/comments",
            crate::report::uri_path(sha)
        );
        let what = format!("POST {path}");
        let payload = serde_json::json!({ "body": body });
        let res = self
            .crab
            ._post(path.as_str(), Some(&payload))
            .await
            .map_err(|e| request_error(&what, e))?;
        let (status, headers) = (res.status(), res.headers().clone());
        let text = self.crab.body_to_string(res).await;
        check(&what, status, &headers, text).map(drop)
    }

    pub async fn secret_scanning_alert(
        &self,
        repo: &str,
        number: u64,
    ) -> Result<ScanningAlert, ApiError> {
        let raw: RawAlert = self
            .get_json(&format!("/repos/{repo}/secret-scanning/alerts/{number}"))
            .await?;
        Ok(raw.into())
    }

    /// The first place GitHub saw the alert's secret in a commit.
    pub async fn secret_scanning_location(
        &self,
        repo: &str,
        number: u64,
    ) -> Result<AlertLocation, ApiError> {
        let list: Vec<RawLocation> = self
            .get_json(&format!(
                "/repos/{repo}/secret-scanning/alerts/{number}/locations"
            ))
            .await?;
        Ok(first_commit_location(list))
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        let what = format!("GET {path}");
        let res = self
            .crab
            ._get(path)
            .await
            .map_err(|e| request_error(&what, e))?;
        let (status, headers) = (res.status(), res.headers().clone());
        let text = self.crab.body_to_string(res).await;
        decode(&what, status, &headers, text)
    }
}

/// An answer as `T`, or why not; never quoting the answer (see `untrusted`).
pub(super) fn decode<T: DeserializeOwned>(
    what: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: octocrab::Result<String>,
) -> Result<T, ApiError> {
    let body = check(what, status, headers, body)?;
    serde_json::from_str(&body).map_err(|e| ApiError::Decode {
        what: what.to_string(),
        message: super::untrusted::json_problem(&e),
    })
}

#[derive(Deserialize)]
pub(super) struct RawRepo {
    default_branch: String,
}

#[derive(Deserialize)]
pub(super) struct RawBlob {
    content: String,
    encoding: String,
}

pub(super) fn blob_bytes(what: &str, b: RawBlob) -> Result<Vec<u8>, ApiError> {
    if b.encoding != "base64" {
        return Ok(b.content.into_bytes());
    }
    let compact: Vec<u8> = b
        .content
        .bytes()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|e| ApiError::Decode {
            what: what.to_string(),
            message: format!("blob is not valid base64: {e}"),
        })
}

#[derive(Deserialize)]
pub(super) struct RawAlert {
    number: u64,
    #[serde(default)]
    secret_type: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    secret: Option<String>,
}

impl From<RawAlert> for ScanningAlert {
    fn from(raw: RawAlert) -> ScanningAlert {
        ScanningAlert {
            number: raw.number,
            secret_type: raw.secret_type,
            state: raw.state,
            secret: raw.secret.map(Secret::new),
        }
    }
}

#[derive(Deserialize)]
pub(super) struct RawLocation {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    details: RawDetails,
}

#[derive(Deserialize, Default)]
struct RawDetails {
    path: Option<String>,
    start_line: Option<u64>,
    commit_sha: Option<String>,
}

pub(super) fn first_commit_location(list: Vec<RawLocation>) -> AlertLocation {
    list.into_iter()
        .find(|l| l.kind == "commit")
        .map(|l| AlertLocation {
            path: l.details.path,
            line: l.details.start_line,
            commit: l.details.commit_sha,
        })
        .unwrap_or_default()
}

/// An error before a response arrived: minting an installation token failed
/// with an HTTP error, or the connection did.
fn request_error(what: &str, e: octocrab::Error) -> ApiError {
    match e {
        octocrab::Error::GitHub { source, .. } => {
            let headers = source.headers.clone().unwrap_or_default();
            let message = super::untrusted::tame(&source.message);
            classify(what, source.status_code, &headers, message)
        }
        e @ (octocrab::Error::Json { .. } | octocrab::Error::Serde { .. }) => ApiError::Decode {
            what: what.to_string(),
            message: e.to_string(),
        },
        e => ApiError::Transport {
            what: what.to_string(),
            message: e.to_string(),
        },
    }
}

/// The body on 2xx, otherwise why the call failed and whether waiting helps.
fn check(
    what: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: octocrab::Result<String>,
) -> Result<String, ApiError> {
    let body = body.map_err(|e| ApiError::Transport {
        what: what.to_string(),
        message: e.to_string(),
    })?;
    if status.is_success() {
        return Ok(body);
    }
    let message = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("message")?.as_str().map(super::untrusted::tame))
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string());
    Err(classify(what, status, headers, message))
}

fn classify(what: &str, status: StatusCode, headers: &HeaderMap, message: String) -> ApiError {
    let what = what.to_string();
    let code = status.as_u16();
    if code == 403 || code == 429 {
        if let Some(wait) = rate_limit_wait(headers, SystemTime::now()) {
            return ApiError::RateLimited { what, wait };
        }
    }
    match code {
        401 => ApiError::Unauthorized { what, message },
        500..=599 => ApiError::Server { what, status: code },
        _ => ApiError::Refused {
            what,
            status: code,
            message,
        },
    }
}

/// How long GitHub asks us to wait: `retry-after` (secondary limits), else
/// until `x-ratelimit-reset` when `x-ratelimit-remaining` is 0. `None` for a
/// 403 that is a real permission error.
pub fn rate_limit_wait(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    if let Some(secs) = header("retry-after") {
        return Some(Duration::from_secs(secs).min(MAX_RATE_LIMIT_WAIT));
    }
    if header("x-ratelimit-remaining") != Some(0) {
        return None;
    }
    let now_secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let wait = header("x-ratelimit-reset")
        .map(|reset| Duration::from_secs(reset.saturating_sub(now_secs) + 1))
        .unwrap_or(Duration::from_secs(60));
    Some(wait.min(MAX_RATE_LIMIT_WAIT))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn rate_limit_waits_follow_githubs_headers() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let primary = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", "1010"),
        ]);
        assert_eq!(
            rate_limit_wait(&primary, now),
            Some(Duration::from_secs(11))
        );
        let secondary = headers(&[("retry-after", "3")]);
        assert_eq!(
            rate_limit_wait(&secondary, now),
            Some(Duration::from_secs(3))
        );
        let forbidden = headers(&[("x-ratelimit-remaining", "4999")]);
        assert_eq!(rate_limit_wait(&forbidden, now), None);
    }

    #[test]
    fn a_403_without_rate_limit_headers_is_not_retried() {
        let e = classify("GET /x", StatusCode::FORBIDDEN, &headers(&[]), "no".into());
        assert!(!e.is_transient());
        let e = classify("GET /x", StatusCode::BAD_GATEWAY, &headers(&[]), "".into());
        assert!(e.is_transient());
    }

    #[test]
    fn refs_are_escaped_for_the_path() {
        assert_eq!(
            crate::report::uri_path("feature/x y#1"),
            "feature/x%20y%231"
        );
    }
}
