//! When the engine looks again at an incident that waits (for its owner to
//! rotate by hand, for a provider to catch up), and when it reminds the
//! owner: polls back off while nothing changes, and the owner hears once per
//! `remediation.reminder_interval_secs` rather than at every poll.

use super::Inner;
use crate::store::IncidentRow;
use std::time::Duration;

/// `remediation.reminder_interval_secs` when unset: once a day.
pub(super) const DEFAULT_REMINDER_SECS: u64 = 24 * 60 * 60;

/// The longest a waiting incident goes unpolled: an owner who rotated by
/// hand hears back within the hour.
const MAX_POLL: Duration = Duration::from_secs(60 * 60);

/// How long after its `waits`-th poll in a row (1 = the first) a waiting
/// incident is polled again: `poll` doubled each time, up to [`MAX_POLL`] or
/// the reminder interval, whichever is shorter (never below `poll`). A key
/// waiting for days for its owner costs a provider call an hour, not one a
/// minute.
fn poll_delay(poll: Duration, reminder: Duration, waits: u32) -> Duration {
    let cap = MAX_POLL.min(reminder).max(poll);
    poll.saturating_mul(1 << waits.saturating_sub(1).min(16))
        .min(cap)
}

impl Inner {
    /// Whether a pass that ended waiting without any change should remind
    /// the owner: the last alert is a reminder interval old (or unknown:
    /// a store from before reminders).
    pub(super) fn reminder_due(&self, row: &IncidentRow, now: i64) -> bool {
        let every = self.reminder_interval.as_millis() as i64;
        row.reminded_at_ms
            .map_or(true, |t| now.saturating_sub(t) >= every)
    }

    /// When the poller looks at a waiting incident next: after its backoff,
    /// and no later than its next reminder is due.
    pub(super) fn next_poll(&self, row: &IncidentRow, now: i64) -> i64 {
        let delay = poll_delay(self.poll_interval, self.reminder_interval, row.waits);
        let backoff = now.saturating_add(delay.as_millis() as i64);
        match row.reminded_at_ms {
            Some(t) => backoff.min(t.saturating_add(self.reminder_interval.as_millis() as i64)),
            None => backoff,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_polls_back_off_to_the_hour_or_the_reminder_interval() {
        let min = Duration::from_secs(60);
        let day = Duration::from_secs(86_400);
        let delays: Vec<u64> = (1..=9).map(|n| poll_delay(min, day, n).as_secs()).collect();
        assert_eq!(delays, [60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
        // A reminder every 10 minutes needs a poll at least that often.
        assert_eq!(poll_delay(min, Duration::from_secs(600), 9).as_secs(), 600);
        // Never below the configured poll, never overflowing.
        assert_eq!(poll_delay(min, Duration::from_secs(1), 3).as_secs(), 60);
        assert_eq!(poll_delay(Duration::ZERO, day, u32::MAX), Duration::ZERO);
    }
}
