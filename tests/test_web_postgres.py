"""`ralph web` on a second host's terms: another process with only RALPH_DB pointing at the
PostgreSQL store that workers elsewhere write to (no git repository, no run folders)."""

from __future__ import annotations

import http.client
import json
import threading
from pathlib import Path
from urllib.parse import urlencode

import pytest
from webutil import clean_env, login, request, serve

from ralph.models import AttemptEnd
from ralph.store import open_store

pytestmark = pytest.mark.postgres


def events_until_done(base: str, after: int, found: list[dict]) -> None:
    """Read the live stream until a `done` event arrives (run in a thread)."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("GET", f"/events?after={after}")
    res = conn.getresponse()
    kind = None
    while not found or found[-1]["kind"] != "done":
        line = res.fp.readline().decode()
        if not line:
            break
        if line.startswith("event: "):
            kind = line[7:].strip()
        elif line.startswith("data: ") and kind == "ralph":
            found.append(json.loads(line[6:]))
    conn.close()


def test_the_dashboard_reads_a_postgres_store_from_another_process_and_hides_its_password(
    pg_url: str, tmp_path: Path
):
    url = pg_url + ("&" if "?" in pg_url else "?") + "password=pw-never-shown"
    with open_store(url) as store:
        store.add("Parse the logs", id="P1", labels=["backend"], requires=["gpu"])
        store.add("Ship it", id="P2", blocked_by=["P1"])
        worker = store.register_worker("far-away-1", host="host-b", capabilities=["gpu"])
        claim = store.claim("P1", "far-away-1")
        store.heartbeat(worker.id, status="busy", current_task="P1")
        store.start_attempt("P1", attempt=1, worker="far-away-1", agent="claude", host="host-b")
        empty = tmp_path / "elsewhere"
        empty.mkdir()
        env = clean_env(tmp_path / "home", RALPH_DB=url)
        with serve(empty, env) as (proc, base):
            status, _, page = request(base, "GET", "/")
            assert status == 200
            assert "far-away-1" in page and "host-b" in page and 'href="/tasks/P1"' in page
            assert "pw-never-shown" not in page and "password=***" in page
            status, _, page = request(base, "GET", "/tasks?capability=gpu")
            assert status == 200 and "Parse the logs" in page and "Ship it" not in page
            status, _, page = request(base, "GET", "/tasks/P1")
            assert status == 200 and "is not on this host" in page and "host-b" in page

            last = store.recent_events(1)[0].id
            found: list[dict] = []
            reader = threading.Thread(target=events_until_done, args=(base, last, found))
            reader.start()
            # The worker on the other host finishes; the stream carries it to this one.
            store.finish(
                "P1",
                worker="far-away-1",
                token=claim.token,
                verdict="done",
                end=AttemptEnd(outcome="success", cost_usd=0.5),
            )
            reader.join(timeout=30)
            assert found and (found[-1]["kind"], found[-1]["task_id"]) == ("done", "P1")
            assert all(e["id"] > last for e in found)

            cookie, token = login(proc, base)
            status, _, _ = request(
                base,
                "POST",
                "/actions/pause",
                body=urlencode({"csrf": token, "reason": "lunch"}),
                headers=cookie,
            )
            assert status == 303
        assert store.paused()["reason"] == "lunch"
        assert store.get("P2").is_ready()
