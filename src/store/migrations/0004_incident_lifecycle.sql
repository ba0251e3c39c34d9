-- Incident lifecycle: the history a user reads in `incidents show` besides
-- provider calls and alerts (every state change, with the reason or the
-- note given to `incidents resolve|reopen`), and the schedule of an incident
-- that waits for its owner (backed-off polls, reminders).

-- Passes in a row that found the incident still waiting (a manual rotation,
-- a revoke not yet effective): each doubles the time to the next poll.
ALTER TABLE incidents ADD COLUMN waits INTEGER NOT NULL DEFAULT 0;
-- When the owner was last alerted about the incident (unix ms): a waiting
-- incident is reminded once per `remediation.reminder_interval_secs`.
ALTER TABLE incidents ADD COLUMN reminded_at_ms INTEGER;

CREATE TABLE incident_events (
    id          INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL REFERENCES incidents(id),
    at          TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    kind        TEXT    NOT NULL CHECK (kind IN ('state')),
    from_state  TEXT,
    to_state    TEXT,
    -- The incident's reason after the change (never a key).
    detail      TEXT,
    -- The incident's last journal entry when the state changed: orders the
    -- two exactly where their times are the same millisecond.
    after_journal INTEGER
);

CREATE INDEX incident_events_incident ON incident_events(incident_id);

-- Every writer of `state` (the engine's passes, resolve, reopen) is recorded,
-- whichever code path it takes.
CREATE TRIGGER incident_state_change AFTER UPDATE OF state ON incidents
WHEN OLD.state IS NOT NEW.state
BEGIN
    INSERT INTO incident_events (incident_id, kind, from_state, to_state, detail, after_journal)
    VALUES (NEW.id, 'state', OLD.state, NEW.state, NEW.reason,
            (SELECT MAX(id) FROM journal WHERE incident_id = NEW.id));
END;

-- `change` (the incident moved on) or `reminder` (it still waits).
ALTER TABLE alerts ADD COLUMN kind TEXT NOT NULL DEFAULT 'change';
