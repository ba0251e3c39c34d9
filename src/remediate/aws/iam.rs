//! AWS IAM's query API with the owner's admin credentials: each request
//! SigV4-signed by `aws-sigv4` (the signer sees only the body's hash, never
//! the body, which names the leaked key), answers read as XML with
//! `roxmltree`, IAM's errors mapped to what the owner must do.
//!
//! Every call goes through [`Ctx::call`] (journaled before it is sent,
//! retried on 5xx and transport errors for reads, `Uncertain` for changes);
//! `Throttling` (HTTP 400) is retried here with the same backoff. An IAM
//! error's message names the key and the user, so only its code is kept.

use super::super::ctx::{Accept, Ctx};
use super::super::http_action::Request;
use super::super::StepError;
use crate::config::SimpleProviderConfig;
use reqwest::Method;
use sha2::{Digest, Sha256};
use std::time::SystemTime;
use zeroize::Zeroizing;

/// AWS's managed policy for a compromised key: denies what an attacker
/// would do with it, leaves the user's other access alone.
pub(super) const QUARANTINE: &str = "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV3";

/// IAM's endpoint when `providers.aws.api_url` is unset.
const DEFAULT_IAM: &str = "https://iam.amazonaws.com";

/// IAM is global: its requests are signed for us-east-1.
const DEFAULT_REGION: &str = "us-east-1";

/// The statuses IAM answers its errors with (read here, not retried by
/// [`Ctx::call`]): Throttling and validation 400, AccessDenied and bad
/// credentials 403, NoSuchEntity 404, LimitExceeded 409.
const ERRORS: &[u16] = &[400, 401, 403, 404, 409];

/// The admin credentials, read from the variables the config names.
struct Admin {
    id: String,
    secret: Zeroizing<String>,
}

/// An IAM client for one pass.
pub(super) struct Iam {
    base: String,
    region: String,
    admin: Admin,
}

/// IAM's answer to one action.
pub(super) enum Answer {
    /// 2xx: the XML document.
    Ok(Zeroizing<String>),
    /// An IAM error: its status and `Code` (never its message).
    Err { status: u16, code: String },
}

/// Why there is no IAM client: no admin credentials configured, or
/// configured but unusable (the message says which variable).
pub(super) enum NoAdmin {
    NotConfigured,
    Broken(String),
}

impl Iam {
    pub fn from_config(aws: &SimpleProviderConfig) -> Result<Iam, NoAdmin> {
        let (id_env, key_env) = match (&aws.admin_key_id_env, &aws.admin_key_env) {
            (None, None) => return Err(NoAdmin::NotConfigured),
            (Some(i), Some(k)) => (i, k),
            (Some(_), None) => return Err(NoAdmin::Broken("providers.aws.admin_key_id_env is set but admin_key_env is not: name the variable holding the admin secret access key too".into())),
            (None, Some(_)) => return Err(NoAdmin::Broken("providers.aws.admin_key_env is set but admin_key_id_env is not: name the variable holding the admin access key id too".into())),
        };
        let read = |field: &str, var: &str| {
            std::env::var(var).ok().filter(|v| !v.trim().is_empty()).ok_or_else(|| {
                NoAdmin::Broken(format!(
                    "providers.aws.{field} names {var}, which is not set in keysentry's environment; set it (e.g. in the systemd unit's EnvironmentFile)"
                ))
            })
        };
        let id = read("admin_key_id_env", id_env)?.trim().to_string();
        let secret = Zeroizing::new(read("admin_key_env", key_env)?.trim().to_string());
        Ok(Iam {
            base: aws
                .api_url
                .clone()
                .unwrap_or_else(|| DEFAULT_IAM.to_string())
                .trim_end_matches('/')
                .to_string(),
            region: aws
                .region
                .clone()
                .unwrap_or_else(|| DEFAULT_REGION.to_string()),
            admin: Admin { id, secret },
        })
    }

    /// The signed POST of `body` (form-encoded) for `action`.
    fn signed(&self, action: &str, body: &Zeroizing<String>) -> Result<Request, StepError> {
        use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
        let url = format!("{}/", self.base);
        let bad = |e: &dyn std::fmt::Display| StepError::Provider {
            provider: super::PROVIDER.into(),
            step: "sign".into(),
            reason: format!(
                "cannot sign the IAM request ({e}); check providers.aws.api_url and region"
            ),
        };
        let identity = aws_credential_types::Credentials::new(
            self.admin.id.clone(),
            self.admin.secret.to_string(),
            None,
            None,
            "keysentry-config",
        )
        .into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("iam")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| bad(&e))?
            .into();
        let content_type = "application/x-www-form-urlencoded; charset=utf-8";
        let hash = hex(&Sha256::digest(body.as_bytes()));
        let signable = SignableRequest::new(
            "POST",
            url.as_str(),
            [("content-type", content_type)].into_iter(),
            SignableBody::Precomputed(hash),
        )
        .map_err(|e| bad(&e))?;
        let (instructions, _) = sign(signable, &params).map_err(|e| bad(&e))?.into_parts();
        let mut req = Request::new(Method::POST, url)
            .header("content-type", content_type)
            .body(body.to_string());
        for (name, value) in instructions.headers() {
            req = match name {
                "authorization" => req.header("authorization", value),
                "x-amz-date" => req.header("x-amz-date", value),
                "x-amz-security-token" => req.header("x-amz-security-token", value),
                _ => req,
            };
        }
        req.label = format!("POST {}/ Action={action}", self.base);
        Ok(req)
    }

    /// Sends `action` with `params` as journal step `step`. `change`: it
    /// changes state at AWS (an answer lost to a timeout or 5xx comes back
    /// as [`StepError::Uncertain`]).
    pub async fn call(
        &self,
        ctx: &mut Ctx<'_>,
        step: &str,
        action: &str,
        params: &[(&str, &str)],
        change: bool,
    ) -> Result<Answer, StepError> {
        let mut form = form_urlencoded(&[("Action", action), ("Version", "2010-05-08")]);
        form.push('&');
        form.push_str(&form_urlencoded(params));
        let body = Zeroizing::new(form);
        let accept = Accept {
            answers: ERRORS,
            retry_others: false,
            state_changing: change,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            // Signed anew each attempt: a signature is only good 15 minutes.
            let req = self.signed(action, &body)?;
            let reply = ctx.call(step, &req, accept).await?;
            if (200..300).contains(&reply.status) {
                let text = String::from_utf8_lossy(&reply.body).into_owned();
                return Ok(Answer::Ok(Zeroizing::new(text)));
            }
            let code = error_code(&reply.body).unwrap_or_else(|| format!("HTTP{}", reply.status));
            if !matches!(code.as_str(), "Throttling" | "RequestLimitExceeded") {
                return Ok(Answer::Err {
                    status: reply.status,
                    code,
                });
            }
            if attempt >= ctx.retry().max_attempts {
                return Err(ctx.provider_error(
                    step,
                    format!(
                        "IAM throttled {action} ({attempt} attempts); will retry on the next run"
                    ),
                ));
            }
            tokio::time::sleep(ctx.retry().delay(attempt, reply.retry_after)).await;
        }
    }
}

/// The step error for an IAM error to `action`: what to fix, by code.
pub(super) fn refused(
    ctx: &Ctx<'_>,
    step: &str,
    action: &str,
    status: u16,
    code: &str,
) -> StepError {
    let reason = match code {
        "AccessDenied" | "AccessDeniedException" | "UnauthorizedOperation" => format!(
            "IAM refused {action} (AccessDenied, {status}): the admin credentials lack the permission iam:{action}; grant it to the admin user or role (keysentry retries on the next run)"
        ),
        "InvalidClientTokenId" | "SignatureDoesNotMatch" | "ExpiredToken" | "IncompleteSignature" => format!(
            "IAM does not accept the admin credentials ({code}, {status}): check the access key id and secret access key in the variables providers.aws.admin_key_id_env and admin_key_env name"
        ),
        other => format!("IAM answered {status} {other} to {action}"),
    };
    ctx.provider_error(step, reason)
}

/// `Code` of IAM's `<ErrorResponse><Error><Code>`, plain characters only
/// (the answer is untrusted).
fn error_code(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let code = first(text, "Code")?;
    let code: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
        .take(64)
        .collect();
    (!code.is_empty()).then_some(code)
}

/// The text of the first element named `tag` anywhere in `xml`.
pub(super) fn first(xml: &str, tag: &str) -> Option<String> {
    let doc = roxmltree::Document::parse(xml).ok()?;
    let node = doc.descendants().find(|n| n.has_tag_name(tag))?;
    Some(node.text().unwrap_or_default().trim().to_string())
}

/// For each `<member>` under the element `list`, the texts of `fields`.
pub(super) fn members(xml: &str, list: &str, fields: &[&str]) -> Option<Vec<Vec<String>>> {
    let doc = roxmltree::Document::parse(xml).ok()?;
    let list = doc.descendants().find(|n| n.has_tag_name(list))?;
    let rows = list
        .children()
        .filter(|n| n.has_tag_name("member"))
        .map(|m| {
            fields
                .iter()
                .map(|f| {
                    m.children()
                        .find(|c| c.has_tag_name(*f))
                        .and_then(|c| c.text())
                        .unwrap_or_default()
                        .trim()
                        .to_string()
                })
                .collect()
        })
        .collect();
    Some(rows)
}

/// An IAM user name as IAM allows it (`[\w+=,.@-]`, 1–64): anything else
/// in an answer is not IAM's.
pub(super) fn user_name(s: &str) -> Option<String> {
    let plain = s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c));
    (plain && (1..=64).contains(&s.len())).then(|| s.to_string())
}

fn form_urlencoded(pairs: &[(&str, &str)]) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    pairs
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                percent_encoding::utf8_percent_encode(k, SET),
                percent_encoding::utf8_percent_encode(v, SET)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iam_answers_and_errors_are_read_from_their_xml() {
        let ok = "<ListAccessKeysResponse xmlns=\"https://iam.amazonaws.com/doc/2010-05-08/\"><ListAccessKeysResult><AccessKeyMetadata><member><UserName>ci</UserName><AccessKeyId>AKIAONE</AccessKeyId><Status>Inactive</Status></member><member><UserName>ci</UserName><AccessKeyId>AKIATWO</AccessKeyId><Status>Active</Status></member></AccessKeyMetadata><IsTruncated>false</IsTruncated></ListAccessKeysResult></ListAccessKeysResponse>";
        let rows = members(ok, "AccessKeyMetadata", &["AccessKeyId", "Status"]).unwrap();
        assert_eq!(rows, [["AKIAONE", "Inactive"], ["AKIATWO", "Active"]]);
        assert_eq!(first(ok, "UserName").as_deref(), Some("ci"));
        let err = b"<ErrorResponse><Error><Type>Sender</Type><Code>NoSuchEntity</Code><Message>The Access Key with id AKIA... cannot be found.</Message></Error></ErrorResponse>";
        assert_eq!(error_code(err).as_deref(), Some("NoSuchEntity"));
        assert_eq!(error_code(b"<html>proxy</html>"), None);
        assert_eq!(
            error_code(b"<E><Code>Bad<script></Code></E>"),
            None,
            "not XML"
        );
        assert_eq!(
            user_name("ci-deploy@corp.example"),
            Some("ci-deploy@corp.example".into())
        );
        assert_eq!(user_name("a/b"), None);
        assert_eq!(user_name(""), None);
    }

    #[test]
    fn form_values_are_percent_encoded() {
        assert_eq!(
            form_urlencoded(&[("PolicyArn", QUARANTINE), ("UserName", "a b+c")]),
            "PolicyArn=arn%3Aaws%3Aiam%3A%3Aaws%3Apolicy%2FAWSCompromisedKeyQuarantineV3&UserName=a%20b%2Bc"
        );
    }
}
