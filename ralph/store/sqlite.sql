-- Named queries for the SQLite backend that differ from PostgreSQL's; postgres.sql defines the
-- same names, and the queries both share are in common.sql. :now is the transaction's clock
-- (epoch seconds), bound by the store.

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

-- name: dependents_now_ready
-- CROSS JOIN keeps the planner on deps first: left free, it walked every open task by status.
SELECT t.id FROM deps d CROSS JOIN tasks t ON t.id = d.blocked
WHERE d.blocker = :id AND t.status = 'open' AND t.open_blockers = 0 AND t.open_children = 0
ORDER BY t.seq;

-- name: deps_of_tasks
SELECT blocker, blocked FROM deps WHERE blocked IN (SELECT value FROM json_each(:ids));

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

-- name: claim_live_for_task
SELECT * FROM claims WHERE task_id = :task_id AND state = 'live';

-- name: claim_get
SELECT * FROM claims WHERE id = :id;

-- name: claims_expired
SELECT * FROM claims WHERE state = 'live' AND expires_at <= :now ORDER BY id;

-- name: claims_live_by_worker
SELECT * FROM claims WHERE state = 'live' AND worker = :worker ORDER BY id;

-- name: events_list
SELECT * FROM events
WHERE (:task_id IS NULL OR task_id = :task_id)
  AND (:kind IS NULL OR kind = :kind)
  AND id > :after
ORDER BY id
LIMIT :limit;

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
