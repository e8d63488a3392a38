-- Named queries both backends run, written once. ralph/store/queries.py translates them:
-- :name stays for SQLite and becomes %(name)s for PostgreSQL; a cast right after a placeholder
-- (:labels::jsonb) is PostgreSQL's alone (SQLite drops it). :now is the transaction's clock
-- (epoch seconds), bound by the store. Statements that differ (locking, json functions, upserts
-- with RETURNING quirks, planner hints) live in sqlite.sql and postgres.sql instead.

-- name: task_insert
INSERT INTO tasks (id, title, description, status, priority, parent, labels, requires, metadata,
                   open_blockers, open_children, created_at, updated_at, done_at, discovered_from)
VALUES (:id, :title, :description, :status, :priority, :parent,
        :labels::jsonb, :requires::jsonb, :metadata::jsonb,
        :open_blockers, :open_children, :now, :now, :done_at, :discovered_from);

-- name: task_discovered_count
SELECT COUNT(*) AS n FROM tasks WHERE discovered_from = :id;

-- name: task_update_fields
UPDATE tasks SET
    title = COALESCE(:title::text, title),
    description = COALESCE(:description::text, description),
    priority = COALESCE(:priority::integer, priority),
    labels = COALESCE(:labels::jsonb, labels),
    requires = COALESCE(:requires::jsonb, requires),
    metadata = COALESCE(:metadata::jsonb, metadata),
    updated_at = :now
WHERE id = :id;

-- name: task_set_status
UPDATE tasks SET status = :status::text, done_at = :done_at, updated_at = :now,
                 not_before = CASE WHEN :status::text = 'open' THEN 0 ELSE not_before END
WHERE id = :id;

-- name: task_set_parent
UPDATE tasks SET parent = :parent, updated_at = :now WHERE id = :id;

-- name: task_set_lease
UPDATE tasks SET lease_expires = :lease_expires WHERE id = :id;

-- name: task_requeue
UPDATE tasks SET attempts = attempts + :count, not_before = :now + :retry_in,
                 last_error = COALESCE(:note::text, last_error), lease_expires = 0,
                 updated_at = :now
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

-- name: dep_insert
INSERT INTO deps (blocker, blocked) VALUES (:blocker, :blocked) ON CONFLICT DO NOTHING;

-- name: dep_delete
DELETE FROM deps WHERE blocker = :blocker AND blocked = :blocked;

-- name: status_counts
SELECT status, COUNT(*) AS n FROM tasks GROUP BY status;

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

-- name: claims_live
SELECT * FROM claims WHERE state = 'live' ORDER BY id;

-- name: event_insert
INSERT INTO events (at, kind, task_id, worker, token, data)
VALUES (:now, :kind, :task_id, :worker, :token, :data::jsonb);

-- name: events_recent
SELECT * FROM (SELECT * FROM events ORDER BY id DESC LIMIT :limit) AS recent ORDER BY id;

-- name: worker_by_name
SELECT * FROM workers WHERE name = :name;

-- name: worker_by_id
SELECT * FROM workers WHERE id = :id;

-- name: worker_insert
INSERT INTO workers (id, name, pid, host, capabilities, status, started_at, heartbeat_at,
                     heartbeat_interval, sandbox)
VALUES (:id, :name, :pid, :host, :capabilities::jsonb, 'idle', :now, :now,
        :heartbeat_interval, :sandbox);

-- name: worker_restart
UPDATE workers SET pid = :pid, host = :host, capabilities = :capabilities::jsonb,
                   status = 'idle', current_task = NULL, started_at = :now,
                   heartbeat_at = :now, heartbeat_interval = :heartbeat_interval,
                   stop_requested = 0, sandbox = :sandbox
WHERE id = :id;

-- name: worker_heartbeat
UPDATE workers SET heartbeat_at = :now, status = COALESCE(:status::text, status),
                   current_task = CASE WHEN :status::text IS NULL THEN current_task
                                       ELSE :current_task::text END
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
VALUES (:task_id, :attempt, :worker, :agent, :now, :run_dir, :token,
        :host, :kind, :model)
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
WHERE task_id = :task_id AND ended_at IS NULL
  AND (:token::bigint IS NULL OR token = :token::bigint)
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
SELECT * FROM attempts WHERE (:task_id::text IS NULL OR task_id = :task_id::text)
ORDER BY id;

-- name: meta_get
SELECT value FROM meta WHERE key = :key;

-- name: task_retry
UPDATE tasks SET status = 'open', not_before = 0, expiries = 0, lease_expires = 0,
                 updated_at = :now
WHERE id = :id AND status = 'failed';

-- name: attempts_running
SELECT * FROM attempts WHERE ended_at IS NULL ORDER BY id;

-- reviews

-- A task commit waiting on refs/heads/ralph/review/<task> for a person (ralph/review/).

-- name: review_insert
INSERT INTO reviews (task_id, attempt_id, token, branch, target, commit_sha, base_sha, verify,
                     created_at)
VALUES (:task_id, :attempt_id, :token, :branch, :target, :commit, :base, :verify, :now)
RETURNING *;

-- name: review_pending
SELECT * FROM reviews WHERE task_id = :task_id AND state = 'pending';

-- name: review_decide
UPDATE reviews SET state = :state, decided_at = :now, decided_by = :by, note = :note,
                   landed_sha = :landed
WHERE task_id = :task_id AND state = 'pending';

-- name: reviews_queue
SELECT r.*, t.title, t.attempts, t.priority,
       (SELECT SUM(a.cost_usd) FROM attempts a WHERE a.task_id = t.id) AS cost_usd
FROM reviews r JOIN tasks t ON t.id = r.task_id
WHERE r.state = 'pending' AND t.status = 'review'
ORDER BY r.created_at, r.id;

-- name: reviews_of_task
SELECT * FROM reviews WHERE task_id = :task_id ORDER BY id;

-- name: review_set_pr
UPDATE reviews SET pr_number = :number, pr_url = :url
WHERE task_id = :task_id AND state = 'pending';

-- name: task_set_review_notes
UPDATE tasks SET review_notes = :notes, last_error = NULL, updated_at = :now WHERE id = :id;

-- runpause
-- A run's own pause (a rate limit, the network down), shared through `control` so every host's
-- `ralph status` shows it (ralph/store/runpause.py).

-- name: control_prefixed
SELECT key, value, at FROM control WHERE key LIKE :pattern ORDER BY key;
