"""The store contract, part 2: leased and fenced claims, expiry, workers, events, attempts.

Runs once per backend through the `store`/`make_store` fixtures; time comes from the `clock`
fixture, so lease boundaries are checked exactly, one tick either side, without sleeping.
"""

from __future__ import annotations

import pytest
from storefactory import TICK

from ralph import errors

LEASE = 60.0


def kinds(store, task_id: str) -> list[str]:
    return [e.kind for e in store.events(task_id=task_id)]


# -- claim ----------------------------------------------------------------------------------


def test_claim_returns_a_live_claim_until_now_plus_lease(store, clock):
    task = store.add("t")
    claim = store.claim(task.id, "w1", lease=LEASE)
    assert (claim.task_id, claim.worker, claim.state, claim.renewals) == (task.id, "w1", "live", 0)
    assert claim.claimed_at == clock.now and claim.expires_at == clock.now + LEASE
    assert claim.lease_seconds == LEASE
    assert store.active_claim(task.id) == claim
    assert store.get(task.id).claimed_by == "w1"
    assert store.claims() == [claim]


def test_second_claim_while_held_is_refused_with_holder_name(make_store):
    first, second = make_store(), make_store()
    task = first.add("t")
    claim = first.claim(task.id, "alice", lease=LEASE)
    with pytest.raises(errors.AlreadyClaimedError) as info:
        second.claim(task.id, "bob", lease=LEASE)
    assert info.value.holder == "alice" and info.value.task_id == task.id
    assert info.value.expires_at == claim.expires_at
    assert "alice" in str(info.value)
    with pytest.raises(errors.AlreadyClaimedError):
        first.claim(task.id, "alice")  # the holder cannot stack a second claim either
    assert second.claim_next("bob") is None


@pytest.mark.parametrize("status", ["done", "cancelled"])
def test_claim_of_a_finished_task_is_refused(store, status):
    task = store.add("t")
    store.update(task.id, status=status)
    with pytest.raises(errors.InvalidTransitionError):
        store.claim(task.id, "w")
    assert store.claims() == []


def test_claim_of_a_blocked_task_is_refused(store):
    blocker = store.add("blocker")
    task = store.add("t", blocked_by=[blocker.id])
    with pytest.raises(errors.BlockedError):
        store.claim(task.id, "w")
    with pytest.raises(errors.TaskNotFoundError):
        store.claim("rl-ghost000", "w")


@pytest.mark.parametrize("lease", [0, -5, True, "60"])
def test_claim_with_a_bad_lease_is_refused(store, lease):
    task = store.add("t")
    with pytest.raises(errors.UsageError):
        store.claim(task.id, "w", lease=lease)
    assert store.active_claim(task.id) is None


def test_fencing_tokens_strictly_increase_per_task(store, clock):
    task, other = store.add("t"), store.add("other")
    first = store.claim(task.id, "w0", lease=LEASE)
    store.claim(other.id, "noise", lease=LEASE)  # another task's claim in between
    store.release(task.id, "w0", first.token)
    second = store.claim(task.id, "w1", lease=LEASE)
    clock.advance(LEASE)  # let it lapse: the next claim expires it lazily
    third = store.claim(task.id, "w2", lease=LEASE)
    assert first.token < second.token < third.token


# -- done -----------------------------------------------------------------------------------


def test_done_with_token_releases_the_claim_in_the_same_transaction(store, clock):
    task = store.add("t")
    claim = store.claim(task.id, "w", lease=LEASE)
    clock.advance(5)
    done, unblocked = store.done(task.id, token=claim.token, worker="w")
    assert done.status == "done" and done.done_at == clock.now and unblocked == []
    ended = store.get_claim(claim.token)
    assert ended.state == "done" and ended.ended_at == done.done_at
    assert store.active_claim(task.id) is None and store.claims() == []
    assert kinds(store, task.id)[-2:] == ["released", "done"]


def test_done_with_a_stale_token_or_by_a_non_holder_is_refused(store):
    task = store.add("t")
    claim = store.claim(task.id, "w", lease=LEASE)
    with pytest.raises(errors.LeaseLostError):
        store.done(task.id, token=claim.token + 1000)
    with pytest.raises(errors.NotHolderError):
        store.done(task.id, token=claim.token, worker="intruder")
    assert store.get(task.id).status == "open"
    assert store.active_claim(task.id) == claim


def test_done_with_token_of_an_unclaimed_task_is_lease_lost(store):
    task = store.add("t")
    with pytest.raises(errors.LeaseLostError):
        store.done(task.id, token=1)


# -- renew ----------------------------------------------------------------------------------


def test_renew_extends_to_now_plus_the_claims_own_lease(store, clock):
    task = store.add("t")
    claim = store.claim(task.id, "w", lease=LEASE)
    clock.advance(LEASE / 3)
    renewed = store.renew(task.id, "w", claim.token)
    # now + lease, not the old expiry + lease (which would be claimed_at + 2 * lease)
    assert renewed.expires_at == clock.now + LEASE
    assert renewed.token == claim.token and renewed.renewals == 1
    assert store.active_claim(task.id).expires_at == renewed.expires_at
    assert store.get(task.id).lease_expires == renewed.expires_at
    clock.advance(LEASE / 3)
    assert store.renew(task.id, "w").expires_at == clock.now + LEASE


def test_renew_by_a_non_holder_is_refused(store):
    task = store.add("t")
    claim = store.claim(task.id, "w", lease=LEASE)
    with pytest.raises(errors.NotHolderError):
        store.renew(task.id, "intruder", claim.token)
    assert store.active_claim(task.id).renewals == 0


def test_renew_with_a_stale_token_is_refused(store):
    task = store.add("t")
    old = store.claim(task.id, "w", lease=LEASE)
    store.release(task.id, "w", old.token)
    new = store.claim(task.id, "w", lease=LEASE)
    with pytest.raises(errors.LeaseLostError):
        store.renew(task.id, "w", old.token)
    assert store.renew(task.id, "w", new.token).renewals == 1


def test_renew_after_release_is_lease_lost(store):
    task = store.add("t")
    claim = store.claim(task.id, "w", lease=LEASE)
    store.release(task.id, "w", claim.token)
    with pytest.raises(errors.LeaseLostError):
        store.renew(task.id, "w", claim.token)


def test_renewals_beyond_max_renewals_are_refused(store):
    store.max_renewals = 2
    task = store.add("t")
    claim = store.claim(task.id, "w", lease=LEASE)
    store.renew(task.id, "w", claim.token)
    assert store.renew(task.id, "w", claim.token).renewals == 2
    with pytest.raises(errors.RenewalLimitError):
        store.renew(task.id, "w", claim.token)
    assert store.active_claim(task.id).renewals == 2


# -- lease boundary -------------------------------------------------------------------------


def test_claim_is_live_one_tick_before_expiry(make_store, clock):
    store, other = make_store(), make_store()
    task = store.add("t")
    claim = store.claim(task.id, "w", lease=LEASE)
    clock.set(claim.expires_at - TICK)
    assert store.active_claim(task.id) == claim
    assert store.expired() == []
    with pytest.raises(errors.AlreadyClaimedError):
        other.claim(task.id, "thief")
    assert other.claim_next("thief") is None
    assert store.renew(task.id, "w", claim.token).expires_at == clock.now + LEASE


def test_claim_is_expired_at_exactly_expires_at(make_store, clock):
    store, other = make_store(), make_store()
    task = store.add("t")
    claim = store.claim(task.id, "w", lease=LEASE)
    clock.set(claim.expires_at)
    assert store.active_claim(task.id) is None
    assert [c.token for c in store.expired()] == [claim.token]
    with pytest.raises(errors.LeaseLostError):
        store.renew(task.id, "w", claim.token)
    with pytest.raises(errors.LeaseLostError):
        store.done(task.id, token=claim.token, worker="w")
    taken = other.claim_next("thief", lease=LEASE)
    assert taken.task_id == task.id and taken.token > claim.token


def test_expired_claim_is_replaced_at_claim_time_and_logged(store, clock):
    task = store.add("t")
    old = store.claim(task.id, "crashed", lease=LEASE)
    clock.advance(LEASE)
    new = store.claim(task.id, "rescuer", lease=LEASE)
    assert new.worker == "rescuer" and new.token > old.token
    assert store.get_claim(old.token).state == "expired"
    expired = store.events(task_id=task.id, kind="expired")
    assert [(e.worker, e.token) for e in expired] == [("crashed", old.token)]
    with pytest.raises(errors.LeaseLostError):
        store.done(task.id, token=old.token)
    with pytest.raises(errors.LeaseLostError):
        store.renew(task.id, "crashed", old.token)
    assert store.active_claim(task.id) == new


# -- release, expire, sweep -----------------------------------------------------------------


def test_release_by_holder_makes_the_task_ready_again(store):
    task = store.add("t")
    claim = store.claim(task.id, "w", lease=LEASE)
    store.release(task.id, "w", claim.token)
    assert store.get_claim(claim.token).state == "released"
    assert [t.id for t in store.ready()] == [task.id]
    assert store.get(task.id).attempts == 0


def test_release_by_a_non_holder_is_refused(store):
    task = store.add("t")
    store.claim(task.id, "w", lease=LEASE)
    with pytest.raises(errors.NotHolderError):
        store.release(task.id, "intruder")
    assert store.active_claim(task.id).worker == "w"


def test_expire_refuses_a_live_claim_unless_forced(store, clock):
    task = store.add("t")
    claim = store.claim(task.id, "w", lease=LEASE)
    with pytest.raises(errors.InvalidTransitionError):
        store.expire(claim.token)
    assert store.expire(claim.token, force=True).token == claim.token
    assert store.get_claim(claim.token).state == "expired"
    with pytest.raises(errors.InvalidTransitionError):
        store.expire(claim.token, force=True)
    with pytest.raises(errors.ClaimNotFoundError):
        store.expire(claim.token + 1000)


def test_expired_lists_and_expire_frees_a_lapsed_claim(store, clock):
    a, b = store.add("a"), store.add("b")
    ca = store.claim(a.id, "w", lease=10)
    store.claim(b.id, "w", lease=100)
    clock.advance(10)
    assert [c.token for c in store.expired()] == [ca.token]
    store.expire(ca.token)
    assert store.expired() == []
    assert [t.id for t in store.ready()] == [a.id]


def test_expire_stale_sweeps_every_lapsed_claim(store, clock):
    a, b, c = store.add("a"), store.add("b"), store.add("c")
    short = [store.claim(a.id, "w1", lease=10), store.claim(b.id, "w2", lease=20)]
    store.claim(c.id, "w3", lease=30)
    clock.advance(20)
    swept = store.expire_stale()
    assert sorted(x.token for x in swept) == sorted(x.token for x in short)
    assert [t.id for t in store.ready()] == [a.id, b.id]
    assert store.expire_stale() == []
    assert len(store.events(kind="expired")) == 2


def test_the_nth_expiry_fails_the_task_with_max_expiries(store, clock):
    store.max_expiries = 2
    task = store.add("poison")
    store.claim(task.id, "w1", lease=LEASE)
    clock.advance(LEASE)
    store.expire_stale()
    assert store.get(task.id).status == "open"
    store.claim(task.id, "w2", lease=LEASE)
    clock.advance(LEASE)
    store.expire_stale()
    failed = store.get(task.id)
    assert failed.status == "failed" and "2 times" in failed.last_error
    assert kinds(store, task.id)[-2:] == ["expired", "failed"]
    assert store.ready() == []


def test_max_expiries_reached_lazily_at_claim_next_fails_the_task_instead_of_claiming(store, clock):
    store.max_expiries = 1
    poison, healthy = store.add("poison", priority=1), store.add("healthy")
    store.claim(poison.id, "w1", lease=LEASE)
    clock.advance(LEASE)
    claim = store.claim_next("w2", lease=LEASE)
    assert store.get(poison.id).status == "failed"
    assert claim is not None and claim.task_id == healthy.id
    assert store.active_claim(poison.id) is None


def test_max_expiries_reached_lazily_at_claim_fails_the_task_and_refuses(store, clock):
    store.max_expiries = 1
    task = store.add("poison")
    store.claim(task.id, "w1", lease=LEASE)
    clock.advance(LEASE)
    with pytest.raises(errors.InvalidTransitionError):
        store.claim(task.id, "w2", lease=LEASE)
    assert store.get(task.id).status == "failed"
    assert store.active_claim(task.id) is None


def test_fail_ends_the_claim_and_the_task(store):
    task = store.add("t")
    claim = store.claim(task.id, "w", lease=LEASE)
    failed = store.fail(task.id, "w", claim.token, reason="tests never pass")
    assert (failed.status, failed.attempts, failed.last_error) == (
        "failed",
        1,
        "tests never pass",
    )
    assert store.active_claim(task.id) is None
    with pytest.raises(errors.InvalidTransitionError):
        store.claim(task.id, "w")


def test_release_worker_frees_every_claim_of_that_worker_only(store):
    a, b, c = store.add("a"), store.add("b"), store.add("c")
    mine = [store.claim(a.id, "crashed"), store.claim(b.id, "crashed")]
    theirs = store.claim(c.id, "alive")
    released = store.release_worker("crashed")
    assert sorted(x.token for x in released) == sorted(x.token for x in mine)
    assert [t.id for t in store.ready()] == [a.id, b.id]
    assert store.claims() == [theirs]
    assert store.release_worker("crashed") == []


def test_active_claim_of_an_unclaimed_or_unknown_task(store):
    task = store.add("t")
    assert store.active_claim(task.id) is None
    with pytest.raises(errors.TaskNotFoundError):
        store.active_claim("rl-ghost000")
    with pytest.raises(errors.ClaimNotFoundError):
        store.get_claim(12345)


# -- workers --------------------------------------------------------------------------------


def test_worker_register_heartbeat_stop_and_list(store, clock):
    worker = store.register_worker(
        "host-a-1", capabilities=["gpu"], pid=4242, host="a", heartbeat_interval=10
    )
    assert worker.id.startswith("worker-") and worker.capabilities == ["gpu"]
    assert (worker.pid, worker.host, worker.status, worker.started_at) == (
        4242,
        "a",
        "idle",
        clock.now,
    )
    clock.advance(3)
    assert store.heartbeat(worker.id, status="busy", current_task="rl-x") is False
    (listed,) = store.workers()
    assert (listed.status, listed.current_task, listed.heartbeat_at) == ("busy", "rl-x", clock.now)
    store.stop_worker("host-a-1")
    assert store.heartbeat(worker.id) is True
    stopped = store.stop_worker(worker.id, stopped=True)
    assert stopped.state(clock.now) == "stopped"
    again = store.register_worker("host-a-1", heartbeat_interval=10)
    assert again.id == worker.id and again.status == "idle" and not again.stop_requested
    with pytest.raises(errors.WorkerNotFoundError):
        store.heartbeat("worker-nobody")
    with pytest.raises(errors.WorkerNotFoundError):
        store.stop_worker("nobody")


def test_worker_is_dead_when_its_heartbeat_is_older_than_three_intervals(store, clock):
    worker = store.register_worker("w", heartbeat_interval=10)
    clock.advance(7)
    store.heartbeat(worker.id)
    (listed,) = store.workers()
    assert listed.state(clock.now + 30) == "idle"
    assert listed.state(clock.now + 30 + TICK) == "dead"


# -- events ---------------------------------------------------------------------------------


def test_events_record_every_claim_transition(store, clock):
    task = store.add("t")
    first = store.claim(task.id, "w1", lease=LEASE)
    store.renew(task.id, "w1", first.token)
    store.release(task.id, "w1", first.token)
    second = store.claim(task.id, "w2", lease=LEASE)
    clock.advance(LEASE)
    third = store.claim(task.id, "w3", lease=LEASE)
    store.done(task.id, token=third.token, worker="w3")
    log = store.events(task_id=task.id)
    assert [e.kind for e in log] == [
        "created",
        "claimed",
        "renewed",
        "released",
        "claimed",
        "expired",
        "claimed",
        "released",
        "done",
    ]
    tokens = [e.token for e in log if e.kind in ("claimed", "renewed", "released", "expired")]
    assert tokens == [first.token] * 3 + [second.token] * 2 + [third.token] * 2
    assert [e.worker for e in log if e.kind == "claimed"] == ["w1", "w2", "w3"]
    other = store.add("other")
    claim = store.claim(other.id, "w")
    store.fail(other.id, "w", claim.token, reason="boom")
    assert kinds(store, other.id) == ["created", "claimed", "failed"]


def test_events_are_append_only_and_filterable(store, clock):
    task = store.add("t")
    store.claim(task.id, "w")
    before = store.events()
    clock.advance(1)
    store.release(task.id, "w")
    store.add("u")
    after = store.events()
    assert after[: len(before)] == before
    assert [e.id for e in after] == sorted({e.id for e in after})
    assert all(e.at <= f.at for e, f in zip(after, after[1:], strict=False))
    assert [e.kind for e in store.events(kind="created")] == ["created", "created"]
    assert store.events(after=before[-1].id) == after[len(before) :]
    assert store.events(limit=1) == after[:1]
    assert store.recent_events(2) == after[-2:]


# -- attempts -------------------------------------------------------------------------------


def test_attempts_start_finish_and_list(store, clock):
    task = store.add("t")
    other = store.add("u")
    started = store.start_attempt(task.id, attempt=1, worker="w", agent="claude", run_dir="/r/1")
    assert (started.task_id, started.attempt, started.started_at) == (task.id, 1, clock.now)
    assert started.ended_at is None and started.outcome is None
    clock.advance(42)
    finished = store.finish_attempt(
        started.id,
        outcome="success",
        exit_code=0,
        cost_usd=0.125,
        input_tokens=1000,
        output_tokens=200,
        session_id="s-1",
        summary="did it",
        counted=False,
    )
    assert finished.ended_at == clock.now and finished.outcome == "success"
    assert (finished.cost_usd, finished.input_tokens, finished.output_tokens) == (0.125, 1000, 200)
    assert (finished.session_id, finished.summary, finished.counted) == ("s-1", "did it", False)
    second = store.start_attempt(other.id, attempt=1, worker="w", agent="codex")
    assert store.attempts(task.id) == [finished]
    assert store.attempts() == [finished, second]


def test_an_attempt_keeps_its_configured_model_unless_the_agent_reports_one(store):
    store.add("t", id="T")
    given = store.start_attempt("T", attempt=1, worker="w", agent="claude", model="sonnet-4")
    silent = store.start_attempt("T", attempt=2, worker="w", agent="claude", model="sonnet-4")
    bare = store.start_attempt("T", attempt=3, worker="w", agent="command")
    assert (given.model, given.kind, bare.model) == ("sonnet-4", "task", None)
    told = store.finish_attempt(given.id, outcome="success", model="opus-4")
    kept = store.finish_attempt(silent.id, outcome="agent_error")
    none = store.finish_attempt(bare.id, outcome="agent_error")
    assert (told.model, kept.model, none.model) == ("opus-4", "sonnet-4", None)
    assert [a.model for a in store.attempts("T")] == ["opus-4", "sonnet-4", None]


def test_attempt_of_an_unknown_task_or_id_is_not_found(store):
    with pytest.raises(errors.TaskNotFoundError):
        store.start_attempt("rl-ghost000", attempt=1, worker="w", agent="claude")
    with pytest.raises(errors.NotFoundError):
        store.finish_attempt(999, outcome="success")
    assert store.attempts() == []
