//! The whole history of one incident, as `incidents show` prints it: when
//! and where it was detected and seen, every provider call the journal
//! holds, every state change (with its reason, or the note of a resolve or
//! reopen), every alert and reminder, in time order.

use super::{AlertRow, EventRow, IncidentRow, JournalEntry, LocationRow};

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Entry {
    pub at: String,
    /// `detected`, `seen`, `call`, `state`, `alert`, `reminder`.
    pub kind: &'static str,
    pub text: String,
}

pub fn build(
    row: &IncidentRow,
    locations: &[LocationRow],
    journal: &[JournalEntry],
    events: &[EventRow],
    alerts: &[AlertRow],
) -> Vec<Entry> {
    let mut out = Vec::new();
    let place = |l: &LocationRow| format!("{} ({})", l.display(), l.source);
    let (first, rest) = match locations.split_first() {
        Some((f, rest)) => (format!(" at {}", place(f)), rest),
        None => (String::new(), locations),
    };
    out.push(Entry {
        at: row.created_at.clone(),
        kind: "detected",
        text: format!("{} {}{first}", row.rule_id, row.redacted),
    });
    for l in rest {
        out.push(Entry {
            at: l.first_seen.clone(),
            kind: "seen",
            text: format!("seen again at {}", place(l)),
        });
    }
    out.extend(calls_and_changes(journal, events));
    for a in alerts {
        let state = serde_json::from_str::<serde_json::Value>(&a.body)
            .ok()
            .and_then(|v| v["state"].as_str().map(str::to_string))
            .unwrap_or_default();
        let deliveries: Vec<&str> = a.deliveries.lines().collect();
        out.push(Entry {
            at: a.sent_at.clone(),
            kind: if a.kind == "reminder" {
                "reminder"
            } else {
                "alert"
            },
            text: format!(
                "{state}; {}",
                if deliveries.is_empty() {
                    "no alert channel configured".to_string()
                } else {
                    deliveries.join(", ")
                }
            ),
        });
    }
    // Stable: entries of one instant keep the order above (detection, then
    // its calls, state changes, alerts).
    out.sort_by_key(|e| sort_key(&e.at));
    out
}

/// Calls and state changes in the order they happened: each change after
/// the journal entry it followed (their times can be the same millisecond).
fn calls_and_changes(journal: &[JournalEntry], events: &[EventRow]) -> Vec<Entry> {
    let mut out = Vec::with_capacity(journal.len() + events.len());
    let mut changes = events.iter().peekable();
    let mut changes_up_to = |out: &mut Vec<Entry>, journal_id: Option<i64>| {
        while let Some(e) = changes.next_if(|e| e.after_journal <= journal_id) {
            out.push(state_entry(e));
        }
    };
    changes_up_to(&mut out, None);
    for e in journal {
        let status = e.http_status.map(|s| format!(" {s}")).unwrap_or_default();
        let detail = e
            .detail
            .as_deref()
            .map(|d| format!(" — {d}"))
            .unwrap_or_default();
        out.push(Entry {
            at: e.started_at.clone(),
            kind: "call",
            text: format!(
                "{}: {}{status}{detail}",
                e.step,
                e.outcome.as_deref().unwrap_or("in-flight")
            ),
        });
        changes_up_to(&mut out, Some(e.id));
    }
    changes_up_to(&mut out, Some(i64::MAX));
    out
}

fn state_entry(e: &EventRow) -> Entry {
    let detail = e
        .detail
        .as_deref()
        .map(|d| format!(": {d}"))
        .unwrap_or_default();
    Entry {
        at: e.at.clone(),
        kind: "state",
        text: format!(
            "{} → {}{detail}",
            e.from_state.as_deref().unwrap_or("?"),
            e.to_state.as_deref().unwrap_or("?")
        ),
    }
}

/// Store times are `…:SS.mmmZ`, older rows `…:SSZ`: compare them alike.
fn sort_key(at: &str) -> String {
    match at.strip_suffix('Z') {
        Some(s) if !s.contains('.') => format!("{s}.000Z"),
        _ => at.to_string(),
    }
}

pub fn text(entries: &[Entry]) -> String {
    let mut out = String::new();
    for e in entries {
        out.push_str(&format!("  {:<24}  {:<8}  {}\n", e.at, e.kind, e.text));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(id: i64, step: &str, at: &str) -> JournalEntry {
        JournalEntry {
            id,
            incident_id: 1,
            step: step.into(),
            started_at: at.into(),
            completed_at: Some(at.into()),
            outcome: Some("ok".into()),
            http_status: Some(200),
            detail: None,
        }
    }

    fn change(to: &str, at: &str, after_journal: Option<i64>) -> EventRow {
        EventRow {
            at: at.into(),
            from_state: Some("x".into()),
            to_state: Some(to.into()),
            detail: None,
            after_journal,
        }
    }

    #[test]
    fn calls_and_state_changes_of_one_millisecond_keep_their_real_order() {
        let t = "2026-01-01T00:00:00.241Z";
        let journal = [call(1, "verify", t), call(2, "revoke", t)];
        let events = [
            change("verified", t, Some(1)),
            change("revoked", t, Some(2)),
        ];
        let order: Vec<String> = calls_and_changes(&journal, &events)
            .into_iter()
            .map(|e| e.text)
            .collect();
        assert_eq!(
            order,
            [
                "verify: ok 200",
                "x → verified",
                "revoke: ok 200",
                "x → revoked"
            ]
        );
    }

    #[test]
    fn second_and_millisecond_times_sort_together() {
        let mut v = vec![
            "2026-01-01T00:00:01.500Z",
            "2026-01-01T00:00:01Z",
            "2026-01-01T00:00:00.999Z",
        ];
        v.sort_by_key(|a| sort_key(a));
        assert_eq!(
            v,
            [
                "2026-01-01T00:00:00.999Z",
                "2026-01-01T00:00:01Z",
                "2026-01-01T00:00:01.500Z"
            ]
        );
    }
}
