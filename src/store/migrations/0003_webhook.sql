-- GitHub webhook deliveries: a delivery is stored before it is acknowledged
-- and stays here until processed, so a crash or restart never loses one and a
-- replayed `X-GitHub-Delivery` id is recognised.
--
-- `job` holds only what processing needs (repo, refs, commit ids, author
-- emails), never the raw payload: commit messages can contain keys.
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    id              TEXT PRIMARY KEY,
    event           TEXT NOT NULL,
    job             TEXT NOT NULL,
    -- pending | done | failed
    state           TEXT NOT NULL DEFAULT 'pending',
    attempts        INTEGER NOT NULL DEFAULT 0,
    -- unix milliseconds; a pending delivery is not retried before this.
    next_attempt_at INTEGER NOT NULL,
    last_error      TEXT,
    received_at     INTEGER NOT NULL,
    finished_at     INTEGER
);

CREATE INDEX IF NOT EXISTS webhook_deliveries_due
    ON webhook_deliveries (state, next_attempt_at);

-- Commit comments already posted, so a retried or replayed delivery (or the
-- same commit pushed to a second branch) does not comment twice.
CREATE TABLE IF NOT EXISTS webhook_comments (
    repo        TEXT NOT NULL,
    commit_sha  TEXT NOT NULL,
    path        TEXT NOT NULL,
    line        INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    posted_at   INTEGER NOT NULL,
    PRIMARY KEY (repo, commit_sha, path, line, fingerprint)
);
