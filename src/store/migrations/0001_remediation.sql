-- Remediation: one incident per leaked key (by fingerprint), every place it
-- was seen, every provider call (journaled before it is made) and every alert.
-- No key is ever stored: fingerprints and redacted forms only.

CREATE TABLE incidents (
    id               INTEGER PRIMARY KEY,
    fingerprint      TEXT    NOT NULL UNIQUE,
    provider         TEXT    NOT NULL,
    rule_id          TEXT    NOT NULL,
    rule_name        TEXT    NOT NULL,
    redacted         TEXT    NOT NULL,
    owner            TEXT,
    -- What a user sees: detected, verified, contained, rotated, expired,
    -- revoked, confirmed, closed, waiting-manual, not-live, failed, planned.
    state            TEXT    NOT NULL,
    -- How far the playbook got: the last step that completed. A failed or
    -- interrupted incident resumes from here.
    stage            TEXT    NOT NULL,
    -- The action the policy chose (and, for Tatum, what inventory made of it).
    action           TEXT,
    -- Why the incident failed, or a note on what it is waiting for.
    reason           TEXT,
    testnet          INTEGER,
    subscriptions    INTEGER,
    virtual_accounts INTEGER,
    new_fingerprint  TEXT,
    new_redacted     TEXT,
    -- Passes that ended in failure since the last progress, and when (unix
    -- ms) a failed incident may be tried again: the backoff between runs.
    failures         INTEGER NOT NULL DEFAULT 0,
    retry_at_ms      INTEGER,
    -- The process working on the incident (a scan, the daemon, set-key) and
    -- until when (unix ms): two processes never run one playbook at once.
    lease_pid        INTEGER,
    lease_until_ms   INTEGER,
    created_at       TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at       TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE INDEX incidents_state ON incidents(state);

-- '' rather than NULL for absent parts so that UNIQUE deduplicates them.
CREATE TABLE locations (
    id           INTEGER PRIMARY KEY,
    incident_id  INTEGER NOT NULL REFERENCES incidents(id),
    source       TEXT    NOT NULL,
    path         TEXT    NOT NULL,
    line         INTEGER NOT NULL,
    col          INTEGER NOT NULL,
    commit_sha   TEXT    NOT NULL DEFAULT '',
    repo         TEXT    NOT NULL DEFAULT '',
    author_email TEXT,
    rule_id      TEXT    NOT NULL,
    first_seen   TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    UNIQUE (incident_id, source, path, line, col, commit_sha, repo)
);

-- One row per provider call or side effect, inserted before it happens and
-- completed after. A row with no completed_at was interrupted (crash, kill).
CREATE TABLE journal (
    id           INTEGER PRIMARY KEY,
    incident_id  INTEGER NOT NULL REFERENCES incidents(id),
    step         TEXT    NOT NULL,
    started_at   TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    completed_at TEXT,
    -- ok, failed, unknown (may or may not have happened), interrupted.
    outcome      TEXT,
    http_status  INTEGER,
    detail       TEXT
);

CREATE INDEX journal_incident ON journal(incident_id, step);

CREATE TABLE alerts (
    id          INTEGER PRIMARY KEY,
    incident_id INTEGER NOT NULL REFERENCES incidents(id),
    sent_at     TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    -- The alert as JSON (redacted key and fingerprint only).
    body        TEXT    NOT NULL,
    -- One line per channel: `channel: ok` or `channel: error`.
    deliveries  TEXT    NOT NULL
);
