//! The dashboard's actions on one incident — resolve, reopen, retry now,
//! hand over a new key — from a form (POST, then 303 back to the incident:
//! the browser's history holds no key) or from the JSON API.
//!
//! Resolve and reopen are the store's transitions `keysentry incidents
//! resolve/reopen` make; a note that holds a key is refused as there. Retry
//! ends the incident's wait and wakes the daemon's retry loop. A handed-over
//! key goes to the engine ([`crate::remediate::Engine::hand_over_key`]) and
//! nowhere else: no answer, log line or page holds it.

use super::auth;
use super::{api, html, UiState};
use crate::remediate::{process_alive, RemediateError};
use crate::scan::{Chunk, Origin, Secret};
use crate::store::TransitionError;
use axum::extract::{Path, State as Extract};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Form;
use std::collections::HashMap;
use zeroize::Zeroize;

/// Why an action was not done: the status and what to do.
struct Refusal(StatusCode, String);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The lease owner the dashboard's transitions name: no process, so a pass
/// of the daemon's own engine on the incident makes them wait (the pass
/// writes the whole row back when it ends).
const NO_PROCESS: u32 = 0;

/// How long a transition waits for a pass of this daemon's own engine on
/// the incident (an alert being sent, a call in flight) to end.
const OWN_PASS_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs `transition`, again while this very process's engine holds the
/// incident: its pass ends soon, and the person clicking should not have to
/// retry by hand. Another process's lease is reported at once.
fn own_pass_done<T>(
    transition: impl Fn() -> Result<T, TransitionError>,
) -> Result<T, TransitionError> {
    let start = std::time::Instant::now();
    loop {
        match transition() {
            Err(TransitionError::Busy { pid, .. })
                if pid == i64::from(std::process::id()) && start.elapsed() < OWN_PASS_WAIT =>
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

fn check_note(state: &UiState, note: &str) -> Result<String, Refusal> {
    let bad = |m: String| Err(Refusal(StatusCode::BAD_REQUEST, m));
    let note = note.trim();
    if note.is_empty() {
        return bad("The note is empty: say what was done, e.g. \"regenerated in the Dashboard, KMS updated\".".into());
    }
    if note.len() > 4096 {
        return bad(format!(
            "The note is {} bytes; keep it under 4096.",
            note.len()
        ));
    }
    let scanner = (state.0.hooks.scanner)();
    let found = scanner.scan(&Chunk::whole(Origin::Stdin, note.as_bytes().to_vec()));
    if let Some(f) = found.first() {
        return bad(format!(
            "The note holds what looks like a {} ({}); keysentry never stores keys: write the note without it.",
            f.rule_name,
            f.secret.redacted()
        ));
    }
    Ok(note.to_string())
}

async fn perform(
    state: &UiState,
    id: i64,
    action: &str,
    fields: &mut HashMap<String, String>,
) -> Result<String, Refusal> {
    let store = state.0.store.clone();
    let transition = |e: crate::store::TransitionError| {
        use crate::store::TransitionError as T;
        let status = match e {
            T::NoIncident(_) => StatusCode::NOT_FOUND,
            T::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::CONFLICT,
        };
        Refusal(status, e.to_string())
    };
    let blocking_failed = || {
        Refusal(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the store task failed".into(),
        )
    };
    match action {
        "resolve" => {
            let note = check_note(state, fields.get("note").map_or("", String::as_str))?;
            let reason = format!("resolved by hand (dashboard): {note}");
            let row = super::blocking(move || {
                own_pass_done(|| store.resolve(id, &reason, NO_PROCESS, now_ms(), process_alive))
            })
            .await
            .ok_or_else(blocking_failed)?
            .map_err(transition)?;
            Ok(format!(
                "Incident {id} resolved: keysentry makes no more provider calls for it (state {}).",
                row.state
            ))
        }
        "reopen" => {
            let reason = match fields
                .get("note")
                .map(|n| n.trim())
                .filter(|n| !n.is_empty())
            {
                Some(n) => format!("reopened by hand (dashboard): {}", check_note(state, n)?),
                None => "reopened by hand (dashboard)".to_string(),
            };
            let done = super::blocking(move || {
                own_pass_done(|| store.reopen(id, &reason, NO_PROCESS, now_ms(), process_alive))
            })
            .await
            .ok_or_else(blocking_failed)?
            .map_err(transition)?;
            (state.0.hooks.wake)();
            Ok(if done.already_open {
                format!(
                    "Incident {id} is open already ({}); its next check is due now.",
                    done.row.state
                )
            } else {
                format!(
                    "Incident {id} reopened: {} → {}; the engine takes it up now.",
                    done.was, done.row.state
                )
            })
        }
        "retry" => {
            let due = super::blocking(move || store.due_now(id))
                .await
                .ok_or_else(blocking_failed)?
                .map_err(|e| Refusal(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            if !due {
                return Err(Refusal(
                    StatusCode::CONFLICT,
                    format!("Incident {id} does not exist or is finished (closed, not live or resolved): there is nothing to retry; reopen it to start over."),
                ));
            }
            (state.0.hooks.wake)();
            Ok(format!(
                "Incident {id} is due now: the engine takes it up on this pass."
            ))
        }
        "handover" => {
            let Some(mut given) = fields.remove("new_key") else {
                return Err(Refusal(
                    StatusCode::BAD_REQUEST,
                    "No new key was given: paste it into the New key field.".into(),
                ));
            };
            let key = given.trim().to_string();
            given.zeroize();
            if key.is_empty() || key.contains(char::is_whitespace) {
                return Err(Refusal(
                    StatusCode::BAD_REQUEST,
                    "The new key is empty or holds spaces: paste the key alone.".into(),
                ));
            }
            let secret = Secret::new(key);
            let redacted = secret.redacted();
            match (state.0.hooks.hand_over)(id, secret.clone()).await {
                Ok(o) => Ok(format!(
                    "The new key ({redacted}) went to the engine: incident {id} is now {}.",
                    o.state
                )),
                Err(e) => {
                    let status = match &e {
                        RemediateError::NoIncident(_) => StatusCode::NOT_FOUND,
                        RemediateError::NewKey(_) | RemediateError::NoHandOver { .. } => {
                            StatusCode::BAD_REQUEST
                        }
                        RemediateError::Finished { .. } | RemediateError::Busy(_) => {
                            StatusCode::CONFLICT
                        }
                        _ => StatusCode::BAD_GATEWAY,
                    };
                    // The engine's errors hold no key; this makes sure of it.
                    let why = e.to_string().replace(secret.expose(), &redacted);
                    Err(Refusal(status, format!("The new key was not taken: {why}")))
                }
            }
        }
        _ => Err(Refusal(
            StatusCode::NOT_FOUND,
            "No such action: resolve, reopen, retry or handover.".into(),
        )),
    }
}

fn parse_id(id: &str) -> Result<i64, Refusal> {
    id.parse::<i64>()
        .map_err(|_| Refusal(StatusCode::NOT_FOUND, "Incident ids are numbers.".into()))
}

pub(super) async fn form_action(
    Extract(state): Extract<UiState>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Form(mut fields): Form<HashMap<String, String>>,
) -> Response {
    let who = match auth::require(&state, &headers, false) {
        Ok(w) => w,
        Err(r) => {
            wipe(&mut fields);
            return *r;
        }
    };
    if !who.csrf_ok(fields.get("csrf").map(String::as_str)) {
        wipe(&mut fields);
        return html::forbidden();
    }
    let result = match parse_id(&id) {
        Ok(id) => perform(&state, id, &action, &mut fields)
            .await
            .map(|m| (id, m)),
        Err(e) => Err(e),
    };
    wipe(&mut fields);
    match result {
        Ok((id, message)) => {
            state.0.sessions.set_flash(&who, message);
            let mut resp = (StatusCode::SEE_OTHER, "").into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("/ui/incidents/{id}")) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            resp
        }
        Err(Refusal(status, why)) => {
            let back = id
                .parse::<i64>()
                .ok()
                .map(|id| format!("/ui/incidents/{id}"));
            html::error(status, who.csrf(), "Not done", &why, back.as_deref())
        }
    }
}

/// A form's fields, a pasted key among them, are wiped once read.
fn wipe(fields: &mut HashMap<String, String>) {
    for v in fields.values_mut() {
        v.zeroize();
    }
}

pub(super) async fn api_action(
    Extract(state): Extract<UiState>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    // The body's text is never quoted back: it may hold the new key.
    let parsed = if body.iter().all(u8::is_ascii_whitespace) {
        Ok(HashMap::new())
    } else {
        serde_json::from_slice::<HashMap<String, String>>(&body)
    };
    let Ok(mut fields) = parsed else {
        return api::error(
            StatusCode::BAD_REQUEST,
            "the body must be a JSON object of strings, e.g. {\"note\": \"...\"}",
        );
    };
    let who = match auth::require(&state, &headers, true) {
        Ok(w) => w,
        Err(r) => {
            wipe(&mut fields);
            return *r;
        }
    };
    let csrf = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
    if !who.csrf_ok(csrf) {
        wipe(&mut fields);
        return api::error(
            StatusCode::FORBIDDEN,
            "a cookie session must send its CSRF token in X-CSRF-Token",
        );
    }
    let result = match parse_id(&id) {
        Ok(n) => perform(&state, n, &action, &mut fields)
            .await
            .map(|m| (n, m)),
        Err(e) => Err(e),
    };
    wipe(&mut fields);
    match result {
        Ok((n, message)) => {
            let store = state.0.store.clone();
            let row = super::blocking(move || store.incident(n).ok().flatten())
                .await
                .flatten()
                .and_then(|r| serde_json::to_value(r).ok());
            api::done(&message, row)
        }
        Err(Refusal(status, why)) => api::error(status, &why),
    }
}
