"""Watching the loop: `ralph status`, `ralph logs`, `ralph stats`, `ralph dep tree`.

Each command makes one library call (ralph.ops) and draws the result with rich; `--json`
prints the library's dict as it is.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ralph.cli.common import emit_json, store
from ralph.cli.ops import JsonFlag, console
from ralph.durations import format_duration
from ralph.errors import UsageError
from ralph.ops import logs as oplogs
from ralph.ops.logs import read_progress
from ralph.ops.stats import cost_text, store_stats
from ralph.ops.status import snapshot
from ralph.ops.tree import DIRECTIONS, dependency_tree, task_forest
from ralph.store import project_root

if TYPE_CHECKING:
    from rich.console import RenderableType

    from ralph.models import Task
    from ralph.ops.logs import Turn

STATUS_STYLE = {"done": "green", "failed": "red", "cancelled": "dim", "open": "yellow"}
WATCH_SECONDS = 2.0


def _money(value: float | None) -> str:
    return "-" if value is None else f"${value:.4f}"


def _tokens(n: int) -> str:
    return (
        f"{n / 1_000_000:.1f}M" if n >= 1_000_000 else f"{n / 1000:.1f}k" if n >= 1000 else str(n)
    )


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}s" if value < 60 else format_duration(value)


# -- status --------------------------------------------------------------------------------


def status(
    watch: Annotated[bool, typer.Option("--watch", help="Redraw every 2 s until Ctrl-C.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Counts by status, ready and blocked tasks, live claims, workers, spend, recent events.

    \b
    Examples:
      ralph status
      ralph status --watch
      ralph status --json | jq '.spend.today.cost_usd'
    """

    if as_json:
        emit_json(snapshot(store()))
        return
    if not watch:
        console().print(status_view(snapshot(store())))
        return
    from rich.live import Live  # lazy: start-up

    out = console()
    try:
        if not out.is_terminal:  # a pipe or a file gets one snapshot after another
            while True:
                out.print(status_view(snapshot(store())))
                out.print()
                out.file.flush()
                time.sleep(WATCH_SECONDS)
        with Live(status_view(snapshot(store())), console=out, auto_refresh=False) as live:
            while True:
                time.sleep(WATCH_SECONDS)
                live.update(status_view(snapshot(store())), refresh=True)
    except KeyboardInterrupt:
        return


def pause_line(pause: dict[str, Any]) -> str:
    """`PAUSED by w1 on host (rate limit...) since .. until ..: why` for status --json's pause."""
    by = f" by {pause['by']}" if pause.get("by") else ""
    if pause["source"] == "run":
        on = f" on {pause['host']}" if pause.get("host") else ""
        return (
            f"PAUSED{by}{on} since {pause['since']} until {pause['until']} (its run's workers "
            f"take no new task; it lifts itself): {pause.get('reason')}"
        )
    until = f" until {pause['until']}" if pause.get("until") else " until `ralph resume`"
    return f"PAUSED{by} since {pause['since']}{until}: {pause.get('reason')}"


def holds(pause: dict[str, Any] | None, worker: dict[str, Any]) -> bool:
    """Whether `pause` keeps `worker` from taking a task (a run's pause holds its own)."""
    if not pause:
        return False
    if pause["source"] == "operator":
        return True
    return worker["name"] in pause["workers"] and worker["host"] == pause["host"]


def status_view(snap: dict[str, Any]) -> RenderableType:
    """The rich rendering of a status snapshot (also what --watch redraws)."""
    from rich.console import Group  # lazy: start-up
    from rich.table import Table  # lazy: start-up
    from rich.text import Text  # lazy: start-up

    c = snap["counts"]
    head = Text()
    head.append(f"Tasks: {c['total']}  ", style="bold")
    for name in ("open", "done", "failed", "cancelled"):
        head.append(f"{name} {c[name]}", style=STATUS_STYLE[name])
        head.append("  ")
    head.append(
        f"\nOpen: {snap['ready']} ready, {snap['claimed']} claimed, {snap['blocked']} blocked, "
        f"{snap['retry_wait']} waiting to retry"
    )
    parts: list[Any] = [head]
    pause = snap.get("pause")
    if pause:
        parts.append(Text(pause_line(pause), style="bold yellow"))
    for label in ("today", "total"):
        s = snap["spend"][label]
        parts.append(
            Text(
                f"Spend {label}: {cost_text(s['cost_usd'], s['unknown_cost'])} over "
                f"{s['attempts']} attempts ({s['launches']} agent launches), "
                f"{_tokens(s['input_tokens'])} tokens in / {_tokens(s['output_tokens'])} out"
            )
        )
    if snap["claims"]:
        table = Table(title="Claims", title_justify="left", box=None, header_style="bold")
        for column in ("Task", "Worker", "Token", "Lease left"):
            table.add_column(column)
        for claim in snap["claims"]:
            left = "expired" if claim["expired"] else _seconds(claim["lease_left_s"])
            table.add_row(Text(claim["task_id"]), Text(claim["worker"]), str(claim["token"]), left)
        parts.append(table)
    workers = snap["workers"]
    if workers:
        table = Table(title="Workers", title_justify="left", box=None, header_style="bold")
        for column in ("Name", "State", "Task", "Host", "PID"):
            table.add_column(column)
        for w in workers:
            table.add_row(
                Text(w["name"]),
                w["state"] + (" (paused)" if w["state"] == "idle" and holds(pause, w) else ""),
                Text(w["current_task"] or ""),
                w["host"] or "",
                str(w["pid"] or ""),
            )
        parts.append(table)
    else:
        gone = snap["workers_gone"]
        parts.append(Text(f"Workers: none running ({gone} stopped or gone)", style="dim"))
    if snap["events"]:
        table = Table(title="Recent events", title_justify="left", box=None, header_style="bold")
        for column in ("At", "Kind", "Task", "Worker"):
            table.add_column(column)
        for e in snap["events"]:
            table.add_row(e["at"], e["kind"], Text(e["task_id"] or ""), Text(e["worker"] or ""))
        parts.append(table)
    return Group(*parts)


# -- logs ----------------------------------------------------------------------------------


def logs(
    task_id: Annotated[str | None, typer.Argument(metavar="[ID]")] = None,
    attempt: Annotated[
        int | None,
        typer.Option("--attempt", min=1, metavar="N", help="[default: the last one]"),
    ] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing a running attempt's output.")
    ] = False,
    no_prompt: Annotated[
        bool, typer.Option("--no-prompt", help="Leave out the rendered prompt.")
    ] = False,
    progress: Annotated[
        bool,
        typer.Option(
            "--progress",
            help="Show the progress log (progress.md): what each task's agent learned.",
        ),
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """An attempt's prompt, the agent's output as readable turns, verify output and outcome.

    \b
    Examples:
      ralph logs rl-3k9x2a7b
      ralph logs rl-3k9x2a7b --attempt 1 --no-prompt
      ralph logs rl-3k9x2a7b --follow          # until the attempt ends
      ralph logs --progress                    # the learnings carried from task to task
    """

    if progress:
        _show_progress(as_json)
        return
    if task_id is None:
        raise UsageError("missing ID", hint="ralph logs ID, or ralph logs --progress")

    if as_json:
        emit_json(oplogs.read_attempt(store(), task_id, attempt).to_dict())
        return
    out = console()
    if not follow:
        render_log(out, oplogs.read_attempt(store(), task_id, attempt), show_prompt=not no_prompt)
        return
    n, total, record = oplogs.find_attempt(store(), task_id, attempt)
    head = oplogs.read_attempt(store(), task_id, n)
    _log_head(out, head, show_prompt=not no_prompt)
    try:
        for turn in oplogs.follow(head.run_dir):
            print_turn(out, turn)
    except KeyboardInterrupt:
        return
    _log_tail(out, oplogs.read_attempt(store(), task_id, n))


def _show_progress(as_json: bool) -> None:
    view = read_progress(project_root())
    if as_json:
        emit_json(view.to_dict())
    elif view.path is None:
        typer.echo("The progress log is off (progress = false in the config).")
    elif view.text is None:
        typer.echo(f"No progress log yet: {view.path} is written when a task is done.")
    else:
        sys.stdout.write(view.text if view.text.endswith("\n") else view.text + "\n")


def render_log(out: Any, log: Any, *, show_prompt: bool = True) -> None:
    _log_head(out, log, show_prompt=show_prompt)
    for turn in log.turns:
        print_turn(out, turn)
    if not log.turns:
        out.print("(no output)", style="dim", soft_wrap=True)
    _log_tail(out, log)


def _log_head(out: Any, log: Any, *, show_prompt: bool) -> None:
    from rich.rule import Rule  # lazy: start-up
    from rich.text import Text  # lazy: start-up

    record = log.attempt
    who = f"{record.agent} on {record.worker}" if record else ""
    out.print(Rule(Text(f"{log.task_id} attempt {log.number} of {log.of}  {who}"), align="left"))
    out.print(Text(f"run folder: {log.run_dir}", style="dim"), soft_wrap=True)
    if show_prompt and log.prompt is not None:
        out.print(Rule("prompt", align="left", style="dim"))
        out.print(Text(log.prompt.rstrip()), soft_wrap=True)
    out.print(Rule("agent", align="left", style="dim"))


def _log_tail(out: Any, log: Any) -> None:
    from rich.rule import Rule  # lazy: start-up
    from rich.text import Text  # lazy: start-up

    if log.stderr.strip():
        out.print(Rule("stderr", align="left", style="dim"))
        out.print(Text(log.stderr.rstrip()), soft_wrap=True)
    for v in log.verify:
        out.print(Rule(f"verify {v['n']}", align="left", style="dim"))
        text = "\n".join(s.rstrip() for s in (v["stdout"], v["stderr"]) if s.strip())
        out.print(Text(text or "(no output)"), soft_wrap=True)
    out.print(Rule("outcome", align="left", style="dim"))
    result = log.result
    if result is None:
        out.print(Text("still running (no result.json yet)", style="yellow"), soft_wrap=True)
        return
    outcome = str(result.get("outcome"))
    style = "green" if outcome in ("success", "no_changes") else "red"
    line = Text(outcome, style=f"bold {style}")
    facts = [
        f"commit {str(result['commit'])[:10]}" if result.get("commit") else None,
        f"cost {_money(result.get('cost_usd'))}" if result.get("cost_usd") is not None else None,
        f"{result.get('duration_s')}s" if result.get("duration_s") is not None else None,
        f"exit {result.get('exit_code')}" if result.get("exit_code") is not None else None,
    ]
    line.append("  " + ", ".join(f for f in facts if f))
    out.print(line, soft_wrap=True)
    if result.get("note"):
        out.print(Text(str(result["note"]).rstrip(), style="dim"), soft_wrap=True)


def print_turn(out: Any, turn: Turn) -> None:
    """One turn: assistant text plain, tool calls as `→ Tool arg`, results dimmed and cut."""
    from rich.text import Text  # lazy: start-up

    if turn.kind == "assistant":
        out.print(Text(turn.text), soft_wrap=True)
    elif turn.kind == "thinking":
        out.print(Text(turn.text, style="dim italic"), soft_wrap=True)
    elif turn.kind == "tool":
        line = Text("→ ", style="cyan")
        line.append(turn.tool or "tool", style="bold cyan")
        line.append(f" {turn.text}" if turn.text else "")
        out.print(line, soft_wrap=True)
    elif turn.kind == "tool_result":
        style = "red" if turn.is_error else "dim"
        out.print(Text("  " + turn.text.replace("\n", "\n  "), style=style), soft_wrap=True)
    elif turn.kind == "result":
        line = Text("✗ " if turn.is_error else "✓ ", style="red" if turn.is_error else "green")
        line.append(turn.text)
        facts = [f"cost {_money(turn.cost_usd)}"] if turn.cost_usd is not None else []
        if "num_turns" in turn.extra:
            facts.append(f"{turn.extra['num_turns']} turns")
        if "input_tokens" in turn.extra:
            facts.append(
                f"{turn.extra['input_tokens']} in / {turn.extra.get('output_tokens', 0)} out tokens"
            )
        if facts:
            line.append(f"  ({', '.join(facts)})", style="dim")
        out.print(line, soft_wrap=True)
    elif turn.kind == "system":
        out.print(Text(f"· {turn.text}", style="dim"), soft_wrap=True)
    else:
        out.print(Text(turn.text), soft_wrap=True)


# -- stats ---------------------------------------------------------------------------------


def stats(
    by: Annotated[
        str,
        typer.Option("--by", metavar="agent|model|day|task|worker|outcome|kind", help="Group by."),
    ] = "agent",
    as_json: JsonFlag = False,
) -> None:
    """Attempts, success rate, median and p90 duration, cost and tokens, from the attempts table.

    \b
    Examples:
      ralph stats
      ralph stats --by day
      ralph stats --by model
      ralph stats --by task --json | jq '.total.cost_usd'
    """

    result = store_stats(store(), by)
    if as_json:
        emit_json(result)
        return
    from rich.table import Table  # lazy: start-up
    from rich.text import Text  # lazy: start-up

    table = Table(box=None, header_style="bold", pad_edge=False, show_footer=False)
    for column in (
        by.capitalize(),
        "Attempts",
        "Launches",
        "OK",
        "Rate",
        "Median",
        "p90",
        "Cost",
        "Tokens in",
        "Tokens out",
    ):
        table.add_column(column, justify="left" if column == by.capitalize() else "right")

    def row(key: str, s: dict[str, Any], style: str = "") -> None:
        rate = "-" if s["success_rate"] is None else f"{s['success_rate']:.0%}"
        table.add_row(
            Text(key, style=style),
            str(s["attempts"]),
            str(s["launches"]),
            str(s["succeeded"]),
            rate,
            _seconds(s["median_duration_s"]),
            _seconds(s["p90_duration_s"]),
            ("~" if s.get("cost_estimated") else "")
            + cost_text(s["cost_usd"])
            + (" +?" if s["unknown_cost"] and s["cost_usd"] is not None else ""),
            _tokens(s["input_tokens"]),
            _tokens(s["output_tokens"]),
        )

    for group in result["groups"]:
        row(group["key"], group)
    if not result["groups"]:
        console().print("No attempts yet (`ralph run` records them)")
        return
    row("total", result["total"], style="bold")
    console().print(table)
    total = result["total"]
    if total["unknown_cost"]:
        console().print(
            f"+? {total['unknown_cost']} attempt(s) reported no cost: total "
            f"{cost_text(total['cost_usd'], total['unknown_cost'])}"
        )
    if result["total"].get("cost_estimated"):
        console().print(
            "~ cost estimated from tokens with ralph's price table ([prices] in ralph.toml)"
        )


# -- trees ---------------------------------------------------------------------------------


def _label(node: dict[str, Any], note: str = "") -> Any:
    from rich.text import Text  # lazy: start-up

    text = Text()
    text.append(node["id"], style="bold")
    text.append(f" [{node['status']}]", style=STATUS_STYLE.get(node["status"], ""))
    if node["status"] == "open" and node.get("ready"):
        text.append(" ready", style="green")
    text.append(f" {node['title']}")
    if node.get("discovered_from"):
        text.append(f" (found in {node['discovered_from']})", style="dim")
    if note:
        text.append(f" {note}", style="dim")
    return text


def dep_tree(
    task_id: Annotated[str, typer.Argument(metavar="ID")],
    as_json: JsonFlag = False,
) -> None:
    """A task with what it waits on, what waits on it and its children, as a tree.

    \b
    Example:
      ralph dep tree rl-3k9x2a7b
    """
    from rich.tree import Tree  # lazy: start-up

    root = dependency_tree(store(), task_id)
    if as_json:
        emit_json(root)
        return
    names = {
        "waits_on": "waits on",
        "unblocks": "unblocks",
        "children": "children",
        "follow_ups": "follow-ups its agent filed",
    }
    tree = Tree(_label(root))

    def add(branch: Any, node: dict[str, Any], direction: str) -> None:
        sub = branch.add(_label(node, "(see above)" if node.get("repeat") else ""))
        for nxt in node.get(direction, []):
            add(sub, nxt, direction)

    for direction in DIRECTIONS:
        if root[direction]:
            branch = tree.add(names[direction], style="italic")
            for node in root[direction]:
                add(branch, node, direction)
    console().print(tree)


def print_task_tree(tasks: Sequence[Task], as_json: bool = False) -> None:
    """`ralph list --tree`: the tasks nested by parent, with what each waits on."""

    forest = task_forest(tasks)
    if as_json:
        emit_json(forest)
        return
    if not forest:
        console().print("No tasks")
        return
    from rich.tree import Tree  # lazy: start-up

    tree = Tree("tasks", hide_root=True)

    def add(branch: Any, node: dict[str, Any]) -> None:
        waits = f"(waits on {', '.join(node['blocked_by'])})" if node["blocked_by"] else ""
        sub = branch.add(_label(node, waits))
        for child in node["children"]:
            add(sub, child)

    for node in forest:
        add(tree, node)
    console().print(tree)


def register(app: typer.Typer, worker_app: typer.Typer) -> None:
    app.command()(status)
    app.command()(logs)
    app.command()(stats)
    dep_app = typer.Typer(name="dep", rich_markup_mode=None, add_completion=False)

    @dep_app.callback(invoke_without_command=True)
    def dep(ctx: typer.Context) -> None:
        """The dependency structure of tasks (add dependencies with `ralph block`).

        \b
        Example:
          ralph dep tree rl-3k9x2a7b
        """
        if ctx.invoked_subcommand is None:
            typer.echo(ctx.get_help())
            raise typer.Exit()

    dep_app.command("tree")(dep_tree)
    app.add_typer(dep_app)
