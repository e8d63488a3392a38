"""`ralph logs`: what one attempt's run folder holds, with the agent's output as readable turns.

A run folder `.ralph/runs/<task>/<n>/` holds `prompt.md`, the agent's `stdout` and `stderr`,
`verify-<k>.stdout/.stderr` and, once the attempt is over, `result.json`. claude's stream-json
(and a command agent passing it on) becomes turns: text, tool calls with their main argument,
truncated tool results and the final result with its cost; any other output stays as text lines.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ralph import errors
from ralph.memory import ProgressLog, progress_path
from ralph.models import Attempt
from ralph.store.base import SQLStore

RESULT_CHARS = 400
RESULT_LINES = 8
# The input field that says what a tool call is about, per claude tool.
MAIN_ARGUMENT = {
    "Bash": "command",
    "Read": "file_path",
    "Write": "file_path",
    "Edit": "file_path",
    "MultiEdit": "file_path",
    "NotebookEdit": "notebook_path",
    "Glob": "pattern",
    "Grep": "pattern",
    "LS": "path",
    "WebFetch": "url",
    "WebSearch": "query",
    "Task": "description",
}


@dataclass
class Turn:
    """One readable step of an agent's output."""

    kind: str  # assistant, thinking, tool, tool_result, result, system, text
    text: str
    tool: str | None = None
    is_error: bool = False
    cost_usd: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "text": self.text}
        if self.tool:
            data["tool"] = self.tool
        if self.is_error:
            data["is_error"] = True
        if self.cost_usd is not None:
            data["cost_usd"] = self.cost_usd
        data.update(self.extra)
        return data


@dataclass
class AttemptLog:
    """Everything `ralph logs` shows for one attempt."""

    task_id: str
    number: int
    of: int
    attempt: Attempt | None
    run_dir: Path
    prompt: str | None
    turns: list[Turn]
    stderr: str
    verify: list[dict[str, Any]]
    result: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "attempt": self.number,
            "attempts": self.of,
            "run_dir": str(self.run_dir),
            "record": self.attempt.to_dict() if self.attempt else None,
            "prompt": self.prompt,
            "turns": [t.to_dict() for t in self.turns],
            "stderr": self.stderr,
            "verify": self.verify,
            "result": self.result,
        }


def find_attempt(
    store: SQLStore, task_id: str, number: int | None = None
) -> tuple[int, int, Attempt]:
    """The n-th launch of an agent on a task (1-based; default the last), and how many there are."""
    store.get(task_id)  # an unknown id is "no such task", not "no attempts"
    attempts = store.attempts(task_id)
    if not attempts:
        raise errors.NotFoundError(
            f"{task_id} has no attempts yet", hint="`ralph run` launches agents on ready tasks"
        )
    n = len(attempts) if number is None else number
    if not 1 <= n <= len(attempts):
        raise errors.NotFoundError(
            f"{task_id} has no attempt {n}", hint=f"it has attempts 1 to {len(attempts)}"
        )
    return n, len(attempts), attempts[n - 1]


def read_attempt(store: SQLStore, task_id: str, number: int | None = None) -> AttemptLog:
    """The prompt, turns, stderr, verify output and result of one attempt."""
    n, total, attempt = find_attempt(store, task_id, number)
    run_dir = Path(attempt.run_dir) if attempt.run_dir else Path(".ralph/runs") / task_id / str(n)
    stdout = _read(run_dir / "stdout") or ""
    verify = []
    k = 1
    while (run_dir / f"verify-{k}.stdout").exists() or (run_dir / f"verify-{k}.stderr").exists():
        verify.append(
            {
                "n": k,
                "stdout": _read(run_dir / f"verify-{k}.stdout") or "",
                "stderr": _read(run_dir / f"verify-{k}.stderr") or "",
            }
        )
        k += 1
    return AttemptLog(
        task_id=task_id,
        number=n,
        of=total,
        attempt=attempt,
        run_dir=run_dir,
        prompt=_read(run_dir / "prompt.md"),
        turns=parse_turns(stdout.splitlines()),
        stderr=_read(run_dir / "stderr") or "",
        verify=verify,
        result=read_result(run_dir),
    )


def read_result(run_dir: Path) -> dict[str, Any] | None:
    text = _read(run_dir / "result.json")
    if not text:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None  # being written right now
    return data if isinstance(data, dict) else None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def parse_turns(lines: Iterable[str]) -> list[Turn]:
    return [turn for line in lines for turn in line_turns(line)]


def line_turns(line: str) -> list[Turn]:
    """The turns one line of agent output holds (none for blank lines and bookkeeping)."""
    text = line.rstrip("\n")
    if not text.strip():
        return []
    event = None
    if text.lstrip().startswith("{"):
        try:
            event = json.loads(text)
        except ValueError:
            event = None
    if not isinstance(event, dict) or "type" not in event:
        return [Turn("text", text)]
    return _event_turns(event)


def _event_turns(event: dict[str, Any]) -> list[Turn]:
    kind = event.get("type")
    if kind == "system":
        sub = event.get("subtype")
        if sub == "init":
            model = event.get("model")
            return [Turn("system", "session started" + (f" (model {model})" if model else ""))]
        if sub == "api_retry":
            status, error = event.get("error_status"), event.get("error") or ""
            return [Turn("system", f"API error {status} {error}, retry {event.get('attempt')}")]
        return []
    if kind == "rate_limit_event":
        info = event.get("rate_limit_info") or {}
        return [Turn("system", f"rate limit: {info.get('status', '?')}")] if info else []
    if kind in ("assistant", "user"):
        message = event.get("message")
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            return [Turn("assistant" if kind == "assistant" else "user", content)]
        return [t for block in content or [] if isinstance(block, dict) for t in _block(block)]
    if kind == "result":
        cost = event.get("total_cost_usd", event.get("cost_usd"))
        usage = event.get("usage") if isinstance(event.get("usage"), dict) else {}
        extra = {
            k: v
            for k, v in {
                "num_turns": event.get("num_turns"),
                "duration_ms": event.get("duration_ms"),
                "input_tokens": usage.get("input_tokens"),
                "output_tokens": usage.get("output_tokens"),
            }.items()
            if v is not None
        }
        is_error = bool(event.get("is_error")) or event.get("subtype") not in (None, "success")
        return [
            Turn(
                "result",
                str(event.get("result") or event.get("subtype") or ""),
                is_error=is_error,
                cost_usd=float(cost) if isinstance(cost, int | float) else None,
                extra=extra,
            )
        ]
    return []


def _block(block: dict[str, Any]) -> list[Turn]:
    kind = block.get("type")
    if kind == "text" and str(block.get("text") or "").strip():
        return [Turn("assistant", str(block["text"]).strip())]
    if kind == "thinking" and str(block.get("thinking") or "").strip():
        return [Turn("thinking", truncate(str(block["thinking"]).strip()))]
    if kind == "tool_use":
        name = str(block.get("name") or "tool")
        return [Turn("tool", main_argument(name, block.get("input")), tool=name)]
    if kind == "tool_result":
        content = block.get("content")
        if isinstance(content, list):
            content = "\n".join(
                str(c.get("text", "")) for c in content if isinstance(c, dict) and "text" in c
            )
        return [
            Turn("tool_result", truncate(str(content or "")), is_error=bool(block.get("is_error")))
        ]
    return []


def main_argument(tool: str, tool_input: Any) -> str:
    """What a tool call is about: the command, the file, the pattern, the url."""
    if not isinstance(tool_input, dict):
        return ""
    key = MAIN_ARGUMENT.get(tool)
    if key and isinstance(tool_input.get(key), str):
        return truncate(tool_input[key], chars=200, lines=3)
    if tool == "TodoWrite" and isinstance(tool_input.get("todos"), list):
        return f"{len(tool_input['todos'])} todos"
    for value in tool_input.values():
        if isinstance(value, str) and value:
            return truncate(value, chars=200, lines=3)
    return ""


def truncate(text: str, *, chars: int = RESULT_CHARS, lines: int = RESULT_LINES) -> str:
    """At most `lines` lines and `chars` characters, saying how much was left out."""
    rows = text.splitlines()
    cut = "\n".join(rows[:lines])
    if len(cut) > chars:
        cut = cut[:chars]
    left = len(text) - len(cut)
    return cut + (f" … ({left} more characters)" if left > 0 and cut != text else "")


def follow(
    run_dir: Path,
    *,
    poll: float = 0.5,
    stop: Callable[[], bool] = lambda: False,
    timeout: float | None = None,
) -> Iterator[Turn]:
    """The turns of a running attempt as the agent prints them, until `result.json` appears
    (the attempt is over), `stop()` says so, or `timeout` seconds pass."""
    deadline = None if timeout is None else time.monotonic() + timeout
    offset, partial = 0, b""
    while True:
        finished = (run_dir / "result.json").exists()  # checked before reading: no lost tail
        try:
            with (run_dir / "stdout").open("rb") as f:
                f.seek(offset)
                chunk = f.read()
        except OSError:
            chunk = b""
        offset += len(chunk)
        data = partial + chunk
        *complete, partial = data.split(b"\n")
        for raw in complete:
            yield from line_turns(raw.decode("utf-8", errors="replace"))
        if finished:
            if partial:
                yield from line_turns(partial.decode("utf-8", errors="replace"))
            return
        if stop() or (deadline is not None and time.monotonic() >= deadline):
            return
        time.sleep(poll)


@dataclass
class ProgressView:
    """The RALPH memory as `ralph logs --progress` shows it."""

    path: Path | None  # None: the memory is off (progress = false)
    text: str | None  # None: no such file yet
    entries: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path) if self.path else None,
            "text": self.text,
            "entries": self.entries,
        }


def read_progress(root: Path, config: Path | None = None) -> ProgressView:
    """The progress log of the project at `root` (see ralph.memory), as the config names it."""
    from ralph.config import load_settings  # lazy: start-up

    path = progress_path(root, load_settings(root, config))
    if path is None:
        return ProgressView(None, None)
    if not path.is_file():
        return ProgressView(path, None)
    return ProgressView(path, _read(path), len(ProgressLog(path).entries()))
