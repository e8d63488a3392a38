"""The pauses runs take on their own, as the store keeps them (ralph/store/runpause.py): once
per backend through the `store` fixture, time from the `clock` fixture."""

from __future__ import annotations


def control_keys(store) -> list[str]:
    with store.transaction(write=False) as tx:
        return [r["key"] for r in tx.all("control_prefixed", pattern="%")]


def test_a_runs_pause_is_kept_apart_from_ralph_pause_until_it_ends(store, clock):
    now = clock.now
    store.share_run_pause("a", until=now + 60, reason="rate limited: 429", by="w1", host="h1",
                          workers=["w1", "w2"])  # fmt: skip
    store.share_run_pause("b", until=now + 600, reason="no network", by="w9", host="h2")
    assert store.paused() is None  # `ralph pause` is another thing
    assert [(p["run"], p["until"], p["by"]) for p in store.run_pauses()] == [
        ("b", now + 600, "w9"),
        ("a", now + 60, "w1"),
    ]
    (a,) = [p for p in store.run_pauses() if p["run"] == "a"]
    assert (a["host"], a["workers"], a["since"], a["reason"]) == (
        "h1", ["w1", "w2"], now, "rate limited: 429",
    )  # fmt: skip
    assert store.resume() is False and len(store.run_pauses()) == 2  # resume lifts none of them
    clock.advance(60)  # a's pause is over: readers ignore its record
    assert [p["run"] for p in store.run_pauses()] == ["b"]
    assert control_keys(store) == ["run-pause:a", "run-pause:b"]
    store.share_run_pause("b", until=clock.now + 900, reason="no network", by="w9")  # extends
    assert control_keys(store) == ["run-pause:b"]  # and a's stale record is gone
    assert store.run_pauses()[0]["until"] == clock.now + 900
    assert store.end_run_pause("b") is True and store.end_run_pause("b") is False
    assert store.run_pauses() == [] and control_keys(store) == []
    kinds = [(e.kind, e.data.get("run")) for e in store.events()]
    assert kinds == [
        ("run_paused", "a"), ("run_paused", "b"), ("run_paused", "b"), ("run_resumed", "b"),
    ]  # fmt: skip
