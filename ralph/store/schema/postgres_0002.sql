-- ralph task store, PostgreSQL, schema version 2 (ralph 0.2.0). See sqlite_0002.sql.

ALTER TABLE tasks ADD COLUMN commit_sha text;
ALTER TABLE tasks ADD COLUMN discovered_from text REFERENCES tasks (id);
CREATE INDEX tasks_discovered_from ON tasks (discovered_from) WHERE discovered_from IS NOT NULL;
ALTER TABLE attempts ADD COLUMN token bigint;
ALTER TABLE attempts ADD COLUMN host text;
ALTER TABLE attempts ADD COLUMN cost_estimated integer NOT NULL DEFAULT 0;
CREATE INDEX attempts_unfinished ON attempts (task_id) WHERE ended_at IS NULL;
CREATE TABLE control (
    key    text PRIMARY KEY,
    value  text NOT NULL,
    at     double precision NOT NULL
);
