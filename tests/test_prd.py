"""prd.json in sync (ralph.prd): `ralph import prd.json --apply` names the file in ralph.toml,
and `mark_passed` flips a story's `passes` in place, leaving the rest of the text as it was."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ralph import open_store
from ralph.config import load_settings
from ralph.models import Task
from ralph.prd import configure, mark_passed

# Formatted by hand, the way people write it: two-space indent, arrays on one line.
PRD_TEXT = """{
  "project": "shop",
  "userStories": [
    {
      "id": "US-001",
      "title": "Products table",
      "acceptanceCriteria": ["Migration runs", "passes: false stays in text"],
      "priority": 1,
      "passes": false,
      "notes": ""
    },
    {
      "id": "US-002",
      "title": "List products",
      "description": "Has \\"passes\\": false in a string",
      "priority": 2,
      "passes"  :  false
    }
  ]
}
"""


def story_task(sid: str, source: str = "prd.json") -> Task:
    return Task(id=sid, title="t", metadata={"source": source, "story_id": sid})


def test_mark_passed_replaces_only_the_passes_token_and_fills_notes(tmp_path: Path):
    (tmp_path / "prd.json").write_text(PRD_TEXT)
    assert mark_passed(tmp_path, "prd.json", story_task("US-001"), "Use alembic.")
    text = (tmp_path / "prd.json").read_text()
    expected = PRD_TEXT.replace(
        '"passes": false,\n      "notes": ""', '"passes": true,\n      "notes": "Use alembic."', 1
    )
    assert text == expected
    assert mark_passed(tmp_path, "prd.json", story_task("US-002"), "no notes field")
    text = (tmp_path / "prd.json").read_text()
    assert '"passes"  :  true' in text and '\\"passes\\": false in a string' in text
    assert "no notes field" not in text
    assert not mark_passed(tmp_path, "prd.json", story_task("US-002"), "")  # already passes


def test_mark_passed_ignores_tasks_from_elsewhere_and_unknown_stories(tmp_path: Path):
    (tmp_path / "prd.json").write_text(PRD_TEXT)
    assert not mark_passed(tmp_path, "prd.json", Task(id="rl-x", title="by hand"), "")
    assert not mark_passed(tmp_path, "prd.json", story_task("US-001", "other.json"), "")
    assert not mark_passed(tmp_path, "prd.json", story_task("US-404"), "")
    assert not mark_passed(tmp_path, "missing.json", story_task("US-001"), "")
    assert (tmp_path / "prd.json").read_text() == PRD_TEXT


def test_a_story_without_passes_is_dumped_again_with_the_files_indent(tmp_path: Path):
    data = {"userStories": [{"id": "S1", "title": "x", "notes": "old"}]}
    (tmp_path / "prd.json").write_text(json.dumps(data, indent=4) + "\n")
    assert mark_passed(tmp_path, "prd.json", story_task("S1"), "new")
    text = (tmp_path / "prd.json").read_text()
    assert (
        text
        == json.dumps(
            {"userStories": [{"id": "S1", "title": "x", "notes": "old\n\nnew", "passes": True}]},
            indent=4,
        )
        + "\n"
    )


def test_configure_sets_the_prd_key_once_replacing_the_commented_default(tmp_path: Path):
    (tmp_path / "ralph.toml").write_text('# A prd.json...\n## prd = "prd.json"\n\n[vars]\nx = 1\n')
    assert configure(tmp_path, "plans/prd.json")
    assert (tmp_path / "ralph.toml").read_text() == (
        '# A prd.json...\nprd = "plans/prd.json"\n\n[vars]\nx = 1\n'
    )
    assert configure(tmp_path, "plans/prd.json") is None
    assert load_settings(tmp_path).prd == "plans/prd.json"


def test_configure_without_a_prd_line_adds_it_before_the_first_table(tmp_path: Path):
    (tmp_path / "ralph.toml").write_text('agent = "codex"\n[agents.codex]\nargs = []\n')
    configure(tmp_path, "prd.json")
    settings = load_settings(tmp_path)
    assert (settings.prd, settings.agent) == ("prd.json", "codex")
    assert settings.agents == {"codex": {"args": []}}


def test_import_apply_names_the_prd_in_the_config_and_tasks_map_back_to_stories(
    tmp_path: Path,
):
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    ralph = [sys.executable, "-m", "ralph"]
    subprocess.run([*ralph, "init"], cwd=tmp_path, check=True, capture_output=True)
    (tmp_path / "prd.json").write_text(PRD_TEXT)
    out = subprocess.run(
        [*ralph, "import", "prd.json", "--apply"],
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert 'prd = "prd.json"' in out
    assert load_settings(tmp_path).prd == "prd.json"
    with open_store(tmp_path / ".ralph" / "ralph.db") as store:
        task = store.get("US-002")
    assert mark_passed(tmp_path, load_settings(tmp_path).prd, task, "")
    assert json.loads((tmp_path / "prd.json").read_text())["userStories"][1]["passes"] is True


@pytest.mark.parametrize("text", ["not json", '{"userStories": 3}'])
def test_a_broken_prd_is_left_alone(tmp_path: Path, text: str):
    (tmp_path / "prd.json").write_text(text)
    assert not mark_passed(tmp_path, "prd.json", story_task("US-001"), "")
    assert (tmp_path / "prd.json").read_text() == text
