-- Named queries for the SQLite backend. postgres.sql defines the same names.
-- :now is the transaction's clock (epoch seconds), bound by the store.

-- name: task_get
SELECT t.*, c.worker AS claimed_by
FROM tasks t LEFT JOIN claims c ON c.task_id = t.id AND c.state = 'live'
WHERE t.id = :id;

-- name: task_ids_existing
SELECT id, status FROM tasks WHERE id IN (SELECT value FROM json_each(:ids));

-- name: tasks_list
SELECT t.*, c.worker AS claimed_by
FROM tasks t LEFT JOIN claims c ON c.task_id = t.id AND c.state = 'live'
WHERE (:status IS NULL OR t.status = :status)
  AND (:parent IS NULL OR t.parent = :parent)
  AND (:label IS NULL OR EXISTS (SELECT 1 FROM json_each(t.labels) l WHERE l.value = :label))
ORDER BY t.seq
LIMIT :limit;

-- name: tasks_ready
SELECT t.*, NULL AS claimed_by
FROM tasks t INDEXED BY tasks_ready
WHERE t.status = 'open' AND t.open_blockers = 0 AND t.open_children = 0
  AND t.lease_expires <= :now AND t.not_before <= :now
  AND (t.requires = '[]' OR :caps IS NULL OR NOT EXISTS (
        SELECT 1 FROM json_each(t.requires) r
        WHERE r.value NOT IN (SELECT value FROM json_each(:caps))))
ORDER BY t.priority DESC, t.seq
LIMIT :limit;

-- name: task_ready_for_claim
SELECT t.*, NULL AS claimed_by
FROM tasks t INDEXED BY tasks_ready
WHERE t.status = 'open' AND t.open_blockers = 0 AND t.open_children = 0
  AND t.lease_expires <= :now AND t.not_before <= :now
  AND (t.requires = '[]' OR :caps IS NULL OR NOT EXISTS (
        SELECT 1 FROM json_each(t.requires) r
        WHERE r.value NOT IN (SELECT value FROM json_each(:caps))))
ORDER BY t.priority DESC, t.seq
LIMIT 1;

-- name: task_next_ready_at
-- When the next open, unblocked task a worker with :caps could claim stops being delayed or
-- held; NULL when there is none (the queue is drained for that worker).
SELECT MIN(MAX(t.lease_expires, t.not_before)) AS at
FROM tasks t INDEXED BY tasks_ready
WHERE t.status = 'open' AND t.open_blockers = 0 AND t.open_children = 0
  AND (t.requires = '[]' OR :caps IS NULL OR NOT EXISTS (
        SELECT 1 FROM json_each(t.requires) r
        WHERE r.value NOT IN (SELECT value FROM json_each(:caps))));

-- name: task_insert
INSERT INTO tasks (id, title, description, status, priority, parent, labels, requires, metadata,
                   open_blockers, open_children, created_at, updated_at, done_at, discovered_from)
VALUES (:id, :title, :description, :status, :priority, :parent, :labels, :requires, :metadata,
        :open_blockers, :open_children, :now, :now, :done_at, :discovered_from);

-- name: task_discovered_count
SELECT COUNT(*) AS n FROM tasks WHERE discovered_from = :id;

-- name: task_update_fields
UPDATE tasks SET
    title = COALESCE(:title, title),
    description = COALESCE(:description, description),
    priority = COALESCE(:priority, priority),
    labels = COALESCE(:labels, labels),
    requires = COALESCE(:requires, requires),
    metadata = COALESCE(:metadata, metadata),
    updated_at = :now
WHERE id = :id;

-- name: task_set_status
UPDATE tasks SET status = :status, done_at = :done_at, updated_at = :now,
                 not_before = CASE WHEN :status = 'open' THEN 0 ELSE not_before END
WHERE id = :id;

-- name: task_set_parent
UPDATE tasks SET parent = :parent, updated_at = :now WHERE id = :id;

-- name: task_set_lease
UPDATE tasks SET lease_expires = :lease_expires WHERE id = :id;

-- name: task_requeue
UPDATE tasks SET attempts = attempts + :count, not_before = :now + :retry_in,
                 last_error = COALESCE(:note, last_error), lease_expires = 0, updated_at = :now
WHERE id = :id;

-- name: task_count_attempt
UPDATE tasks SET attempts = attempts + 1 WHERE id = :id;

-- name: task_fail
UPDATE tasks SET status = 'failed', attempts = attempts + :count, last_error = :note,
                 lease_expires = 0, updated_at = :now
WHERE id = :id;

-- name: task_count_expiry
UPDATE tasks SET expiries = expiries + 1, lease_expires = 0 WHERE id = :id
RETURNING expiries;

-- name: task_adjust_blockers
UPDATE tasks SET open_blockers = open_blockers + :delta WHERE id = :id;

-- name: dependents_adjust_blockers
UPDATE tasks SET open_blockers = open_blockers + :delta
WHERE id IN (SELECT blocked FROM deps WHERE blocker = :id);

-- name: task_adjust_children
UPDATE tasks SET open_children = open_children + :delta WHERE id = :id;

-- name: dependents_now_ready
-- CROSS JOIN keeps the planner on deps first: left free, it walked every open task by status.
SELECT t.id FROM deps d CROSS JOIN tasks t ON t.id = d.blocked
WHERE d.blocker = :id AND t.status = 'open' AND t.open_blockers = 0 AND t.open_children = 0
ORDER BY t.seq;

-- name: task_children
SELECT id, status FROM tasks WHERE parent = :id ORDER BY seq;

-- name: task_blockers
SELECT d.blocker AS id, t.status FROM deps d JOIN tasks t ON t.id = d.blocker
WHERE d.blocked = :id ORDER BY t.seq;

-- name: task_dependents
SELECT d.blocked AS id, t.status FROM deps d JOIN tasks t ON t.id = d.blocked
WHERE d.blocker = :id ORDER BY t.seq;

-- name: deps_all
SELECT blocker, blocked FROM deps;

-- name: deps_of_tasks
SELECT blocker, blocked FROM deps WHERE blocked IN (SELECT value FROM json_each(:ids));

-- name: dep_insert
INSERT INTO deps (blocker, blocked) VALUES (:blocker, :blocked) ON CONFLICT DO NOTHING;

-- name: dep_delete
DELETE FROM deps WHERE blocker = :blocker AND blocked = :blocked;

-- name: dep_reaches
-- Does :start (transitively) wait on :target? Walks blockers upward from :start.
WITH RECURSIVE up(id) AS (
    SELECT blocker FROM deps WHERE blocked = :start
    UNION
    SELECT d.blocker FROM deps d JOIN up ON d.blocked = up.id
)
SELECT 1 AS found FROM up WHERE id = :target LIMIT 1;

-- name: parent_chain
WITH RECURSIVE chain(id, parent) AS (
    SELECT id, parent FROM tasks WHERE id = :id
    UNION
    SELECT t.id, t.parent FROM tasks t JOIN chain ON t.id = chain.parent
)
SELECT id FROM chain;

-- name: status_counts
SELECT status, COUNT(*) AS n FROM tasks GROUP BY status;

-- name: claim_live_for_task
SELECT * FROM claims WHERE task_id = :task_id AND state = 'live';

-- name: claim_get
SELECT * FROM claims WHERE id = :id;

-- name: claim_insert
INSERT INTO claims (task_id, worker, lease_seconds, claimed_at, expires_at)
VALUES (:task_id, :worker, :lease, :now, :now + :lease)
RETURNING *;

-- name: claim_end
UPDATE claims SET state = :state, ended_at = :now WHERE id = :id AND state = 'live';

-- name: claim_renew
UPDATE claims SET expires_at = :now + lease_seconds, renewals = renewals + 1
WHERE id = :id AND state = 'live'
RETURNING *;

-- name: claims_expired
SELECT * FROM claims WHERE state = 'live' AND expires_at <= :now ORDER BY id;

-- name: claims_live
SELECT * FROM claims WHERE state = 'live' ORDER BY id;

-- name: claims_live_by_worker
SELECT * FROM claims WHERE state = 'live' AND worker = :worker ORDER BY id;

-- name: event_insert
INSERT INTO events (at, kind, task_id, worker, token, data)
VALUES (:now, :kind, :task_id, :worker, :token, :data);

-- name: events_list
SELECT * FROM events
WHERE (:task_id IS NULL OR task_id = :task_id)
  AND (:kind IS NULL OR kind = :kind)
  AND id > :after
ORDER BY id
LIMIT :limit;

-- name: events_recent
SELECT * FROM (SELECT * FROM events ORDER BY id DESC LIMIT :limit) ORDER BY id;

-- name: worker_by_name
SELECT * FROM workers WHERE name = :name;

-- name: worker_by_id
SELECT * FROM workers WHERE id = :id;

-- name: worker_insert
INSERT INTO workers (id, name, pid, host, capabilities, status, started_at, heartbeat_at,
                     heartbeat_interval, sandbox)
VALUES (:id, :name, :pid, :host, :capabilities, 'idle', :now, :now, :heartbeat_interval,
        :sandbox);

-- name: worker_restart
UPDATE workers SET pid = :pid, host = :host, capabilities = :capabilities, status = 'idle',
                   current_task = NULL, started_at = :now, heartbeat_at = :now,
                   heartbeat_interval = :heartbeat_interval, stop_requested = 0,
                   sandbox = :sandbox
WHERE id = :id;

-- name: worker_heartbeat
UPDATE workers SET heartbeat_at = :now, status = COALESCE(:status, status),
                   current_task = CASE WHEN :status IS NULL THEN current_task ELSE :current_task END
WHERE id = :id
RETURNING stop_requested;

-- name: worker_set_status
UPDATE workers SET status = :status, current_task = :current_task, heartbeat_at = :now
WHERE id = :id;

-- name: worker_request_stop
UPDATE workers SET stop_requested = 1 WHERE id = :id;

-- name: workers_list
SELECT * FROM workers ORDER BY started_at, name;

-- name: attempt_insert
INSERT INTO attempts (task_id, attempt, worker, agent, started_at, run_dir, token, host, kind,
                      model)
VALUES (:task_id, :attempt, :worker, :agent, :now, :run_dir, :token, :host, :kind, :model)
RETURNING *;

-- name: attempt_finish
UPDATE attempts SET ended_at = :now, outcome = :outcome, exit_code = :exit_code,
                    cost_usd = :cost_usd, input_tokens = :input_tokens,
                    output_tokens = :output_tokens, session_id = :session_id,
                    summary = :summary, counted = :counted,
                    cost_estimated = :cost_estimated,
                    model = COALESCE(:model, model)
WHERE id = :id
RETURNING *;

-- name: attempts_close_crashed
UPDATE attempts SET ended_at = :now, outcome = 'crashed', counted = 0,
                    summary = COALESCE(summary, :summary)
WHERE task_id = :task_id AND ended_at IS NULL AND (:token IS NULL OR token = :token)
RETURNING *;

-- name: task_set_commit
UPDATE tasks SET commit_sha = :commit WHERE id = :id;

-- name: control_get
SELECT key, value, at FROM control WHERE key = :key;

-- name: control_put
INSERT INTO control (key, value, at) VALUES (:key, :value, :now)
ON CONFLICT (key) DO UPDATE SET value = excluded.value, at = excluded.at;

-- name: control_delete
DELETE FROM control WHERE key = :key;

-- name: attempts_list
SELECT * FROM attempts WHERE (:task_id IS NULL OR task_id = :task_id) ORDER BY id;

-- name: meta_get
SELECT value FROM meta WHERE key = :key;

-- name: task_retry
UPDATE tasks SET status = 'open', not_before = 0, expiries = 0, lease_expires = 0,
                 updated_at = :now
WHERE id = :id AND status = 'failed';

-- name: tasks_page
-- One page of a filtered task list, newest first (dashboards). :state is a derived state of an
-- open task: ready, blocked or running; :text matches the id, :pattern (a LIKE pattern with \
-- as escape) the title or description; :label_json is the label as JSON, a cheap pre-filter.
SELECT t.*, c.worker AS claimed_by
FROM tasks t LEFT JOIN claims c ON c.task_id = t.id AND c.state = 'live'
WHERE (:status IS NULL OR t.status = :status)
  AND (:state IS NULL
       OR (:state = 'ready' AND t.status = 'open' AND t.open_blockers = 0
           AND t.open_children = 0 AND t.lease_expires <= :now AND t.not_before <= :now)
       OR (:state = 'blocked' AND t.status = 'open'
           AND (t.open_blockers > 0 OR t.open_children > 0))
       OR (:state = 'running' AND t.status = 'open' AND t.lease_expires > :now))
  AND (:label IS NULL OR (instr(t.labels, :label_json) > 0
       AND EXISTS (SELECT 1 FROM json_each(t.labels) l WHERE l.value = :label)))
  AND (:capability IS NULL OR (instr(t.requires, :capability_json) > 0
       AND EXISTS (SELECT 1 FROM json_each(t.requires) r WHERE r.value = :capability)))
  AND (:text IS NULL OR t.id = :text OR t.title LIKE :pattern ESCAPE '\'
       OR t.description LIKE :pattern ESCAPE '\')
ORDER BY t.seq DESC
LIMIT :limit OFFSET :offset;

-- name: tasks_page_count
SELECT COUNT(*) AS n
FROM tasks t
WHERE (:status IS NULL OR t.status = :status)
  AND (:state IS NULL
       OR (:state = 'ready' AND t.status = 'open' AND t.open_blockers = 0
           AND t.open_children = 0 AND t.lease_expires <= :now AND t.not_before <= :now)
       OR (:state = 'blocked' AND t.status = 'open'
           AND (t.open_blockers > 0 OR t.open_children > 0))
       OR (:state = 'running' AND t.status = 'open' AND t.lease_expires > :now))
  AND (:label IS NULL OR (instr(t.labels, :label_json) > 0
       AND EXISTS (SELECT 1 FROM json_each(t.labels) l WHERE l.value = :label)))
  AND (:capability IS NULL OR (instr(t.requires, :capability_json) > 0
       AND EXISTS (SELECT 1 FROM json_each(t.requires) r WHERE r.value = :capability)))
  AND (:text IS NULL OR t.id = :text OR t.title LIKE :pattern ESCAPE '\'
       OR t.description LIKE :pattern ESCAPE '\');

-- name: queue_counts
-- Counted from indexes where it can be: open tasks (tasks_status), unblocked ones (the partial
-- tasks_ready index), running ones (live claims); only those waiting out a retry backoff need the
-- rows. A CASE over every open row took 33 ms at 100k tasks. CROSS JOIN keeps the planner on
-- the few live claims first (left free, it walked every open task).
SELECT
  (SELECT COUNT(*) FROM tasks WHERE status = 'open') AS open,
  (SELECT COUNT(*) FROM tasks INDEXED BY tasks_ready
   WHERE status = 'open' AND open_blockers = 0 AND open_children = 0) AS unblocked,
  (SELECT COUNT(*) FROM claims c CROSS JOIN tasks t ON t.id = c.task_id
   WHERE c.state = 'live' AND t.status = 'open' AND t.lease_expires > :now) AS running,
  (SELECT COUNT(*) FROM claims c CROSS JOIN tasks t ON t.id = c.task_id
   WHERE c.state = 'live' AND t.status = 'open' AND t.lease_expires > :now
     AND t.open_blockers = 0 AND t.open_children = 0) AS running_unblocked,
  (SELECT COUNT(*) FROM tasks NOT INDEXED
   WHERE not_before > :now AND status = 'open' AND open_blockers = 0 AND open_children = 0
     AND lease_expires <= :now) AS retry_wait;

-- name: attempts_hourly
SELECT CAST(started_at / 3600 AS INTEGER) * 3600 AS hour, agent, COUNT(*) AS attempts,
       SUM(CASE WHEN outcome IN ('success', 'no_changes') THEN 1 ELSE 0 END) AS succeeded,
       COALESCE(SUM(cost_usd), 0) AS cost_usd
FROM attempts WHERE started_at >= :since
GROUP BY 1, 2 ORDER BY 1, 2;

-- name: attempts_by_worker
-- cost_usd is NULL when no attempt reported one: unknown, never 0.
SELECT worker, SUM(counted) AS attempts, COUNT(*) AS launches, SUM(cost_usd) AS cost_usd,
       SUM(CASE WHEN cost_usd IS NULL AND ended_at IS NOT NULL THEN 1 ELSE 0 END) AS unknown_cost
FROM attempts WHERE started_at >= :since GROUP BY worker;

-- name: attempts_running
SELECT * FROM attempts WHERE ended_at IS NULL ORDER BY id;

-- runpause
-- name: control_prefixed
SELECT key, value, at FROM control WHERE key LIKE :pattern ORDER BY key;
