-- ralph task store, PostgreSQL, schema version 3 (ralph 0.4.0). See sqlite_0003.sql.

ALTER TABLE tasks DROP CONSTRAINT IF EXISTS tasks_status_check;
ALTER TABLE tasks ADD CONSTRAINT tasks_status_check
    CHECK (status IN ('open', 'done', 'failed', 'cancelled', 'review'));
ALTER TABLE tasks ADD COLUMN review_notes text;
ALTER TABLE attempts ADD COLUMN kind text NOT NULL DEFAULT 'task';
ALTER TABLE attempts ADD COLUMN model text;
ALTER TABLE workers ADD COLUMN sandbox text;

CREATE TABLE reviews (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task_id     text NOT NULL REFERENCES tasks (id),
    attempt_id  bigint REFERENCES attempts (id),
    token       bigint,
    branch      text NOT NULL,
    target      text,
    commit_sha  text NOT NULL,
    base_sha    text,
    state       text NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'landed', 'rejected', 'closed')),
    verify      text,
    pr_number   integer,
    pr_url      text,
    created_at  double precision NOT NULL,
    decided_at  double precision,
    decided_by  text,
    note        text,
    landed_sha  text
);
CREATE UNIQUE INDEX reviews_one_pending ON reviews (task_id) WHERE state = 'pending';
CREATE INDEX reviews_task ON reviews (task_id, id);
