-- Typed incidents: `state` and `stage` accept only the spellings of
-- `store::state::{State, Stage}`, and the data one playbook kept in shared
-- columns (the key's network, bound subscriptions and virtual accounts, the
-- replacement key's fingerprint and redacted form) moves into
-- `playbook_data`, a JSON object the incident's playbook owns.
--
-- SQLite adds a CHECK only by rebuilding the table: create the new one, copy,
-- drop the old, rename. The store runs migrations with foreign keys off and
-- checks them before committing (the rows of `locations`, `journal`,
-- `alerts` and `incident_events` keep pointing at the same ids). Dropping
-- the table drops its index and trigger: both are created again below.

CREATE TABLE incidents_new (
    id               INTEGER PRIMARY KEY,
    fingerprint      TEXT    NOT NULL UNIQUE,
    provider         TEXT    NOT NULL,
    rule_id          TEXT    NOT NULL,
    rule_name        TEXT    NOT NULL,
    redacted         TEXT    NOT NULL,
    owner            TEXT,
    state            TEXT    NOT NULL CHECK (state IN ('detected', 'verified', 'contained',
        'rotated', 'expired', 'revoked', 'confirmed', 'closed', 'waiting-manual', 'not-live',
        'failed', 'planned', 'resolved')),
    stage            TEXT    NOT NULL CHECK (stage IN ('detected', 'verified', 'contained',
        'inventoried', 'rotated', 'propagated', 'expired', 'revoked', 'confirmed', 'closed',
        'not-live')),
    action           TEXT,
    reason           TEXT,
    -- Whatever the incident's playbook records beyond the shared columns;
    -- never a key.
    playbook_data    TEXT    NOT NULL DEFAULT '{}'
        CHECK (json_valid(playbook_data) AND json_type(playbook_data) = 'object'),
    failures         INTEGER NOT NULL DEFAULT 0,
    retry_at_ms      INTEGER,
    lease_pid        INTEGER,
    lease_until_ms   INTEGER,
    created_at       TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at       TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    waits            INTEGER NOT NULL DEFAULT 0,
    reminded_at_ms   INTEGER
);

-- json_patch drops the keys whose value is null: a row that had none of
-- these gets `{}`.
INSERT INTO incidents_new (id, fingerprint, provider, rule_id, rule_name, redacted, owner,
    state, stage, action, reason, playbook_data, failures, retry_at_ms, lease_pid,
    lease_until_ms, created_at, updated_at, waits, reminded_at_ms)
SELECT id, fingerprint, provider, rule_id, rule_name, redacted, owner,
    state, stage, action, reason,
    json_patch('{}', json_object(
        'testnet', CASE WHEN testnet IS NULL THEN NULL
                        WHEN testnet THEN json('true') ELSE json('false') END,
        'subscriptions', subscriptions,
        'virtual_accounts', virtual_accounts,
        'new_fingerprint', new_fingerprint,
        'new_redacted', new_redacted)),
    failures, retry_at_ms, lease_pid, lease_until_ms, created_at, updated_at, waits,
    reminded_at_ms
FROM incidents;

DROP TABLE incidents;
ALTER TABLE incidents_new RENAME TO incidents;

CREATE INDEX incidents_state ON incidents(state);

CREATE TRIGGER incident_state_change AFTER UPDATE OF state ON incidents
WHEN OLD.state IS NOT NEW.state
BEGIN
    INSERT INTO incident_events (incident_id, kind, from_state, to_state, detail, after_journal)
    VALUES (NEW.id, 'state', OLD.state, NEW.state, NEW.reason,
            (SELECT MAX(id) FROM journal WHERE incident_id = NEW.id));
END;
