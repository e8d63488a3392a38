"""`ralph import` / `ralph export`: prd.json, Markdown checklists and JSONL through the real CLI
entry point on real SQLite files; round trips, idempotent re-imports, and malformed input that
names the line and writes nothing."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ralph import open_store
from ralph.cli import main

PRD = {
    "project": "shop",
    "branchName": "ralph/shop",
    "description": "A small shop",
    "userStories": [
        {
            "id": "US-001",
            "title": "Add the products table",
            "description": "Store products.",
            "acceptanceCriteria": ["Migration runs", "Typecheck passes"],
            "priority": 1,
            "passes": True,
        },
        {
            "id": "US-002",
            "title": "List products",
            "description": "A page with all products.",
            "acceptanceCriteria": ["Shows name and price"],
            "priority": 3,
            "passes": False,
        },
        {
            "id": "US-003",
            "title": "Product API",
            "description": "",
            "acceptanceCriteria": [],
            "priority": 2,
            "passes": False,
        },
    ],
}

CHECKLIST = """\
# Sprint

Some intro text that is not a task.

- [ ] Build the parser
  Parse the config format.

  Keep errors readable.
  - [x] Tokenizer
  - [ ] Grammar
    Use a PEG.
- [ ] Write docs

## Later

1. [ ] Polish
2. [ ] Ship
"""


class Result:
    def __init__(self, code: int, out: str, err: str):
        self.exit_code, self.stdout, self.stderr = code, out, err

    def json(self):
        return json.loads(self.stdout)


def run(db: Path, *args: str) -> Result:
    runner = CliRunner()
    with runner.isolation() as (out, err, _):
        try:
            main(["--db", str(db), *args])
            code = 0
        except SystemExit as exc:
            code = exc.code or 0
        sys.stdout.flush()
        sys.stderr.flush()
        return Result(code, out.getvalue().decode(), err.getvalue().decode())


def ok(result: Result) -> Result:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("RALPH_DB", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".git").mkdir()  # the project root ids are relative to
    return tmp_path


def tasks(db: Path) -> list[dict]:
    with open_store(db) as store:
        return [t.to_dict() for t in store.list()]


# -- prd.json ------------------------------------------------------------------------------


def test_prd_import_maps_passes_to_done_criteria_to_description_and_lower_priority_first(
    project: Path,
):
    (project / "prd.json").write_text(json.dumps(PRD))
    db = project / "a.db"
    ok(run(db, "import", "prd.json", "--apply"))
    by_id = {t["id"]: t for t in tasks(db)}
    assert set(by_id) == {"US-001", "US-002", "US-003"}
    assert by_id["US-001"]["status"] == "done"
    assert "- Migration runs\n- Typecheck passes" in by_id["US-001"]["description"]
    assert by_id["US-002"]["metadata"]["story_id"] == "US-002"
    with open_store(db) as store:
        assert [t.id for t in store.ready(limit=None)] == ["US-003", "US-002"]


def test_prd_chain_makes_each_open_story_wait_for_the_open_one_with_the_next_lower_number(
    project: Path,
):
    (project / "prd.json").write_text(json.dumps(PRD))
    db = project / "a.db"
    ok(run(db, "import", "prd.json", "--chain", "--apply"))
    by_id = {t["id"]: t for t in tasks(db)}
    assert by_id["US-001"]["blocked_by"] == []  # passes: done, it waits on nothing
    assert by_id["US-003"]["blocked_by"] == []  # the done US-001 gives it nothing to wait on
    assert by_id["US-002"]["blocked_by"] == ["US-003"]


def test_import_is_a_dry_run_by_default_with_a_preview(project: Path):
    (project / "prd.json").write_text(json.dumps(PRD))
    db = project / "a.db"
    result = ok(run(db, "import", "prd.json"))
    assert "US-002" in result.stdout and "List products" in result.stdout
    assert "Dry run: 3 new tasks" in result.stdout and "--apply" in result.stdout
    assert tasks(db) == []
    preview = ok(run(db, "import", "prd.json", "--json")).json()
    assert set(preview) == {"source", "format", "applied", "new", "existing", "notes"}
    assert (preview["format"], preview["applied"], len(preview["new"])) == ("prd", False, 3)


def test_importing_the_same_file_again_adds_nothing(project: Path):
    (project / "prd.json").write_text(json.dumps(PRD))
    (project / "todo.md").write_text(CHECKLIST)
    db = project / "a.db"
    ok(run(db, "import", "prd.json", "--apply"))
    ok(run(db, "import", "todo.md", "--apply"))
    before = tasks(db)
    again = ok(run(db, "import", "todo.md", "--apply"))
    assert "Imported 0 tasks" in again.stdout and "6 already in the store" in again.stdout
    ok(run(db, "import", "prd.json", "--apply"))
    assert tasks(db) == before


# -- Markdown ------------------------------------------------------------------------------


def test_markdown_nesting_becomes_parents_and_x_becomes_done(project: Path):
    (project / "todo.md").write_text(CHECKLIST)
    db = project / "a.db"
    ok(run(db, "import", "todo.md", "--apply"))
    by_title = {t["title"]: t for t in tasks(db)}
    assert list(by_title) == [
        "Build the parser",
        "Tokenizer",
        "Grammar",
        "Write docs",
        "Polish",
        "Ship",
    ]
    parser = by_title["Build the parser"]
    assert by_title["Tokenizer"]["parent"] == parser["id"]
    assert by_title["Grammar"]["parent"] == parser["id"]
    assert by_title["Tokenizer"]["status"] == "done"
    assert parser["description"] == "Parse the config format.\n\nKeep errors readable."
    assert by_title["Grammar"]["description"] == "Use a PEG."
    assert all(not t["blocked_by"] for t in by_title.values())


def test_markdown_chain_links_items_within_one_list_only(project: Path):
    (project / "todo.md").write_text(CHECKLIST)
    db = project / "a.db"
    ok(run(db, "import", "todo.md", "--chain", "--apply"))
    t = {t["title"]: t for t in tasks(db)}
    assert t["Tokenizer"]["blocked_by"] == []  # done: it waits on nothing
    assert t["Grammar"]["blocked_by"] == []  # no open item above it in its list
    assert t["Write docs"]["blocked_by"] == [t["Build the parser"]["id"]]
    assert t["Ship"]["blocked_by"] == [t["Polish"]["id"]]
    assert t["Polish"]["blocked_by"] == []  # a heading starts a new list


# -- round trips ---------------------------------------------------------------------------


def _rich_store(db: Path) -> None:
    ok(run(db, "add", "Parent task", "--id", "P", "-p", "4", "-d", "line one\n\n  indented"))
    ok(run(db, "add", "Child <b>", "--id", "C", "--parent", "P", "--label", "x", "--label", "y"))
    ok(run(db, "add", "Waits", "--id", "W", "--blocked-by", "C", "--requires", "gpu"))
    ok(
        run(
            db,
            "add",
            "--id",
            "odd",
            "-d",
            "- [ ] not a child\n<!-- comment -->",
            "--",
            "- [ ] looks like an item\nsecond line",
        )
    )
    ok(run(db, "add", "Gone", "--id", "G"))
    ok(run(db, "done", "C"))
    ok(run(db, "update", "G", "--status", "cancelled"))


@pytest.mark.parametrize("fmt", ["jsonl", "md"])
def test_export_import_export_gives_the_same_text(project: Path, fmt: str):
    first_db, second_db = project / "first.db", project / "second.db"
    _rich_store(first_db)
    out = project / f"tasks.{fmt}"
    assert "Exported 5 tasks" in ok(run(first_db, "export", "--format", fmt, "-o", str(out))).stdout
    ok(run(second_db, "import", str(out), "--apply"))
    again = ok(run(second_db, "export", "--format", fmt)).stdout
    assert again == out.read_text()
    fields = (
        "id",
        "title",
        "description",
        "status",
        "priority",
        "parent",
        "labels",
        "requires",
        "blocked_by",
    )
    assert [[t[f] for f in fields] for t in tasks(second_db)] == [
        [t[f] for f in fields] for t in tasks(first_db)
    ]


def test_list_json_output_imports_as_jsonl(project: Path):
    first_db, second_db = project / "first.db", project / "second.db"
    _rich_store(first_db)
    (project / "list.json").write_text(ok(run(first_db, "list", "--json")).stdout)
    ok(run(second_db, "import", "list.json", "--format", "jsonl", "--apply"))
    assert [t["id"] for t in tasks(second_db)] == [t["id"] for t in tasks(first_db)]


# -- malformed input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "message", "code"),
    [
        ("t.jsonl", '{"title": "ok"}\n{"title": "broken"\n', "t.jsonl line 2: invalid JSON", 2),
        (
            "t.jsonl",
            '{"title": "ok"}\n{"description": "no title"}\n',
            "t.jsonl line 2: a non-empty 'title' is required",
            2,
        ),
        (
            "t.jsonl",
            '{"title": "a", "id": "a"}\n{"title": "b", "parent": "nope"}\n',
            "t.jsonl line 2: unknown parent 'nope'",
            2,
        ),
        (
            "t.jsonl",
            '{"title": "a", "blocked_by": ["ghost"]}\n',
            "t.jsonl line 1: unknown blocker 'ghost'",
            2,
        ),
        (
            "t.jsonl",
            '{"title": "a", "id": "a"}\n\n{"title": "b", "id": "a"}\n',
            "t.jsonl line 3: id 'a' is already used at t.jsonl line 1",
            2,
        ),
        (
            "t.jsonl",
            '{"title": "a", "priority": "high"}\n',
            "t.jsonl line 1: 'priority' must be an integer",
            2,
        ),
        (
            "t.jsonl",
            '{"title": "a", "id": "a", "blocked_by": ["b"]}\n'
            '{"title": "b", "id": "b", "blocked_by": ["a"]}\n',
            "dependency cycle among",
            6,
        ),
        (
            "prd.json",
            '{"userStories": [\n  {"id": "US-1", "title": "a"},\n  {"id": "US-2"}\n]}',
            "prd.json userStories[1].title: a non-empty string is required",
            2,
        ),
        (
            "prd.json",
            '{"userStories": [\n  {"id": "US-1", "title": "a",}\n]}',
            "prd.json line 2: invalid JSON",
            2,
        ),
        (
            "prd.json",
            '{"userStories": [{"title": "a", "priority": "1"}]}',
            "prd.json userStories[0].priority: expected an integer",
            2,
        ),
        (
            "t.md",
            "- [ ] fine\n- [ ] bad <!-- ralph {nope} -->\n",
            "t.md line 2: invalid JSON in the ralph comment",
            2,
        ),
    ],
)
def test_malformed_input_names_the_place_exits_with_its_code_and_writes_nothing(
    project: Path, name: str, text: str, message: str, code: int
):
    (project / name).write_text(text)
    db = project / "a.db"
    for args in ((), ("--apply",)):
        result = run(db, "import", name, *args)
        assert result.exit_code == code, (result.stdout, result.stderr)
        assert result.stderr.startswith(f"error: {message}"), result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert tasks(db) == []


def test_unreadable_file_and_unknown_format_are_usage_errors(project: Path):
    db = project / "a.db"
    missing = run(db, "import", "nope.json")
    assert missing.exit_code == 2 and "cannot read nope.json" in missing.stderr
    (project / "notes.txt").write_text("just prose\n")
    unknown = run(db, "import", "notes.txt")
    assert unknown.exit_code == 2 and "--format" in unknown.stderr
    bad = run(db, "export", "--format", "xml")
    assert bad.exit_code == 2 and "unknown export format 'xml'" in bad.stderr
