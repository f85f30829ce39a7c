//! The tables of `server.db`.
//!
//! One file, one connection pool, WAL mode, so the `serve` process and a
//! `publish` from the command line share it safely.

/// Created on open when missing; every statement is idempotent.
pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS channels (
    id                 TEXT PRIMARY KEY,      -- channel database id, case-sensitive
    data_group         TEXT NOT NULL,
    secret_salt        TEXT NOT NULL,         -- hex, 16 random bytes
    secret_sha256      TEXT NOT NULL,         -- hex SHA-256 of salt || secret
    created_at_ms      INTEGER NOT NULL,
    last_connection_ms INTEGER,
    went_back_at_ms    INTEGER,               -- it listed after a sequence below one it had applied
    went_back_from     INTEGER,               -- the highest sequence it had applied
    went_back_to       INTEGER                -- the sequence it listed after
);

CREATE TABLE IF NOT EXISTS packages (
    id            TEXT PRIMARY KEY,           -- uuid; the file is packages/<id>.cdxpkg
    data_group    TEXT NOT NULL,
    job           TEXT NOT NULL,
    sequence      INTEGER NOT NULL,
    kind          TEXT NOT NULL,              -- "Full" | "Incremental"
    bytes         INTEGER NOT NULL,
    sha256        TEXT NOT NULL,
    rows          INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    content_bytes INTEGER,                    -- uncompressed body; NULL before it was recorded
    tables        TEXT,                       -- JSON array of the tables it changes; NULL until read
    superseded_by TEXT,                       -- uuid of the later full package of its job that replaces it
    superseded_at_ms INTEGER,                 -- when superseded_by was last set
    withdrawn_at_ms  INTEGER,                 -- set by `package withdraw`: no store should apply it
    withdrawn_by     TEXT,
    withdrawn_reason TEXT,
    pruned_at_ms  INTEGER,                    -- set by `compact`: the file is gone, the row stays
    UNIQUE (data_group, sequence)
);

-- What operators did to packages after publishing them (withdrawals), with
-- who and when: never updated, never deleted.
CREATE TABLE IF NOT EXISTS package_history (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    package_id TEXT NOT NULL,
    event      TEXT NOT NULL,                 -- "withdrawn"
    by         TEXT NOT NULL,
    reason     TEXT NOT NULL,
    at_ms      INTEGER NOT NULL
);

-- The current state of every session, download (subject = package id) and
-- upload (subject = upload id), per channel.
CREATE TABLE IF NOT EXISTS sessions (
    channel        TEXT NOT NULL,
    direction      TEXT NOT NULL,             -- "download" | "upload"
    subject_id     TEXT NOT NULL,
    session_id     TEXT,                      -- the agent's, once it reported
    job            TEXT NOT NULL,             -- job for downloads, table for uploads
    sequence       INTEGER,                   -- downloads only
    status         TEXT NOT NULL,
    status_code    INTEGER NOT NULL,
    message        TEXT,
    bytes          INTEGER NOT NULL DEFAULT 0,
    rows           INTEGER NOT NULL DEFAULT 0,
    attempts       INTEGER NOT NULL DEFAULT 0,
    created_at_ms  INTEGER NOT NULL,
    modified_at_ms INTEGER NOT NULL,
    reported_at_ms INTEGER,                   -- at_ms of the report that last moved it
    PRIMARY KEY (channel, direction, subject_id)
);

-- Every status report received, and the server's own transitions.
CREATE TABLE IF NOT EXISTS session_history (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    channel        TEXT NOT NULL,
    direction      TEXT NOT NULL,
    subject_id     TEXT NOT NULL,
    session_id     TEXT,
    source         TEXT NOT NULL,             -- "agent" | "server"
    status         TEXT NOT NULL,
    status_code    INTEGER NOT NULL,
    message        TEXT,
    bytes          INTEGER NOT NULL,
    rows           INTEGER NOT NULL,
    attempt        INTEGER NOT NULL,
    at_ms          INTEGER NOT NULL,          -- the reporter's clock
    received_at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS session_history_subject
    ON session_history (channel, direction, subject_id);

-- Each uploaded row once per (channel, table, counter): re-sends are ignored.
CREATE TABLE IF NOT EXISTS uploaded_rows (
    channel    TEXT NOT NULL,
    table_name TEXT NOT NULL,
    counter    INTEGER NOT NULL,
    upload_id  TEXT NOT NULL,
    row_json   TEXT NOT NULL,                 -- {"column": value, ...}
    PRIMARY KEY (channel, table_name, counter)
) WITHOUT ROWID;

-- Rows uploaded under a counter the server held already with other values:
-- the store's counters went back (a channel database restored from a
-- backup). Kept, never dropped, for an operator to reconcile.
CREATE TABLE IF NOT EXISTS upload_conflicts (
    channel        TEXT NOT NULL,
    table_name     TEXT NOT NULL,
    counter        INTEGER NOT NULL,
    upload_id      TEXT NOT NULL,
    row_json       TEXT NOT NULL,             -- the row that arrived
    received_at_ms INTEGER NOT NULL,
    UNIQUE (channel, table_name, counter, row_json)
);

-- Per (channel, table): the columns and package types of the last batch.
CREATE TABLE IF NOT EXISTS upload_columns (
    channel    TEXT NOT NULL,
    table_name TEXT NOT NULL,
    columns    TEXT NOT NULL,                 -- JSON array of names
    types      TEXT NOT NULL,                 -- JSON array of type names or null
    PRIMARY KEY (channel, table_name)
);

-- Per (channel, table): the highest counter stored and the rows stored.
CREATE TABLE IF NOT EXISTS upload_counters (
    channel    TEXT NOT NULL,
    table_name TEXT NOT NULL,
    high_water INTEGER NOT NULL,
    rows       INTEGER NOT NULL,
    PRIMARY KEY (channel, table_name)
);
"#;

/// A counter moved by every change to what the request path keeps in
/// memory (channels' credentials, packages' listing, `cache.rs`): the
/// server drops its copies when it moves, and only then (a store's last
/// connection or a status report moves nothing). Run after
/// [`ADDED_COLUMNS`] are in.
pub(crate) const CACHE_EPOCH: &str = r#"
CREATE TABLE IF NOT EXISTS cache_epoch (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n  INTEGER NOT NULL
);
INSERT OR IGNORE INTO cache_epoch (id, n) VALUES (1, 0);
CREATE TRIGGER IF NOT EXISTS cache_channel_added AFTER INSERT ON channels
    BEGIN UPDATE cache_epoch SET n = n + 1; END;
CREATE TRIGGER IF NOT EXISTS cache_channel_removed AFTER DELETE ON channels
    BEGIN UPDATE cache_epoch SET n = n + 1; END;
CREATE TRIGGER IF NOT EXISTS cache_channel_rekeyed
    AFTER UPDATE OF id, data_group, secret_salt, secret_sha256, created_at_ms ON channels
    BEGIN UPDATE cache_epoch SET n = n + 1; END;
CREATE TRIGGER IF NOT EXISTS cache_package_added AFTER INSERT ON packages
    BEGIN UPDATE cache_epoch SET n = n + 1; END;
CREATE TRIGGER IF NOT EXISTS cache_package_changed AFTER UPDATE ON packages
    BEGIN UPDATE cache_epoch SET n = n + 1; END;
CREATE TRIGGER IF NOT EXISTS cache_package_removed AFTER DELETE ON packages
    BEGIN UPDATE cache_epoch SET n = n + 1; END;
"#;

/// Per data group, a counter moved by every change to its packages (a
/// publication, a withdrawal, a supersession, a pruning): with the newest
/// sequence, the version of `GET /v1/groups/{group}/head`. A group that
/// changed before this table existed starts at 0 (absent).
pub(crate) const GROUP_VERSIONS: &str = r#"
CREATE TABLE IF NOT EXISTS group_versions (
    data_group TEXT PRIMARY KEY,
    version    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TRIGGER IF NOT EXISTS group_version_package_added AFTER INSERT ON packages
    BEGIN
        INSERT INTO group_versions (data_group, version) VALUES (NEW.data_group, 1)
            ON CONFLICT (data_group) DO UPDATE SET version = version + 1;
    END;
CREATE TRIGGER IF NOT EXISTS group_version_package_changed AFTER UPDATE ON packages
    BEGIN
        INSERT INTO group_versions (data_group, version) VALUES (NEW.data_group, 1)
            ON CONFLICT (data_group) DO UPDATE SET version = version + 1;
        INSERT INTO group_versions (data_group, version)
            SELECT OLD.data_group, 1 WHERE OLD.data_group IS NOT NEW.data_group
            ON CONFLICT (data_group) DO UPDATE SET version = version + 1;
    END;
CREATE TRIGGER IF NOT EXISTS group_version_package_removed AFTER DELETE ON packages
    BEGIN
        INSERT INTO group_versions (data_group, version) VALUES (OLD.data_group, 1)
            ON CONFLICT (data_group) DO UPDATE SET version = version + 1;
    END;
"#;

/// Columns added after a table was first released, added to older files on
/// open: (table, column, its definition).
pub(crate) const ADDED_COLUMNS: &[(&str, &str, &str)] = &[
    ("packages", "content_bytes", "INTEGER"),
    ("sessions", "reported_at_ms", "INTEGER"),
    ("packages", "tables", "TEXT"),
    ("packages", "superseded_by", "TEXT"),
    ("packages", "superseded_at_ms", "INTEGER"),
    ("packages", "withdrawn_at_ms", "INTEGER"),
    ("packages", "withdrawn_by", "TEXT"),
    ("packages", "withdrawn_reason", "TEXT"),
    ("packages", "pruned_at_ms", "INTEGER"),
    ("channels", "went_back_at_ms", "INTEGER"),
    ("channels", "went_back_from", "INTEGER"),
    ("channels", "went_back_to", "INTEGER"),
];
