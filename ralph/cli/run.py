"""`ralph run`, `ralph worker start` and `ralph demo`: the loop's command line.

Everything is checked before anything runs (config, durations, the git tree, the template, the
agent binary), so bad input costs one line on stderr and changes nothing. gitpython, jinja2 and
the loop are imported inside the commands, keeping the hot store commands fast.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ralph.cli.common import emit_json, session
from ralph.cli.runbuild import build, resolve_agent
from ralph.cli.runopts import (
    DryRunOpt,
    Flags,
    JsonOpt,
    NameOpt,
    NamesOpt,
    NoLiveOpt,
    OnceOpt,
    WatchOpt,
    WorkerOpt,
    WorkersOpt,
    with_options,
)
from ralph.durations import format_duration
from ralph.errors import ConfigError, RunInterruptedError, UsageError
from ralph.store import ensure_ralph_dir, open_store

if TYPE_CHECKING:
    from ralph.control import RunSummary

__all__ = ["Flags", "build", "register", "resolve_agent"]

_DEMO_AGENT = Path(__file__).resolve().parents[1] / "demo_agent.py"  # in the package
_DEMO_NAMES = ("Alpha", "Beta", "Gamma", "Delta", "Epsilon", "Zeta", "Eta", "Theta")


@with_options(
    {"worker": (WorkerOpt, None)},
    {
        "once": (OnceOpt, False),
        "watch": (WatchOpt, False),
        "dry_run": (DryRunOpt, False),
        "workers": (WorkersOpt, 1),
        "names": (NamesOpt, None),
        "no_live": (NoLiveOpt, False),
    },
)
def run(**options: Any) -> None:
    """Run the RALPH loop: a fresh agent per ready task, one commit per task, until drained.

    \b
    Example:
      ralph run --agent claude --max-cost 5
      ralph run --agent-cmd "python my_agent.py" --once
      ralph run --workers 3 --agent claude
      ralph run --remote origin --agent claude     # on each host, one shared RALPH_DB
    Exit codes: 0 drained or cap reached, 8 config, 9 git tree, 10 agent auth failed,
    11 too many failures in a row, 12 stopped by a signal while an agent worked,
    13 some task ended failed, 15 the sandbox cannot run here.
    """
    flags = Flags(**options)
    flags.verify = flags.verify or []
    _execute(flags)


@with_options({"name": (NameOpt, None)})
def worker_start(name: str | None = None, **options: Any) -> None:
    """Start a persistent worker: `ralph run --watch` under a name, until SIGTERM or `worker stop`.

    \b
    Example:
      ralph worker start --name implementer-1 --capabilities tx-implementer
      kill -SIGTERM <worker-pid>   # or: ralph worker stop implementer-1
      ralph worker start --name host-a --remote origin   # pushes each task's commit
    """
    flags = Flags(**options)
    flags.worker, flags.watch, flags.verify = name, True, flags.verify or []
    flags.worktree = True  # worker processes share the repo: each works in its own worktree
    _execute(flags)


def demo(
    path: Annotated[
        Path | None,
        typer.Argument(
            metavar="[PATH]",
            help="Folder for the scratch repo (new or empty). [default: a temp dir]",
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option("--workers", "-w", "-j", min=1, help="Parallel workers (Alpha, Beta, ...)."),
    ] = 3,
    as_json: JsonOpt = False,
) -> None:
    """Show the whole loop offline: a scratch repo, five tasks, parallel workers running a demo
    agent in their own worktrees, one commit per task on a linear history.

    \b
    Example:
      ralph demo              # then: cd <the printed folder> && ralph list
      ralph demo --workers 1  # one worker in the repository itself
    """

    if not _DEMO_AGENT.is_file():
        raise ConfigError(
            f"the demo agent {_DEMO_AGENT} is missing",
            hint="run `ralph demo` from a source checkout (pip install -e .)",
        )
    if path is None:
        root = Path(tempfile.mkdtemp(prefix="ralph-demo-"))
    else:
        root = path.resolve()
        if root.exists() and any(root.iterdir()):
            raise UsageError(f"{root} is not empty", hint="give a new or empty folder")
        root.mkdir(parents=True, exist_ok=True)
    git = ["git", "-C", str(root)]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    for key, value in (("user.name", "ralph demo"), ("user.email", "demo@ralph.invalid")):
        subprocess.run([*git, "config", key, value], check=True)
    (root / "README.md").write_text("# ralph demo\n\nEach task's agent writes work/<task>.md.\n")
    subprocess.run([*git, "add", "README.md"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "Start the demo project"], check=True)
    ensure_ralph_dir(root)
    db = root / ".ralph" / "ralph.db"
    with open_store(db) as store:
        store.add_many(
            [
                {"id": "T1", "title": "Write the task parser", "priority": 3},
                {"id": "T2", "title": "Test the task parser", "blocked_by": ["T1"]},
                {"id": "T3", "title": "Document the command line", "priority": 1},
                {
                    "id": "T4",
                    "title": "Wire the parser into the command line",
                    "blocked_by": ["T1", "T3"],
                },
                {"id": "T5", "title": "Write the release notes", "blocked_by": ["T2", "T4"]},
            ]
        )
    sys.stderr.write(f"demo repository: {root}\n")
    session.reset(str(db), session.debug)
    os.chdir(root)
    flags = Flags(
        agent_cmd=shlex.join([sys.executable, str(_DEMO_AGENT)]),
        worker="demo-worker" if workers == 1 else None,
        workers=workers,
        names=",".join(_DEMO_NAMES[:workers]) if 1 < workers <= len(_DEMO_NAMES) else None,
        as_json=as_json,
        quiet=as_json,
    )
    summary = _execute(flags, exit_on_error=False)
    if not as_json:
        typer.echo(
            subprocess.run(
                [*git, "log", "--oneline", "--graph"], check=True, capture_output=True, text=True
            ).stdout.rstrip()
        )
    if summary is not None and summary.exit_code:
        raise typer.Exit(summary.exit_code)


# -- building the run --------------------------------------------------------------------------


def _execute(flags: Flags, *, exit_on_error: bool = True) -> RunSummary | None:
    from ralph import hostid  # lazy: start-up
    from ralph.preview import preview  # lazy: start-up (the loop: git, jinja2, psutil)
    from ralph.runner import run as run_workers  # lazy: start-up
    from ralph.runner import worker_names  # lazy: start-up

    names: list[str] = []
    parallel = flags.workers > 1 or flags.names is not None or flags.worktree
    if parallel and not flags.worktree:
        names = worker_names(flags.workers, flags.names)
    store, root, options, control = build(flags)
    if (flags.remote or flags.target) and not parallel:  # a landing elsewhere needs a worktree
        parallel = flags.worktree = True
    elif flags.remote and flags.names is None and not flags.worktree:
        names = hostid.host_names(names, root)  # unique across hosts, even one hostname
    if flags.dry_run:
        shown = preview(store, root, options)
        if flags.as_json:
            emit_json(shown)
        for item in [] if flags.as_json else shown:
            typer.echo(
                f"== {item['task']}: {item['title']}\n$ {shlex.join(item['argv'])}"
                + (" < prompt" if item["stdin"] else "")
                + f"\n{item['prompt']}"
            )
        if not shown and not flags.as_json:
            typer.echo("No ready tasks")
        return None
    if not parallel or flags.worktree:
        names = [options.worker]
    live = False if (flags.no_live or flags.quiet or flags.as_json or flags.worktree) else None
    from ralph.ops.github_issues import LandedSync

    github = LandedSync.start_if_needed(store, options.settings, control.log)
    pulls = _pull_requests(store, root, flags.remote, options.settings, control)
    summary = run_workers(
        store,
        options,
        control,
        names=names,
        repo=root,
        mode="worktree" if parallel else "checkout",
        allow_dirty=flags.allow_dirty,
        target=flags.target,
        remote=flags.remote,
        push_branches=flags.push_branches,
        live=live if parallel else False,
    )
    if pulls is not None:  # the pull requests of the last tasks sent for review
        pulls.stop()
    if github is not None:  # the last landings' comments on their issues
        github.stop()
    from ralph.ops.report import run_ended  # lazy: start-up

    run_id = run_ended(store, control, names, summary)  # what `ralph report --run ID` reads
    if options.settings.report.get("write"):
        from ralph.ops.report import write_run_report  # lazy: start-up

        control.report_path = write_run_report(store, root, control, run_id)
    control.finished(summary)  # run_finished, with the report if one was written
    if flags.as_json:
        emit_json(summary.to_dict())
    else:
        from ralph.control import console_line  # lazy: start-up

        console_line(_summary_line(summary), sys.stderr if flags.quiet else sys.stdout)
    if summary.exit_code and exit_on_error:
        raise control.error or _interrupted()
    return summary


def _pull_requests(store: Any, root: Path, remote: str | None, settings: Any, control: Any) -> Any:
    """In pull request mode: the run's PullRequests (its workers open one per task) and the
    sync that polls them, run once now so merged ones make their dependents ready first."""
    if not settings.land.pr or remote is None:
        return None
    from ralph.review.pulls import PullRequests, PullRequestSync, github_repo

    repo = github_repo(root, remote, settings.land.repo)
    control.pulls = PullRequests(store, root, remote=remote, repo=repo, log=control.log)
    return PullRequestSync(control.pulls, every=settings.land.poll).start()


def _interrupted() -> Exception:
    return RunInterruptedError()


def _summary_line(s: RunSummary) -> str:
    parts = [
        f"{s.done} done",
        f"{s.failed} failed",
        f"{s.retried} to retry",
        f"{s.skipped} skipped",
        *([f"{s.review} waiting for review"] if s.review else []),
        f"{s.commits} commits",
        f"{s.launches} agent launches"
        + (f" ({s.conflicts} merge conflicts)" if s.conflicts else "")
        + (f" ({s.resolutions} conflict resolutions)" if s.resolutions else ""),
        f"${s.cost_usd:.4f}"
        + (f" + {s.unknown_cost} launches of unknown cost" if s.unknown_cost else "")
        if s.cost_known
        else "cost unknown",
        format_duration(s.wall_s),
    ]
    if len(s.agents) > 1:  # fallback agents: who ran how many
        parts.insert(6, "launches by agent: " + ", ".join(f"{n} {c}" for n, c in s.agents.items()))
    why = f" ({s.stop_reason})" if s.stop_reason else ""
    return "Run: " + ", ".join(parts) + why


def register(app: typer.Typer, worker_app: typer.Typer) -> None:
    app.command("run")(run)
    app.command("demo")(demo)
    worker_app.command("start")(worker_start)
