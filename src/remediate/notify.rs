//! The owner's alert for an incident pass: what was found where, what was
//! done, and what the owner should do next. Built from the incident row (no
//! key, only its redacted form and fingerprint), sent through the
//! [`Alerter`](crate::alert::Alerter) and recorded in the store.

use super::ctx::Ctx;
use crate::alert::digest::DigestEntry;
use crate::alert::{Alert, Bound};
use crate::store::IncidentRow;

const DASHBOARD: &str = "https://dashboard.tatum.io";

/// Sends the alert of this pass; `kind` is `change` or `reminder` (an
/// incident still waiting for its owner).
pub async fn send(ctx: &mut Ctx<'_>, kind: &str) {
    let alert = build(ctx);
    if alert.state == "not-live" {
        return to_digest(ctx, kind, alert);
    }
    let deliveries = ctx.inner.alerter.send(&alert).await;
    let mut summary = Vec::with_capacity(deliveries.len());
    for d in &deliveries {
        match &d.result {
            Ok(()) => summary.push(format!("{}: ok", d.channel)),
            Err(e) => {
                tracing::warn!(incident = alert.incident_id, channel = %d.channel, error = %e, "alert not delivered");
                summary.push(format!("{}: {e}", d.channel));
            }
        }
    }
    let body = serde_json::to_string(&alert).unwrap_or_default();
    if let Err(e) =
        ctx.inner
            .store
            .record_alert(alert.incident_id, kind, &body, &summary.join("\n"))
    {
        tracing::error!(incident = alert.incident_id, error = %e, "cannot record alert");
    }
}

/// A key the provider rejects is told in the owner's next digest, not
/// alone: a flood of decoys must not bury the alerts that matter. The
/// incident records that its alert went to the digest.
fn to_digest(ctx: &mut Ctx<'_>, kind: &str, alert: Alert) {
    let inner = ctx.inner;
    let entry = DigestEntry {
        incident_id: alert.incident_id,
        provider: alert.provider.clone(),
        redacted: alert.redacted.clone(),
        fingerprint: alert.fingerprint.clone(),
        location: alert.locations.first().cloned(),
    };
    let owner = alert.owner.clone();
    if inner.digests.add(owner.clone(), entry) {
        let (digests, alerter) = (inner.digests.clone(), inner.alerter.clone());
        tokio::spawn(async move {
            tokio::time::sleep(digests.interval()).await;
            if let Some((digest, ids)) = digests.take(&owner) {
                let delivered = alerter.send(&digest).await;
                let ok = delivered.iter().filter(|d| d.is_ok()).count();
                tracing::info!(
                    owner = owner.as_deref(),
                    incidents = digest.digest.as_ref().map_or(0, |d| d.count),
                    listed = ids.len(),
                    channels_ok = ok,
                    "not-live digest sent"
                );
            }
        });
    }
    let body = serde_json::to_string(&alert).unwrap_or_default();
    let note = format!(
        "digest: told with the other keys that are not live, in one alert per {} s (alert_digest.interval_secs)",
        inner.digests.interval().as_secs()
    );
    if let Err(e) = inner
        .store
        .record_alert(alert.incident_id, kind, &body, &note)
    {
        tracing::error!(incident = alert.incident_id, error = %e, "cannot record alert");
    }
}

fn build(ctx: &Ctx<'_>) -> Alert {
    let row = &ctx.row;
    let locations: Vec<String> = ctx
        .inner
        .store
        .locations(row.id)
        .unwrap_or_default()
        .iter()
        .map(|l| l.display())
        .collect();
    let bound = match (row.subscriptions, row.virtual_accounts) {
        (None, None) => None,
        (s, a) => Some(Bound {
            subscriptions: s.unwrap_or(0),
            virtual_accounts: a.unwrap_or(0),
        }),
    };
    let consumers: Vec<String> = ctx
        .inner
        .config
        .providers
        .tatum
        .as_ref()
        .map(|t| t.consumers.iter().map(|c| c.name.clone()).collect())
        .unwrap_or_default();
    Alert {
        incident_id: row.id,
        owner: row.owner.clone(),
        provider: row.provider.clone(),
        rule_id: row.rule_id.clone(),
        rule_name: row.rule_name.clone(),
        redacted: row.redacted.clone(),
        fingerprint: row.fingerprint.clone(),
        state: row.state.clone(),
        next_steps: next_steps(row, &locations, &consumers),
        locations,
        actions: ctx.actions.clone(),
        bound,
        digest: None,
    }
}

/// What the owner should do now, in order.
pub fn next_steps(row: &IncidentRow, locations: &[String], consumers: &[String]) -> Vec<String> {
    let mut steps = Vec::new();
    match row.state.as_str() {
        "not-live" => steps.push(format!(
            "Nothing to rotate: {} already rejects this key (it was revoked or expired before keysentry saw it).",
            row.provider
        )),
        "failed" => steps.push(format!(
            "keysentry could not finish ({}); it retries on the next run. To act now instead:",
            row.reason.as_deref().unwrap_or("see `keysentry incidents show`")
        )),
        _ => {}
    }
    if row.provider == super::policy::TATUM {
        steps.extend(tatum_steps(row, consumers));
    } else {
        steps.extend(revoke_steps(row));
    }
    steps.push(format!(
        "Remove the key from {} (and from git history if it was committed); keysentry will keep finding it there.",
        if locations.is_empty() {
            "where it was found".to_string()
        } else {
            locations.join(", ")
        }
    ));
    steps
}

fn tatum_steps(row: &IncidentRow, consumers: &[String]) -> Vec<String> {
    let expire = row.action.as_deref() == Some("expire");
    match row.state.as_str() {
        "closed" if expire => {
            vec!["The leaked key was expired at Tatum; nothing used it that keysentry knows of.".into()]
        }
        "closed" => vec![format!(
            "The leaked key was regenerated at Tatum and no longer works; the new key was handed to the configured consumers ({}). Check that they run.",
            if consumers.is_empty() { "none".to_string() } else { consumers.join(", ") }
        )],
        "waiting-manual" if row.stage == "rotated" => vec![format!(
            "Copy the new key from the Tatum Dashboard ({DASHBOARD} → API Keys) and run `keysentry tatum set-key {}` with the key on standard input.",
            row.id
        )],
        "waiting-manual" => dashboard_steps(row, expire),
        "failed" | "detected" | "verified" => dashboard_steps(row, false),
        "contained" => {
            let mut steps = vec!["The key is frozen (no transactions) but still exists.".to_string()];
            steps.extend(dashboard_steps(row, false));
            steps
        }
        _ => Vec::new(),
    }
}

fn revoke_steps(row: &IncidentRow) -> Vec<String> {
    let provider = &row.provider;
    match row.state.as_str() {
        "closed" => vec![format!(
            "The key was revoked at {provider}; create a new one for whatever used it, and store it in a secret manager."
        )],
        "waiting-manual" => vec![format!(
            "Revoke the key in {provider}'s settings (keysentry has no revoke action for rule {}); create a new one for whatever used it.",
            row.rule_id
        )],
        "revoked" => vec![format!(
            "{provider} accepted the revoke but still accepts the key: check in {provider}'s settings that it is gone."
        )],
        "failed" | "detected" | "verified" => vec![format!(
            "The key works: revoke it in {provider}'s settings and create a new one."
        )],
        _ => Vec::new(),
    }
}

/// The exact Dashboard steps for rotating a Tatum key by hand.
fn dashboard_steps(row: &IncidentRow, expire: bool) -> Vec<String> {
    let prefix: String = row.redacted.chars().take_while(|c| *c != '…').collect();
    let mut steps = vec![
        format!("Sign in to the Tatum Dashboard ({DASHBOARD}) and open API Keys."),
        format!(
            "Find the key that starts with `{prefix}` (shown by keysentry as {}; fingerprint {}).",
            row.redacted,
            &row.fingerprint[..row.fingerprint.len().min(12)]
        ),
    ];
    if expire {
        steps.push(
            "Click Expire. Subscriptions and virtual accounts bound to the key stop working."
                .into(),
        );
        steps.push(
            "keysentry checks until the old key answers 401, then closes the incident.".into(),
        );
    } else {
        steps.push("Click Regenerate, and copy the new key.".into());
        steps.push(format!(
            "Run `keysentry tatum set-key {}` and paste the new key on standard input: keysentry writes it to every consumer that holds the leaked key (e.g. Tatum KMS), restarts them, and confirms.",
            row.id
        ));
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(state: &str, stage: &str) -> IncidentRow {
        IncidentRow {
            id: 7,
            fingerprint: "ab".repeat(32),
            provider: "tatum".into(),
            rule_id: "tatum.api-key".into(),
            rule_name: "Tatum API key".into(),
            redacted: "t-66…[51 chars]".into(),
            owner: None,
            state: state.into(),
            stage: stage.into(),
            action: Some("regenerate".into()),
            reason: None,
            testnet: None,
            subscriptions: None,
            virtual_accounts: None,
            new_fingerprint: None,
            new_redacted: None,
            failures: 0,
            retry_at_ms: None,
            waits: 0,
            reminded_at_ms: None,
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    #[test]
    fn manual_rotation_gives_the_dashboard_steps() {
        let steps = next_steps(
            &row("waiting-manual", "inventoried"),
            &["a.env:1".into()],
            &[],
        );
        let all = steps.join("\n");
        assert!(all.contains("Tatum Dashboard"), "{all}");
        assert!(all.contains("API Keys"), "{all}");
        assert!(all.contains("starts with `t-66`"), "{all}");
        assert!(all.contains("Regenerate"), "{all}");
        assert!(all.contains("keysentry tatum set-key 7"), "{all}");
        assert!(all.contains("a.env:1"), "{all}");
    }
}
