-- ralph task store, PostgreSQL, schema version 1 (same shape as sqlite_0001.sql).
-- Times are UTC epoch seconds (double precision) so the domain logic compares plain numbers.
-- JSON columns are jsonb. Foreign keys are checked at commit, so a batch may name a parent
-- before inserting it. Integer flags (stop_requested, counted) stay integers as in SQLite.

CREATE TABLE tasks (
    seq            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,  -- insertion order ("age")
    id             text NOT NULL UNIQUE,
    title          text NOT NULL,
    description    text NOT NULL DEFAULT '',
    status         text NOT NULL DEFAULT 'open'
                   CHECK (status IN ('open', 'done', 'failed', 'cancelled')),
    priority       integer NOT NULL DEFAULT 0,
    parent         text REFERENCES tasks (id) DEFERRABLE INITIALLY DEFERRED,
    labels         jsonb NOT NULL DEFAULT '[]',
    requires       jsonb NOT NULL DEFAULT '[]',
    metadata       jsonb NOT NULL DEFAULT '{}',
    attempts       integer NOT NULL DEFAULT 0,
    expiries       integer NOT NULL DEFAULT 0,          -- claims lost to expiry (poison pill count)
    open_blockers  integer NOT NULL DEFAULT 0,          -- blockers whose status is not done
    open_children  integer NOT NULL DEFAULT 0,          -- children whose status is not done
    lease_expires  double precision NOT NULL DEFAULT 0, -- expiry of the live claim, 0 when none
    not_before     double precision NOT NULL DEFAULT 0, -- retry backoff
    last_error     text,
    created_at     double precision NOT NULL,
    updated_at     double precision NOT NULL,
    done_at        double precision
);

-- The ready scan walks this index in priority/age order and stops at LIMIT.
CREATE INDEX tasks_ready ON tasks (priority DESC, seq)
    WHERE status = 'open' AND open_blockers = 0 AND open_children = 0;
CREATE INDEX tasks_status ON tasks (status, seq);
CREATE INDEX tasks_parent ON tasks (parent) WHERE parent IS NOT NULL;

CREATE TABLE deps (
    blocker  text NOT NULL REFERENCES tasks (id) DEFERRABLE INITIALLY DEFERRED,
    blocked  text NOT NULL REFERENCES tasks (id) DEFERRABLE INITIALLY DEFERRED,
    PRIMARY KEY (blocker, blocked),
    CHECK (blocker <> blocked)
);
CREATE INDEX deps_blocked ON deps (blocked, blocker);

-- The fencing token is the claim id: an identity never reuses or lowers a value.
CREATE TABLE claims (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id        text NOT NULL REFERENCES tasks (id),
    worker         text NOT NULL,
    lease_seconds  double precision NOT NULL CHECK (lease_seconds > 0),
    claimed_at     double precision NOT NULL,
    expires_at     double precision NOT NULL,
    renewals       integer NOT NULL DEFAULT 0,
    state          text NOT NULL DEFAULT 'live'
                   CHECK (state IN ('live', 'released', 'expired', 'done')),
    ended_at       double precision
);
-- At most one live claim per task, enforced here rather than by luck.
CREATE UNIQUE INDEX claims_one_live ON claims (task_id) WHERE state = 'live';
CREATE INDEX claims_live_expiry ON claims (expires_at) WHERE state = 'live';
CREATE INDEX claims_live_worker ON claims (worker) WHERE state = 'live';

CREATE TABLE workers (
    id                  text PRIMARY KEY,
    name                text NOT NULL UNIQUE,
    pid                 integer,
    host                text,
    capabilities        jsonb NOT NULL DEFAULT '[]',
    status              text NOT NULL DEFAULT 'idle',
    current_task        text,
    started_at          double precision NOT NULL,
    heartbeat_at        double precision NOT NULL,
    heartbeat_interval  double precision NOT NULL DEFAULT 10,
    stop_requested      integer NOT NULL DEFAULT 0
);

CREATE TABLE events (
    id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at       double precision NOT NULL,
    kind     text NOT NULL,
    task_id  text,
    worker   text,
    token    bigint,
    data     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX events_task ON events (task_id, id);

CREATE TABLE attempts (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id        text NOT NULL REFERENCES tasks (id),
    attempt        integer NOT NULL,
    worker         text NOT NULL,
    agent          text NOT NULL,
    started_at     double precision NOT NULL,
    ended_at       double precision,
    outcome        text,
    exit_code      integer,
    cost_usd       double precision,
    input_tokens   bigint,
    output_tokens  bigint,
    session_id     text,
    run_dir        text,
    summary        text,
    counted        integer NOT NULL DEFAULT 1
);
CREATE INDEX attempts_task ON attempts (task_id, id);

-- The mark of each open connection's last committed write transaction: when the answer to a
-- COMMIT is lost (server crash, network), the store reads it back to learn whether it happened.
CREATE TABLE commit_marks (
    conn_id  text PRIMARY KEY,
    mark     text NOT NULL,
    at       double precision NOT NULL
);
