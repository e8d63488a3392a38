"""The dashboard's overview read by `ralph web` in its own process, on every backend: the
sandbox policy of idle workers (from the worker rows, not only a running attempt's run dir) and
the pause a run took on its own for a rate limit (from the store's control table)."""

from __future__ import annotations

import re
import time

from webutil import clean_env, request, serve


def rows(page: str) -> dict[str, tuple[str, str]]:
    """{worker name: (its row's class, its cells' HTML)} of the overview's workers table."""
    found = re.findall(r'<tr data-worker="([^"]+)" class="([^"]*)">(.*?)</tr>', page, flags=re.S)
    return {name: (kind, cells) for name, kind, cells in found}


def sandbox_cell(row: str) -> str:
    match = re.search(r'<td class="sandbox">(.*?)</td>', row, flags=re.S)
    assert match, row
    return match.group(1)


def test_idle_workers_show_the_sandbox_policy_they_registered_with(store, store_url, tmp_path):
    store.register_worker("boxed", sandbox="sandbox: bwrap, network=allow (1 host)")
    store.register_worker("open", sandbox="unsandboxed")
    store.register_worker("old")  # registered by a ralph before schema 3: nothing known
    with serve(tmp_path, clean_env(tmp_path / "home", RALPH_DB=store_url)) as (_, base):
        status, _, page = request(base, "GET", "/")
    assert status == 200
    found = rows(page)
    assert {name: kind for name, (kind, _) in found.items()} == dict.fromkeys(
        ("boxed", "open", "old"), "w-idle"
    )
    boxed = sandbox_cell(found["boxed"][1])
    assert 'class="shield"' in boxed and "bwrap" in boxed and "network=allow" in boxed
    assert "unsandboxed" in sandbox_cell(found["open"][1])
    assert sandbox_cell(found["old"][1]).strip() == ""


def test_the_overview_shows_a_runs_own_pause_until_it_ends(store, clock, store_url, tmp_path):
    clock.set(time.time())
    env = clean_env(tmp_path / "home", RALPH_DB=store_url)
    store.share_run_pause("gone:1:1", until=time.time() - 5, reason="an old limit", by="w0")
    with serve(tmp_path, env) as (_, base):
        _, _, before = request(base, "GET", "/")
        store.share_run_pause(
            "far:42:1",
            until=time.time() + 600,
            reason="rate limited: HTTP 429 <b>slow down</b>",
            by="w1",
            host="host-b",
            workers=["w1", "w2"],
        )
        _, _, paused = request(base, "GET", "/part/overview")
        store.end_run_pause("far:42:1")
        _, _, after = request(base, "GET", "/")
    assert 'id="run-paused"' not in before  # an expired record is no pause
    banner = re.search(r'<div class="banner paused" id="run-paused">(.*?)</div>', paused, re.S)
    assert banner, paused
    text = banner.group(1)
    assert "by w1 on host-b" in text and "&lt;b&gt;slow down&lt;/b&gt;" in text
    assert "<b>" not in text and "/actions/resume" not in text  # `ralph resume` is not its end
    assert 'id="run-paused"' not in after
