"""The store contract, part 1: tasks, ids, batches, dependencies, readiness, schema.

Every test runs once per backend through the `store` fixture (tests/conftest.py), so a backend
that passes this module and tests/test_store_claims.py behaves like every other.
"""

from __future__ import annotations

import re

import pytest

from ralph import errors
from ralph.models import STATUSES


def ids(tasks) -> list[str]:
    return [t.id for t in tasks]


def snapshot(store) -> tuple:
    """Everything a refused call must leave untouched."""
    return (
        [t.to_dict(0) for t in store.list()],
        [e.id for e in store.events()],
        store.status_counts(),
    )


# -- add / get / list / update ------------------------------------------------------------


def test_add_generates_rl_id_and_get_returns_the_stored_fields(store, clock):
    task = store.add(
        "Write the parser",
        description="tokens first",
        priority=3,
        labels=["api", "api", "core"],
        requires=["python"],
        metadata={"n": 1},
    )
    assert re.fullmatch(r"rl-[a-z0-9]{8}", task.id)
    got = store.get(task.id)
    assert (got.title, got.description, got.priority, got.status) == (
        "Write the parser",
        "tokens first",
        3,
        "open",
    )
    assert got.labels == ["api", "core"]
    assert got.requires == ["python"]
    assert got.metadata == {"n": 1}
    assert got.created_at == got.updated_at == clock.now
    assert got.done_at is None and got.attempts == 0 and got.blocked_by == []


def test_generated_ids_are_distinct(store):
    added = store.add_many([{"title": f"t{n}"} for n in range(200)])
    assert len(set(ids(added))) == 200


def test_user_chosen_id_is_kept(store):
    assert store.add("named", id="auth.login-2").id == "auth.login-2"
    assert store.get("auth.login-2").title == "named"


@pytest.mark.parametrize("bad", ["-leading-dash", "has space", "x" * 65, "semi;colon"])
def test_invalid_user_id_is_refused_and_nothing_written(store, bad):
    with pytest.raises(errors.UsageError):
        store.add("t", id=bad)
    assert store.list() == []


def test_get_of_unknown_id_raises_task_not_found(store):
    with pytest.raises(errors.TaskNotFoundError) as info:
        store.get("rl-nothere")
    assert info.value.task_id == "rl-nothere"


def test_list_is_in_insertion_order_and_filters_by_status_parent_label(store):
    a = store.add("a", labels=["x"])
    b = store.add("b", parent=a.id)
    c = store.add("c", labels=["x", "y"])
    store.done(b.id)
    assert ids(store.list()) == [a.id, b.id, c.id]
    assert ids(store.list(status="done")) == [b.id]
    assert ids(store.list(parent=a.id)) == [b.id]
    assert ids(store.list(label="x")) == [a.id, c.id]
    assert ids(store.list(limit=2)) == [a.id, b.id]
    with pytest.raises(errors.UsageError):
        store.list(status="finished")


def test_update_changes_fields_and_updated_at(store, clock):
    task = store.add("old", priority=1)
    clock.advance(5)
    got = store.update(
        task.id,
        title="new",
        priority=9,
        labels=["l"],
        requires=["gpu"],
        metadata={"k": "v"},
        description="d",
    )
    assert (got.title, got.priority, got.labels, got.requires, got.metadata, got.description) == (
        "new",
        9,
        ["l"],
        ["gpu"],
        {"k": "v"},
        "d",
    )
    assert got.updated_at == clock.now and got.created_at == clock.now - 5
    assert store.get(task.id) == got


def test_update_of_unknown_task_and_unknown_status_are_refused(store):
    with pytest.raises(errors.TaskNotFoundError):
        store.update("rl-missing0", title="x")
    task = store.add("t")
    with pytest.raises(errors.UsageError):
        store.update(task.id, status="finished")
    assert store.get(task.id).status == "open"


def test_status_counts_covers_every_status(store):
    a, b, c = (store.add(n) for n in "abc")
    store.done(a.id)
    store.update(b.id, status="cancelled")
    counts = store.status_counts()
    assert counts == {"open": 1, "done": 1, "failed": 0, "cancelled": 1, "review": 0}
    assert set(counts) == set(STATUSES)
    assert c.status == "open"


# -- add_many --------------------------------------------------------------------------------


def test_add_many_resolves_blockers_inside_the_batch_and_to_stored_tasks(store):
    stored = store.add("stored")
    done = store.add("done already")
    store.done(done.id)
    first, second = store.add_many(
        [
            {"id": "b2", "title": "second", "blocked_by": ["b1", stored.id, done.id]},
            {"id": "b1", "title": "first"},
        ]
    )
    assert sorted(first.blocked_by) == sorted(["b1", stored.id, done.id])
    assert first.open_blockers == 2  # the done blocker does not count
    assert second.open_blockers == 0
    assert ids(store.ready()) == [stored.id, "b1"]
    store.done("b1")
    store.done(stored.id)
    assert "b2" in ids(store.ready())


def test_add_many_accepts_children_of_a_parent_in_the_same_batch(store):
    parent, child = store.add_many(
        [{"id": "p", "title": "parent"}, {"id": "c", "title": "child", "parent": "p"}]
    )
    assert store.get("p").open_children == 1
    assert ids(store.ready()) == ["c"]
    assert parent.id == "p" and child.parent == "p"


@pytest.mark.parametrize(
    "batch, error",
    [
        ([{"id": "d", "title": "one"}, {"id": "d", "title": "two"}], errors.UsageError),
        ([{"id": "k", "title": "one"}], errors.UsageError),  # "k" is already stored
        ([{"id": "n", "title": "x", "blocked_by": ["ghost"]}], errors.TaskNotFoundError),
        ([{"id": "n", "title": "x", "parent": "ghost"}], errors.TaskNotFoundError),
        (
            [
                {"id": "x1", "title": "x", "blocked_by": ["x2"]},
                {"id": "x2", "title": "y", "blocked_by": ["x3"]},
                {"id": "x3", "title": "z", "blocked_by": ["x1"]},
            ],
            errors.CycleError,
        ),
        ([{"id": "s", "title": "self", "blocked_by": ["s"]}], errors.CycleError),
        (
            [
                {"id": "p1", "title": "x", "parent": "p2"},
                {"id": "p2", "title": "y", "parent": "p1"},
            ],
            errors.CycleError,
        ),
        ([{"id": "ok", "title": "fine"}, {"title": ""}], errors.UsageError),
        ([{"id": "ok", "title": "fine"}, {"title": "x", "priority": "high"}], errors.UsageError),
    ],
    ids=[
        "duplicate-in-batch",
        "duplicate-of-stored",
        "unknown-blocker",
        "unknown-parent",
        "cycle",
        "self-block",
        "parent-cycle",
        "empty-title",
        "bad-priority",
    ],
)
def test_bad_batch_is_refused_whole_and_nothing_is_written(store, batch, error):
    store.add("existing", id="k")
    before = snapshot(store)
    with pytest.raises(error):
        store.add_many([{"id": "fine-first", "title": "would be first"}, *batch])
    assert snapshot(store) == before


# -- dependencies ---------------------------------------------------------------------------


def test_block_makes_a_task_wait_and_unblock_frees_it(store):
    task, blocker = store.add("task"), store.add("blocker")
    got = store.block(task.id, blocker.id)
    assert got.blocked_by == [blocker.id] and got.open_blockers == 1
    assert ids(store.ready()) == [blocker.id]
    assert store.relations(blocker.id)["blocks"] == [{"id": task.id, "status": "open"}]
    got = store.unblock(task.id, blocker.id)
    assert got.blocked_by == [] and got.open_blockers == 0
    assert ids(store.ready()) == [task.id, blocker.id]


def test_blocking_twice_counts_once(store):
    task, blocker = store.add("task"), store.add("blocker")
    store.block(task.id, blocker.id)
    store.block(task.id, blocker.id)
    assert store.unblock(task.id, blocker.id).open_blockers == 0


def test_blocking_on_a_done_task_does_not_block(store):
    task, blocker = store.add("task"), store.add("blocker")
    store.done(blocker.id)
    assert store.block(task.id, blocker.id).open_blockers == 0
    assert ids(store.ready()) == [task.id]


def test_unblock_of_a_missing_dependency_is_not_found(store):
    a, b = store.add("a"), store.add("b")
    with pytest.raises(errors.NotFoundError):
        store.unblock(a.id, b.id)
    with pytest.raises(errors.TaskNotFoundError):
        store.block(a.id, "rl-ghost000")


def test_self_dependency_is_refused_with_cycle_error(store):
    a = store.add("a")
    with pytest.raises(errors.CycleError):
        store.block(a.id, a.id)
    assert store.get(a.id).blocked_by == []


def test_direct_cycle_is_refused(store):
    a, b = store.add("a"), store.add("b")
    store.block(a.id, b.id)
    before = snapshot(store)
    with pytest.raises(errors.CycleError):
        store.block(b.id, a.id)
    assert snapshot(store) == before


def test_transitive_cycle_is_refused(store):
    a, b, c, d = (store.add(n) for n in "abcd")
    store.block(a.id, b.id)  # a waits on b, b on c, c on d
    store.block(b.id, c.id)
    store.block(c.id, d.id)
    with pytest.raises(errors.CycleError):
        store.block(d.id, a.id)
    store.block(a.id, d.id)  # a shortcut is no cycle
    assert sorted(store.get(a.id).blocked_by) == sorted([b.id, d.id])


def test_reparenting_under_a_descendant_is_refused(store):
    top = store.add("top")
    mid = store.add("mid", parent=top.id)
    low = store.add("low", parent=mid.id)
    with pytest.raises(errors.CycleError):
        store.update(top.id, parent=low.id)
    assert store.get(top.id).parent is None


def test_done_reports_the_dependents_it_unblocked(store):
    blocker = store.add("blocker")
    freed = store.add("freed", blocked_by=[blocker.id])
    other = store.add("other")
    still = store.add("still blocked", blocked_by=[blocker.id, other.id])
    task, unblocked = store.done(blocker.id)
    assert task.status == "done" and task.done_at is not None
    assert unblocked == [freed.id]
    assert store.get(still.id).open_blockers == 1


def test_done_of_the_last_child_reports_the_parent(store):
    parent = store.add("parent")
    kids = [store.add(f"kid {n}", parent=parent.id) for n in range(2)]
    assert store.done(kids[0].id)[1] == []
    assert store.done(kids[1].id)[1] == [parent.id]


def test_done_twice_is_an_invalid_transition(store):
    task = store.add("t")
    store.done(task.id)
    with pytest.raises(errors.InvalidTransitionError):
        store.done(task.id)


def test_done_of_a_blocked_task_raises_blocked_error(store):
    blocker = store.add("blocker")
    task = store.add("task", blocked_by=[blocker.id])
    with pytest.raises(errors.BlockedError):
        store.done(task.id)
    assert store.get(task.id).status == "open"


def test_status_done_through_update_obeys_the_same_blocker_rule(store):
    blocker = store.add("blocker")
    task = store.add("task", blocked_by=[blocker.id])
    with pytest.raises(errors.BlockedError):
        store.update(task.id, status="done")
    assert store.get(task.id).status == "open"


def test_parent_with_an_open_child_cannot_be_done(store):
    parent = store.add("parent")
    child = store.add("child", parent=parent.id)
    with pytest.raises(errors.InvalidTransitionError):
        store.done(parent.id)
    store.done(child.id)
    assert store.done(parent.id)[0].status == "done"


def test_reopening_a_done_task_blocks_its_dependents_again(store):
    blocker = store.add("blocker")
    dependent = store.add("dependent", blocked_by=[blocker.id])
    store.done(blocker.id)
    assert ids(store.ready()) == [dependent.id]
    reopened = store.update(blocker.id, status="open")
    assert reopened.status == "open" and reopened.done_at is None
    assert store.get(dependent.id).open_blockers == 1
    assert ids(store.ready()) == [blocker.id]


def test_reopening_a_done_child_makes_the_parent_wait_again(store):
    parent = store.add("parent")
    child = store.add("child", parent=parent.id)
    store.done(child.id)
    assert ids(store.ready()) == [parent.id]
    store.update(child.id, status="open")
    assert ids(store.ready()) == [child.id]


# -- readiness ------------------------------------------------------------------------------


def test_ready_orders_by_priority_then_age(store):
    low = store.add("low")
    high1 = store.add("high first", priority=5)
    mid = store.add("mid", priority=2)
    high2 = store.add("high second", priority=5)
    neg = store.add("negative", priority=-1)
    assert ids(store.ready()) == [high1.id, high2.id, mid.id, low.id, neg.id]
    assert ids(store.ready(limit=2)) == [high1.id, high2.id]
    claimed = [store.claim_next("w").task_id for _ in range(5)]
    assert claimed == [high1.id, high2.id, mid.id, low.id, neg.id]


def test_ready_excludes_done_cancelled_and_failed_tasks(store):
    kept, done, cancelled, failed = (store.add(n) for n in ("kept", "done", "cancelled", "f"))
    store.done(done.id)
    store.update(cancelled.id, status="cancelled")
    claim = store.claim(failed.id, "w")
    store.fail(failed.id, "w", claim.token, reason="gave up")
    assert ids(store.ready()) == [kept.id]
    assert store.claim_next("w2").task_id == kept.id
    assert store.claim_next("w2") is None


def test_ready_excludes_claimed_tasks(store):
    a, b = store.add("a"), store.add("b")
    store.claim(a.id, "w")
    assert ids(store.ready()) == [b.id]


def test_ready_excludes_tasks_released_with_a_retry_delay_until_it_passes(store, clock):
    task = store.add("flaky")
    claim = store.claim(task.id, "w")
    store.release(task.id, "w", claim.token, retry_in=30, count_attempt=True, note="tests red")
    got = store.get(task.id)
    assert got.attempts == 1 and got.last_error == "tests red"
    assert store.ready() == [] and store.claim_next("w") is None
    clock.advance(30 - 0.001)
    assert store.ready() == []
    clock.advance(0.001)
    assert ids(store.ready()) == [task.id]


def test_ready_keeps_capability_restricted_tasks_for_capable_workers(store):
    gpu = store.add("train", requires=["gpu"])
    both = store.add("deploy", requires=["gpu", "prod"])
    plain = store.add("docs")
    assert ids(store.ready(capabilities=[])) == [plain.id]
    assert ids(store.ready(capabilities=["gpu"])) == [gpu.id, plain.id]
    assert ids(store.ready(capabilities=["prod", "gpu", "x"])) == [gpu.id, both.id, plain.id]
    assert ids(store.ready(capabilities=None)) == [gpu.id, both.id, plain.id]
    assert store.claim_next("cpu-box", capabilities=["cpu"]).task_id == plain.id
    assert store.claim_next("cpu-box", capabilities=["cpu"]) is None
    assert store.claim_next("gpu-box", capabilities=["gpu"]).task_id == gpu.id


def test_ready_excludes_blocked_tasks_and_parents_with_open_children(store):
    parent = store.add("parent")
    child = store.add("child", parent=parent.id)
    blocker = store.add("blocker")
    blocked = store.add("blocked", blocked_by=[blocker.id])
    assert ids(store.ready()) == [child.id, blocker.id]
    with pytest.raises(errors.BlockedError):
        store.claim(parent.id, "w")
    with pytest.raises(errors.BlockedError):
        store.claim(blocked.id, "w")


# -- opening --------------------------------------------------------------------------------


def schema_version(store) -> int:
    with store.transaction(write=False) as tx:
        return int(tx.one("meta_get", key="schema_version")["value"])


def test_schema_version_is_recorded_and_reopening_is_idempotent(make_store):
    first = make_store()
    task = first.add("survives reopening")
    version = schema_version(first)
    assert version >= 1
    first.close()
    for _ in range(2):
        again = make_store()
        assert schema_version(again) == version
        assert ids(again.list()) == [task.id]
        assert [e.kind for e in again.events()] == ["created"]
