-- rmm-server schema v1 (SQLite). Timestamps are unix milliseconds (UTC),
-- ids are lowercase hyphenated UUID text: the same representation as the
-- PostgreSQL schema, so both stores run the same queries.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE agents (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    secret_hash   TEXT,
    hostname      TEXT NOT NULL DEFAULT '',
    os            TEXT NOT NULL DEFAULT '',
    arch          TEXT NOT NULL DEFAULT '',
    agent_version TEXT NOT NULL DEFAULT '',
    channel       TEXT NOT NULL DEFAULT 'stable',
    machine_uid   TEXT,
    address       TEXT,
    online        BOOLEAN NOT NULL DEFAULT FALSE,
    session_id    TEXT,
    last_seen     BIGINT,
    created_at    BIGINT NOT NULL,
    enrolled_at   BIGINT,
    retired_at    BIGINT,
    replaced_by   TEXT
);
CREATE UNIQUE INDEX agents_live_name ON agents (name) WHERE retired_at IS NULL;
CREATE INDEX agents_machine_uid ON agents (machine_uid) WHERE retired_at IS NULL;

CREATE TABLE enrollments (
    token_hash TEXT PRIMARY KEY,
    agent_id   TEXT NOT NULL,
    server_url TEXT NOT NULL,
    channel    TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    used_from  TEXT
);
CREATE INDEX enrollments_expires ON enrollments (expires_at);

CREATE TABLE commands (
    id                  TEXT PRIMARY KEY,
    agent_id            TEXT NOT NULL,
    command_type        TEXT NOT NULL,
    command_text        TEXT NOT NULL,
    context             TEXT NOT NULL,
    timeout_secs        BIGINT,
    status              TEXT NOT NULL,
    phase               TEXT NOT NULL,
    exit_code           BIGINT,
    signal              BIGINT,
    error               TEXT,
    stdout_len          BIGINT NOT NULL DEFAULT 0,
    stderr_len          BIGINT NOT NULL DEFAULT 0,
    stdout_truncated    BOOLEAN NOT NULL DEFAULT FALSE,
    stderr_truncated    BOOLEAN NOT NULL DEFAULT FALSE,
    created_by          TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    delivered_at        BIGINT,
    started_at          BIGINT,
    completed_at        BIGINT,
    deadline_at         BIGINT,
    cancel_requested_at BIGINT
);
CREATE INDEX commands_agent_created ON commands (agent_id, created_at, id);
CREATE INDEX commands_status_phase ON commands (status, phase);

CREATE TABLE command_output (
    command_id TEXT NOT NULL,
    stream     SMALLINT NOT NULL,
    byte_offset BIGINT NOT NULL,
    data       TEXT NOT NULL,
    PRIMARY KEY (command_id, stream, byte_offset)
);

CREATE TABLE audit_log (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      BIGINT NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT,
    address TEXT,
    detail  TEXT NOT NULL DEFAULT '{}'
);
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
