-- Named queries for the PostgreSQL backend that differ from SQLite's: the same names as
-- sqlite.sql, in PostgreSQL dialect; the queries both share are in common.sql.
-- %(now)s is the transaction's clock (epoch seconds), bound by the store. JSON arrives as text
-- and is cast with ::jsonb. A limit of -1 means "no limit" (LIMIT NULL).
--
-- Locking (write transactions run in READ COMMITTED): the task row is the lock for the task and
-- its claims. Every write path locks the task row (FOR NO KEY UPDATE, which still lets foreign
-- key checks take their key-share locks) before it reads the claims it will change, so writers
-- of one task queue up and each sees what the previous one committed. Where a statement must
-- lock the task and then read claims, the task is locked in an uncorrelated sub-select (run
-- first, as an InitPlan) and the claim rows are locked too, so a claim changed while we waited
-- is re-read at its latest version. Read transactions run these statements with every FOR ...
-- clause stripped, READ ONLY. A block of several statements runs them in order and returns the
-- last one's rows: the graph lock must be taken by a statement of its own, because a statement's
-- snapshot predates any lock it waits for.

-- name: task_get
-- claimed_by can be stale when this statement waited for the lock (the join is not re-read);
-- base.py only uses it for display, and re-reads the task before returning it.
SELECT t.*, c.worker AS claimed_by
FROM tasks t LEFT JOIN claims c ON c.task_id = t.id AND c.state = 'live'
WHERE t.id = %(id)s
FOR NO KEY UPDATE OF t;

-- name: task_ids_existing
-- Locked so a blocker or parent cannot change status between this read and the batch's commit
-- (its open_blockers/open_children counts are computed from what is read here).
SELECT id, status FROM tasks
WHERE id IN (SELECT jsonb_array_elements_text(%(ids)s::jsonb))
ORDER BY id
FOR NO KEY UPDATE;

-- name: tasks_list
SELECT t.*, c.worker AS claimed_by
FROM tasks t LEFT JOIN claims c ON c.task_id = t.id AND c.state = 'live'
WHERE (%(status)s::text IS NULL OR t.status = %(status)s::text)
  AND (%(parent)s::text IS NULL OR t.parent = %(parent)s::text)
  AND (%(label)s::text IS NULL OR t.labels @> jsonb_build_array(%(label)s::text))
ORDER BY t.seq
LIMIT NULLIF(%(limit)s::bigint, -1);

-- name: tasks_ready
SELECT t.*, NULL::text AS claimed_by
FROM tasks t
WHERE t.status = 'open' AND t.open_blockers = 0 AND t.open_children = 0
  AND t.lease_expires <= %(now)s AND t.not_before <= %(now)s
  AND (%(caps)s::jsonb IS NULL OR t.requires <@ %(caps)s::jsonb)
ORDER BY t.priority DESC, t.seq
LIMIT NULLIF(%(limit)s::bigint, -1);

-- name: task_ready_for_claim
-- SKIP LOCKED: concurrent workers each take a different task instead of queueing on the best.
SELECT t.*, NULL::text AS claimed_by
FROM tasks t
WHERE t.status = 'open' AND t.open_blockers = 0 AND t.open_children = 0
  AND t.lease_expires <= %(now)s AND t.not_before <= %(now)s
  AND (%(caps)s::jsonb IS NULL OR t.requires <@ %(caps)s::jsonb)
ORDER BY t.priority DESC, t.seq
LIMIT 1
FOR NO KEY UPDATE OF t SKIP LOCKED;

-- name: task_next_ready_at
-- When the next open, unblocked task a worker with these caps could claim stops being delayed
-- or held; NULL when there is none (the queue is drained for that worker).
SELECT MIN(GREATEST(t.lease_expires, t.not_before)) AS at
FROM tasks t
WHERE t.status = 'open' AND t.open_blockers = 0 AND t.open_children = 0
  AND (%(caps)s::jsonb IS NULL OR t.requires <@ %(caps)s::jsonb);

-- name: dependents_now_ready
SELECT t.id FROM deps d JOIN tasks t ON t.id = d.blocked
WHERE d.blocker = %(id)s AND t.status = 'open' AND t.open_blockers = 0 AND t.open_children = 0
ORDER BY t.seq;

-- name: deps_of_tasks
SELECT blocker, blocked FROM deps
WHERE blocked IN (SELECT jsonb_array_elements_text(%(ids)s::jsonb));

-- name: dep_reaches
-- Does start (transitively) wait on target? Walks blockers upward from start. The graph lock
-- (held to commit) keeps two concurrent `block` calls from closing a cycle neither can see.
SELECT pg_advisory_xact_lock(72616, 2);
WITH RECURSIVE up(id) AS (
    SELECT blocker FROM deps WHERE blocked = %(start)s
    UNION
    SELECT d.blocker FROM deps d JOIN up ON d.blocked = up.id
)
SELECT 1 AS found FROM up WHERE id = %(target)s LIMIT 1;

-- name: parent_chain
-- The same graph lock, for parent cycles made by concurrent re-parenting.
SELECT pg_advisory_xact_lock(72616, 2);
WITH RECURSIVE chain(id, parent) AS (
    SELECT id, parent FROM tasks WHERE id = %(id)s
    UNION
    SELECT t.id, t.parent FROM tasks t JOIN chain ON t.id = chain.parent
)
SELECT id FROM chain;

-- name: claim_live_for_task
-- Locks the task first (InitPlan), then the claim, re-read at its latest version if it changed.
SELECT * FROM claims
WHERE task_id = (SELECT id FROM tasks WHERE id = %(task_id)s FOR NO KEY UPDATE)
  AND state = 'live'
FOR NO KEY UPDATE;

-- name: claim_get
SELECT * FROM claims
WHERE id = %(id)s
  AND task_id = (SELECT t.id FROM tasks t
                 WHERE t.id = (SELECT k.task_id FROM claims k WHERE k.id = %(id)s)
                 FOR NO KEY UPDATE OF t)
FOR NO KEY UPDATE;

-- name: claims_expired
-- Tasks locked first (skipping any another transaction holds: the next sweep gets them).
SELECT * FROM claims
WHERE state = 'live' AND expires_at <= %(now)s
  AND task_id = ANY (ARRAY(
        SELECT t.id FROM tasks t
        WHERE t.id IN (SELECT k.task_id FROM claims k
                       WHERE k.state = 'live' AND k.expires_at <= %(now)s)
        ORDER BY t.id
        FOR NO KEY UPDATE OF t SKIP LOCKED))
ORDER BY id
FOR NO KEY UPDATE SKIP LOCKED;

-- name: claims_live_by_worker
SELECT * FROM claims
WHERE state = 'live' AND worker = %(worker)s
  AND task_id = ANY (ARRAY(
        SELECT t.id FROM tasks t
        WHERE t.id IN (SELECT k.task_id FROM claims k
                       WHERE k.state = 'live' AND k.worker = %(worker)s)
        ORDER BY t.id
        FOR NO KEY UPDATE OF t))
ORDER BY id
FOR NO KEY UPDATE;

-- name: events_list
SELECT * FROM events
WHERE (%(task_id)s::text IS NULL OR task_id = %(task_id)s::text)
  AND (%(kind)s::text IS NULL OR kind = %(kind)s::text)
  AND id > %(after)s
ORDER BY id
LIMIT NULLIF(%(limit)s::bigint, -1);

-- name: tasks_page
-- One page of a filtered task list, newest first (dashboards). %(state)s is a derived state of
-- an open task: ready, blocked or running; %(text)s matches the id, %(pattern)s (an ILIKE
-- pattern, \ escapes) the title or description.
SELECT t.*, c.worker AS claimed_by
FROM tasks t LEFT JOIN claims c ON c.task_id = t.id AND c.state = 'live'
WHERE (%(status)s::text IS NULL OR t.status = %(status)s::text)
  AND (%(state)s::text IS NULL
       OR (%(state)s::text = 'ready' AND t.status = 'open' AND t.open_blockers = 0
           AND t.open_children = 0 AND t.lease_expires <= %(now)s AND t.not_before <= %(now)s)
       OR (%(state)s::text = 'blocked' AND t.status = 'open'
           AND (t.open_blockers > 0 OR t.open_children > 0))
       OR (%(state)s::text = 'running' AND t.status = 'open' AND t.lease_expires > %(now)s))
  AND (%(label)s::text IS NULL OR t.labels @> jsonb_build_array(%(label)s::text))
  AND (%(capability)s::text IS NULL OR t.requires @> jsonb_build_array(%(capability)s::text))
  AND (%(text)s::text IS NULL OR t.id = %(text)s::text
       OR t.title ILIKE %(pattern)s::text OR t.description ILIKE %(pattern)s::text)
ORDER BY t.seq DESC
LIMIT %(limit)s OFFSET %(offset)s;

-- name: tasks_page_count
SELECT COUNT(*) AS n
FROM tasks t
WHERE (%(status)s::text IS NULL OR t.status = %(status)s::text)
  AND (%(state)s::text IS NULL
       OR (%(state)s::text = 'ready' AND t.status = 'open' AND t.open_blockers = 0
           AND t.open_children = 0 AND t.lease_expires <= %(now)s AND t.not_before <= %(now)s)
       OR (%(state)s::text = 'blocked' AND t.status = 'open'
           AND (t.open_blockers > 0 OR t.open_children > 0))
       OR (%(state)s::text = 'running' AND t.status = 'open' AND t.lease_expires > %(now)s))
  AND (%(label)s::text IS NULL OR t.labels @> jsonb_build_array(%(label)s::text))
  AND (%(capability)s::text IS NULL OR t.requires @> jsonb_build_array(%(capability)s::text))
  AND (%(text)s::text IS NULL OR t.id = %(text)s::text
       OR t.title ILIKE %(pattern)s::text OR t.description ILIKE %(pattern)s::text);

-- name: queue_counts
SELECT
  COUNT(*) AS open,
  COUNT(*) FILTER (WHERE open_blockers = 0 AND open_children = 0) AS unblocked,
  COUNT(*) FILTER (WHERE lease_expires > %(now)s) AS running,
  COUNT(*) FILTER (WHERE lease_expires > %(now)s AND open_blockers = 0
                   AND open_children = 0) AS running_unblocked,
  COUNT(*) FILTER (WHERE not_before > %(now)s AND lease_expires <= %(now)s
                   AND open_blockers = 0 AND open_children = 0) AS retry_wait
FROM tasks WHERE status = 'open';

-- name: attempts_hourly
SELECT (floor(started_at / 3600) * 3600)::bigint AS hour, agent, COUNT(*) AS attempts,
       COUNT(*) FILTER (WHERE outcome IN ('success', 'no_changes')) AS succeeded,
       COALESCE(SUM(cost_usd), 0) AS cost_usd
FROM attempts WHERE started_at >= %(since)s
GROUP BY 1, 2 ORDER BY 1, 2;

-- name: attempts_by_worker
-- cost_usd is NULL when no attempt reported one: unknown, never 0.
SELECT worker, SUM(counted) AS attempts, COUNT(*) AS launches, SUM(cost_usd) AS cost_usd,
       COUNT(*) FILTER (WHERE cost_usd IS NULL AND ended_at IS NOT NULL) AS unknown_cost
FROM attempts WHERE started_at >= %(since)s GROUP BY worker;
