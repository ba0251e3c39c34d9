//! Router-level tests of the dashboard (`oneshot`, no socket): sign-in,
//! sessions, CSRF, headers, every action, and the no-key rule.

use super::*;
use crate::metrics::Metrics;
use crate::remediate::IncidentOutcome;
use crate::rules::RuleSet;
use crate::scan::{Allowlist, Fingerprint};
use crate::store::{LocationRow, NewIncident, Stage, State};
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use tower::ServiceExt;

const TOKEN: &str = "test-token-0123456789abcdef";

/// A Tatum-shaped key (the built-in rule matches it), distinct per seed.
fn key(seed: &str) -> String {
    let hex = Fingerprint::of(seed.as_bytes()).as_str().to_string();
    format!("t-{}-{}", &hex[..24], &hex[24..48])
}

struct Ui {
    app: Router,
    store: Arc<Store>,
    /// Keys the hand-over hook was given.
    handed: Arc<Mutex<Vec<String>>>,
    wakes: Arc<AtomicUsize>,
}

fn ui_with(settings: UiSettings) -> Ui {
    let store = Arc::new(Store::in_memory().unwrap());
    let rules = RuleSet::load(&[]).unwrap();
    let scanner = Arc::new(Scanner::new(&rules, Allowlist::new(&[], &[]).unwrap()).unwrap());
    let handed = Arc::new(Mutex::new(Vec::new()));
    let wakes = Arc::new(AtomicUsize::new(0));
    let (h, w, s) = (handed.clone(), wakes.clone(), store.clone());
    let hooks = Hooks {
        scanner: Arc::new(move || scanner.clone()),
        // The engine's part is the daemon test's; this one records what it
        // was given and moves the incident as a finished hand-over does.
        hand_over: Arc::new(move |id, key: Secret| {
            h.lock().unwrap().push(key.expose().to_string());
            let store = s.clone();
            Box::pin(async move {
                let mut row = store.incident(id)?.ok_or(RemediateError::NoIncident(id))?;
                if key.expose().ends_with("bad") {
                    return Err(RemediateError::NewKey(format!(
                        "Tatum answers 401 for {}: not a live key",
                        key.expose()
                    )));
                }
                row.state = State::Closed;
                row.stage = Stage::Closed;
                store.save_incident(&row)?;
                Ok(IncidentOutcome {
                    incident_id: id,
                    fingerprint: row.fingerprint.clone(),
                    provider: row.provider.clone(),
                    rule_id: row.rule_id.clone(),
                    redacted: row.redacted.clone(),
                    state: row.state,
                    stage: row.stage,
                    reason: None,
                    created: false,
                    actions: Vec::new(),
                    plan: Vec::new(),
                })
            })
        }),
        wake: Arc::new(move || {
            w.fetch_add(1, Ordering::SeqCst);
        }),
    };
    let app_state = AppState {
        metrics: Arc::new(Metrics::new()),
        store: Some(store.clone()),
        keys_held: None,
        webhook: false,
        components: None,
        http: None,
    };
    let app = router(UiState::new(settings, store.clone(), app_state, hooks));
    Ui {
        app,
        store,
        handed,
        wakes,
    }
}

fn ui() -> Ui {
    ui_with(UiSettings::new(TOKEN))
}

/// Plants an incident of `key` found in a log (and a GitHub commit), in
/// `state`; returns its id.
fn plant(store: &Store, key: &str, state: State) -> i64 {
    let secret = Secret::new(key);
    let loc = |source: &str, repo: Option<&str>| LocationRow {
        source: source.into(),
        path: "app/config.env".into(),
        line: 3,
        column: 1,
        commit: repo.map(|_| "0123456789abcdef0123456789abcdef01234567".into()),
        repo: repo.map(str::to_string),
        author_email: Some("dev@example.com".into()),
        rule_id: "tatum.api-key".into(),
        first_seen: String::new(),
        node: String::new(),
    };
    let new = |location| NewIncident {
        fingerprint: secret.fingerprint(),
        provider: "tatum".into(),
        rule_id: "tatum.api-key".into(),
        rule_name: "Tatum API key".into(),
        redacted: secret.redacted(),
        owner: Some("owner@example.com".into()),
        location,
    };
    let items = [new(loc("log", None)), new(loc("github", Some("acme/pay")))];
    let id = store.record_findings(&items).unwrap()[0].0;
    let mut row = store.incident(id).unwrap().unwrap();
    row.state = state;
    row.reason = Some("waiting for the owner".into());
    row.retry_at_ms = Some(4_102_444_800_000); // 2100-01-01
    store.save_incident(&row).unwrap();
    id
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

async fn send(app: &Router, req: Request<Body>) -> Answer {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 24)
        .await
        .unwrap();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

fn get(uri: &str, auth: Option<&str>) -> Request<Body> {
    let mut r = Request::get(uri);
    if let Some(a) = auth {
        r = r.header(
            if a.starts_with("ks_session") {
                "cookie"
            } else {
                "authorization"
            },
            a,
        );
    }
    r.body(Body::empty()).unwrap()
}

fn post_form(uri: &str, auth: Option<&str>, form: &str) -> Request<Body> {
    let mut r = Request::post(uri).header("content-type", "application/x-www-form-urlencoded");
    if let Some(a) = auth {
        r = r.header(
            if a.starts_with("ks_session") {
                "cookie"
            } else {
                "authorization"
            },
            a,
        );
    }
    r.body(Body::from(form.to_string())).unwrap()
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

/// Signs in; returns the `Cookie` header value and the session's CSRF token.
async fn sign_in(ui: &Ui) -> (String, String) {
    let a = send(
        &ui.app,
        post_form("/ui/login", None, &format!("token={TOKEN}")),
    )
    .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    let set = a.headers["set-cookie"].to_str().unwrap();
    let cookie = set.split(';').next().unwrap().to_string();
    let page = send(&ui.app, get("/ui/", Some(&cookie))).await;
    assert_eq!(page.status, StatusCode::OK);
    let at = page.body.find("name=\"csrf\" value=\"").unwrap() + 19;
    let csrf = page.body[at..at + 64].to_string();
    (cookie, csrf)
}

#[tokio::test]
async fn without_sign_in_pages_go_to_the_login_and_the_api_says_401() {
    let ui = ui();
    for path in [
        "/ui/",
        "/ui/incidents/1",
        "/ui/sources",
        "/ui/stats",
        "/ui/nothing",
    ] {
        let a = send(&ui.app, get(path, None)).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(a.headers["location"], "/ui/login", "{path}");
    }
    for path in [
        "/ui/api/incidents",
        "/ui/api/incidents/1",
        "/ui/api/sources",
        "/ui/api/stats",
    ] {
        let a = send(&ui.app, get(path, None)).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{path}");
        assert!(a.body.contains("Authorization: Bearer"), "{}", a.body);
    }
    let login = send(&ui.app, get("/ui/login", None)).await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(
        login.body.contains("<label for=\"token\">"),
        "{}",
        login.body
    );
    // A wrong bearer token is no better than none.
    let a = send(
        &ui.app,
        get("/ui/api/incidents", Some("Bearer not-the-token-at-all")),
    )
    .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_wrong_token_is_401_and_ten_failures_a_minute_lock_the_login() {
    let ui = ui();
    let a = send(&ui.app, post_form("/ui/login", None, "token=wrong")).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(a.body.contains("not the dashboard token"), "{}", a.body);
    assert!(a.headers.get("set-cookie").is_none());
    for _ in 1..auth::MAX_FAILURES {
        send(&ui.app, post_form("/ui/login", None, "token=wrong")).await;
    }
    // Locked now, even for the right token: guessing gets nowhere.
    let a = send(
        &ui.app,
        post_form("/ui/login", None, &format!("token={TOKEN}")),
    )
    .await;
    assert_eq!(a.status, StatusCode::TOO_MANY_REQUESTS, "{}", a.body);
    assert!(a.headers.get("set-cookie").is_none());
}

#[tokio::test]
async fn sign_in_sets_a_strict_http_only_cookie_and_sign_out_drops_the_session() {
    let ui = ui();
    let a = send(
        &ui.app,
        post_form("/ui/login", None, &format!("token={TOKEN}")),
    )
    .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(a.headers["location"], "/ui/");
    let set = a.headers["set-cookie"].to_str().unwrap();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=43200"] {
        assert!(set.contains(attr), "{attr} missing: {set}");
    }
    assert!(!set.contains("Secure"), "plain http: {set}");
    assert!(!set.contains(TOKEN), "{set}");
    let (cookie, csrf) = sign_in(&ui).await;
    assert_eq!(
        send(&ui.app, get("/ui/api/incidents", Some(&cookie)))
            .await
            .status,
        StatusCode::OK
    );
    let out = send(
        &ui.app,
        post_form("/ui/logout", Some(&cookie), &format!("csrf={csrf}")),
    )
    .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.headers["set-cookie"]
        .to_str()
        .unwrap()
        .contains("Max-Age=0"));
    let after = send(&ui.app, get("/ui/", Some(&cookie))).await;
    assert_eq!(
        after.headers["location"], "/ui/login",
        "the session is gone"
    );

    let mut secure = UiSettings::new(TOKEN);
    secure.secure_cookie = true;
    let ui = ui_with(secure);
    let a = send(
        &ui.app,
        post_form("/ui/login", None, &format!("token={TOKEN}")),
    )
    .await;
    assert!(a.headers["set-cookie"]
        .to_str()
        .unwrap()
        .ends_with("; Secure"));
}

#[tokio::test]
async fn bearer_works_on_every_path_without_csrf() {
    let ui = ui();
    let id = plant(&ui.store, &key("bearer"), State::Failed);
    for path in [
        "/ui/",
        "/ui/sources",
        "/ui/stats",
        "/ui/api/incidents",
        "/ui/api/sources",
        "/ui/api/stats",
    ] {
        assert_eq!(
            send(&ui.app, get(path, Some(&bearer()))).await.status,
            StatusCode::OK,
            "{path}"
        );
    }
    let page = send(
        &ui.app,
        get(&format!("/ui/incidents/{id}"), Some(&bearer())),
    )
    .await;
    assert_eq!(page.status, StatusCode::OK);
    let a = send(
        &ui.app,
        post_form(
            &format!("/ui/incidents/{id}/resolve"),
            Some(&bearer()),
            "note=done+by+hand",
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(
        ui.store.incident(id).unwrap().unwrap().state,
        State::Resolved
    );
}

#[tokio::test]
async fn a_cookie_post_without_the_right_csrf_token_is_403_and_changes_nothing() {
    let ui = ui();
    let id = plant(&ui.store, &key("csrf"), State::Failed);
    let (cookie, csrf) = sign_in(&ui).await;
    let uri = format!("/ui/incidents/{id}/resolve");
    for form in [
        "note=x".to_string(),
        format!("note=x&csrf={}", "0".repeat(64)),
        format!("note=x&csrf={}", &csrf[..63]),
    ] {
        let a = send(&ui.app, post_form(&uri, Some(&cookie), &form)).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN, "{form}");
        assert!(a.body.contains("CSRF"), "{}", a.body);
    }
    let api = Request::post(format!("/ui/api/incidents/{id}/resolve"))
        .header("cookie", &cookie)
        .header("content-type", "application/json")
        .body(Body::from(r#"{"note":"x"}"#))
        .unwrap();
    assert_eq!(send(&ui.app, api).await.status, StatusCode::FORBIDDEN);
    let logout = send(&ui.app, post_form("/ui/logout", Some(&cookie), "")).await;
    assert_eq!(logout.status, StatusCode::FORBIDDEN);
    assert_eq!(ui.store.incident(id).unwrap().unwrap().state, State::Failed);
    // With it, the same form goes through.
    let a = send(
        &ui.app,
        post_form(&uri, Some(&cookie), &format!("note=x&csrf={csrf}")),
    )
    .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(
        ui.store.incident(id).unwrap().unwrap().state,
        State::Resolved
    );
}

#[tokio::test]
async fn every_answer_carries_the_csp_and_the_other_headers() {
    let ui = ui();
    let id = plant(&ui.store, &key("headers"), State::Failed);
    let incident = format!("/ui/incidents/{id}");
    let mut asks = vec![
        get("/ui/login", None),
        get("/ui/", None),
        get("/ui/api/incidents", None),
        get("/ui/static/app.css", None),
        get("/ui/static/app.js", None),
        get("/ui/static/nope", None),
        get("/ui/nope", Some(&bearer())),
        get("/ui/incidents/999", Some(&bearer())),
        get("/ui/api/incidents/999", Some(&bearer())),
        get("/ui/?state=bogus", Some(&bearer())),
        post_form("/ui/login", None, "token=wrong"),
        post_form(&format!("{incident}/resolve"), Some(&bearer()), "note="),
    ];
    for path in [
        "/ui/",
        incident.as_str(),
        "/ui/sources",
        "/ui/stats",
        "/ui/api/incidents",
        "/ui/api/stats",
    ] {
        asks.push(get(path, Some(&bearer())));
    }
    for req in asks {
        let what = req.uri().to_string();
        let a = send(&ui.app, req).await;
        assert_eq!(a.headers["content-security-policy"], CSP, "{what}");
        assert_eq!(a.headers["x-content-type-options"], "nosniff", "{what}");
        assert_eq!(a.headers["referrer-policy"], "no-referrer", "{what}");
        assert_eq!(a.headers["cache-control"], "no-store", "{what}");
        // No inline script or style for the CSP to refuse.
        for banned in ["<script>", "style=\"", "onclick", "<style"] {
            assert!(!a.body.contains(banned), "{banned} in {what}");
        }
    }
}

#[tokio::test]
async fn resolve_reopen_and_retry_change_what_the_store_shows() {
    let ui = ui();
    let id = plant(&ui.store, &key("actions"), State::Failed);
    let (cookie, csrf) = sign_in(&ui).await;
    let act = |what: &str, form: String| {
        post_form(
            &format!("/ui/incidents/{id}/{what}"),
            Some(&cookie),
            &format!("csrf={csrf}&{form}"),
        )
    };

    let a = send(&ui.app, act("retry", String::new())).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(a.headers["location"], format!("/ui/incidents/{id}"));
    assert_eq!(ui.store.incident(id).unwrap().unwrap().retry_at_ms, None);
    assert_eq!(
        ui.wakes.load(Ordering::SeqCst),
        1,
        "the retry loop was woken"
    );
    let page = send(&ui.app, get(&format!("/ui/incidents/{id}"), Some(&cookie))).await;
    assert!(
        page.body.contains("is due now"),
        "the flash says what happened"
    );

    let a = send(
        &ui.app,
        act("resolve", "note=regenerated+in+the+Dashboard".into()),
    )
    .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let row = ui.store.incident(id).unwrap().unwrap();
    assert_eq!(row.state, State::Resolved);
    assert!(row.reason.unwrap().contains("regenerated in the Dashboard"));
    let page = send(&ui.app, get(&format!("/ui/incidents/{id}"), Some(&cookie))).await;
    assert!(
        page.body.contains("<span id=\"state\">resolved</span>"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("regenerated in the Dashboard"),
        "the timeline holds the note"
    );

    // Retrying a resolved incident is refused; reopening hands it back.
    let a = send(&ui.app, act("retry", String::new())).await;
    assert_eq!(a.status, StatusCode::CONFLICT);
    let a = send(&ui.app, act("reopen", "note=not+done+after+all".into())).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    let row = ui.store.incident(id).unwrap().unwrap();
    assert_eq!(row.state, State::Detected, "back where its playbook stood");
    assert!(row.reason.unwrap().contains("not done after all"));

    // The JSON API does the same, with bearer and no CSRF token.
    let api = Request::post(format!("/ui/api/incidents/{id}/resolve"))
        .header("authorization", bearer())
        .header("content-type", "application/json")
        .body(Body::from(r#"{"note":"closed from a script"}"#))
        .unwrap();
    let a = send(&ui.app, api).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(v["incident"]["state"], "resolved");
}

#[tokio::test]
async fn a_note_holding_a_key_is_refused_without_quoting_it() {
    let ui = ui();
    let id = plant(&ui.store, &key("note"), State::Failed);
    let leaked = key("pasted-into-the-note");
    let a = send(
        &ui.app,
        post_form(
            &format!("/ui/incidents/{id}/resolve"),
            Some(&bearer()),
            &format!("note=new+key+{leaked}"),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body.contains("never stores keys"), "{}", a.body);
    assert!(!a.body.contains(&leaked));
    assert_eq!(ui.store.incident(id).unwrap().unwrap().state, State::Failed);
}

#[tokio::test]
async fn a_hand_over_goes_to_the_engine_and_is_never_echoed() {
    let ui = ui();
    let id = plant(&ui.store, &key("handover"), State::WaitingManual);
    let (cookie, csrf) = sign_in(&ui).await;
    let page = send(&ui.app, get(&format!("/ui/incidents/{id}"), Some(&cookie))).await;
    assert!(page.body.contains("<form id=\"handover\""), "{}", page.body);
    assert!(page
        .body
        .contains("type=\"password\" name=\"new_key\" autocomplete=\"off\""));

    let refused = format!("{}bad", key("refused-new"));
    let a = send(
        &ui.app,
        post_form(
            &format!("/ui/incidents/{id}/handover"),
            Some(&cookie),
            &format!("csrf={csrf}&new_key={refused}"),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.body.contains("not a live key"), "{}", a.body);
    assert!(!a.body.contains(&refused), "the engine's message is masked");

    let new_key = key("the-new-one");
    let a = send(
        &ui.app,
        post_form(
            &format!("/ui/incidents/{id}/handover"),
            Some(&cookie),
            &format!("csrf={csrf}&new_key={new_key}"),
        ),
    )
    .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert_eq!(
        a.headers["location"],
        format!("/ui/incidents/{id}"),
        "no key in the URL"
    );
    assert_eq!(*ui.handed.lock().unwrap(), [refused, new_key.clone()]);
    let page = send(&ui.app, get(&format!("/ui/incidents/{id}"), Some(&cookie))).await;
    assert!(page.body.contains("<span id=\"state\">closed</span>"));
    assert!(page.body.contains("went to the engine"), "{}", page.body);
    assert!(!page.body.contains(&new_key));
    assert!(
        !page.body.contains("<form id=\"handover\""),
        "closed: no hand-over"
    );
}

#[tokio::test]
async fn list_filters_and_counts() {
    let ui = ui();
    let failed = plant(&ui.store, &key("f"), State::Failed);
    let detected = plant(&ui.store, &key("d"), State::Detected);
    let list = send(&ui.app, get("/ui/", Some(&bearer()))).await;
    let (a, b) = (
        list.body.find(&format!("data-id=\"{failed}\"")).unwrap(),
        list.body.find(&format!("data-id=\"{detected}\"")).unwrap(),
    );
    assert!(a < b, "the failed one needs a person: first");
    assert!(list.body.contains("<li data-state=\"failed\"><a href=\"/ui/?state=failed\">failed</a>: <span class=\"count\">1</span>"));
    for field in ["state", "provider", "owner", "source", "node", "sort"] {
        assert!(
            list.body.contains(&format!("<label for=\"f-{field}\">")),
            "{field}"
        );
    }
    let only = send(&ui.app, get("/ui/?state=detected", Some(&bearer()))).await;
    assert!(
        only.body.contains(&format!("data-id=\"{detected}\""))
            && !only.body.contains(&format!("data-id=\"{failed}\""))
    );
    let none = send(
        &ui.app,
        get("/ui/api/incidents?node=elsewhere", Some(&bearer())),
    )
    .await;
    let v: serde_json::Value = serde_json::from_str(&none.body).unwrap();
    assert_eq!(v["total"], 0);
    let v: serde_json::Value = serde_json::from_str(
        &send(
            &ui.app,
            get("/ui/api/incidents?source=github&sort=-age", Some(&bearer())),
        )
        .await
        .body,
    )
    .unwrap();
    assert_eq!(v["incidents"][0]["id"], failed);
    assert_eq!(v["counts"]["detected"], 1);
    let bad = send(
        &ui.app,
        get("/ui/api/incidents?state=gone", Some(&bearer())),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("valid values"), "{}", bad.body);
}

#[tokio::test]
async fn github_locations_link_to_the_commit() {
    let ui = ui();
    let id = plant(&ui.store, &key("link"), State::Failed);
    let page = send(
        &ui.app,
        get(&format!("/ui/incidents/{id}"), Some(&bearer())),
    )
    .await;
    assert!(page.body.contains("href=\"https://github.com/acme/pay/blob/0123456789abcdef0123456789abcdef01234567/app/config.env#L3\""), "{}", page.body);
}

#[tokio::test]
async fn the_incident_page_says_whether_a_new_key_is_in_escrow() {
    let ui = ui();
    let id = plant(&ui.store, &key("escrowed"), State::Failed);
    let path = format!("/ui/incidents/{id}");
    let page = send(&ui.app, get(&path, Some(&bearer()))).await;
    assert!(
        page.body.contains("No new key is in escrow"),
        "{}",
        page.body
    );
    let new_fp = crate::scan::Fingerprint::of(key("the-new-one").as_bytes());
    let armored = "-----BEGIN AGE ENCRYPTED FILE-----\nYWdl\n-----END AGE ENCRYPTED FILE-----\n";
    ui.store
        .put_escrow(
            id,
            &new_fp,
            armored,
            &["age1owner".into(), "age1service".into()],
        )
        .unwrap();
    let page = send(&ui.app, get(&path, Some(&bearer()))).await;
    assert!(page.body.contains("is sealed in escrow"), "{}", page.body);
    assert!(page.body.contains(new_fp.as_str()), "{}", page.body);
    assert!(page.body.contains("2 age recipient(s)"), "{}", page.body);
    assert!(
        page.body
            .contains(&format!("keysentry incidents new-key {id}")),
        "{}",
        page.body
    );
    // The ciphertext itself stays for `incidents new-key`.
    assert!(!page.body.contains("YWdl"), "{}", page.body);
    let api = send(
        &ui.app,
        get(&format!("/ui/api/incidents/{id}"), Some(&bearer())),
    )
    .await;
    assert!(api.body.contains(new_fp.as_str()), "{}", api.body);
    assert!(!api.body.contains("YWdl"), "{}", api.body);
}

/// The no-key rule: keys planted as incidents appear on no page, in no
/// attribute, JSON answer or error page.
#[tokio::test]
async fn no_page_or_answer_holds_a_planted_key() {
    let ui = ui();
    let keys: Vec<String> = (0..3).map(|i| key(&format!("planted-{i}"))).collect();
    let states = [State::Failed, State::WaitingManual, State::Detected];
    let ids: Vec<i64> = keys
        .iter()
        .zip(states)
        .map(|(k, s)| plant(&ui.store, k, s))
        .collect();
    let (cookie, csrf) = sign_in(&ui).await;
    let mut asks = vec![
        get("/ui/login", None),
        post_form("/ui/login", None, &format!("token={}", keys[0])),
    ];
    for auth in [bearer(), cookie.clone()] {
        for path in [
            "/ui/",
            "/ui/?sort=-age&source=log",
            "/ui/sources",
            "/ui/stats",
            "/ui/nope",
            "/ui/incidents/999",
            "/ui/api/incidents",
            "/ui/api/sources",
            "/ui/api/stats",
            "/ui/api/incidents/999",
        ] {
            asks.push(get(path, Some(&auth)));
        }
        for id in &ids {
            asks.push(get(&format!("/ui/incidents/{id}"), Some(&auth)));
            asks.push(get(&format!("/ui/api/incidents/{id}"), Some(&auth)));
        }
    }
    // Error pages of actions, a key in the note among them.
    asks.push(post_form(
        &format!("/ui/incidents/{}/resolve", ids[0]),
        Some(&cookie),
        &format!("csrf={csrf}&note={}", keys[1]),
    ));
    asks.push(post_form(
        &format!("/ui/incidents/{}/handover", ids[1]),
        Some(&cookie),
        &format!("csrf={csrf}&new_key={}bad", keys[2]),
    ));
    for req in asks {
        let what = req.uri().to_string();
        let a = send(&ui.app, req).await;
        let headers = format!("{:?}", a.headers);
        for k in &keys {
            assert!(
                !a.body.contains(k.as_str()),
                "{what} holds a key: {}",
                a.body
            );
            assert!(!headers.contains(k.as_str()), "{what}'s headers hold a key");
        }
    }
}

#[test]
fn the_token_must_be_set_and_long_enough() {
    let config = |var: &str| {
        let yaml = format!("http:\n  listen: 127.0.0.1:0\n  ui:\n    token_env: {var}\n");
        Config::parse(std::path::Path::new("k.yaml"), &yaml).unwrap()
    };
    assert!(UiSettings::from_config(&Config::default())
        .unwrap()
        .is_none());
    let e = UiSettings::from_config(&config("KEYSENTRY_UI_TEST_UNSET_VARIABLE"))
        .err()
        .unwrap();
    assert!(
        e.to_string().contains("KEYSENTRY_UI_TEST_UNSET_VARIABLE"),
        "{e}"
    );
    // PATH is set on every test machine and is rarely under 16 characters;
    // HOME=/root is.
    let home = std::env::var("HOME").unwrap_or_default();
    if !home.is_empty() && home.chars().count() < UI_TOKEN_MIN_CHARS {
        let e = UiSettings::from_config(&config("HOME")).err().unwrap();
        assert!(e.to_string().contains("at least 16"), "{e}");
        assert!(
            !e.to_string().contains(&home),
            "the value is never quoted: {e}"
        );
    }
}

#[test]
fn github_web_hosts() {
    assert_eq!(github_web(None), "https://github.com");
    assert_eq!(
        github_web(Some("https://ghe.corp/api/v3/")),
        "https://ghe.corp"
    );
}

#[tokio::test]
async fn stats_and_sources_read_without_script() {
    let ui = ui();
    let id = plant(&ui.store, &key("stats"), State::Detected);
    let mut row = ui.store.incident(id).unwrap().unwrap();
    row.verify().unwrap();
    ui.store.save_incident(&row).unwrap();
    row.contain().unwrap();
    ui.store.save_incident(&row).unwrap();
    let a = send(&ui.app, get("/ui/stats", Some(&bearer()))).await;
    assert!(
        a.body.contains("<svg id=\"chart\" role=\"img\""),
        "{}",
        a.body
    );
    assert!(a.body.contains("<table id=\"per-day\">"));
    assert!(
        a.body.contains("<td>1</td><td>1</td>"),
        "opened and contained today: {}",
        a.body
    );
    assert!(a.body.contains("Over the 1 incident(s) contained"));
    // The time to containment is charted per day too: one bar, today's.
    assert!(
        a.body.contains("<svg id=\"ttc-chart\" role=\"img\""),
        "{}",
        a.body
    );
    assert_eq!(
        a.body.matches("<rect class=\"ttc\"").count(),
        1,
        "{}",
        a.body
    );
    let v: serde_json::Value = serde_json::from_str(
        &send(&ui.app, get("/ui/api/stats", Some(&bearer())))
            .await
            .body,
    )
    .unwrap();
    assert_eq!(v["contained"], 1);
    assert_eq!(v["days"].as_array().unwrap().len(), 30);
    assert!(v["days"][29]["ttc_median_secs"].is_number(), "{v}");
    assert!(v["days"][0]["ttc_median_secs"].is_null(), "{v}");
    let a = send(&ui.app, get("/ui/sources", Some(&bearer()))).await;
    assert!(
        a.body.contains("<span id=\"health\">ok</span>"),
        "{}",
        a.body
    );
}
