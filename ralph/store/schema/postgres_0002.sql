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

-- Rows written before schema 2 (see sqlite_0002.sql): attempts take the token of the claim they
-- ran under and the host their worker registered from.
UPDATE attempts SET token = (
    SELECT c.id FROM claims c
    WHERE c.task_id = attempts.task_id AND c.worker = attempts.worker
      AND c.claimed_at <= attempts.started_at
    ORDER BY c.id DESC LIMIT 1
) WHERE token IS NULL;
UPDATE attempts SET host = (SELECT w.host FROM workers w WHERE w.name = attempts.worker)
WHERE host IS NULL;
