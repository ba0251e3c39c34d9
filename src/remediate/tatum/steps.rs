//! What the owner of a Tatum key does by hand, by state: the alert's next
//! steps, down to the Dashboard's buttons.

use super::TatumData;
use crate::store::{IncidentRow, Stage, State};

const DASHBOARD: &str = "https://dashboard.tatum.io";

pub(super) fn tatum_steps(row: &IncidentRow, _consumers: &[String]) -> Vec<String> {
    let expire = row.action.as_deref() == Some("expire");
    let (data, _) = row.playbook_data.get::<TatumData>();
    let mut steps = match row.state {
        State::Closed if expire => {
            vec!["The leaked key was expired at Tatum; nothing used it that keysentry knows of.".into()]
        }
        State::Closed => vec![regenerated(&data)],
        State::WaitingManual if data.no_destination => vec![
            "keysentry did not regenerate the key: no consumer holds it and no escrow is configured, so the new key would have been lost. The key is frozen (no transactions) but still exists.".to_string(),
            "Configure escrow (`keysentry config init-escrow`, then `remediation.escrow` in the config) or add the consumer that uses the key (providers.tatum.consumers): keysentry then regenerates it on its next check.".to_string(),
            format!("Or expire it: `keysentry incidents expire {} --force` (this deletes the virtual accounts and subscriptions bound to it, irreversibly).", row.id),
            format!("Or regenerate it in the Tatum Dashboard ({DASHBOARD} → API Keys) and put the new key where the key is used."),
        ],
        State::WaitingManual if row.stage == Stage::Rotated => vec![format!(
            "Copy the new key from the Tatum Dashboard ({DASHBOARD} → API Keys) and run `keysentry tatum set-key {}` with the key on standard input.",
            row.id
        )],
        State::WaitingManual => dashboard_steps(row, expire),
        State::Failed if row.stage == Stage::Rotated && data.rotation.escrowed => vec![
            "The key was regenerated and the new key is in escrow: keysentry writes it to the consumers that failed on its next retry, once what stopped them is fixed.".to_string(),
        ],
        State::Failed | State::Detected | State::Verified => dashboard_steps(row, false),
        State::Contained => {
            let mut steps = vec!["The key is frozen (no transactions) but still exists.".to_string()];
            steps.extend(dashboard_steps(row, false));
            steps
        }
        _ => Vec::new(),
    };
    if row.state != State::Closed {
        // A hand-over in progress: say what each consumer got so far.
        if let Some(line) = super::super::handover::progress(&data.rotation) {
            steps.insert(0, line);
        }
    }
    if data.rotation.escrowed {
        steps.push(super::super::handover::escrow_step(row.id));
    }
    steps
}

/// The closing words of a regenerate: per consumer, what happened, and
/// never a hand-over that did not happen.
fn regenerated(data: &TatumData) -> String {
    super::super::handover::closing(
        &data.rotation,
        "The leaked key was regenerated at Tatum and no longer works.",
        "take it from the Tatum Dashboard and put it where the key is used.",
    )
}

/// The exact Dashboard steps for rotating a Tatum key by hand.
fn dashboard_steps(row: &IncidentRow, expire: bool) -> Vec<String> {
    let prefix: String = row.redacted.chars().take_while(|c| *c != '…').collect();
    let mut steps = vec![
        format!("Sign in to the Tatum Dashboard ({DASHBOARD}) and open API Keys."),
        format!(
            "Find the key that starts with `{prefix}` (shown by keysentry as {}; fingerprint {}).",
            row.redacted,
            row.fingerprint.short()
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
            fingerprint: crate::scan::Fingerprint::parse(&"ab".repeat(32)).unwrap(),
            provider: "tatum".into(),
            rule_id: "tatum.api-key".into(),
            rule_name: "Tatum API key".into(),
            redacted: "t-66…[51 chars]".into(),
            owner: None,
            state: state.parse().unwrap(),
            stage: stage.parse().unwrap(),
            action: Some("regenerate".into()),
            reason: None,
            playbook_data: Default::default(),
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
        let row = row("waiting-manual", "inventoried");
        let steps = super::super::super::notify::next_steps(
            &row,
            &["a.env:1".into()],
            tatum_steps(&row, &[]),
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
