-- ralph task store, SQLite, schema version 1.
-- Times are UTC epoch seconds (REAL). JSON columns hold text.

CREATE TABLE tasks (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,   -- insertion order: "age" for ready order
    id             TEXT NOT NULL UNIQUE,
    title          TEXT NOT NULL,
    description    TEXT NOT NULL DEFAULT '',
    status         TEXT NOT NULL DEFAULT 'open'
                   CHECK (status IN ('open', 'done', 'failed', 'cancelled')),
    priority       INTEGER NOT NULL DEFAULT 0,
    parent         TEXT REFERENCES tasks (id),
    labels         TEXT NOT NULL DEFAULT '[]',
    requires       TEXT NOT NULL DEFAULT '[]',
    metadata       TEXT NOT NULL DEFAULT '{}',
    attempts       INTEGER NOT NULL DEFAULT 0,
    expiries       INTEGER NOT NULL DEFAULT 0,          -- claims lost to expiry (poison pill count)
    open_blockers  INTEGER NOT NULL DEFAULT 0,          -- blockers whose status is not done
    open_children  INTEGER NOT NULL DEFAULT 0,          -- children whose status is not done
    lease_expires  REAL NOT NULL DEFAULT 0,             -- expiry of the live claim, 0 when none
    not_before     REAL NOT NULL DEFAULT 0,             -- retry backoff
    last_error     TEXT,
    created_at     REAL NOT NULL,
    updated_at     REAL NOT NULL,
    done_at        REAL
);

-- The ready scan walks this index in priority/age order and stops at LIMIT.
CREATE INDEX tasks_ready ON tasks (priority DESC, seq)
    WHERE status = 'open' AND open_blockers = 0 AND open_children = 0;
CREATE INDEX tasks_status ON tasks (status, seq);
CREATE INDEX tasks_parent ON tasks (parent) WHERE parent IS NOT NULL;

CREATE TABLE deps (
    blocker  TEXT NOT NULL REFERENCES tasks (id),
    blocked  TEXT NOT NULL REFERENCES tasks (id),
    PRIMARY KEY (blocker, blocked),
    CHECK (blocker <> blocked)
) WITHOUT ROWID;
CREATE INDEX deps_blocked ON deps (blocked, blocker);

-- The fencing token is the claim id: AUTOINCREMENT never reuses or lowers it.
CREATE TABLE claims (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id        TEXT NOT NULL REFERENCES tasks (id),
    worker         TEXT NOT NULL,
    lease_seconds  REAL NOT NULL CHECK (lease_seconds > 0),
    claimed_at     REAL NOT NULL,
    expires_at     REAL NOT NULL,
    renewals       INTEGER NOT NULL DEFAULT 0,
    state          TEXT NOT NULL DEFAULT 'live'
                   CHECK (state IN ('live', 'released', 'expired', 'done')),
    ended_at       REAL
);
-- At most one live claim per task, enforced here rather than by luck.
CREATE UNIQUE INDEX claims_one_live ON claims (task_id) WHERE state = 'live';
CREATE INDEX claims_live_expiry ON claims (expires_at) WHERE state = 'live';
CREATE INDEX claims_live_worker ON claims (worker) WHERE state = 'live';

CREATE TABLE workers (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL UNIQUE,
    pid                 INTEGER,
    host                TEXT,
    capabilities        TEXT NOT NULL DEFAULT '[]',
    status              TEXT NOT NULL DEFAULT 'idle',
    current_task        TEXT,
    started_at          REAL NOT NULL,
    heartbeat_at        REAL NOT NULL,
    heartbeat_interval  REAL NOT NULL DEFAULT 10,
    stop_requested      INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       REAL NOT NULL,
    kind     TEXT NOT NULL,
    task_id  TEXT,
    worker   TEXT,
    token    INTEGER,
    data     TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX events_task ON events (task_id, id);

CREATE TABLE attempts (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id        TEXT NOT NULL REFERENCES tasks (id),
    attempt        INTEGER NOT NULL,
    worker         TEXT NOT NULL,
    agent          TEXT NOT NULL,
    started_at     REAL NOT NULL,
    ended_at       REAL,
    outcome        TEXT,
    exit_code      INTEGER,
    cost_usd       REAL,
    input_tokens   INTEGER,
    output_tokens  INTEGER,
    session_id     TEXT,
    run_dir        TEXT,
    summary        TEXT,
    counted        INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX attempts_task ON attempts (task_id, id);
