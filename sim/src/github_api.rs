//! GitHub REST simulator: the endpoints keysentry's webhook calls, over
//! repositories built from commits posted to the control endpoints.
//!
//! Control (`/_sim/github/...`):
//! - `POST repos` `{"repo":"o/r","default_branch":"main"}`
//! - `POST commits` `{"repo","parent":sha|null,"branch":"main"?,"author":{"name","email"},
//!   "message","files":{"path":"content"|null},"too_large":["path"]}` → `{"sha"}`;
//!   each commit is its parent's tree plus `files` (`null` deletes); a path in
//!   `too_large` has its patch omitted, as GitHub does for large diffs
//! - `POST alerts` `{"repo","number","secret_type","secret","state"?,"path"?,"line"?,"commit"?}`
//! - `POST faults` `{"path_contains","status","count","retry_after"?,"reset_in"?}`: the next
//!   `count` matching API calls fail; 403/429 carry `x-ratelimit-remaining: 0` and
//!   `x-ratelimit-reset` (now + `reset_in`, default 1 s), plus `retry-after` when given;
//!   `DELETE faults` clears them
//! - `POST latency` `{"ms"}`: every API answer waits this long
//! - `GET calls` (method, path, auth kind, status, `at_ms`), `GET comments`
//!
//! As on GitHub, a compare lists at most 300 files and 250 commits, or
//! `per_page` commits (at most 100) `page` by page; a commit's files come
//! `per_page` (default and most 300) at a time, `page` by page, up to 3,000.

#[path = "github_diff.rs"]
mod diff;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

type Shared = Arc<Mutex<Sim>>;

#[derive(Default)]
struct Sim {
    repos: HashMap<String, Repo>,
    blobs: HashMap<String, String>,
    alerts: HashMap<(String, u64), Alert>,
    faults: Vec<Fault>,
    calls: Vec<Value>,
    comments: Vec<Value>,
    latency_ms: u64,
    tokens_minted: u64,
}

struct Repo {
    default_branch: String,
    branches: HashMap<String, String>,
    commits: HashMap<String, Commit>,
}

#[derive(Clone)]
struct Commit {
    parent: Option<String>,
    author: Value,
    message: String,
    /// path → blob sha: the whole tree at this commit.
    tree: BTreeMap<String, String>,
    too_large: HashSet<String>,
}

#[derive(Clone, Deserialize)]
struct Alert {
    repo: String,
    number: u64,
    secret_type: String,
    secret: String,
    #[serde(default = "open")]
    state: String,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    line: Option<u64>,
    #[serde(default)]
    commit: Option<String>,
}

fn open() -> String {
    "open".into()
}

#[derive(Clone, Deserialize)]
struct Fault {
    path_contains: String,
    status: u16,
    count: u32,
    #[serde(default)]
    retry_after: Option<u64>,
    #[serde(default)]
    reset_in: Option<u64>,
}

fn lock(s: &Shared) -> MutexGuard<'_, Sim> {
    // A panicked handler leaves plain data behind; keep serving it.
    s.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn router() -> Router {
    let state: Shared = Arc::default();
    let api = Router::new()
        .route("/repos/{owner}/{repo}", get(repo_info))
        .route("/repos/{owner}/{repo}/compare/{basehead}", get(compare))
        .route("/repos/{owner}/{repo}/commits/{sha}", get(commit))
        .route(
            "/repos/{owner}/{repo}/commits/{sha}/comments",
            post(comment),
        )
        .route("/repos/{owner}/{repo}/git/blobs/{sha}", get(blob))
        .route(
            "/repos/{owner}/{repo}/secret-scanning/alerts/{n}",
            get(alert),
        )
        .route(
            "/repos/{owner}/{repo}/secret-scanning/alerts/{n}/locations",
            get(alert_locations),
        )
        .route("/app/installations/{id}/access_tokens", post(access_token))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            record_and_fault,
        ));
    let control = Router::new()
        .route("/_sim/github/repos", post(add_repo))
        .route("/_sim/github/commits", post(add_commit))
        .route("/_sim/github/alerts", post(add_alert))
        .route("/_sim/github/faults", post(add_fault).delete(clear_faults))
        .route("/_sim/github/latency", post(set_latency))
        .route("/_sim/github/calls", get(calls))
        .route("/_sim/github/comments", get(comments));
    api.merge(control).with_state(state)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"})),
    )
        .into_response()
}

/// Logs every API call, then fails it if a fault matches.
async fn record_and_fault(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let auth = match req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
    {
        Some(v) if v.starts_with("Bearer ") && v.matches('.').count() == 2 => "jwt",
        Some(v) if v.starts_with("Bearer ") || v.starts_with("token ") => "token",
        Some(_) => "other",
        None => "none",
    };
    let (fault, latency) = {
        let mut sim = lock(&s);
        let fault = sim
            .faults
            .iter_mut()
            .find(|f| f.count > 0 && path.contains(&f.path_contains))
            .map(|f| {
                f.count -= 1;
                f.clone()
            });
        (fault, sim.latency_ms)
    };
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let method = req.method().to_string();
    let res = match fault {
        Some(f) => fault_response(&f),
        None => next.run(req).await,
    };
    lock(&s).calls.push(json!({
        "method": method, "path": path, "auth": auth,
        "status": res.status().as_u16(), "at_ms": now_ms(),
    }));
    res
}

fn fault_response(f: &Fault) -> Response {
    let status = StatusCode::from_u16(f.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut headers = HeaderMap::new();
    if matches!(f.status, 403 | 429) {
        let reset = now_ms() / 1000 + f.reset_in.unwrap_or(1);
        headers.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        headers.insert("x-ratelimit-reset", HeaderValue::from(reset));
        if let Some(ra) = f.retry_after {
            headers.insert("retry-after", HeaderValue::from(ra));
        }
    }
    let msg = if status.is_server_error() {
        "Server Error"
    } else {
        "API rate limit exceeded"
    };
    (status, headers, Json(json!({ "message": msg }))).into_response()
}

async fn add_repo(State(s): State<Shared>, Json(v): Json<Value>) -> Response {
    let (Some(repo), Some(branch)) = (v["repo"].as_str(), v["default_branch"].as_str()) else {
        return (StatusCode::BAD_REQUEST, "need repo and default_branch").into_response();
    };
    lock(&s).repos.insert(
        repo.to_string(),
        Repo {
            default_branch: branch.to_string(),
            branches: HashMap::new(),
            commits: HashMap::new(),
        },
    );
    StatusCode::CREATED.into_response()
}

#[derive(Deserialize)]
struct NewCommit {
    repo: String,
    #[serde(default)]
    parent: Option<String>,
    #[serde(default)]
    branch: Option<String>,
    #[serde(default)]
    author: Value,
    #[serde(default)]
    message: String,
    #[serde(default)]
    files: BTreeMap<String, Option<String>>,
    #[serde(default)]
    too_large: HashSet<String>,
}

async fn add_commit(State(s): State<Shared>, Json(c): Json<NewCommit>) -> Response {
    let mut sim = lock(&s);
    let sim = &mut *sim;
    let Some(repo) = sim.repos.get_mut(&c.repo) else {
        return not_found();
    };
    let mut tree = match &c.parent {
        Some(p) => match repo.commits.get(p) {
            Some(pc) => pc.tree.clone(),
            None => return not_found(),
        },
        None => BTreeMap::new(),
    };
    let mut h = Sha256::new();
    h.update(format!(
        "{:?}|{}|{}|{}",
        c.parent,
        c.author,
        c.message,
        repo.commits.len()
    ));
    for (path, content) in &c.files {
        h.update(format!("{path}={content:?}"));
        match content {
            Some(text) => {
                let sha = blob_sha(text);
                sim.blobs.insert(sha.clone(), text.clone());
                tree.insert(path.clone(), sha);
            }
            None => {
                tree.remove(path);
            }
        }
    }
    let sha = hex(&h.finalize())[..40].to_string();
    repo.commits.insert(
        sha.clone(),
        Commit {
            parent: c.parent,
            author: c.author,
            message: c.message,
            tree,
            too_large: c.too_large,
        },
    );
    if let Some(b) = c.branch {
        repo.branches.insert(b, sha.clone());
    }
    (StatusCode::CREATED, Json(json!({ "sha": sha }))).into_response()
}

async fn add_alert(State(s): State<Shared>, Json(a): Json<Alert>) -> StatusCode {
    lock(&s).alerts.insert((a.repo.clone(), a.number), a);
    StatusCode::CREATED
}

async fn add_fault(State(s): State<Shared>, Json(f): Json<Fault>) -> StatusCode {
    lock(&s).faults.push(f);
    StatusCode::CREATED
}

async fn clear_faults(State(s): State<Shared>) -> StatusCode {
    lock(&s).faults.clear();
    StatusCode::NO_CONTENT
}

async fn set_latency(State(s): State<Shared>, Json(v): Json<Value>) -> StatusCode {
    lock(&s).latency_ms = v["ms"].as_u64().unwrap_or(0);
    StatusCode::OK
}

async fn calls(State(s): State<Shared>) -> Json<Value> {
    Json(Value::Array(lock(&s).calls.clone()))
}

async fn comments(State(s): State<Shared>) -> Json<Value> {
    Json(Value::Array(lock(&s).comments.clone()))
}

async fn repo_info(State(s): State<Shared>, Path((o, r)): Path<(String, String)>) -> Response {
    let full = format!("{o}/{r}");
    match lock(&s).repos.get(&full) {
        Some(repo) => Json(json!({
            "full_name": full, "name": r, "private": false,
            "default_branch": repo.default_branch,
        }))
        .into_response(),
        None => not_found(),
    }
}

impl Repo {
    fn resolve(&self, r: &str) -> Option<String> {
        if self.commits.contains_key(r) {
            return Some(r.to_string());
        }
        self.branches.get(r).cloned()
    }

    /// `sha` and its ancestors, newest first.
    fn history(&self, sha: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut cur = Some(sha.to_string());
        while let Some(c) = cur {
            cur = self.commits.get(&c).and_then(|x| x.parent.clone());
            out.push(c);
        }
        out
    }
}

fn commit_json(sha: &str, c: &Commit, files: Option<Vec<Value>>) -> Value {
    let mut v = json!({
        "sha": sha,
        "commit": { "author": c.author, "committer": c.author, "message": c.message },
        "parents": c.parent.iter().map(|p| json!({ "sha": p })).collect::<Vec<_>>(),
    });
    if let Some(f) = files {
        v["files"] = Value::Array(f);
    }
    v
}

/// The file changes from tree `old` to tree `new`, GitHub-shaped.
fn file_changes(
    blobs: &HashMap<String, String>,
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
    too_large: &HashSet<String>,
) -> Vec<Value> {
    let paths: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let text = |sha: Option<&String>| sha.and_then(|s| blobs.get(s)).map_or("", |t| t.as_str());
    let mut out = Vec::new();
    for path in paths {
        let (o, n) = (old.get(path), new.get(path));
        let status = match (o, n) {
            (None, Some(_)) => "added",
            (Some(_), None) => "removed",
            (Some(a), Some(b)) if a != b => "modified",
            _ => continue,
        };
        let (patch, additions, deletions) = diff::unified(text(o), text(n));
        let mut f = json!({
            "sha": n, "filename": path, "status": status,
            "additions": additions, "deletions": deletions, "changes": additions + deletions,
        });
        if !too_large.contains(path) {
            f["patch"] = Value::String(patch);
        }
        out.push(f);
    }
    out
}

async fn compare(
    State(s): State<Shared>,
    Path((o, r, basehead)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let sim = lock(&s);
    let Some(repo) = sim.repos.get(&format!("{o}/{r}")) else {
        return not_found();
    };
    let Some((base, head)) = basehead.split_once("...") else {
        return not_found();
    };
    let (Some(base), Some(head)) = (repo.resolve(base), repo.resolve(head)) else {
        return not_found();
    };
    let base_history: HashSet<String> = repo.history(&base).into_iter().collect();
    let head_history = repo.history(&head);
    let merge_base = head_history
        .iter()
        .find(|c| base_history.contains(*c))
        .cloned();
    let mut commits: Vec<&String> = head_history
        .iter()
        .take_while(|c| Some(*c) != merge_base.as_ref())
        .collect();
    commits.reverse();
    let empty = BTreeMap::new();
    let old_tree = merge_base
        .as_ref()
        .and_then(|m| repo.commits.get(m))
        .map_or(&empty, |c| &c.tree);
    let too_large: HashSet<String> = commits
        .iter()
        .filter_map(|c| repo.commits.get(*c))
        .flat_map(|c| c.too_large.iter().cloned())
        .collect();
    let new_tree = repo.commits.get(&head).map_or(&empty, |c| &c.tree);
    let mut files = file_changes(&sim.blobs, old_tree, new_tree, &too_large);
    files.truncate(FILES_PAGE);
    // Without `per_page` GitHub lists up to 250 commits; with it, pages of
    // `per_page` (at most 100), files on the first page only.
    let paged = q.contains_key("per_page") || q.contains_key("page");
    let number = |k: &str, default: usize| q.get(k).and_then(|v| v.parse().ok()).unwrap_or(default);
    let per_page = if paged {
        number("per_page", 30).clamp(1, 100)
    } else {
        250
    };
    let page = number("page", 1).max(1);
    if page > 1 {
        files.clear();
    }
    let total = commits.len();
    let listed: Vec<Value> = commits
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .filter_map(|c| repo.commits.get(*c).map(|x| commit_json(c, x, None)))
        .collect();
    Json(json!({
        "status": if commits.is_empty() { "identical" } else { "ahead" },
        "ahead_by": total,
        "total_commits": total,
        "merge_base_commit": merge_base.map(|m| json!({ "sha": m })),
        "commits": listed,
        "files": files,
    }))
    .into_response()
}

/// Files in a compare, and in one page of a commit.
const FILES_PAGE: usize = 300;
/// Files of a commit GitHub lists at all, over every page.
const COMMIT_FILES_MAX: usize = 3000;

async fn commit(
    State(s): State<Shared>,
    Path((o, r, sha)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let sim = lock(&s);
    let Some(repo) = sim.repos.get(&format!("{o}/{r}")) else {
        return not_found();
    };
    let Some(c) = repo
        .resolve(&sha)
        .and_then(|s| repo.commits.get(&s).map(|c| (s, c)))
    else {
        return not_found();
    };
    let (sha, c) = c;
    let empty = BTreeMap::new();
    let parent_tree = c
        .parent
        .as_ref()
        .and_then(|p| repo.commits.get(p))
        .map_or(&empty, |p| &p.tree);
    let mut files = file_changes(&sim.blobs, parent_tree, &c.tree, &c.too_large);
    files.truncate(COMMIT_FILES_MAX);
    let number = |k: &str, default: usize| q.get(k).and_then(|v| v.parse().ok()).unwrap_or(default);
    let per_page = number("per_page", FILES_PAGE).clamp(1, FILES_PAGE);
    let page = number("page", 1).max(1);
    let files: Vec<Value> = files
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    Json(commit_json(&sha, c, Some(files))).into_response()
}

async fn blob(
    State(s): State<Shared>,
    Path((_o, _r, sha)): Path<(String, String, String)>,
) -> Response {
    let sim = lock(&s);
    let Some(text) = sim.blobs.get(&sha) else {
        return not_found();
    };
    let b64 = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
    // GitHub wraps base64 content at 60 columns.
    let wrapped: Vec<&str> = b64
        .as_bytes()
        .chunks(60)
        .map(|c| std::str::from_utf8(c).unwrap_or(""))
        .collect();
    Json(json!({
        "sha": sha, "size": text.len(), "encoding": "base64",
        "content": wrapped.join("\n"),
    }))
    .into_response()
}

async fn comment(
    State(s): State<Shared>,
    Path((o, r, sha)): Path<(String, String, String)>,
    Json(body): Json<Value>,
) -> Response {
    let mut sim = lock(&s);
    let id = sim.comments.len() + 1;
    let c = json!({ "id": id, "repo": format!("{o}/{r}"), "commit_id": sha, "body": body["body"] });
    sim.comments.push(c.clone());
    (StatusCode::CREATED, Json(c)).into_response()
}

async fn alert(State(s): State<Shared>, Path((o, r, n)): Path<(String, String, u64)>) -> Response {
    match lock(&s).alerts.get(&(format!("{o}/{r}"), n)) {
        Some(a) => Json(json!({
            "number": a.number, "state": a.state, "secret_type": a.secret_type,
            "secret_type_display_name": a.secret_type, "secret": a.secret,
        }))
        .into_response(),
        None => not_found(),
    }
}

async fn alert_locations(
    State(s): State<Shared>,
    Path((o, r, n)): Path<(String, String, u64)>,
) -> Response {
    match lock(&s).alerts.get(&(format!("{o}/{r}"), n)) {
        Some(a) => Json(json!([{
            "type": "commit",
            "details": { "path": a.path, "start_line": a.line, "commit_sha": a.commit },
        }]))
        .into_response(),
        None => not_found(),
    }
}

/// Mints an installation token for a request signed with an App JWT.
async fn access_token(
    State(s): State<Shared>,
    Path(id): Path<u64>,
    headers: HeaderMap,
) -> Response {
    let jwt = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t.matches('.').count() == 2);
    if !jwt {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "message": "A JSON web token could not be decoded" })),
        )
            .into_response();
    }
    let n = {
        let mut sim = lock(&s);
        sim.tokens_minted += 1;
        sim.tokens_minted
    };
    let expires = now_ms() / 1000 + 3600;
    (
        StatusCode::CREATED,
        Json(json!({
            "token": format!("ghs_sim{id}x{n}"), "expires_at": rfc3339(expires),
            "permissions": {"contents": "read", "secret_scanning_alerts": "read"},
            "repository_selection": "all",
        })),
    )
        .into_response()
}

fn blob_sha(text: &str) -> String {
    hex(&Sha256::digest(format!("blob {}\0{text}", text.len())))[..40].to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `YYYY-MM-DDTHH:MM:SSZ` for unix seconds (civil-from-days, H. Hinnant).
fn rfc3339(secs: u64) -> String {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
