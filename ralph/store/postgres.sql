-- Named queries for the PostgreSQL backend: the same names as sqlite.sql, in PostgreSQL dialect.
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

-- name: task_insert
INSERT INTO tasks (id, title, description, status, priority, parent, labels, requires, metadata,
                   open_blockers, open_children, created_at, updated_at, done_at, discovered_from)
VALUES (%(id)s, %(title)s, %(description)s, %(status)s, %(priority)s, %(parent)s,
        %(labels)s::jsonb, %(requires)s::jsonb, %(metadata)s::jsonb,
        %(open_blockers)s, %(open_children)s, %(now)s, %(now)s, %(done_at)s, %(discovered_from)s);

-- name: task_discovered_count
SELECT COUNT(*) AS n FROM tasks WHERE discovered_from = %(id)s;

-- name: task_update_fields
UPDATE tasks SET
    title = COALESCE(%(title)s::text, title),
    description = COALESCE(%(description)s::text, description),
    priority = COALESCE(%(priority)s::integer, priority),
    labels = COALESCE(%(labels)s::jsonb, labels),
    requires = COALESCE(%(requires)s::jsonb, requires),
    metadata = COALESCE(%(metadata)s::jsonb, metadata),
    updated_at = %(now)s
WHERE id = %(id)s;

-- name: task_set_status
UPDATE tasks SET status = %(status)s::text, done_at = %(done_at)s, updated_at = %(now)s,
                 not_before = CASE WHEN %(status)s::text = 'open' THEN 0 ELSE not_before END
WHERE id = %(id)s;

-- name: task_set_parent
UPDATE tasks SET parent = %(parent)s, updated_at = %(now)s WHERE id = %(id)s;

-- name: task_set_lease
UPDATE tasks SET lease_expires = %(lease_expires)s WHERE id = %(id)s;

-- name: task_requeue
UPDATE tasks SET attempts = attempts + %(count)s, not_before = %(now)s + %(retry_in)s,
                 last_error = COALESCE(%(note)s::text, last_error), lease_expires = 0,
                 updated_at = %(now)s
WHERE id = %(id)s;

-- name: task_count_attempt
UPDATE tasks SET attempts = attempts + 1 WHERE id = %(id)s;

-- name: task_fail
UPDATE tasks SET status = 'failed', attempts = attempts + %(count)s, last_error = %(note)s,
                 lease_expires = 0, updated_at = %(now)s
WHERE id = %(id)s;

-- name: task_count_expiry
UPDATE tasks SET expiries = expiries + 1, lease_expires = 0 WHERE id = %(id)s
RETURNING expiries;

-- name: task_adjust_blockers
UPDATE tasks SET open_blockers = open_blockers + %(delta)s WHERE id = %(id)s;

-- name: dependents_adjust_blockers
UPDATE tasks SET open_blockers = open_blockers + %(delta)s
WHERE id IN (SELECT blocked FROM deps WHERE blocker = %(id)s);

-- name: task_adjust_children
UPDATE tasks SET open_children = open_children + %(delta)s WHERE id = %(id)s;

-- name: dependents_now_ready
SELECT t.id FROM deps d JOIN tasks t ON t.id = d.blocked
WHERE d.blocker = %(id)s AND t.status = 'open' AND t.open_blockers = 0 AND t.open_children = 0
ORDER BY t.seq;

-- name: task_children
SELECT id, status FROM tasks WHERE parent = %(id)s ORDER BY seq;

-- name: task_blockers
SELECT d.blocker AS id, t.status FROM deps d JOIN tasks t ON t.id = d.blocker
WHERE d.blocked = %(id)s ORDER BY t.seq;

-- name: task_dependents
SELECT d.blocked AS id, t.status FROM deps d JOIN tasks t ON t.id = d.blocked
WHERE d.blocker = %(id)s ORDER BY t.seq;

-- name: deps_all
SELECT blocker, blocked FROM deps;

-- name: deps_of_tasks
SELECT blocker, blocked FROM deps
WHERE blocked IN (SELECT jsonb_array_elements_text(%(ids)s::jsonb));

-- name: dep_insert
INSERT INTO deps (blocker, blocked) VALUES (%(blocker)s, %(blocked)s) ON CONFLICT DO NOTHING;

-- name: dep_delete
DELETE FROM deps WHERE blocker = %(blocker)s AND blocked = %(blocked)s;

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

-- name: status_counts
SELECT status, COUNT(*) AS n FROM tasks GROUP BY status;

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

-- name: claim_insert
INSERT INTO claims (task_id, worker, lease_seconds, claimed_at, expires_at)
VALUES (%(task_id)s, %(worker)s, %(lease)s, %(now)s, %(now)s + %(lease)s)
RETURNING *;

-- name: claim_end
UPDATE claims SET state = %(state)s, ended_at = %(now)s WHERE id = %(id)s AND state = 'live';

-- name: claim_renew
UPDATE claims SET expires_at = %(now)s + lease_seconds, renewals = renewals + 1
WHERE id = %(id)s AND state = 'live'
RETURNING *;

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

-- name: claims_live
SELECT * FROM claims WHERE state = 'live' ORDER BY id;

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

-- name: event_insert
INSERT INTO events (at, kind, task_id, worker, token, data)
VALUES (%(now)s, %(kind)s, %(task_id)s, %(worker)s, %(token)s, %(data)s::jsonb);

-- name: events_list
SELECT * FROM events
WHERE (%(task_id)s::text IS NULL OR task_id = %(task_id)s::text)
  AND (%(kind)s::text IS NULL OR kind = %(kind)s::text)
  AND id > %(after)s
ORDER BY id
LIMIT NULLIF(%(limit)s::bigint, -1);

-- name: events_recent
SELECT * FROM (SELECT * FROM events ORDER BY id DESC LIMIT %(limit)s) AS recent ORDER BY id;

-- name: worker_by_name
SELECT * FROM workers WHERE name = %(name)s;

-- name: worker_by_id
SELECT * FROM workers WHERE id = %(id)s;

-- name: worker_insert
INSERT INTO workers (id, name, pid, host, capabilities, status, started_at, heartbeat_at,
                     heartbeat_interval, sandbox)
VALUES (%(id)s, %(name)s, %(pid)s, %(host)s, %(capabilities)s::jsonb, 'idle', %(now)s, %(now)s,
        %(heartbeat_interval)s, %(sandbox)s);

-- name: worker_restart
UPDATE workers SET pid = %(pid)s, host = %(host)s, capabilities = %(capabilities)s::jsonb,
                   status = 'idle', current_task = NULL, started_at = %(now)s,
                   heartbeat_at = %(now)s, heartbeat_interval = %(heartbeat_interval)s,
                   stop_requested = 0, sandbox = %(sandbox)s
WHERE id = %(id)s;

-- name: worker_heartbeat
UPDATE workers SET heartbeat_at = %(now)s, status = COALESCE(%(status)s::text, status),
                   current_task = CASE WHEN %(status)s::text IS NULL THEN current_task
                                       ELSE %(current_task)s::text END
WHERE id = %(id)s
RETURNING stop_requested;

-- name: worker_set_status
UPDATE workers SET status = %(status)s, current_task = %(current_task)s, heartbeat_at = %(now)s
WHERE id = %(id)s;

-- name: worker_request_stop
UPDATE workers SET stop_requested = 1 WHERE id = %(id)s;

-- name: workers_list
SELECT * FROM workers ORDER BY started_at, name;

-- name: attempt_insert
INSERT INTO attempts (task_id, attempt, worker, agent, started_at, run_dir, token, host, kind,
                      model)
VALUES (%(task_id)s, %(attempt)s, %(worker)s, %(agent)s, %(now)s, %(run_dir)s, %(token)s,
        %(host)s, %(kind)s, %(model)s)
RETURNING *;

-- name: attempt_finish
UPDATE attempts SET ended_at = %(now)s, outcome = %(outcome)s, exit_code = %(exit_code)s,
                    cost_usd = %(cost_usd)s, input_tokens = %(input_tokens)s,
                    output_tokens = %(output_tokens)s, session_id = %(session_id)s,
                    summary = %(summary)s, counted = %(counted)s,
                    cost_estimated = %(cost_estimated)s,
                    model = COALESCE(%(model)s::text, model)
WHERE id = %(id)s
RETURNING *;

-- name: attempts_close_crashed
UPDATE attempts SET ended_at = %(now)s, outcome = 'crashed', counted = 0,
                    summary = COALESCE(summary, %(summary)s)
WHERE task_id = %(task_id)s AND ended_at IS NULL
  AND (%(token)s::bigint IS NULL OR token = %(token)s::bigint)
RETURNING *;

-- name: task_set_commit
UPDATE tasks SET commit_sha = %(commit)s WHERE id = %(id)s;

-- name: control_get
SELECT key, value, at FROM control WHERE key = %(key)s;

-- name: control_put
INSERT INTO control (key, value, at) VALUES (%(key)s, %(value)s, %(now)s)
ON CONFLICT (key) DO UPDATE SET value = excluded.value, at = excluded.at;

-- name: control_delete
DELETE FROM control WHERE key = %(key)s;

-- name: attempts_list
SELECT * FROM attempts WHERE (%(task_id)s::text IS NULL OR task_id = %(task_id)s::text)
ORDER BY id;

-- name: meta_get
SELECT value FROM meta WHERE key = %(key)s;

-- name: task_retry
UPDATE tasks SET status = 'open', not_before = 0, expiries = 0, lease_expires = 0,
                 updated_at = %(now)s
WHERE id = %(id)s AND status = 'failed';

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

-- name: attempts_running
SELECT * FROM attempts WHERE ended_at IS NULL ORDER BY id;

-- runpause
-- name: control_prefixed
SELECT key, value, at FROM control WHERE key LIKE %(pattern)s ORDER BY key;
