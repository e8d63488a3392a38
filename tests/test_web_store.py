"""The store calls the dashboard makes: retry, paged search, queue counts, spend per hour.

Every test runs once per backend through the `store` fixture (tests/conftest.py).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from ralph import errors
from ralph.models import AttemptEnd


def ids(tasks) -> list[str]:
    return [t.id for t in tasks]


def test_retry_reopens_a_failed_task_keeping_its_attempts_and_logs_retried(store):
    task = store.add("flaky")
    claim = store.claim(task.id, "w")
    store.fail(task.id, "w", claim.token, reason="gave up")
    back = store.retry(task.id)
    assert back.status == "open" and back.attempts == 1 and back.is_ready(store.clock())
    assert [e.kind for e in store.events(task_id=task.id)][-1] == "retried"
    assert store.claim_next("w2").task_id == task.id


@pytest.mark.parametrize("status", ["open", "done"])
def test_retry_of_a_task_that_did_not_fail_is_refused_and_changes_nothing(store, status):
    task = store.add("fine")
    if status == "done":
        store.done(task.id)
    before = [e.id for e in store.events()]
    with pytest.raises(errors.InvalidTransitionError):
        store.retry(task.id)
    assert store.get(task.id).status == status
    assert [e.id for e in store.events()] == before


def test_retry_of_an_unknown_task_is_not_found(store):
    with pytest.raises(errors.TaskNotFoundError):
        store.retry("nope")


def test_task_page_filters_searches_and_pages_newest_first(store):
    made = [store.add(f"task {i}", labels=["even" if i % 2 == 0 else "odd"]) for i in range(7)]
    needy = store.add("Needs GPU", description="Train the MODEL", requires=["gpu"])
    store.done(made[0].id)
    page, total = store.task_page(limit=3)
    assert total == 8 and ids(page) == [needy.id, made[6].id, made[5].id]
    page, total = store.task_page(limit=3, offset=6)
    assert total == 8 and ids(page) == [made[1].id, made[0].id]
    assert ids(store.task_page(status="done")[0]) == [made[0].id]
    assert store.task_page(label="even")[1] == 4
    assert ids(store.task_page(capability="gpu")[0]) == [needy.id]
    assert ids(store.task_page(text="the model")[0]) == [needy.id]
    assert ids(store.task_page(text=made[3].id)[0]) == [made[3].id]
    assert store.task_page(text="no such words") == ([], 0)


def test_task_page_search_takes_percent_and_underscore_literally(store):
    whole = store.add("Coverage at 100% of lines")
    store.add("Coverage at 1000 lines")
    snake = store.add("rename my_var")
    store.add("rename myXvar")
    assert ids(store.task_page(text="100%")[0]) == [whole.id]
    assert ids(store.task_page(text="MY_VAR")[0]) == [snake.id]


def test_task_page_states_ready_blocked_running(store):
    a, b, c = store.add("a"), store.add("b"), store.add("c")
    store.block(b.id, a.id)
    store.claim(c.id, "w")
    assert ids(store.task_page(status="ready")[0]) == [a.id]
    page, _ = store.task_page(status="blocked")
    assert ids(page) == [b.id] and page[0].blocked_by == [a.id]
    running, _ = store.task_page(status="running")
    assert ids(running) == [c.id] and running[0].claimed_by == "w"
    assert store.queue_counts() == {"ready": 1, "blocked": 1, "running": 1, "retry_wait": 0}
    assert [store.task_page(status=s)[1] for s in ("ready", "blocked", "running", "open")] == [
        1,
        1,
        1,
        3,
    ]
    assert store.task_page(status="done") == ([], 0)
    later = store.add("later")
    claim = store.claim(later.id, "w2")
    store.release(later.id, "w2", claim.token, retry_in=30, count_attempt=True, note="red")
    assert store.queue_counts() == {"ready": 1, "blocked": 1, "running": 1, "retry_wait": 1}


def test_spend_by_hour_and_by_worker_add_up_attempt_costs(store, clock):
    task = store.add("t")
    claim = store.claim(task.id, "w1")
    first = store.start_attempt(task.id, attempt=1, worker="w1", agent="claude")
    assert [a.id for a in store.running_attempts()] == [first.id]
    store.finish(
        task.id,
        worker="w1",
        token=claim.token,
        verdict="retry",
        attempt_id=first.id,
        end=AttemptEnd(outcome="agent_error", cost_usd=0.25),
    )
    clock.advance(3600)
    claim = store.claim(task.id, "w2")
    second = store.start_attempt(task.id, attempt=2, worker="w2", agent="codex")
    store.finish(
        task.id,
        worker="w2",
        token=claim.token,
        verdict="done",
        attempt_id=second.id,
        end=AttemptEnd(outcome="success", cost_usd=0.5),
    )
    hours = store.spend_by_hour(since=0)
    assert [(h["agent"], h["attempts"], h["succeeded"], h["cost_usd"]) for h in hours] == [
        ("claude", 1, 0, 0.25),
        ("codex", 1, 1, 0.5),
    ]
    assert hours[1]["hour"] - hours[0]["hour"] == 3600 and hours[0]["hour"] % 3600 == 0
    assert store.spend_by_worker(since=0) == {
        "w1": {"attempts": 1, "launches": 1, "cost_usd": 0.25, "unknown_cost": 0},
        "w2": {"attempts": 1, "launches": 1, "cost_usd": 0.5, "unknown_cost": 0},
    }
    assert store.running_attempts() == []


def test_ralph_retry_puts_a_failed_task_back_from_the_command_line(tmp_path):
    from ralph.store import open_store

    db = tmp_path / "ralph.db"
    with open_store(db) as store:
        task = store.add("flaky", id="F1")
        claim = store.claim(task.id, "w")
        store.fail(task.id, "w", claim.token, reason="gave up")
    done = subprocess.run(
        [sys.executable, "-m", "ralph", "--db", str(db), "retry", "F1"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "Retrying F1: flaky (1 attempts so far)\n"
    again = subprocess.run(
        [sys.executable, "-m", "ralph", "--db", str(db), "retry", "F1"],
        capture_output=True,
        text=True,
    )
    assert again.returncode == 6 and "F1 is open, not failed" in again.stderr
