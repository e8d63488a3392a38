-- ralph task store, SQLite, schema version 3 (ralph 0.4.0).
-- Tasks may wait in `review` (landed on a review branch, not on the target); attempts record
-- their kind (`task`, or `resolve` for a conflict resolution) and the model that ran them;
-- workers record what confines their attempts (the dashboard's shield); `reviews` holds each
-- task commit waiting for a person (or a pull request) and the decision taken on it.

-- The status CHECK gains 'review'. SQLite cannot alter a CHECK in place; widening it changes no
-- stored row, which is the case the SQLite manual ("ALTER TABLE", making other kinds of schema
-- changes) allows through writable_schema. The ALTER TABLEs below bump the schema cookie, so
-- every other connection reloads the new definition.
PRAGMA writable_schema = ON;
UPDATE sqlite_master SET sql = replace(sql, '''failed'', ''cancelled'')', '''failed'', ''cancelled'', ''review'')')
WHERE type = 'table' AND name = 'tasks';
PRAGMA writable_schema = RESET;

ALTER TABLE tasks ADD COLUMN review_notes TEXT;
ALTER TABLE attempts ADD COLUMN kind TEXT NOT NULL DEFAULT 'task';
ALTER TABLE attempts ADD COLUMN model TEXT;
ALTER TABLE workers ADD COLUMN sandbox TEXT;

CREATE TABLE reviews (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id     TEXT NOT NULL REFERENCES tasks (id),
    attempt_id  INTEGER REFERENCES attempts (id),
    token       INTEGER,                               -- the claim the commit was made under
    branch      TEXT NOT NULL,                         -- refs/heads/ralph/review/<task>
    target      TEXT,                                  -- the branch it lands on when approved
    commit_sha  TEXT NOT NULL,
    base_sha    TEXT,                                  -- the target's tip it was based on
    state       TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'landed', 'rejected', 'closed')),
    verify      TEXT,                                  -- verify result when it went to review
    pr_number   INTEGER,
    pr_url      TEXT,
    created_at  REAL NOT NULL,
    decided_at  REAL,
    decided_by  TEXT,
    note        TEXT,
    landed_sha  TEXT
);
CREATE UNIQUE INDEX reviews_one_pending ON reviews (task_id) WHERE state = 'pending';
CREATE INDEX reviews_task ON reviews (task_id, id);
