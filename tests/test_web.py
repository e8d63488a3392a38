"""The dashboard in a real browser (headless Debian chromium through Playwright) while a real
`ralph run --workers 2` works in another process with a command agent (tests/agents/web_agent.py).

The agent waits at a gate the test opens, so "busy" is seen for as long as the test needs and
nothing depends on timing; every wait below is for something to appear on the page.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from webutil import CHROMIUM, RALPH, clean_env, login_path, serve

from ralph.store import open_store

AGENT = Path(__file__).parent / "agents" / "web_agent.py"
ARTIFACTS = Path(__file__).parent / "artifacts"
WAIT_MS = 30_000

playwright_api = pytest.importorskip("playwright.sync_api")
if not CHROMIUM.exists():
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
    pytest.skip(f"{CHROMIUM} not installed", allow_module_level=True)

expect = playwright_api.expect


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"]
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.dialogs = []
    tab.accept_dialogs = False

    def on_dialog(dialog) -> None:
        tab.dialogs.append(dialog.message)
        dialog.accept() if tab.accept_dialogs else dialog.dismiss()

    tab.on("dialog", on_dialog)
    yield tab
    context.close()


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args], check=True, capture_output=True, text=True
    ).stdout.strip()


class Project:
    """A git repository with a ralph store, the dashboard serving it and, on demand, a run."""

    def __init__(self, tmp: Path):
        self.root = tmp / "repo"
        self.gate = tmp / "gate"
        self.gate.mkdir()
        self.root.mkdir()
        git(self.root, "init", "-q", "-b", "main")
        git(self.root, "config", "user.name", "Test")
        git(self.root, "config", "user.email", "test@example.invalid")
        (self.root / "README.md").write_text("hello\n")
        # A short lease makes heartbeats frequent (a worker hears "stop" at its next one).
        (self.root / "ralph.toml").write_text('poll = "200ms"\nbackoff = "1s"\nlease = "12s"\n')
        git(self.root, "add", ".")
        git(self.root, "commit", "-q", "-m", "start")
        self.db = self.root / ".ralph" / "ralph.db"
        self.env = clean_env(
            tmp / "home", RALPH_DB=str(self.db), WEB_GATE=str(self.gate), PYTHONUNBUFFERED="1"
        )
        self.run_proc: subprocess.Popen[str] | None = None
        self.said: list[str] = []  # the run's stderr, line by line, as it comes
        self._reader: threading.Thread | None = None
        self.store = open_store(self.db)

    def add(self, title: str, task_id: str, **fields) -> str:
        return self.store.add(title, id=task_id, **fields).id

    def open_gate(self, name: str = "all") -> None:
        (self.gate / f"{name}.go").write_text("go")

    def start_run(self, *, quiet: bool = True) -> None:
        """`ralph run` with two workers; `quiet=False` keeps their progress lines in `said`."""
        cmd = shlex.join([sys.executable, str(AGENT)])
        self.run_proc = subprocess.Popen(
            [*RALPH, "run", "--workers", "2", "--agent-cmd", cmd]
            + ["--watch", "--no-live", "--max-attempts", "1"]
            + (["--quiet"] if quiet else [])
            + ["--verify", shlex.join([sys.executable, "-c", "print('verify says <ok>')"])],
            cwd=self.root,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        stream = self.run_proc.stderr
        self._reader = threading.Thread(target=lambda: self.said.extend(iter(stream.readline, "")))
        self._reader.start()

    def wait_said(self, pattern: str, count: int = 1) -> None:
        """Wait until `count` distinct lines of the run's stderr match `pattern`."""
        deadline = time.monotonic() + WAIT_MS / 1000
        while len({line for line in self.said if re.search(pattern, line)}) < count:
            assert self.run_proc is not None and self.run_proc.poll() is None, self.said
            assert time.monotonic() < deadline, f"the run never said {pattern!r}: {self.said}"
            time.sleep(0.05)

    def stop_run(self) -> str:
        if self.run_proc is None:
            return ""
        if self.run_proc.poll() is None:
            self.run_proc.send_signal(signal.SIGTERM)
        try:
            self.run_proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.run_proc.kill()
            self.run_proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=60)
        return "".join(self.said)

    def close(self) -> None:
        self.open_gate()  # no agent is left waiting
        self.stop_run()
        self.store.close()


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    made = Project(tmp_path)
    try:
        yield made
    finally:
        made.close()


def shot(tab, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_a_run_shows_live_busy_then_idle_workers_done_tasks_transcript_commit_and_cost(
    project: Project, page, browser
):
    project.add("Write the parser", "A", labels=["backend"])
    project.add("Write the tests", "B", blocked_by=["A"])
    (project.gate / "A.twostep").write_text("wait twice")
    with serve(project.root, project.env) as (_, base):
        page.goto(base + "/")
        expect(page.locator("#conn")).to_have_text("live", timeout=WAIT_MS)
        project.start_run()
        busy = page.locator("#workers tr", has=page.locator("a.tid", has_text="A"))
        expect(busy).to_contain_text("busy", timeout=WAIT_MS)

        task_tab = page.context.new_page()
        task_tab.goto(base + "/tasks/A")
        expect(task_tab.locator("#task-head .st")).to_have_text("running", timeout=WAIT_MS)
        first_turn = task_tab.locator("#turns li.t-assistant pre").first
        expect(first_turn).to_have_text("Working on A <b>now</b>", timeout=WAIT_MS)

        project.open_gate("A")
        # No reload from here on: the pages follow the events table and the run folder.
        expect(task_tab.locator("#turns li.t-tool pre")).to_have_text("work/A.txt", timeout=WAIT_MS)
        expect(task_tab.locator("#task-head .st")).to_have_text("running")
        (project.gate / "A.end").write_text("end")
        expect(task_tab.locator("#task-head .st")).to_have_text("done", timeout=WAIT_MS)
        expect(task_tab.locator("#turns li.t-result pre")).to_have_text(
            "Finished A", timeout=WAIT_MS
        )
        sha = git(project.root, "log", "-1", "--format=%H", "main")
        expect(task_tab.locator("#commit code.sha")).to_have_text(sha[:12], timeout=WAIT_MS)
        expect(task_tab.locator("#commit pre.stat")).to_contain_text("work/A.txt")
        task_tab.locator("#commit summary", has_text="Diff").click()
        expect(task_tab.locator("#diff")).to_contain_text("+A was here")
        expect(task_tab.locator("#attempts")).to_contain_text("$0.0125")
        task_tab.locator("#transcript summary", has_text="Verify run 1").click()
        expect(task_tab.locator("#transcript pre.verify")).to_have_text("verify says <ok>\n")

        events = page.locator("#events tr", has=page.locator("a.tid", has_text="A"))
        expect(events.filter(has_text="done").first).to_be_visible(timeout=WAIT_MS)
        # B was waiting on A: it is claimed next, and the overview says so without a reload.
        busy_b = page.locator("#workers tr", has=page.locator("a.tid", has_text="B"))
        expect(busy_b).to_contain_text("busy", timeout=WAIT_MS)
        project.open_gate("B")
        idle = page.locator("#workers tr.w-idle")
        expect(idle).to_have_count(2, timeout=WAIT_MS)
        # The charts are redrawn after each task is done: both tasks' $0.0125 end up there.
        for name, total in (("done", "2"), ("cost", "0.025"), ("day", "0.025")):
            chart = page.locator(f"#chart-{name}")
            expect(chart).to_have_attribute("data-total", total, timeout=WAIT_MS)
        expect(page.locator("#chart-cost svg rect")).not_to_have_count(0)
        expect(page.locator("#chart-total")).to_have_text("14-day total $0.025")
        shot(page, "overview.png")
        shot(task_tab, "task.png")
        task_tab.goto(base + "/tasks/B")
        expect(task_tab.locator("#graph svg a")).to_have_count(2, timeout=WAIT_MS)
    assert page.dialogs == []


def test_the_retry_action_brings_a_failed_task_back(project: Project, page):
    project.add("Flaky job", "F")
    (project.gate / "F.fail").write_text("fail")
    project.open_gate()
    with serve(project.root, project.env) as (proc, base):
        page.goto(base + login_path(proc))  # changes need the printed login link
        project.start_run()
        page.goto(base + "/tasks/F")
        expect(page.locator("#task-head .st")).to_have_text("failed", timeout=WAIT_MS)
        expect(page.locator("#turns")).to_contain_text("Working on F", timeout=WAIT_MS)
        (project.gate / "F.fail").unlink()
        assert page.evaluate("document.cookie") == ""  # HttpOnly: no script reads the session
        page.get_by_role("button", name="Retry").click()
        expect(page.locator("#task-head .st")).to_have_text("done", timeout=WAIT_MS)
        kinds = [e.kind for e in project.store.events(task_id="F")]
        assert kinds.index("failed") < kinds.index("retried") < kinds.index("done")
        expect(page.locator("#attempts tbody tr")).to_have_count(2)


def test_pause_stops_new_claims_and_resume_restarts_them(project: Project, page):
    project.open_gate()
    with serve(project.root, project.env) as (proc, base):
        page.goto(base + login_path(proc))  # changes need the printed login link
        project.start_run(quiet=False)
        page.goto(base + "/")
        expect(page.locator("#workers tr.w-idle")).to_have_count(2, timeout=WAIT_MS)
        page.locator("#pause-all").click()
        expect(page.locator("#paused")).to_contain_text("Paused by web", timeout=WAIT_MS)
        # Each worker says so when it finds the pause where it would claim; from then on it
        # waits for the resume and claims nothing.
        project.wait_said(r"\[worker-\d\] paused by web", count=2)

        page.goto(base + "/tasks")
        page.locator("details.add summary").click()
        page.locator("#add-task input[name=title]").fill("Added while paused")
        page.locator("#add-task button[type=submit]").click()
        expect(page.locator("#task-head")).to_contain_text("Added while paused")
        task_id = page.url.rsplit("/", 1)[-1]
        assert project.store.get(task_id).claimed_by is None
        assert project.store.attempts(task_id) == []
        expect(page.locator("#task-head .st")).to_have_text("ready")

        page.goto(base + "/")
        page.get_by_role("button", name="Resume every worker").click()
        expect(page.locator("#paused")).to_have_count(0, timeout=WAIT_MS)
        page.goto(base + f"/tasks/{task_id}")
        expect(page.locator("#task-head .st")).to_have_text("done", timeout=WAIT_MS)


def test_stop_asks_a_worker_to_stop_and_it_leaves_the_overview(project: Project, page):
    project.open_gate()
    with serve(project.root, project.env) as (proc, base):
        page.goto(base + login_path(proc))  # changes need the printed login link
        project.start_run()
        page.goto(base + "/")
        expect(page.locator("#workers tr.w-idle")).to_have_count(2, timeout=WAIT_MS)
        page.accept_dialogs = True
        row = page.locator("#workers tr[data-worker=worker-1]")
        row.get_by_role("button", name="Stop").click()
        assert page.dialogs == ["Stop worker-1 after its current task?"]
        expect(row).to_contain_text("stopping", timeout=WAIT_MS)
        expect(row).to_have_count(0, timeout=2 * WAIT_MS)


def test_a_title_made_of_markup_shows_as_text_and_opens_no_dialog(project: Project, page):
    title = "<img src=x onerror=alert(1)>"
    project.add(title, "X", description="<script>alert(2)</script>")
    with serve(project.root, project.env) as (proc, base):
        page.goto(base + login_path(proc))  # changes need the printed login link
        page.goto(base + "/tasks")
        expect(page.locator("#task-table td.title a")).to_have_text(title)
        page.goto(base + "/tasks/X")
        expect(page.locator("#task-title")).to_have_text(title)
        expect(page.locator("pre.description")).to_have_text("<script>alert(2)</script>")
        expect(page.locator("#graph svg")).to_have_count(0)  # no dependencies: a sentence
        assert page.locator("main img").count() == 0
        # The same text added through the dashboard's own form, then seen live in the list.
        page.goto(base + "/tasks")
        page.locator("details.add summary").click()
        page.locator("#add-task input[name=title]").fill(title + " again")
        page.locator("#add-task button[type=submit]").click()
        expect(page.locator("#task-title")).to_have_text(title + " again")
        page.wait_for_timeout(300)
    assert page.dialogs == []
    assert re.fullmatch(r"rl-[a-z0-9]{8}", page.url.rsplit("/", 1)[-1])


# -- the Review tab ([land] mode = "review"; ralph/web/review.py) -----------------------------


def test_review_tab_shows_the_highlighted_diff_approve_lands_and_reject_needs_a_note(
    project: Project, page
):
    edit = shlex.join([sys.executable, str(AGENT.parent / "edit.py"), "src/feature.py"])
    verify = shlex.join([sys.executable, "-c", "print('verify says ok')"])
    for task_id in ("A", "B"):
        project.add(f"feature {task_id}", task_id)
        subprocess.run(
            [*RALPH, "run", "--land", "review", "--once", "--no-live", "--agent-cmd", edit]
            + ["--verify", verify],
            cwd=project.root, env=project.env, check=True, capture_output=True, timeout=120,
        )  # fmt: skip
    base_sha = git(project.root, "rev-parse", "main")
    with serve(project.root, project.env) as (proc, base):
        page.goto(base + login_path(proc))
        page.goto(base + "/review")
        expect(page.locator("#review-queue tbody tr")).to_have_count(2)
        expect(page.locator("#review-queue tr[data-task=A] .diffstat")).to_contain_text(
            "2 files changed"
        )
        page.locator("#review-queue a.tid", has_text="A").click()
        diff = page.locator("#review-diff")
        expect(diff.locator("summary code.path", has_text="src/feature.py")).to_have_count(1)
        expect(diff.locator("table.diff tr.d-add").first).to_be_visible()
        assert diff.locator("table.diff.hl tr.d-add span").count() > 0  # tokens highlighted
        colour = diff.locator("table.diff.hl tr.d-add span").first.evaluate(
            "e => getComputedStyle(e).color"
        )
        assert colour != "rgb(29, 36, 51)"  # pygments' style reached the page (CSP: 'self')
        expect(page.locator("pre.verify").first).to_contain_text("verify says ok")
        expect(page.locator("#turns")).to_contain_text("edited src/feature.py")

        # Reject needs a note: the form will not send an empty one, nor will the server take it.
        page.goto(base + "/review/B")
        note = page.locator("#reject-note")
        page.locator("#reject").click()
        assert note.evaluate("e => e.validity.valueMissing") is True
        csrf = page.locator("meta[name=ralph-csrf]").get_attribute("content")
        refused = page.request.post(base + "/review/B/reject", form={"csrf": csrf, "note": " "})
        assert refused.status == 400 and "needs a note" in refused.text()
        assert project.store.get("B").status == "review"
        note.fill("Name it feature_b.py instead.")
        page.locator("#reject").click()
        expect(page.locator("#review-queue tbody tr")).to_have_count(1)
        task = project.store.get("B")
        assert task.status == "open" and task.review_notes == "Name it feature_b.py instead."

        page.goto(base + "/review/A")
        page.locator("#approve").click()
        expect(page.locator("#task-head .st")).to_have_text("done", timeout=WAIT_MS)
        assert git(project.root, "rev-list", "--count", f"{base_sha}..main") == "1"
        trailer = git(project.root, "log", "-1", "--format=%(trailers:key=Task,valueonly)")
        assert trailer == "A"
        [approved] = project.store.events(task_id="A", kind="approved")
        assert approved.data["by"] == "web"
    assert page.dialogs == []
