//! A GitHub Actions secret of a repository, an environment or an
//! organisation. GitHub never returns a secret's value, so this consumer is
//! matched by config (declared as holding the provider's key) and written
//! whenever a rotation happened: the new value is sealed with the target's
//! public key (libsodium's sealed box, the `crypto_box` crate) and PUT with
//! the key's id. "Verified" means GitHub shows the secret as updated by this
//! write (its `updated_at` moved); the value itself cannot be read back.

use super::http::{self, Answer};
use super::{ConsumerError, Reach};
use crate::config::{Consumer, ConsumerKind, GithubActionsConsumer};
use crate::scan::Secret;
use base64::Engine as _;
use reqwest::Method;
use serde_json::Value;
use zeroize::Zeroizing;

const KIND: ConsumerKind = ConsumerKind::GithubActions;
const DEFAULT_API: &str = "https://api.github.com";
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn cfg(c: &Consumer) -> Result<&GithubActionsConsumer, ConsumerError> {
    c.github_actions
        .as_ref()
        .ok_or_else(|| ConsumerError::Config {
            consumer: c.name.clone(),
            why: "has no `github_actions` settings".into(),
        })
}

fn err(c: &Consumer, why: impl Into<String>) -> ConsumerError {
    ConsumerError::remote(c, KIND, why)
}

/// The API path of the secrets collection: repository, environment or
/// organisation.
fn base(c: &Consumer, g: &GithubActionsConsumer) -> Result<String, ConsumerError> {
    match (&g.org, &g.repo, &g.environment) {
        (Some(org), None, None) => Ok(format!("/orgs/{org}/actions/secrets")),
        (None, Some(repo), None) => Ok(format!("/repos/{repo}/actions/secrets")),
        (None, Some(repo), Some(env)) => Ok(format!("/repos/{repo}/environments/{env}/secrets")),
        _ => Err(ConsumerError::Config {
            consumer: c.name.clone(),
            why: "github_actions needs `repo` (optionally with `environment`) or `org`, not both"
                .into(),
        }),
    }
}

fn target(g: &GithubActionsConsumer) -> String {
    match (&g.org, &g.repo, &g.environment) {
        (Some(org), _, _) => format!("organisation {org}"),
        (_, Some(repo), Some(env)) => format!("environment {env} of {repo}"),
        (_, Some(repo), None) => format!("repository {repo}"),
        _ => "?".into(),
    }
}

async fn call(
    c: &Consumer,
    g: &GithubActionsConsumer,
    reach: &Reach,
    method: Method,
    path: &str,
    body: Option<Zeroizing<String>>,
) -> Result<Answer, ConsumerError> {
    let token =
        http::token_from_env(&g.token_env, "github_actions.token_env").map_err(|e| err(c, e))?;
    let bearer = Zeroizing::new(format!("Bearer {}", token.as_str()));
    let client = http::client(reach, None).map_err(|e| err(c, e))?;
    let api = g
        .api_url
        .as_deref()
        .unwrap_or(DEFAULT_API)
        .trim_end_matches('/');
    let headers = [
        ("authorization", bearer.as_str()),
        ("accept", "application/vnd.github+json"),
        ("x-github-api-version", "2022-11-28"),
        ("content-type", "application/json"),
    ];
    http::send(
        &client,
        reach,
        "github_actions.api_url",
        method,
        &format!("{api}{path}"),
        &headers,
        body,
    )
    .await
    .map_err(|f| err(c, f.describe("GitHub's API", "github_actions.api_url")))
}

fn refused(c: &Consumer, g: &GithubActionsConsumer, status: u16, doing: &str) -> ConsumerError {
    let t = target(g);
    let why = match status {
        401 => format!("GitHub answered 401 to the {doing}: the token in {} is not valid or has expired", g.token_env),
        403 | 404 => format!(
            "GitHub answered {status} to the {doing}: no {t}, or the token in {} may not manage its Actions secrets (it needs the `secrets` write permission{})",
            g.token_env,
            if g.org.is_some() { " and organisation admin" } else { "" }
        ),
        422 => format!("GitHub answered 422 to the {doing} of secret {} in {t}: check github_actions.name", g.name),
        s => format!("GitHub answered {s} to the {doing} of secret {} in {t}", g.name),
    };
    err(c, why)
}

/// The secret's metadata (`updated_at`, `visibility`), or `None`.
async fn metadata(
    c: &Consumer,
    g: &GithubActionsConsumer,
    reach: &Reach,
) -> Result<Option<Value>, ConsumerError> {
    let path = format!("{}/{}", base(c, g)?, g.name);
    let answer = call(c, g, reach, Method::GET, &path, None).await?;
    match answer.status {
        200 => Ok(answer.json()),
        404 => Ok(None),
        s => Err(refused(c, g, s, "read")),
    }
}

fn updated_at(meta: &Option<Value>) -> Option<String> {
    meta.as_ref()?
        .get("updated_at")?
        .as_str()
        .map(str::to_string)
}

/// Seals `new` with the target's public key and writes it.
pub(super) async fn write(c: &Consumer, reach: &Reach, new: &Secret) -> Result<(), ConsumerError> {
    let g = cfg(c)?;
    let base = base(c, g)?;
    let before = metadata(c, g, reach).await?;
    let answer = call(
        c,
        g,
        reach,
        Method::GET,
        &format!("{base}/public-key"),
        None,
    )
    .await?;
    if answer.status != 200 {
        return Err(refused(c, g, answer.status, "public key read"));
    }
    let json = answer.json().unwrap_or_default();
    let (Some(key_id), Some(key)) = (
        json.get("key_id").and_then(Value::as_str),
        json.get("key").and_then(Value::as_str),
    ) else {
        return Err(err(
            c,
            "GitHub's public-key answer has no key_id and key; check github_actions.api_url",
        ));
    };
    let bytes: [u8; 32] = B64
        .decode(key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| err(c, "GitHub's public key is not 32 bytes of base64"))?;
    let sealed = crypto_box::PublicKey::from(bytes)
        .seal(&mut crypto_box::aead::OsRng, new.expose().as_bytes())
        .map_err(|_| err(c, "sealing the new key failed"))?;
    let mut body = serde_json::json!({"encrypted_value": B64.encode(sealed), "key_id": key_id});
    if g.org.is_some() {
        // Required for an organisation secret: keep what it has.
        let visibility = before
            .as_ref()
            .and_then(|m| m.get("visibility")?.as_str().map(str::to_string))
            .unwrap_or_else(|| "private".into());
        body["visibility"] = Value::String(visibility);
    }
    let path = format!("{base}/{}", g.name);
    let answer = call(
        c,
        g,
        reach,
        Method::PUT,
        &path,
        Some(Zeroizing::new(body.to_string())),
    )
    .await?;
    if !matches!(answer.status, 201 | 204) {
        return Err(refused(c, g, answer.status, "write"));
    }
    let after = metadata(c, g, reach).await?;
    if after.is_none() || updated_at(&after) == updated_at(&before) && before.is_some() {
        return Err(err(
            c,
            format!(
                "GitHub accepted the write ({}) but does not show secret {} as updated",
                answer.status, g.name
            ),
        ));
    }
    Ok(())
}

/// Whether the secret exists (its value cannot be read).
pub(super) async fn updated(c: &Consumer, reach: &Reach) -> Result<bool, ConsumerError> {
    let g = cfg(c)?;
    Ok(metadata(c, g, reach).await?.is_some())
}
