//! The owner's alert for an incident pass: what was found where, what was
//! done, and what the owner should do next (the playbook says the part
//! that depends on the provider). Built from the incident row (no key, only
//! its redacted form and fingerprint), sent through the
//! [`Alerter`](crate::alert::Alerter) and recorded in the store.

use super::playbook::Playbook;
use super::Inner;
use crate::alert::digest::DigestEntry;
use crate::alert::{ActionResult, Alert};
use crate::store::{IncidentRow, State};

/// Sends the alert of this pass; `kind` is `change` or `reminder` (an
/// incident still waiting for its owner).
pub(super) async fn send(
    inner: &Inner,
    playbook: &dyn Playbook,
    row: &IncidentRow,
    actions: &[ActionResult],
    kind: &str,
) {
    let alert = build(inner, playbook, row, actions);
    if row.state == State::NotLive {
        return to_digest(inner, kind, alert);
    }
    let deliveries = inner.alerter.send(&alert).await;
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
    if let Err(e) = inner
        .store
        .record_alert(alert.incident_id, kind, &body, &summary.join("\n"))
    {
        tracing::error!(incident = alert.incident_id, error = %e, "cannot record alert");
    }
}

/// A key the provider rejects is told in the owner's next digest, not
/// alone: a flood of decoys must not bury the alerts that matter. The
/// incident records that its alert went to the digest.
fn to_digest(inner: &Inner, kind: &str, alert: Alert) {
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

fn build(
    inner: &Inner,
    playbook: &dyn Playbook,
    row: &IncidentRow,
    actions: &[ActionResult],
) -> Alert {
    let locations: Vec<String> = inner
        .store
        .locations(row.id)
        .unwrap_or_default()
        .iter()
        .map(|l| l.display())
        .collect();
    Alert {
        incident_id: row.id,
        owner: row.owner.clone(),
        provider: row.provider.clone(),
        rule_id: row.rule_id.clone(),
        rule_name: row.rule_name.clone(),
        redacted: row.redacted.clone(),
        fingerprint: row.fingerprint.to_string(),
        state: row.state.to_string(),
        next_steps: next_steps(row, &locations, playbook.next_steps(row)),
        locations,
        actions: actions.to_vec(),
        bound: playbook.bound(row),
        digest: None,
    }
}

/// What the owner should do now, in order: the engine's word on a failure,
/// the playbook's `steps`, then where to remove the key from.
pub(super) fn next_steps(
    row: &IncidentRow,
    locations: &[String],
    steps_of_playbook: Vec<String>,
) -> Vec<String> {
    let mut steps = Vec::new();
    match row.state {
        State::NotLive => steps.push(format!(
            "Nothing to rotate: {} already rejects this key (it was revoked or expired before keysentry saw it).",
            row.provider
        )),
        State::Failed => steps.push(format!(
            "keysentry could not finish ({}); it retries on the next run. To act now instead:",
            row.reason.as_deref().unwrap_or("see `keysentry incidents show`")
        )),
        _ => {}
    }
    steps.extend(steps_of_playbook);
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
