"""The live event stream of `ralph web`: a tab replays what it missed, or redraws when it missed
too much (new events reaching a tab are covered by tests/test_web.py and test_web_postgres.py)."""

from __future__ import annotations

import http.client
import json
from pathlib import Path

from webutil import clean_env, serve

from ralph.store import open_store


def read_stream(base: str, path: str, until) -> list[tuple[str, dict]]:
    """(event name, data) pairs from an SSE endpoint until `until(pairs)` says stop."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("GET", path)
    res = conn.getresponse()
    assert res.status == 200 and res.getheader("content-type").startswith("text/event-stream")
    got: list[tuple[str, dict]] = []
    name = "message"
    while not until(got):
        line = res.fp.readline().decode()
        assert line, "the stream ended"
        if line.startswith("event: "):
            name = line[7:].strip()
        elif line.startswith("data: "):
            got.append((name, json.loads(line[6:])))
            name = "message"
    conn.close()
    return got


def test_a_tab_replays_the_events_it_missed_in_order(tmp_path: Path):
    db = tmp_path / "ralph.db"
    with open_store(db) as store:
        for n in range(30):
            store.add(f"task {n}", id=f"T{n}")
    env = clean_env(tmp_path / "home", RALPH_DB=str(db))
    with serve(tmp_path, env) as (_, base):
        got = read_stream(base, "/events?after=10", lambda g: len(g) >= 20)
    assert [name for name, _ in got] == ["ralph"] * 20
    assert [d["id"] for _, d in got] == list(range(11, 31))
    assert [d["task_id"] for _, d in got][:2] == ["T10", "T11"]


def test_a_tab_too_far_behind_gets_four_batches_then_is_told_to_redraw(tmp_path: Path):
    db = tmp_path / "ralph.db"
    with open_store(db) as store:
        store.add_many([{"title": f"t{n}", "id": f"T{n}"} for n in range(2600)])
        env = clean_env(tmp_path / "home", RALPH_DB=str(db))
        with serve(tmp_path, env) as (_, base):
            got = read_stream(base, "/events?after=1", lambda g: g and g[-1][0] == "reset")
            assert len(got) == 2001 and got[-1][1]["last"] >= 2001
            assert got[-2][1]["id"] == 2001
