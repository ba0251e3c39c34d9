//! Who may see the dashboard: the token once at `/ui/login` (then a session
//! cookie), or `Authorization: Bearer <token>` on every request; the CSRF
//! token of a session; the limit on failed sign-ins.
//!
//! Tokens are compared as SHA-256 digests with `subtle`, so neither the time
//! nor the length of a wrong guess tells anything. Sessions live in memory:
//! a restart signs everyone out, which is the safe side.

use super::{html, UiState};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

pub(super) const COOKIE: &str = "ks_session";
/// How long a session lasts after sign-in.
pub(super) const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Failed sign-ins allowed per [`FAILURE_WINDOW`]; past them every attempt
/// (a right token too) waits, so guessing gets nowhere.
pub(super) const MAX_FAILURES: usize = 10;
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Sessions held at once; the oldest goes first past it.
const MAX_SESSIONS: usize = 1024;

/// How a request proved it may see the dashboard.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Who {
    /// The token in `Authorization`: a script, which needs no CSRF token.
    Bearer,
    /// A browser session, with its id and CSRF token.
    Session { id: String, csrf: String },
}

impl Who {
    /// The CSRF token forms of this session carry (none for bearer).
    pub(super) fn csrf(&self) -> Option<&str> {
        match self {
            Who::Bearer => None,
            Who::Session { csrf, .. } => Some(csrf),
        }
    }

    /// Whether `given` is this session's CSRF token; a bearer request
    /// cannot be forged by another site, so it needs none.
    pub(super) fn csrf_ok(&self, given: Option<&str>) -> bool {
        match self {
            Who::Bearer => true,
            Who::Session { csrf, .. } => {
                given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(csrf.as_bytes())))
            }
        }
    }
}

struct Session {
    csrf: String,
    expires: Instant,
    /// What the last action did, shown once on the next page.
    flash: Option<String>,
}

#[derive(Default)]
pub(super) struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    failures: Mutex<VecDeque<Instant>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Sessions {
    fn create(&self) -> Option<(String, String)> {
        let (id, csrf) = (random_hex()?, random_hex()?);
        let mut map = lock(&self.map);
        let now = Instant::now();
        map.retain(|_, s| s.expires > now);
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        let session = Session {
            csrf: csrf.clone(),
            expires: now + SESSION_TTL,
            flash: None,
        };
        map.insert(id.clone(), session);
        Some((id, csrf))
    }

    fn find(&self, id: &str) -> Option<String> {
        let map = lock(&self.map);
        map.get(id)
            .filter(|s| s.expires > Instant::now())
            .map(|s| s.csrf.clone())
    }

    pub(super) fn drop_session(&self, id: &str) {
        lock(&self.map).remove(id);
    }

    pub(super) fn set_flash(&self, who: &Who, text: String) {
        if let Who::Session { id, .. } = who {
            if let Some(s) = lock(&self.map).get_mut(id) {
                s.flash = Some(text);
            }
        }
    }

    pub(super) fn take_flash(&self, who: &Who) -> Option<String> {
        match who {
            Who::Session { id, .. } => lock(&self.map).get_mut(id)?.flash.take(),
            Who::Bearer => None,
        }
    }

    /// Whether a sign-in may be tried now.
    fn may_try(&self) -> bool {
        let mut f = lock(&self.failures);
        let now = Instant::now();
        while f
            .front()
            .is_some_and(|t| now.duration_since(*t) > FAILURE_WINDOW)
        {
            f.pop_front();
        }
        f.len() < MAX_FAILURES
    }

    fn failed(&self) {
        lock(&self.failures).push_back(Instant::now());
    }
}

/// 32 random bytes as hex, `None` if the system has no randomness to give
/// (no session is made without it).
fn random_hex() -> Option<String> {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b).ok()?;
    Some(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn token_ok(state: &UiState, given: &str) -> bool {
    let want = Sha256::digest(state.0.settings.token.expose().as_bytes());
    let got = Sha256::digest(given.as_bytes());
    bool::from(want.ct_eq(&got))
}

/// The session id of the request's `ks_session` cookie.
fn cookie_session(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
}

/// Who sent the request, if anyone the dashboard knows.
pub(super) fn who(state: &UiState, headers: &HeaderMap) -> Option<Who> {
    if let Some(auth) = headers.get(header::AUTHORIZATION) {
        // A wrong bearer token is refused even with a good cookie: a script
        // with a stale token should hear so.
        let token = auth.to_str().ok()?.strip_prefix("Bearer ")?;
        return token_ok(state, token.trim()).then_some(Who::Bearer);
    }
    let id = cookie_session(headers)?;
    let csrf = state.0.sessions.find(id)?;
    Some(Who::Session {
        id: id.to_string(),
        csrf,
    })
}

/// The request's identity, or what a stranger gets: the login page for a
/// page, 401 JSON for the API.
pub(super) fn require(
    state: &UiState,
    headers: &HeaderMap,
    api: bool,
) -> Result<Who, Box<Response>> {
    match who(state, headers) {
        Some(w) => Ok(w),
        None if api => Err(Box::new((
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(serde_json::json!({
                "error": "sign in first: send `Authorization: Bearer <token>` (the value of http.ui.token_env) or sign in at /ui/login"
            })),
        )
            .into_response())),
        None => Err(Box::new(redirect("/ui/login"))),
    }
}

pub(super) fn redirect(to: &'static str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response()
}

pub(super) async fn login_page() -> Response {
    html::login(None).into_response()
}

#[derive(serde::Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    token: String,
}

pub(super) async fn login(State(state): State<UiState>, Form(form): Form<LoginForm>) -> Response {
    let sessions = &state.0.sessions;
    if !sessions.may_try() {
        let why = "Too many failed sign-ins: wait a minute, then try again.";
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, "60")],
            html::login(Some(why)),
        )
            .into_response();
    }
    if !token_ok(&state, form.token.trim()) {
        sessions.failed();
        tracing::warn!("dashboard: a sign-in with a wrong token");
        let why =
            "That is not the dashboard token (the value of the variable http.ui.token_env names).";
        return (StatusCode::UNAUTHORIZED, html::login(Some(why))).into_response();
    }
    let Some((id, _)) = sessions.create() else {
        let why = "The system gave no randomness for a session; try again.";
        return (StatusCode::SERVICE_UNAVAILABLE, html::login(Some(why))).into_response();
    };
    let cookie = session_cookie(&id, state.0.settings.secure_cookie);
    let mut resp = redirect("/ui/");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}

/// The `Set-Cookie` value of a session.
pub(super) fn session_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/ui; Max-Age={}{}",
        SESSION_TTL.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

#[derive(serde::Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    csrf: Option<String>,
}

pub(super) async fn logout(
    State(state): State<UiState>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Response {
    let who = match require(&state, &headers, false) {
        Ok(w) => w,
        Err(r) => return *r,
    };
    if !who.csrf_ok(form.csrf.as_deref()) {
        return html::forbidden();
    }
    if let Who::Session { id, .. } = &who {
        state.0.sessions.drop_session(id);
    }
    let mut resp = redirect("/ui/login");
    let gone = format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/ui; Max-Age=0");
    if let Ok(v) = HeaderValue::from_str(&gone) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    resp
}
