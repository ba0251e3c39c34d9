//! AWS IAM (query protocol) and the STS call a leaked key verifies with, as
//! keysentry's AWS playbook uses them, on `{sim}/_aws` (point
//! `providers.aws.api_url` there):
//!
//! - `POST /_aws/` form-encoded `Action=...&Version=2010-05-08`, SigV4
//!   (service `iam`) checked against the admin credentials a test added:
//!   `GetAccessKeyLastUsed`, `ListAccessKeys`, `ListAttachedUserPolicies`,
//!   `AttachUserPolicy`, `UpdateAccessKey`, `CreateAccessKey` (at most two
//!   keys a user: `LimitExceeded`), `DeleteAccessKey`. Answers are IAM's
//!   XML (`<ActionResponse><ActionResult>…`); errors are
//!   `<ErrorResponse><Error><Type>Sender</Type><Code>…</Code><Message>…`
//!   with IAM's statuses (NoSuchEntity 404, AccessDenied 403, Throttling
//!   400, LimitExceeded 409, signature problems 403). Like IAM's own, the
//!   messages echo the key id and user they are about (so tests see that
//!   keysentry never repeats them).
//! - `GET /_aws/?Action=GetCallerIdentity&Version=2011-06-15` signed by a
//!   user's key (the rule's verify): 200 while the key is Active, 403
//!   `InvalidClientTokenId` once it is Inactive or deleted.
//!
//! Control: `POST /_sim/aws/admin {"key_id","secret","allow"?: [actions]}`
//! (without `allow` every action; a later call replaces the grant), `POST
//! /_sim/aws/users {"user","keys":[{"id","secret","status"?}]}`, `POST
//! /_sim/aws/fault {"action","count"?,"code"?,"status"?,"hang_ms"?}` (the
//! next `count` calls of `action` answer the IAM error `code`; without one
//! the call is carried out and its answer held back `hang_ms`: lost), `GET
//! /_sim/aws/state` (`{"users": {name: {"keys": [{"id","secret","status"}],
//! "policies": [arn]}}, "calls": {action: n}}`).

use crate::verify::{form_params, sigv4_signed_by};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

const NS: &str = "https://iam.amazonaws.com/doc/2010-05-08/";

#[derive(Clone, Deserialize)]
struct Key {
    id: String,
    secret: String,
    #[serde(default = "active")]
    status: String,
}

fn active() -> String {
    "Active".into()
}

#[derive(Default)]
struct User {
    keys: Vec<Key>,
    policies: Vec<String>,
}

#[derive(Clone, Deserialize)]
struct Admin {
    key_id: String,
    secret: String,
    #[serde(default)]
    allow: Option<Vec<String>>,
}

#[derive(Clone, Deserialize)]
struct Fault {
    action: String,
    #[serde(default = "one")]
    count: u32,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    status: Option<u16>,
    #[serde(default)]
    hang_ms: Option<u64>,
}

fn one() -> u32 {
    1
}

#[derive(Default)]
struct Account {
    admin: Option<Admin>,
    users: BTreeMap<String, User>,
    faults: Vec<Fault>,
    calls: BTreeMap<String, u64>,
    generated: u64,
}

#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Account>>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Account> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub fn router() -> Router {
    Router::new()
        .route("/_aws/", any(api))
        .route("/_aws", any(api))
        .route("/_sim/aws/admin", post(set_admin))
        .route("/_sim/aws/users", post(add_user))
        .route("/_sim/aws/fault", post(add_fault))
        .route("/_sim/aws/state", get(show))
        .with_state(Shared::default())
}

async fn set_admin(State(s): State<Shared>, Json(a): Json<Admin>) -> StatusCode {
    s.lock().admin = Some(a);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct NewUser {
    user: String,
    #[serde(default)]
    keys: Vec<Key>,
}

async fn add_user(State(s): State<Shared>, Json(u): Json<NewUser>) -> StatusCode {
    s.lock()
        .users
        .entry(u.user)
        .or_default()
        .keys
        .extend(u.keys);
    StatusCode::NO_CONTENT
}

async fn add_fault(State(s): State<Shared>, Json(f): Json<Fault>) -> StatusCode {
    s.lock().faults.push(f);
    StatusCode::NO_CONTENT
}

async fn show(State(s): State<Shared>) -> Json<Value> {
    let a = s.lock();
    let users: serde_json::Map<String, Value> = a
        .users
        .iter()
        .map(|(name, u)| {
            let keys: Vec<Value> = u
                .keys
                .iter()
                .map(|k| json!({"id": k.id, "secret": k.secret, "status": k.status}))
                .collect();
            (name.clone(), json!({"keys": keys, "policies": u.policies}))
        })
        .collect();
    Json(json!({"users": users, "calls": a.calls}))
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<ErrorResponse xmlns=\"{NS}\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{}</Message></Error><RequestId>sim</RequestId></ErrorResponse>",
        xml_text(message)
    );
    (status, [("content-type", "text/xml")], body).into_response()
}

fn ok(action: &str, result: &str) -> Response {
    let result = match result.is_empty() {
        true => String::new(),
        false => format!("<{action}Result>{result}</{action}Result>"),
    };
    let body = format!(
        "<{action}Response xmlns=\"{NS}\">{result}<ResponseMetadata><RequestId>sim</RequestId></ResponseMetadata></{action}Response>"
    );
    (StatusCode::OK, [("content-type", "text/xml")], body).into_response()
}

fn xml_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The access key id in a SigV4 `Authorization` header.
fn signer(headers: &HeaderMap) -> Option<String> {
    let auth = headers.get("authorization")?.to_str().ok()?;
    let cred = auth.split("Credential=").nth(1)?;
    Some(cred.split('/').next()?.to_string())
}

fn status_of(code: &str) -> StatusCode {
    match code {
        "NoSuchEntity" => StatusCode::NOT_FOUND,
        "AccessDenied" | "InvalidClientTokenId" | "SignatureDoesNotMatch" => StatusCode::FORBIDDEN,
        "LimitExceeded" | "EntityAlreadyExists" => StatusCode::CONFLICT,
        "ServiceFailure" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

async fn api(
    State(s): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query = uri.query().unwrap_or_default();
    if method == Method::GET
        && form_params(query).get("Action").map(String::as_str) == Some("GetCallerIdentity")
    {
        return caller_identity(&s, &method, &uri, &headers, &body);
    }
    if method != Method::POST {
        return error(StatusCode::BAD_REQUEST, "InvalidAction", "IAM takes POST");
    }
    let params = form_params(std::str::from_utf8(&body).unwrap_or_default());
    let action = params.get("Action").cloned().unwrap_or_default();
    if params.get("Version").map(String::as_str) != Some("2010-05-08") {
        return error(
            StatusCode::BAD_REQUEST,
            "InvalidParameterValue",
            "Version must be 2010-05-08",
        );
    }
    let fault = {
        let mut a = s.lock();
        *a.calls.entry(action.clone()).or_default() += 1;
        let fault = a
            .faults
            .iter_mut()
            .find(|f| f.count > 0 && f.action == action)
            .map(|f| {
                f.count -= 1;
                f.clone()
            });
        a.faults.retain(|f| f.count > 0);
        fault
    };
    if let Some(Fault {
        code: Some(code),
        status,
        ..
    }) = &fault
    {
        let status = status
            .and_then(|s| StatusCode::from_u16(s).ok())
            .unwrap_or_else(|| status_of(code));
        return error(status, code, "injected fault");
    }
    let answer = {
        let mut a = s.lock();
        match authorize(&a, &method, &uri, &headers, &body, &action) {
            Some(denied) => denied,
            None => act(&mut a, &action, &params),
        }
    };
    if let Some(ms) = fault.and_then(|f| f.hang_ms) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    answer
}

/// The admin's signature and grant for `action`: `Some(error)` when refused.
fn authorize(
    a: &Account,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    action: &str,
) -> Option<Response> {
    let denied = |code: &str, msg: &str| Some(error(status_of(code), code, msg));
    let Some(admin) = &a.admin else {
        return denied(
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
        );
    };
    if signer(headers).as_deref() != Some(admin.key_id.as_str()) {
        return denied(
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
        );
    }
    if let Err(why) = sigv4_signed_by(
        &admin.key_id,
        &admin.secret,
        "iam",
        method.as_str(),
        uri,
        headers,
        body,
    ) {
        return denied(
            why,
            "The request signature we calculated does not match the signature you provided.",
        );
    }
    if admin
        .allow
        .as_ref()
        .is_some_and(|allow| !allow.iter().any(|x| x == action))
    {
        let msg = format!(
            "User: arn:aws:iam::123456789012:user/admin is not authorized to perform: iam:{action} on resource: user"
        );
        return denied("AccessDenied", &msg);
    }
    None
}

fn member(k: &Key, user: &str) -> String {
    format!(
        "<member><UserName>{user}</UserName><AccessKeyId>{}</AccessKeyId><Status>{}</Status><CreateDate>2024-01-01T00:00:00Z</CreateDate></member>",
        k.id, k.status
    )
}

fn act(a: &mut Account, action: &str, p: &HashMap<String, String>) -> Response {
    let get = |name: &str| p.get(name).cloned().unwrap_or_default();
    let no_user = |user: &str| {
        error(
            StatusCode::NOT_FOUND,
            "NoSuchEntity",
            &format!("The user with name {user} cannot be found."),
        )
    };
    let no_key = |id: &str| {
        error(
            StatusCode::NOT_FOUND,
            "NoSuchEntity",
            &format!("The Access Key with id {id} cannot be found."),
        )
    };
    let (user, id) = (get("UserName"), get("AccessKeyId"));
    match action {
        "GetAccessKeyLastUsed" => {
            let owner = a
                .users
                .iter()
                .find(|(_, u)| u.keys.iter().any(|k| k.id == id));
            match owner {
                Some((name, _)) => ok(
                    action,
                    &format!("<UserName>{name}</UserName><AccessKeyLastUsed><Region>N/A</Region><ServiceName>N/A</ServiceName></AccessKeyLastUsed>"),
                ),
                None => no_key(&id),
            }
        }
        "ListAccessKeys" => match a.users.get(&user) {
            Some(u) => {
                let members: String = u.keys.iter().map(|k| member(k, &user)).collect();
                ok(action, &format!("<AccessKeyMetadata>{members}</AccessKeyMetadata><IsTruncated>false</IsTruncated>"))
            }
            None => no_user(&user),
        },
        "ListAttachedUserPolicies" => match a.users.get(&user) {
            Some(u) => {
                let members: String = u
                    .policies
                    .iter()
                    .map(|arn| {
                        let name = arn.rsplit('/').next().unwrap_or_default();
                        format!("<member><PolicyName>{name}</PolicyName><PolicyArn>{arn}</PolicyArn></member>")
                    })
                    .collect();
                ok(action, &format!("<AttachedPolicies>{members}</AttachedPolicies><IsTruncated>false</IsTruncated>"))
            }
            None => no_user(&user),
        },
        "AttachUserPolicy" => match a.users.get_mut(&user) {
            Some(u) => {
                let arn = get("PolicyArn");
                if !arn.starts_with("arn:aws:iam::") {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "InvalidInput",
                        "ARN is not well formed",
                    );
                }
                if !u.policies.contains(&arn) {
                    u.policies.push(arn);
                }
                ok(action, "")
            }
            None => no_user(&user),
        },
        "UpdateAccessKey" => {
            let status = get("Status");
            if status != "Active" && status != "Inactive" {
                return error(
                    StatusCode::BAD_REQUEST,
                    "ValidationError",
                    "Status must be Active or Inactive",
                );
            }
            let Some(u) = a.users.get_mut(&user) else {
                return no_user(&user);
            };
            match u.keys.iter_mut().find(|k| k.id == id) {
                Some(k) => {
                    k.status = status;
                    ok(action, "")
                }
                None => no_key(&id),
            }
        }
        "DeleteAccessKey" => {
            let Some(u) = a.users.get_mut(&user) else {
                return no_user(&user);
            };
            let before = u.keys.len();
            u.keys.retain(|k| k.id != id);
            match u.keys.len() < before {
                true => ok(action, ""),
                false => no_key(&id),
            }
        }
        "CreateAccessKey" => {
            a.generated += 1;
            let n = a.generated;
            let Some(u) = a.users.get_mut(&user) else {
                return no_user(&user);
            };
            if u.keys.len() >= 2 {
                return error(
                    StatusCode::CONFLICT,
                    "LimitExceeded",
                    &format!("Cannot exceed quota for AccessKeysPerUser: 2 (user {user})"),
                );
            }
            // Distinct, valid-looking: AKIA + 16 base32, 40 base64.
            let id = format!("AKIASIMNEWKEY{:07}", n)
                .replace('0', "Q")
                .replace('1', "R")
                .replace('8', "S")
                .replace('9', "T");
            let secret = format!("simNewSecret{n:04}/{}", "x".repeat(40))
                .chars()
                .take(40)
                .collect::<String>();
            let key = Key {
                id: id.clone(),
                secret: secret.clone(),
                status: "Active".into(),
            };
            u.keys.push(key.clone());
            ok(
                action,
                &format!("<AccessKey><UserName>{user}</UserName><AccessKeyId>{id}</AccessKeyId><Status>Active</Status><SecretAccessKey>{secret}</SecretAccessKey><CreateDate>2024-01-01T00:00:00Z</CreateDate></AccessKey>"),
            )
        }
        other => error(
            StatusCode::BAD_REQUEST,
            "InvalidAction",
            &format!("Could not find operation {other} for version 2010-05-08"),
        ),
    }
}

/// STS GetCallerIdentity signed by a user's own key: live while Active.
fn caller_identity(
    s: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let invalid = || {
        error(
            StatusCode::FORBIDDEN,
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
        )
    };
    let Some(id) = signer(headers) else {
        return invalid();
    };
    let a = s.lock();
    let found = a.users.iter().find_map(|(name, u)| {
        u.keys
            .iter()
            .find(|k| k.id == id)
            .map(|k| (name.clone(), k.clone()))
    });
    let Some((user, key)) = found else {
        return invalid();
    };
    if sigv4_signed_by(
        &key.id,
        &key.secret,
        "sts",
        method.as_str(),
        uri,
        headers,
        body,
    )
    .is_err()
    {
        return error(
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        );
    }
    if key.status != "Active" {
        return invalid();
    }
    let result = format!(
        "<GetCallerIdentityResult><Arn>arn:aws:iam::123456789012:user/{user}</Arn><UserId>AIDASIM</UserId><Account>123456789012</Account></GetCallerIdentityResult>"
    );
    let body = format!(
        "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">{result}<ResponseMetadata><RequestId>sim</RequestId></ResponseMetadata></GetCallerIdentityResponse>"
    );
    (StatusCode::OK, [("content-type", "text/xml")], body).into_response()
}
