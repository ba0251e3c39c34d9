-- Daemon: where each watched log file was read up to, and which commits of
-- each watched repository were already scanned. Rows are written only after
-- the findings of the bytes or commits before them were handed to the
-- remediation engine, so a restart neither misses nor re-reports anything.
-- No log content is stored: the head of a file is kept as a hash only.

-- One row per log file, keyed by identity (device + inode) so that a file
-- renamed by rotation keeps its place.
CREATE TABLE IF NOT EXISTS log_offsets (
    dev        INTEGER NOT NULL,
    ino        INTEGER NOT NULL,
    -- Where the file was last seen; after a rotation done while the daemon
    -- was down, its directory is searched for the same identity.
    path       TEXT    NOT NULL,
    -- Bytes consumed (always the end of a complete line or of a piece of an
    -- over-long line).
    offset     INTEGER NOT NULL,
    -- Newlines before `offset`: the next line's number is line + 1.
    line       INTEGER NOT NULL,
    -- SHA-256 of the first head_len bytes: tells a truncated-and-refilled
    -- file, or a new file that reused the inode, from the one we read.
    head_len   INTEGER NOT NULL,
    head_hash  TEXT    NOT NULL,
    updated_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    PRIMARY KEY (dev, ino)
);

-- Globs of `watch.logs` that were watched before: files matching a known
-- glob that have no row appeared while the daemon was down and are read
-- from their start; files of a new glob follow `watch.from`.
CREATE TABLE IF NOT EXISTS log_globs (
    glob       TEXT PRIMARY KEY,
    first_seen TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);

-- The ref tips of a watched repository at its last scan, as a JSON array
-- of commit ids; the next scan covers only commits not reachable from them.
CREATE TABLE IF NOT EXISTS repo_cursors (
    repo       TEXT PRIMARY KEY,
    tips       TEXT NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%SZ', 'now'))
);
