"""The store contract for the review gate (ralph/store/reviews.py), once per backend through the
`store`/`make_store` fixtures: sending to review is fenced like `finish`, a task in review holds
its dependents and children back until it lands, and every decision is one transaction and an
event naming who took it.
"""

from __future__ import annotations

import pytest

from ralph import errors
from ralph.models import AttemptEnd

LEASE = 60.0
REVIEW = {"branch": "refs/heads/ralph/review/T", "commit": "c0ffee", "target": "main"}


def to_review(store, task_id: str, **over):
    claim = store.claim(task_id, "w1", lease=LEASE)
    attempt = store.start_attempt(task_id, attempt=1, worker="w1", agent="x", token=claim.token)
    end = AttemptEnd(outcome="review", cost_usd=0.25)
    params = {**REVIEW, **over}
    return store.send_to_review(
        task_id, worker="w1", token=claim.token, attempt_id=attempt.id, end=end, **params
    )


def test_send_to_review_ends_the_claim_and_records_a_pending_review(store, clock):
    task = store.add("t", id="T")
    got = to_review(store, "T", base="b45e", verify={"result": "passed", "on": "b45e"})
    assert got.status == "review" and got.attempts == 1 and got.claimed_by is None
    assert store.claims() == [] and store.ready() == []
    [review] = store.review_queue()
    assert review["task_id"] == task.id and review["title"] == "t"
    assert (review["commit_sha"], review["base_sha"], review["target"]) == (
        "c0ffee",
        "b45e",
        "main",
    )
    assert review["verify"] == {"result": "passed", "on": "b45e"} and review["cost_usd"] == 0.25
    [attempt] = store.attempts("T")
    assert attempt.outcome == "review" and attempt.ended_at == clock.now
    [event] = store.events(task_id="T", kind="review")
    assert event.worker == "w1" and event.data["commit"] == "c0ffee"


def test_send_to_review_with_a_stale_token_changes_nothing(store, clock):
    store.add("t", id="T")
    claim = store.claim("T", "w1", lease=LEASE)
    clock.advance(LEASE + 1)
    store.claim("T", "w2", lease=LEASE)  # the lease ran out and another worker took it
    with pytest.raises(errors.LeaseLostError):
        store.send_to_review("T", worker="w1", token=claim.token, **REVIEW)
    assert store.get("T").status == "open" and store.review_queue() == []


def test_a_task_in_review_holds_dependents_and_its_parent_until_it_lands(store):
    parent = store.add("parent", id="P")
    store.add("t", id="T", parent=parent.id)
    store.add("after", id="D", blocked_by=["T"])
    to_review(store, "T")
    assert store.ready() == [] and store.get("D").open_blockers == 1
    with pytest.raises(errors.BlockedError):
        store.claim("P", "w")
    task, unblocked = store.review_landed("T", commit="c0ffee", by="alice")
    assert task.status == "done" and task.commit_sha == "c0ffee"
    assert unblocked == ["D", "P"] and {t.id for t in store.ready()} == {"D", "P"}
    [approved] = store.events(task_id="T", kind="approved")
    assert approved.data == {"by": "alice", "commit": "c0ffee"}
    assert [r["state"] for r in store.reviews_of("T")] == ["landed"]
    again, none = store.review_landed("T", commit="c0ffee", by="bob")  # a second approver
    assert again.status == "done" and none == []
    assert len(store.events(task_id="T", kind="done")) == 1


def test_rejected_tasks_go_back_with_the_note_and_a_new_attempt_supersedes_nothing_pending(
    store,
):
    store.add("t", id="T")
    to_review(store, "T")
    with pytest.raises(errors.UsageError):
        store.review_returned("T", by="bob", note="  ")
    task = store.review_returned("T", by="bob", note="shorter please", kept="refs/ralph/x")
    assert task.status == "open" and task.review_notes == "shorter please"
    assert [t.id for t in store.ready()] == ["T"]
    [rejected] = store.events(task_id="T", kind="rejected")
    assert rejected.data == {"by": "bob", "note": "shorter please", "kept": "refs/ralph/x"}
    with pytest.raises(errors.InvalidTransitionError):
        store.pending_review("T")
    to_review(store, "T", commit="beef")
    assert [(r["state"], r["commit_sha"]) for r in store.reviews_of("T")] == [
        ("rejected", "c0ffee"),
        ("pending", "beef"),
    ]
    assert store.pending_review("T")["commit_sha"] == "beef"
    store.review_landed("T", commit="beef", by="alice")
    assert store.get("T").review_notes is None  # the note served its attempt


def test_reconcile_of_a_task_in_review_closes_its_review(store):
    store.add("t", id="T")
    to_review(store, "T")
    assert store.reconcile("T", "c0ffee") is True
    assert store.get("T").status == "done"
    assert [r["state"] for r in store.reviews_of("T")] == ["landed"]
    assert store.review_queue() == []


def test_a_pull_request_is_attached_to_the_pending_review_only(store):
    store.add("t", id="T")
    with pytest.raises(errors.InvalidTransitionError):
        store.attach_pr("T", number=7, url="https://example.invalid/pr/7")
    to_review(store, "T")
    store.attach_pr("T", number=7, url="https://example.invalid/pr/7")
    [review] = store.review_queue()
    assert (review["pr_number"], review["pr_url"]) == (7, "https://example.invalid/pr/7")
