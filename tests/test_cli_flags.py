"""The command line a newcomer meets: one meaning per short flag, `ralph --help` grouped in
panels, `ralph import -`, a corrupt store's exit code, priority direction in the help, the
built-in demo agent and what `attempts` counts."""

from __future__ import annotations

import importlib
import json
import os
import sqlite3
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer

from ralph.cli import COMMAND_MODULES, COMMANDS_OF, HELP_PANELS, build_command
from ralph.models import AttemptEnd
from tests.support.cli import ralph as run_ralph

RALPH = [sys.executable, "-m", "ralph"]
# Two spellings of one meaning, allowed to share a letter.
SAME_MEANING = [{"--capabilities", "--capability"}]


def walk(group: Any, path: str = "ralph") -> Iterator[tuple[str, Any]]:
    """Every command and subcommand (typer's click objects), built from the real app."""
    for name in group.list_commands(None):
        cmd = group.get_command(None, name)
        yield f"{path} {name}", cmd
        if hasattr(cmd, "list_commands"):
            yield from walk(cmd, f"{path} {name}")


def short_flags() -> dict[str, dict[str, list[str]]]:
    """letter -> the long option it stands for -> the commands using it that way."""
    table: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for where, cmd in walk(build_command()):
        for param in cmd.params:
            if getattr(param, "param_type_name", "") != "option":
                continue
            opts = [*param.opts, *param.secondary_opts]
            longs = sorted(o for o in opts if o.startswith("--"))
            for short in (o for o in opts if len(o) == 2 and o[0] == "-" and o != "-h"):
                meaning = longs[0] if longs else short
                for group in SAME_MEANING:
                    if meaning in group:
                        meaning = min(group)
                table[short][meaning].append(where)
    return table


def test_no_short_flag_means_two_different_things():
    table = short_flags()
    clashes = {letter: dict(uses) for letter, uses in table.items() if len(uses) > 1}
    assert clashes == {}


def test_dash_w_is_workers_wherever_workers_exists():
    table = short_flags()
    assert set(table["-w"]) == {"--workers"}
    assert "ralph run" in table["-w"]["--workers"]
    for where, cmd in walk(build_command()):
        for param in cmd.params:
            if "--workers" in getattr(param, "opts", []):
                assert "-w" in param.opts, where


def test_run_dash_w_3_runs_three_workers(tmp_path: Path):
    root = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("RALPH_") or k == "RALPH_SANDBOX"
    }
    env.update(GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t")
    env.update(GIT_COMMITTER_EMAIL="t@t")
    subprocess.run(["git", "-C", str(root), "commit", "-q", "--allow-empty", "-m", "s"], env=env)
    run_ralph("add", "One", cwd=root, env=env, check=True)
    out = subprocess.run(
        [*RALPH, "run", "-w", "3", "--agent", "demo", "--dry-run", "--json"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    shown = subprocess.run(
        [*RALPH, "run", "--help"], cwd=root, env=env, capture_output=True, text=True
    ).stdout
    assert "-w, -j, --workers" in shown or "-j, -w, --workers" in shown


def test_root_help_lists_commands_in_panels_run_first():
    out = subprocess.run([*RALPH, "--help"], capture_output=True, text=True, check=True).stdout
    panels = [line[:-1] for line in out.splitlines() if line.endswith(":") and " " not in line]
    order = [p for p in HELP_PANELS if f"\n{p}:\n" in out]
    assert order[:2] == ["Run", "Tasks"] and "Claims" in order and "Import/export" in order
    run_section = out.split("\nRun:\n")[1].split("\n\n")[0]
    assert [line.split()[0] for line in run_section.splitlines()][:3] == ["demo", "init", "run"]
    assert "golden path" not in out and "ralph run --workers 3" in out
    assert panels  # the headings are plain lines, readable in a pipe


def test_every_command_has_a_panel():
    named = {c for names in HELP_PANELS.values() for c in names}
    group = build_command()
    missing = [n for n in group.list_commands(None) if n not in named]
    assert missing == []


def test_the_table_of_command_modules_names_what_each_module_registers():
    """`ralph ready` imports only the module COMMANDS_OF names for `ready`: a command missing
    from the table would be unknown to the hot path's lazy loading."""
    assert sorted(COMMANDS_OF) == sorted(COMMAND_MODULES)
    for name in COMMAND_MODULES:
        app, workers = typer.Typer(), typer.Typer()
        importlib.import_module(f"ralph.cli.{name}").register(app, workers)
        found = {
            i.name or typer.main.get_command_name(i.callback.__name__)
            for i in app.registered_commands
        }
        found |= {g.name or g.typer_instance.info.name for g in app.registered_groups}
        if workers.registered_commands:
            found.add("worker")
        assert found == set(COMMANDS_OF[name]), name


def test_priority_direction_is_stated_in_add_and_import_help():
    add = subprocess.run([*RALPH, "add", "--help"], capture_output=True, text=True).stdout
    imp = subprocess.run([*RALPH, "import", "--help"], capture_output=True, text=True).stdout
    assert "Higher runs first" in add and "prd.json" in add
    assert "LOWER number runs first" in " ".join(imp.split())


def test_a_store_with_a_valid_header_and_junk_pages_exits_7(tmp_path: Path):
    db = tmp_path / "r.db"
    rows = "".join(
        json.dumps({"title": f"t{i}", "description": "x" * 300}) + "\n" for i in range(300)
    )
    subprocess.run(
        [*RALPH, "--db", str(db), "add", "--from", "-"],
        input=rows,
        text=True,
        check=True,
        capture_output=True,
    )
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("PRAGMA journal_mode = DELETE")
    conn.close()
    data = bytearray(db.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    pages = len(data) // page
    for n in range(pages - 10, pages - 2):  # the header and the schema stay intact
        data[n * page : (n + 1) * page] = b"\xab" * page
    db.write_bytes(bytes(data))
    result = subprocess.run([*RALPH, "--db", str(db), "list"], capture_output=True, text=True)
    assert result.returncode == 7
    assert result.stderr == (
        f"error: cannot use {db}: database disk image is malformed (no backup in "
        f"{db.parent / 'backups'}: point --db or RALPH_DB at another database file, or move "
        "this one away to start a new store)\n"
    )


def test_chained_markdown_import_leaves_done_items_unblocked(tmp_path: Path):
    (tmp_path / ".git").mkdir()
    (tmp_path / "TODO.md").write_text("- [ ] First\n- [x] Already done\n- [ ] Third\n")
    out = subprocess.run(
        [*RALPH, "--db", str(tmp_path / "a.db"), "import", "TODO.md", "--chain", "--apply"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    listed = json.loads(
        subprocess.run(
            [*RALPH, "--db", str(tmp_path / "a.db"), "list", "--json"],
            capture_output=True,
            text=True,
        ).stdout
    )
    by_title = {t["title"]: t for t in listed}
    assert by_title["Already done"]["blocked_by"] == []
    assert by_title["Third"]["blocked_by"] == [by_title["First"]["id"]]


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True)
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("RALPH_") or k == "RALPH_SANDBOX"
    }
    env["HOME"] = str(tmp_path / "home")
    for key, value in (("user.name", "Test"), ("user.email", "t@example.invalid")):
        subprocess.run(["git", "-C", str(root), "config", key, value], check=True)
    subprocess.run(["git", "-C", str(root), "commit", "-q", "--allow-empty", "-m", "start"])
    return root, env


def test_the_demo_agent_is_built_in(repo):
    root, env = repo
    run_ralph("add", "Hello", "--id", "H", cwd=root, env=env, check=True)
    run = subprocess.run(
        [*RALPH, "run", "--agent", "demo", "-q"], cwd=root, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    assert (root / "work" / "H.md").read_text().startswith("# Hello")
    log = subprocess.run(["git", "-C", str(root), "log", "-1", "--format=%B"], capture_output=True)
    assert b"Agent: demo" in log.stdout


def test_attempts_counts_every_counted_run_the_successful_one_included(store):
    """`attempts` in `list --json` is the number of counted agent runs: a task done at its
    first try shows 1; runs stopped by a rate limit or an auth failure count nothing."""
    store.add("Flaky", id="F")
    for n, (verdict, counted) in enumerate(
        [("release", False), ("retry", True), ("done", True)], 1
    ):
        claim = store.claim("F", "w1")
        attempt = store.start_attempt("F", attempt=n, worker="w1", agent="demo", token=claim.token)
        outcome = {"release": "rate_limited", "retry": "agent_error", "done": "success"}[verdict]
        store.finish(
            "F",
            worker="w1",
            token=claim.token,
            verdict=verdict,
            attempt_id=attempt.id,
            end=AttemptEnd(outcome=outcome, counted=counted),
        )
    task = store.get("F")
    assert (task.status, task.attempts, task.to_dict()["attempts"]) == ("done", 2, 2)


def test_the_demo_agent_runs_as_a_module_without_the_examples_folder(tmp_path: Path):
    env = {**os.environ, "RALPH_TASK_ID": "T9"}
    out = subprocess.run(
        [sys.executable, "-m", "ralph.demo_agent"],
        cwd=tmp_path,
        input="# Task T9: Write it\n",
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout.splitlines()[-1])["type"] == "result"
    assert (tmp_path / "work" / "T9.md").read_text().startswith("# Write it")
