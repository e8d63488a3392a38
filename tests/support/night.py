"""A night of two workers written through the store API with a settable clock: landed,
conflicting, rate-limited and failed attempts (the report and metrics tests read it)."""

from __future__ import annotations

from ralph.models import AttemptEnd
from tests.storefactory import Clock


def night(store, clock: Clock) -> None:
    """Two workers, 920 s: L lands, C meets a merge conflict then lands, R is rate limited
    then lands with no cost reported, F fails twice (max attempts). claude's attempts were
    given model sonnet-4 and C's landing one reported opus-4; the command agent names none."""

    def start(task: str, worker: str, agent: str = "claude"):
        claim = store.claim(task, worker)
        n = len(store.attempts(task)) + 1
        model = "sonnet-4" if agent == "claude" else None  # the configured model, if any
        attempt = store.start_attempt(task, attempt=n, worker=worker, agent=agent, model=model)
        return claim, attempt

    def end(task, held, verdict, outcome, cost=None, commit=None, counted=True, note=None,
            model=None):  # fmt: skip
        claim, attempt = held
        store.finish(
            task,
            worker=claim.worker,
            token=claim.token,
            verdict=verdict,
            attempt_id=attempt.id,
            end=AttemptEnd(
                outcome=outcome, cost_usd=cost, counted=counted, summary=note, model=model
            ),
            commit=commit,
            note=note,
        )

    for task, title in (("L", "Land it"), ("C", "Conflict"), ("R", "Rate limit"), ("F", "Fail")):
        store.add(title, id=task)
    a1, c1 = start("L", "w1"), start("C", "w2")
    clock.advance(300)
    end("C", c1, "retry", "merge_conflict", 0.10, counted=False, note="Merge conflict in x")
    c2 = start("C", "w2")
    clock.advance(300)
    end("L", a1, "done", "success", 0.30, commit="a" * 40)
    end("C", c2, "done", "success", 0.20, commit="b" * 40, model="opus-4")  # the agent said
    r1, f1 = start("R", "w1", "command"), start("F", "w2")
    clock.advance(60)
    end("R", r1, "release", "rate_limited", counted=False, note="429")
    r2 = start("R", "w1", "command")
    clock.advance(140)
    end("F", f1, "retry", "agent_error", 0.05, note="tests are red")
    f2 = start("F", "w2")
    clock.advance(100)
    end("F", f2, "failed", "agent_error", 0.05, note="failed 2 times; last: tests are red")
    clock.advance(20)
    end("R", r2, "done", "success", commit="c" * 40)
