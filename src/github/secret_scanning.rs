//! `secret_scanning_alert` events: GitHub's own secret scanning found a key.
//! When the key's provider is one keysentry can remediate, the secret is
//! fetched through the alerts API, recognised by the same rules as every
//! other source, and handed to the same engine.

use super::api::{ApiError, RepoClient};
use super::push::{check_repo, PayloadError, PayloadInstallation, PayloadRepo};
use crate::scan::{Chunk, Finding, Origin, Scanner};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::sync::Arc;

/// A stored alert delivery: which alert to fetch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertJob {
    pub repo: String,
    pub number: u64,
    pub secret_type: String,
    pub provider: String,
    pub installation: Option<u64>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum AlertEvent {
    Ignored(&'static str),
    Remediate(AlertJob),
}

#[derive(Deserialize)]
struct Payload {
    action: String,
    alert: PayloadAlert,
    repository: PayloadRepo,
    #[serde(default)]
    installation: Option<PayloadInstallation>,
}

#[derive(Deserialize)]
struct PayloadAlert {
    number: u64,
    #[serde(default)]
    secret_type: String,
}

/// GitHub names secret types `<provider>_<kind>` (`github_personal_access_token`,
/// `slack_api_token`, `aws_access_key_id`), and keysentry's providers use the
/// same names.
pub fn provider_of(secret_type: &str) -> &str {
    secret_type.split('_').next().unwrap_or(secret_type)
}

/// `remediable`: the providers keysentry can do something about.
pub fn parse_alert(body: &[u8], remediable: &HashSet<String>) -> Result<AlertEvent, PayloadError> {
    let p: Payload = serde_json::from_slice(body).map_err(|e| PayloadError::Json {
        event: "secret_scanning_alert",
        message: super::untrusted::json_problem(&e),
    })?;
    if !matches!(p.action.as_str(), "created" | "reopened") {
        return Ok(AlertEvent::Ignored("alert action not handled"));
    }
    let provider = provider_of(&p.alert.secret_type);
    if !remediable.contains(provider) {
        return Ok(AlertEvent::Ignored("no remediation for this secret type"));
    }
    check_repo("secret_scanning_alert", &p.repository.full_name)?;
    Ok(AlertEvent::Remediate(AlertJob {
        repo: p.repository.full_name,
        number: p.alert.number,
        provider: provider.to_string(),
        secret_type: p.alert.secret_type,
        installation: p.installation.map(|i| i.id),
    }))
}

/// The alert's secret as findings of keysentry's own rules, placed where
/// GitHub saw it. Empty when the alert was closed meanwhile or no rule of the
/// provider recognises the secret.
pub async fn alert_findings(
    client: &RepoClient,
    job: &AlertJob,
    scanner: &Arc<Scanner>,
) -> Result<Vec<Finding>, ApiError> {
    let alert = client.secret_scanning_alert(&job.repo, job.number).await?;
    if alert.state != "open" {
        return Ok(Vec::new());
    }
    let secret = alert.secret.ok_or_else(|| ApiError::Refused {
        what: format!("GET /repos/{}/secret-scanning/alerts/{}", job.repo, job.number),
        status: 200,
        message: "the alert has no `secret` field; give the token (or App) read access to secret scanning alerts".into(),
    })?;
    let location = match client.secret_scanning_location(&job.repo, job.number).await {
        Ok(l) => l,
        Err(e) if e.is_transient() => return Err(e),
        // Locations are a nicety: the key is contained without them.
        Err(_) => Default::default(),
    };
    let chunk = Chunk {
        origin: Arc::new(Origin::GitHub {
            repo: job.repo.clone(),
            commit: location.commit.unwrap_or_default(),
            author_email: None,
            path: location.path.unwrap_or_default(),
            pusher: None,
        }),
        data: secret.expose().as_bytes().to_vec(),
        first_line: location.line.unwrap_or(1),
        base_offset: 0,
    };
    let findings: Vec<Finding> = crate::scan::driver::scan(scanner, &chunk)
        .into_iter()
        .filter(|f| *f.provider == *job.provider)
        .collect();
    if findings.is_empty() {
        tracing::info!(
            repo = %job.repo, alert = job.number, secret_type = %job.secret_type,
            "no keysentry rule recognises the secret of this alert; nothing to remediate"
        );
    }
    Ok(findings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(action: &str, secret_type: &str) -> Vec<u8> {
        serde_json::json!({
            "action": action,
            "alert": {"number": 7, "secret_type": secret_type, "state": "open"},
            "repository": {"full_name": "acme/app"},
            "installation": {"id": 42},
            "sender": {"login": "github"}
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn only_new_alerts_for_remediable_providers_are_handled() {
        let remediable: HashSet<String> = ["tatum".to_string()].into();
        let job = parse_alert(&body("created", "tatum_api_key"), &remediable).unwrap();
        assert_eq!(
            job,
            AlertEvent::Remediate(AlertJob {
                repo: "acme/app".into(),
                number: 7,
                secret_type: "tatum_api_key".into(),
                provider: "tatum".into(),
                installation: Some(42),
            })
        );
        assert!(matches!(
            parse_alert(&body("resolved", "tatum_api_key"), &remediable).unwrap(),
            AlertEvent::Ignored(_)
        ));
        assert!(matches!(
            parse_alert(&body("reopened", "azure_storage_key"), &remediable).unwrap(),
            AlertEvent::Ignored(_)
        ));
    }
}
