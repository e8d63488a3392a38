"""Prompt and commit-message templates: jinja2 with StrictUndefined, checked before any agent runs.

The prompt sees `progress`, the last entries of the RALPH memory (ralph.memory).
Prompt lookup order: `--prompt FILE`, the config's `prompt`, the project's `prompts/task.md.j2`,
then the copy shipped inside the package.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from ralph.errors import ConfigError
from ralph.models import Task

TEMPLATE_NAME = "task.md.j2"
BUILTIN_DIR = Path(__file__).parent / "templates"
DEFAULT_COMMIT_MESSAGE = """\
{{ task.title }}

Task: {{ task.id }}
Agent: {{ agent }}
Worker: {{ worker }}
Cost: {{ cost }}
"""
INSTRUCTION_FILES = ("CLAUDE.md", "AGENTS.md")


def builtin_prompt_path() -> Path:
    return BUILTIN_DIR / TEMPLATE_NAME


def find_prompt(
    root: Path,
    cli_path: str | Path | None = None,
    config_path: str | Path | None = None,
    name: str = TEMPLATE_NAME,
) -> Path:
    """The prompt template file to use, following the lookup order above (`name`: another
    template of `prompts/`, the conflict resolution's `resolve.md.j2`)."""
    for given in (cli_path, config_path):
        if given:
            path = Path(given)
            path = path if path.is_absolute() else root / path
            if not path.is_file():
                raise ConfigError(f"prompt template {given} does not exist")
            return path
    project = root / "prompts" / name
    return project if project.is_file() else BUILTIN_DIR / name


@dataclass
class Template:
    """A compiled template that reports errors as ConfigError with the file and line."""

    name: str
    template: jinja2.Template

    @classmethod
    def from_source(cls, source: str, name: str, search: Path | None = None) -> Template:
        env = jinja2.Environment(
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            autoescape=False,
            loader=jinja2.FileSystemLoader(str(search)) if search else None,
        )
        try:
            return cls(name, env.from_string(source))
        except jinja2.TemplateSyntaxError as exc:
            raise ConfigError(f"{name}:{exc.lineno}: template error: {exc.message}") from exc

    @classmethod
    def from_file(cls, path: Path) -> Template:
        try:
            source = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read template {path}: {exc}") from exc
        return cls.from_source(source, str(path), search=path.parent)

    def render(self, context: dict[str, Any]) -> str:
        try:
            return self.template.render(context)
        except jinja2.TemplateError as exc:
            line = _template_line(exc)
            where = f"{self.name}:{line}" if line else self.name
            message = getattr(exc, "message", None) or str(exc)
            raise ConfigError(f"{where}: template error: {message}") from exc
        except Exception as exc:  # a filter or test raising on the sample context
            raise ConfigError(f"{self.name}: template error: {exc}") from exc


def _template_line(exc: BaseException) -> int | None:
    """The template line jinja2 put into the traceback (it rewrites frames to template lines)."""
    line = getattr(exc, "lineno", None)
    tb = exc.__traceback__ or sys.exc_info()[2]
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def load_prompt(
    root: Path, cli_path: str | Path | None = None, config_path: str | Path | None = None
) -> Template:
    return Template.from_file(find_prompt(root, cli_path, config_path))


def load_commit_message(source: str | None) -> Template:
    return Template.from_source(source or DEFAULT_COMMIT_MESSAGE, "commit_message")


def task_dict(task: Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "title": task.title,
        "description": task.description,
        "labels": list(task.labels),
        "requires": list(task.requires),
        "priority": task.priority,
        "parent": task.parent,
        "metadata": dict(task.metadata),
        "attempts": task.attempts,
        "review_notes": task.review_notes,  # a reviewer's `ralph reject --note` (ralph.review)
    }


def prompt_context(
    task: Task,
    *,
    attempt: int,
    previous_failure: str | None,
    worker: str,
    repo: Path,
    agent: str,
    parent: Task | None = None,
    blockers: list[dict[str, Any]] | None = None,
    variables: dict[str, Any] | None = None,
    progress: str = "",
) -> dict[str, Any]:
    """Everything a prompt template may use. `progress` is the tail of the progress log
    (`ralph.memory.render_progress`), "" when the memory is off or empty."""
    instructions = next((n for n in INSTRUCTION_FILES if (repo / n).is_file()), None)
    return {
        "task": task_dict(task),
        "attempt": attempt,
        "previous_failure": previous_failure,
        "worker": worker,
        "repo": str(repo),
        "agent": agent,
        "instructions": instructions,
        "parent": task_dict(parent) if parent else None,
        "blockers": list(blockers or []),
        "vars": dict(variables or {}),
        "progress": progress,
    }


def sample_context(
    repo: Path, worker: str, agent: str, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A context with every field filled, used to check templates before any agent starts."""
    task = Task(
        id="rl-sample00",
        title="Sample task",
        description="Sample description.",
        labels=["sample"],
        parent="rl-parent00",
        metadata={"sample": True},
    )
    parent = Task(id="rl-parent00", title="Sample parent")
    return prompt_context(
        task,
        attempt=2,
        previous_failure="Sample failure.",
        worker=worker,
        repo=repo,
        agent=agent,
        parent=parent,
        blockers=[{"id": "rl-blocker0", "title": "Sample blocker", "status": "done"}],
        variables=variables,
        progress="## Task rl-earlier0: Sample earlier task\n- outcome: done\n\nSample learning.\n",
    )


def one_line(text: str) -> str:
    """`text` with every run of line breaks and other control characters made one space: a
    title that reaches a commit message must not start paragraphs or trailers of its own."""
    return _CONTROL.sub(" ", text).strip()


def commit_context(
    task: Task,
    *,
    agent: str,
    worker: str,
    cost: float | None,
    variables: dict[str, Any] | None = None,
    estimated: bool = False,
) -> dict[str, Any]:
    shown = "unknown" if cost is None else f"${cost:.4f}" + (" (estimated)" if estimated else "")
    fields = task_dict(task)
    fields["title"] = one_line(task.title)
    return {
        "task": fields,
        "agent": agent,
        "worker": worker,
        "cost": shown,
        "cost_usd": cost,
        "vars": dict(variables or {}),
    }


def commit_message(
    template: Template, context: dict[str, Any], task_id: str, token: int, subjects: list[str]
) -> str:
    """The template's message, the agent's own commit subjects in its body, and the trailers
    ralph relies on (`Task:`, `Ralph-Token:`) whatever the template says. Whatever the task's
    text holds, the last paragraph (what git reads as trailers) has only `Key: value` lines,
    ralph's own `Task:` and `Ralph-Token:` exactly once, and no line of the body starts with
    `---` (git's patch divider, after which `interpret-trailers` sees no trailers at all)."""
    text = template.render(context).strip()
    head, _, block = text.rpartition("\n\n")
    if not head:
        head, block = text, ""
    lines = [line for line in block.splitlines() if line.strip()]
    kept = [line for line in lines if _TRAILER.match(line)]
    prose = [line for line in lines if not _TRAILER.match(line)]
    if prose:
        head += "\n\n" + "\n".join(prose)
    if subjects:
        head += "\n\nThe agent's own commits:\n" + "\n".join(f"- {one_line(s)}" for s in subjects)
    head = _DIVIDER.sub("- --", head)  # not a divider, even where a tool strips the line
    theirs = [line for line in kept if line.split(":", 1)[0].strip().lower() not in _OURS]
    trailers = [f"Task: {task_id}", *theirs, f"Ralph-Token: {token}"]
    return head + "\n\n" + "\n".join(trailers) + "\n"


_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\x85]+")
_TRAILER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*: ?\S")
_DIVIDER = re.compile(r"^---", re.MULTILINE)
_OURS = {"task", "ralph-token"}
