-- Fleet: several daemons may share one store (PostgreSQL), so per-host
-- state is keyed by the daemon's node name, every location says which node
-- saw it, and a lease names the node that holds it (a process id means
-- nothing on another host).
--
-- Rows written before this migration get node '' and are claimed by the
-- first daemon that opens the store (a SQLite store has one host).

ALTER TABLE incidents ADD COLUMN lease_node TEXT;

CREATE TABLE locations_new (
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
    -- The daemon (node name) that saw it; '' before fleets.
    node         TEXT    NOT NULL DEFAULT '',
    UNIQUE (incident_id, source, path, line, col, commit_sha, repo, node)
);
INSERT INTO locations_new (id, incident_id, source, path, line, col, commit_sha, repo,
                           author_email, rule_id, first_seen)
    SELECT id, incident_id, source, path, line, col, commit_sha, repo, author_email, rule_id,
           first_seen FROM locations;
DROP TABLE locations;
ALTER TABLE locations_new RENAME TO locations;

-- `offset` is a reserved word in PostgreSQL: the column is `byte_offset`
-- on both engines.
CREATE TABLE log_offsets_new (
    node        TEXT    NOT NULL,
    dev         INTEGER NOT NULL,
    ino         INTEGER NOT NULL,
    path        TEXT    NOT NULL,
    byte_offset INTEGER NOT NULL,
    line        INTEGER NOT NULL,
    head_len    INTEGER NOT NULL,
    head_hash   TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    PRIMARY KEY (node, dev, ino)
);
INSERT INTO log_offsets_new (node, dev, ino, path, byte_offset, line, head_len, head_hash, updated_at)
    SELECT '', dev, ino, path, offset, line, head_len, head_hash, updated_at FROM log_offsets;
DROP TABLE log_offsets;
ALTER TABLE log_offsets_new RENAME TO log_offsets;

CREATE TABLE log_globs_new (
    node       TEXT NOT NULL,
    glob       TEXT NOT NULL,
    first_seen TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    PRIMARY KEY (node, glob)
);
INSERT INTO log_globs_new (node, glob, first_seen) SELECT '', glob, first_seen FROM log_globs;
DROP TABLE log_globs;
ALTER TABLE log_globs_new RENAME TO log_globs;

CREATE TABLE repo_cursors_new (
    node       TEXT NOT NULL,
    repo       TEXT NOT NULL,
    tips       TEXT NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    PRIMARY KEY (node, repo)
);
INSERT INTO repo_cursors_new (node, repo, tips, updated_at)
    SELECT '', repo, tips, updated_at FROM repo_cursors;
DROP TABLE repo_cursors;
ALTER TABLE repo_cursors_new RENAME TO repo_cursors;
