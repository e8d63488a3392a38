"""What a task's prompt is made of, and `--dry-run`: each ready task's argv and prompt, with
nothing claimed or launched."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ralph import memory
from ralph.models import Task
from ralph.options import RunOptions
from ralph.prompts import prompt_context
from ralph.store.base import SQLStore


def task_context(store: SQLStore, task: Task, options: RunOptions, cwd: Path) -> dict[str, Any]:
    """What the prompt template sees for `task` (its parent, blockers, last failure, ...)."""
    parent = store.get(task.parent) if task.parent else None
    blockers = [
        {"id": b.id, "title": b.title, "status": b.status}
        for b in (store.get(i) for i in task.blocked_by)
    ]
    return prompt_context(
        task,
        attempt=task.attempts + 1,
        previous_failure=task.last_error,
        worker=options.worker,
        repo=cwd,
        agent=options.agent_name,
        parent=parent,
        blockers=blockers,
        variables=options.variables,
        progress=memory.render_progress(cwd, options.settings),
    )


def preview(store: SQLStore, root: Path, options: RunOptions) -> list[dict[str, Any]]:
    """--dry-run: the prompt and argv each ready task would get; claims and launches nothing."""
    limit = 1 if options.once else options.max_tasks
    shown = []
    for ready in store.ready(limit=limit, capabilities=options.capabilities):
        task = store.get(ready.id)
        prompt = options.prompt.render(task_context(store, task, options, root))
        shown.append(
            {
                "task": task.id,
                "title": task.title,
                "argv": options.agent.argv(
                    prompt, root / ".ralph" / "runs" / task.id / "prompt.md"
                ),
                "stdin": options.agent.stdin(prompt) is not None,
                "prompt": prompt,
            }
        )
    return shown
