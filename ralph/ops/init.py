"""`ralph init`: the files a project needs, created once and never overwritten.

The commented `ralph.toml` is generated from `Settings` and the agent registry, so every key
and every adapter it lists is one ralph really reads, at the default ralph really uses.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tomllib
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ralph.config import DURATIONS, LOCAL_NAME, Settings
from ralph.prompts import INSTRUCTION_FILES, TEMPLATE_NAME, builtin_prompt_path
from ralph.store import DEFAULT_DIR, ensure_ralph_dir, open_store

if TYPE_CHECKING:
    from ralph.agents.base import Agent

CONFIG_NAME = "ralph.toml"
SECTION_TITLE = "## Working under ralph"
SECTION = f"""
{SECTION_TITLE}

Tasks in this repository may be run by `ralph`, one fresh agent process per task. When you are
started by ralph (the prompt names a task id, and `RALPH_TASK_ID` is set):
- Do only the task you were given; make the change in the working tree and stop.
- Do not commit and do not run `ralph done`: ralph runs the verify commands, commits your work
  as one commit for the task and marks it done.
- Leave `.ralph/` alone: it holds the task store and the logs of every run.
- Before you stop, write what the next agent should know to the file named by `$RALPH_NOTES`;
  ralph adds it to `progress.md`.
- Work you find outside your task: `ralph add "..." --discovered-from $RALPH_TASK_ID`.
"""

# One line per Settings key; a key missing here fails the tests, so the file cannot drift.
HELP: dict[str, str] = {
    "agent": "The agent `ralph run` launches (see the [agents.*] tables below).",
    "agents": "Per-agent settings: the [agents.NAME] tables at the end of this file.",
    "sandbox": "The bubblewrap sandbox each attempt runs in (on where it works; enabled = "
    "false runs agents unconfined); network: allow (the agent's API hosts + allow), none, open.",
    "prompt": "Prompt template (jinja2). Unset: prompts/task.md.j2, else the built-in one.",
    "commit_message": "Commit message template (jinja2: task, agent, worker, cost, vars).",
    "verify": "Commands that must pass after the agent finishes, before ralph commits.",
    "lease": "How long a claim is held without renewal (renewed every third of it).",
    "max_attempts": "A task failing this many times is marked failed.",
    "task_timeout": 'Kill an agent running longer than this (0 or "off": no limit).',
    "idle_timeout": 'Kill an agent printing nothing for this long (0 or "off": no limit).',
    "grace": "On SIGTERM, how long the running agent may still finish.",
    "kill_grace": "After SIGTERM to an agent, how long before SIGKILL.",
    "backoff": "Delay before retrying a failed task (doubles per attempt).",
    "backoff_max": "Upper bound of that delay.",
    "rate_limit_pause": "Pause of every worker after a rate limit without a reset time.",
    "breaker": "Stop the run after this many failed attempts in a row.",
    "max_expiries": "The poison pill: a task whose claim lapsed this often (crashes, hangs) fails.",
    "merge_lock_timeout": "How long a landing waits for the merge lock before that attempt fails.",
    "max_conflicts": "Merge conflicts a task may hit (each retried at once) before it fails.",
    "merge": 'A landing that conflicts: resolve = "agent" (a fresh agent resolves the merge '
    'first; agent = another [agents.*] for it, prompt = its template) or "rerun".',
    "no_changes": 'An agent that changed no file: "done" (mark it done) or "fail".',
    "capabilities": "Capabilities this worker offers (tasks can require some).",
    "worker": "Worker name. Unset: host-tag-pid (the tag tells apart hosts sharing a hostname).",
    "remote": "A git remote every host pushes its task commits to (several hosts, one queue).",
    "poll": "How often an idle worker looks for new tasks (with --watch).",
    "progress": "The RALPH memory: each done task appends its learnings here, committed "
    "with it (false: off).",
    "progress_entries": "How many of the latest progress entries each prompt shows.",
    "prd": "A prd.json whose stories get passes = true when their task is done "
    "(`ralph import prd.json --apply` sets it).",
    "max_discovered": "Follow-up tasks an agent may file per task (ralph add --discovered-from).",
    "vars": "Extra values for the templates, as {{ vars.NAME }}.",
    "prices": "USD per million tokens, to estimate the cost of agents reporting tokens only.",
    "notify": "Notifications (apprise URLs; also RALPH_NOTIFY_URLS): urls, events, pause_after, "
    "timeout, retries. Check with `ralph notify test`.",
    "report": "Run reports: with `write = true` each run writes one into .ralph/reports/.",
    "land": 'Where a finished task\'s commit goes: mode = "target" (the default: onto the target '
    'branch), "review" (a review branch; `ralph approve` lands it) or "pr" (a pull request per '
    "task on the remote; poll = seconds between checks, repo = OWNER/NAME if not the remote's).",
    "github": "Issues imported with `ralph import github:OWNER/REPO`: with `close_issues = true` "
    "an issue is closed when its task lands (it is always commented on).",
    "run": "Fallback agents: agents, in order (each any agent name); a rate limit longer than "
    "fallback_after, an auth failure or an agent's max_cost moves the workers to the next.",
}
EXAMPLES: dict[str, str] = {
    "prompt": '"prompts/task.md.j2"',
    "commit_message": '"{{ task.title }}\\n\\nTask: {{ task.id }}"',
    "verify": '["pytest -q", "ruff check ."]',
    "capabilities": '["python", "frontend"]',
    "worker": '"night-shift-1"',
    "remote": '"origin"',
    "prd": '"prd.json"',
    "vars": '{ project = "my-app" }',
    "prices": '{ "gpt-5-codex" = { input = 1.25, output = 10.0 } }',
    "notify": '{ urls = ["ntfy://ntfy.sh/my-topic"], events = ["run_finished", "task_failed"] }',
    "report": "{ write = true }",
    "github": "{ close_issues = true }",
    "run": '{ agents = ["claude", "codex"], fallback_after = "2m" }',
}
AGENT_HELP = {
    "command": "argv of the agent (a list, or one string split like a shell would)",
    "args": "extra arguments after ralph's own flags",
    "model": "model name passed to the agent",
    "prompt_mode": 'how the prompt is passed: "stdin", "arg" (after --) or "file"',
    "env": "extra environment variables; never a key or password here (this file is "
    "committed): set them in your environment or in ralph.local.toml",
    "max_cost": "USD this agent may spend in one run; then the next of [run] agents takes over",
}


@dataclass
class InitReport:
    """What `ralph init` did to each path: created, appended, or kept as it was."""

    root: Path
    created: list[str] = field(default_factory=list)
    appended: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "created": self.created,
            "appended": self.appended,
            "kept": self.kept,
            "notes": self.notes,
        }


def init_project(root: Path, *, db: str | None = None) -> InitReport:
    """Create `.ralph/`, `ralph.toml`, `prompts/task.md.j2`, the store, a `.gitignore` line for
    `ralph.local.toml` (where secrets go) and a section in CLAUDE.md/AGENTS.md; a file that
    exists is kept, so running it twice changes nothing."""

    report = InitReport(root)
    existed = (root / DEFAULT_DIR / ".gitignore").exists()
    ensure_ralph_dir(root)
    (report.kept if existed else report.created).append(f"{DEFAULT_DIR}/.gitignore")
    open_store(db or root / DEFAULT_DIR / "ralph.db").close()

    config = root / CONFIG_NAME
    if config.exists():
        report.kept.append(CONFIG_NAME)
    elif _pyproject_has_ralph(root):
        report.kept.append("pyproject.toml")
        report.notes.append("[tool.ralph] in pyproject.toml is used; no ralph.toml written")
    else:
        config.write_text(config_template())
        report.created.append(CONFIG_NAME)

    _ignore_local_config(root, report)

    prompt = root / "prompts" / TEMPLATE_NAME
    rel = f"prompts/{TEMPLATE_NAME}"
    if prompt.exists():
        report.kept.append(rel)
    else:
        prompt.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(builtin_prompt_path(), prompt)
        report.created.append(rel)

    for name in INSTRUCTION_FILES:
        path = root / name
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        if SECTION_TITLE in text:
            report.kept.append(name)
            continue
        with path.open("a", encoding="utf-8") as out:
            out.write(("" if text.endswith("\n") or not text else "\n") + SECTION)
        report.appended.append(name)
    return report


def _ignore_local_config(root: Path, report: InitReport) -> None:
    """Keep ralph.local.toml (secrets) out of git, once: a line in the project's .gitignore;
    without one, in .git/info/exclude, because a new untracked .gitignore would leave the
    tree dirty and `ralph run` in the checkout refuses a dirty tree."""

    ignore = root / ".gitignore"
    if not ignore.is_file():
        found = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--git-path", "info/exclude"],
            capture_output=True,
            text=True,
        )
        if found.returncode != 0:  # not a git repository: nothing to keep it out of
            return
        ignore = root / found.stdout.strip()
        ignore.parent.mkdir(parents=True, exist_ok=True)
    name = ".gitignore" if ignore.name == ".gitignore" else ".git/info/exclude"
    text = ignore.read_text(encoding="utf-8") if ignore.is_file() else ""
    if any(line.strip() in (LOCAL_NAME, "/" + LOCAL_NAME) for line in text.splitlines()):
        report.kept.append(name)
        return
    with ignore.open("a", encoding="utf-8") as out:
        out.write(("\n" if text and not text.endswith("\n") else "") + f"/{LOCAL_NAME}\n")
    (report.appended if text else report.created).append(name)


def _pyproject_has_ralph(root: Path) -> bool:
    path = root / "pyproject.toml"
    if not path.is_file():
        return False
    try:
        return "ralph" in tomllib.loads(path.read_text()).get("tool", {})
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return False


def config_template() -> str:
    """The commented ralph.toml: `# key = default` for every setting (uncommenting any of
    them changes nothing), `## key = example` for settings without a default value."""
    from ralph.agents.registry import SETTINGS, _agents, known_agents  # lazy: start-up

    defaults = Settings()
    out = [
        "# ralph.toml: settings of `ralph run` and `ralph worker start`.",
        "# Every setting is commented out at its default; uncomment a line to change it.",
        "# Durations: a bare number is minutes; or 90s, 30m, 2h.",
        "# This file is meant to be committed: no secrets in it. API keys and passwords go in",
        f"# your environment or in {LOCAL_NAME} (same keys, read over this file; `ralph init`",
        "# keeps it out of git), e.g. an [agents.claude] env table holding ANTHROPIC_API_KEY.",
        "",
    ]
    for f in fields(Settings):
        if f.name in ("source", "agents", "vars"):
            continue
        value = getattr(defaults, f.name)
        if is_dataclass(value):  # [sandbox]: an inline table of its set keys
            value = {k: v for k, v in asdict(value).items() if v is not None}  # type: ignore[arg-type]
            if f.name == "run":  # a duration, spelled as one (a bare number is minutes)
                value["fallback_after"] = _duration(value["fallback_after"])
        out += _setting(f.name, value)
    out += _setting("vars", defaults.vars)
    out.append(f"# {HELP['agents']} Keys of each:")
    out += [f"#   {key:<12} {AGENT_HELP[key]}" for key in SETTINGS]
    out.append("")
    for name in known_agents():
        cls = _agents[name]
        doc = (cls.__doc__ or name).strip().splitlines()[0]
        out += [f"# {doc}"]
        out += [f"# {'Setup:' if n == 0 else '      '} {line}" for n, line in enumerate(cls.setup)]
        out.append(f"# [agents.{name}]")
        for key in SETTINGS:
            out.append(_agent_setting(cls, key))
        out.append("")
    return "\n".join(out)


def _agent_setting(cls: type[Agent], key: str) -> str:
    if key == "command":
        if cls.executable:
            return f"# command = {_toml([cls.executable])}"
        return '## command = ["my-agent", "--flag", "{prompt_file}"]'
    if key == "prompt_mode":
        return f"# prompt_mode = {_toml(cls.prompt_mode)}"
    if key == "model":
        return '## model = "..."'
    if key == "max_cost":
        return "## max_cost = 5.0"
    return f"# {key} = {_toml({} if key == 'env' else [])}"


def _setting(name: str, value: Any) -> list[str]:
    # A setting added to Settings before it is described here still gets its line (the tests
    # insist on a description); `ralph init` must not fail over documentation.
    lines = [f"# {HELP.get(name, name)}"]
    if value is None or value in ([], {}):
        if value is not None:
            lines.append(f"# {name} = {_toml(value)}")
        if name in EXAMPLES:
            lines.append(f"## {name} = {EXAMPLES[name]}")
    else:
        lines.append(f"# {name} = {_setting_value(name, value)}")
    return [*lines, ""]


def _setting_value(name: str, value: Any) -> str:
    if name in DURATIONS and isinstance(value, float):
        return _toml(_duration(value))
    return _toml(value)


def _duration(seconds: float) -> str:
    """The shortest exact spelling parse_duration reads back: 2h, 30m, 90s."""
    whole = int(seconds)
    if whole == seconds and whole % 3600 == 0:
        return f"{whole // 3600}h"
    if whole == seconds and whole % 60 == 0:
        return f"{whole // 60}m"
    return f"{seconds:g}s"


def _toml(value: Any) -> str:
    """A TOML literal for the simple values settings hold (JSON spells them the same way)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)
