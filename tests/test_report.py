"""`ralph report` on a store with landed, failed, conflicting and rate-limited attempts: the
figures the attempts and events imply, in every format; the same numbers as `list`, `show`
and `stats`; the HTML page in headless Chromium without console errors or requests."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ralph.models import from_iso
from ralph.ops.report import build_report, render
from ralph.store import open_store
from tests.storefactory import START, Clock
from tests.support.cli import ralph as run_ralph
from tests.support.night import night
from tests.webutil import CHROMIUM, request, serve

RALPH = [sys.executable, "-m", "ralph"]


def test_the_report_gives_the_figures_the_attempts_and_events_imply(store, clock):
    night(store, clock)
    r = build_report(store, since=START - 1, now=clock.now)
    events = store.events()
    done_events = [e.task_id for e in events if e.kind == "done"]
    assert r["tasks"] == {"landed": len(done_events), "failed": 1, "retrying": 0}
    assert sorted(done_events) == ["C", "L", "R"]  # L and C landed at the same second
    assert [(t["id"], t["commit"][:1]) for t in r["landed"]] == [("C", "b"), ("L", "a"), ("R", "c")]
    assert (r["launches"], r["attempts"], r["running"]) == (7, 5, 0)
    assert r["wasted_by_reason"] == {"agent error": 2, "conflict": 1, "rate limit": 1}
    assert r["wasted"] == 4
    assert r["cost_usd"] == pytest.approx(0.70) and r["unknown_cost"] == 2
    assert (r["agent_s"], r["wall_s"], r["parallelism"]) == (1820, 920, 1.98)
    conflict = next(t for t in r["landed"] if t["id"] == "C")
    assert (conflict["attempts"], conflict["launches"], conflict["last_error"]) == (1, 2, None)
    assert conflict["cost_usd"] == pytest.approx(0.30)
    rate = next(t for t in r["landed"] if t["id"] == "R")
    assert (rate["attempts"], rate["launches"], rate["cost_usd"], rate["unknown_cost"]) == (
        1, 2, None, 2,
    )  # fmt: skip
    (failed,) = r["failed"]
    assert (failed["id"], failed["attempts"], failed["launches"]) == ("F", 2, 2)
    assert "tests are red" in failed["last_error"]
    by_agent = {a["agent"]: a for a in r["cost_by_agent"]}
    assert by_agent["command"]["cost_usd"] is None and by_agent["command"]["unknown_cost"] == 2
    assert by_agent["claude"]["cost_usd"] == pytest.approx(0.70)
    by_model = {(m["agent"], m["model"]): m for m in r["cost_by_model"]}
    assert sorted(by_model) == [
        ("claude", "opus-4"),
        ("claude", "sonnet-4"),
        ("command", "unknown"),
    ]
    assert (
        by_model["claude", "sonnet-4"]["launches"],
        by_model["claude", "opus-4"]["launches"],
    ) == (4, 1)
    assert by_model["claude", "sonnet-4"]["cost_usd"] == pytest.approx(0.50)
    assert by_model["claude", "opus-4"]["cost_usd"] == pytest.approx(0.20)
    assert by_model["command", "unknown"]["cost_usd"] is None
    assert by_model["command", "unknown"]["unknown_cost"] == 2
    assert [t["id"] for t in r["slowest"]][:2] == ["C", "L"]  # 600 s each, then F's 300 s
    assert [lane["worker"] for lane in r["lanes"]] == ["w1", "w2"]
    assert sum(len(lane["spans"]) for lane in r["lanes"]) == 7
    assert sum(h["landed"] for h in r["landed_per_hour"]) == 3
    assert r["cost_over_time"][-1]["cost_usd"] == pytest.approx(0.70)
    text = render(r, "text")
    assert "Tasks landed:           3" in text
    assert "$0.7000 + 2 attempts of unknown cost" in text and "$0.0000" not in text
    assert "4 (1 agent error" not in text and "4 (2 agent error, 1 conflict, 1 rate limit)" in text
    assert "1.98x" in text
    assert "Cost by agent and model" in text and "opus-4" in text
    md = render(r, "md")
    assert md.startswith("# ralph report") and "| aaaaaaaaaa | L | 10m | 1/1 | $0.3000 |" in md
    assert json.loads(render(r, "json")) == json.loads(json.dumps(r))
    later = build_report(store, since=clock.now + 1, now=clock.now + 2)
    assert (later["launches"], later["cost_usd"], later["landed"]) == (0, None, [])


@pytest.fixture
def night_db(tmp_path: Path) -> Path:
    db = tmp_path / "night.db"
    clock = Clock(START)
    with open_store(db, clock=clock) as s:
        night(s, clock)
    return db


def cli(db: Path, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("RALPH_") or k == "RALPH_SANDBOX"
    }
    return subprocess.run(
        [*RALPH, "--db", str(db), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd or db.parent,
        timeout=120,
    )


def test_attempts_and_costs_agree_across_list_show_stats_and_report(night_db: Path):
    listed = {t["id"]: t for t in json.loads(cli(night_db, "list", "--json").stdout)}
    stats = json.loads(cli(night_db, "stats", "--by", "task", "--json").stdout)
    report = json.loads(cli(night_db, "report", "--format", "json").stdout)
    rows = {t["id"]: t for t in [*report["landed"], *report["failed"], *report["retrying"]]}
    groups = {g["key"]: g for g in stats["groups"]}
    for task in "LCRF":
        shown = json.loads(cli(night_db, "show", task, "--json").stdout)
        numbers = {(x["attempts"], x["launches"]) for x in (shown, groups[task], rows[task])}
        assert numbers == {(listed[task]["attempts"], shown["launches"])}, task
        costs = {x["cost_usd"] for x in (shown, groups[task], rows[task])}
        assert len(costs) == 1, (task, costs)
    assert groups["R"]["cost_usd"] is None and rows["R"]["unknown_cost"] == 2
    total = stats["total"]
    assert (total["attempts"], total["launches"], total["unknown_cost"]) == (5, 7, 2)
    assert (report["attempts"], report["launches"], report["unknown_cost"]) == (5, 7, 2)
    assert total["cost_usd"] == report["cost_usd"] == pytest.approx(0.70)
    text = cli(night_db, "stats").stdout
    assert "+? 2 attempt(s) reported no cost: total $0.7000 + 2 attempts of unknown cost" in text
    shown = cli(night_db, "show", "C").stdout
    assert "attempts:   1 (2 agent launches)" in shown and "earlier error:" in shown


def test_the_web_page_shows_the_same_attempts_launches_and_unknown_costs(night_db: Path):
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("RALPH_") or k == "RALPH_SANDBOX"
    }
    env["RALPH_DB"] = str(night_db)
    with serve(night_db.parent, env) as (_, base):
        pages = {t: request(base, "GET", f"/tasks/{t}")[2] for t in "CRF"}
        series = json.loads(request(base, "GET", "/api/series")[2])
    total = json.loads(cli(night_db, "stats", "--json").stdout)["total"]
    numbers = ("attempts", "launches", "cost_usd", "unknown_cost")
    assert {k: series["totals"][k] for k in numbers} == {k: total[k] for k in numbers}
    assert series["totals"]["unknown_cost"] == 2 and series["total_cost"] == total["cost_usd"]
    assert "1 attempts counted · 2 agent launches" in pages["C"]
    models = re.findall(r'<span class="dim model">([^<]*)</span>', pages["C"])
    assert models == ["sonnet-4", "opus-4"]  # the configured model, then the one it reported
    assert 'class="dim model"' not in pages["R"]  # the command agent named none
    assert "2 attempts counted · 2 agent launches" in pages["F"]
    assert pages["R"].count("<td>unknown</td>") == 2 and "$0.0000" not in pages["R"]


def test_report_formats_and_bad_input_from_the_command_line(night_db: Path):
    for fmt, marker in (("text", "ralph report ("), ("md", "# ralph report"), ("html", "<svg")):
        done = cli(night_db, "report", "--format", fmt)
        assert done.returncode == 0 and marker in done.stdout, done.stderr
        assert "Cost by agent and model" in done.stdout and "opus-4" in done.stdout, fmt
    out = night_db.parent / "r.md"
    written = cli(night_db, "report", "--format", "md", "-o", str(out))
    assert written.returncode == 0 and out.read_text().startswith("# ralph report")
    bad = cli(night_db, "report", "--format", "pdf")
    assert bad.returncode == 2 and "unknown report format 'pdf'" in bad.stderr
    since = cli(night_db, "report", "--since", "yesterday-ish")
    assert since.returncode == 2 and "invalid --since" in since.stderr
    for since, launches in (("2027-01-15T00:00:00Z", 7), ("2027-01-16T00:00:00Z", 0)):
        shown = cli(night_db, "report", "--since", since, "--format", "json")
        assert json.loads(shown.stdout)["launches"] == launches, shown.stderr


playwright_api = pytest.importorskip("playwright.sync_api")


def test_the_html_report_opens_in_chromium_with_no_console_errors_and_no_requests(
    night_db: Path, tmp_path: Path
):
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            raise RuntimeError(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} not installed")
    page_file = tmp_path / "report.html"
    assert cli(night_db, "report", "--format", "html", "-o", str(page_file)).returncode == 0
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            page = browser.new_page(viewport={"width": 900, "height": 1200})
            messages, requests = [], []
            page.on("console", lambda m: messages.append((m.type, m.text)))
            page.on("pageerror", lambda e: messages.append(("pageerror", str(e))))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_file.as_uri())
            page.wait_for_load_state("load")
            assert page.locator("#chart-cost polyline").count() == 1
            assert page.locator("#chart-landed rect").count() >= 1
            assert page.locator("#chart-lanes rect").count() == 7
            assert page.get_by_text("Tasks landed", exact=True).count() == 1
            box = page.locator("#chart-lanes").bounding_box()
            assert box is not None and box["width"] > 500
        finally:
            browser.close()
    assert [m for m in messages if m[0] in ("error", "pageerror", "warning")] == []
    assert requests == [page_file.as_uri()]


def test_report_run_picks_one_run_by_id_or_last(tmp_path: Path):
    from tests.gitutil import init_repo

    env = {
        k: v for k, v in os.environ.items() if not k.startswith("RALPH_") or k == "RALPH_SANDBOX"
    }
    env["HOME"] = str(tmp_path / "home")
    root = init_repo(tmp_path / "repo", {"README.md": "hi\n"})
    edit = " ".join([sys.executable, str(Path(__file__).parent / "agents" / "edit.py")])

    def ralph(*args: str) -> subprocess.CompletedProcess[str]:
        done = run_ralph(*args, cwd=root, env=env, timeout=120)
        assert done.returncode == 0, done.stderr
        return done

    for task in ("first", "second"):
        ralph("add", f"Task {task}", "--id", task)
        ralph("run", "--agent-cmd", edit, "--worker", f"w-{task}", "--max-tasks", "1")
    ended = json.loads(ralph("events", "--kind", "run_ended", "--json").stdout)
    assert [(e["data"]["done"], e["data"]["workers"]) for e in ended] == [
        (1, ["w-first"]),
        (1, ["w-second"]),
    ]
    first_id = ended[0]["data"]["run"]
    last = json.loads(ralph("report", "--run", "last", "--format", "json").stdout)
    first = json.loads(ralph("report", "--run", first_id, "--format", "json").stdout)
    assert [t["id"] for t in last["landed"]] == ["second"] and last["launches"] == 1
    assert [t["id"] for t in first["landed"]] == ["first"] and first["run"] == first_id
    missing = subprocess.run(
        [*RALPH, "report", "--run", "nope"], cwd=root, env=env, capture_output=True, text=True
    )
    assert missing.returncode == 3 and "no run 'nope'" in missing.stderr


def test_status_and_status_json_show_a_pause_who_why_since_and_until(night_db: Path):
    before = json.loads(cli(night_db, "status", "--json").stdout)
    assert before["paused"] is None and "PAUSED" not in cli(night_db, "status").stdout
    assert cli(night_db, "pause", "--reason", "deploying", "--for", "30m").returncode == 0
    status = json.loads(cli(night_db, "status", "--json").stdout)
    paused = status["paused"]
    assert paused["reason"] == "deploying" and paused["since"] and paused["until"]
    assert status["pause"] == {"source": "operator", **paused, "host": None, "workers": None}
    assert from_iso(paused["until"]) - from_iso(paused["since"]) == pytest.approx(1800, abs=5)
    text = cli(night_db, "status").stdout
    assert "PAUSED" in text and "deploying" in text
    assert cli(night_db, "resume").returncode == 0
    after = json.loads(cli(night_db, "status", "--json").stdout)
    assert after["paused"] is None and after["pause"] is None
