-- ralph task store, SQLite, schema version 2 (ralph 0.2.0).
-- Each task records the commit that completed it; follow-up tasks name the task they came from;
-- attempts record the claim token and host they ran under and whether their cost is estimated;
-- `control` holds run-wide switches shared by every host (pause/resume).

ALTER TABLE tasks ADD COLUMN commit_sha TEXT;
ALTER TABLE tasks ADD COLUMN discovered_from TEXT REFERENCES tasks (id);
CREATE INDEX tasks_discovered_from ON tasks (discovered_from) WHERE discovered_from IS NOT NULL;
ALTER TABLE attempts ADD COLUMN token INTEGER;
ALTER TABLE attempts ADD COLUMN host TEXT;
ALTER TABLE attempts ADD COLUMN cost_estimated INTEGER NOT NULL DEFAULT 0;
CREATE INDEX attempts_unfinished ON attempts (task_id) WHERE ended_at IS NULL;
CREATE TABLE control (
    key    TEXT PRIMARY KEY,
    value  TEXT NOT NULL,
    at     REAL NOT NULL
);

-- Rows written before schema 2. An attempt ran under its worker's claim of that task made last
-- before the attempt started: it takes that claim's token, so the expiry of a claim still live at
-- the upgrade closes its crashed attempt. Its host is the one its worker registered from. Their
-- commit, discovered-from link and estimated-cost flag were never recorded: NULL, NULL, 0.
UPDATE attempts SET token = (
    SELECT c.id FROM claims c
    WHERE c.task_id = attempts.task_id AND c.worker = attempts.worker
      AND c.claimed_at <= attempts.started_at
    ORDER BY c.id DESC LIMIT 1
) WHERE token IS NULL;
UPDATE attempts SET host = (SELECT w.host FROM workers w WHERE w.name = attempts.worker)
WHERE host IS NULL;
