"""One run's sandbox, and the confinement of one attempt: what the worker calls.

`Sandbox.resolve(...)` decides at run start whether agents run confined (refusing, with one line,
when the sandbox is wanted and cannot work here). For each attempt the worker asks for a
`Confined`: it lays out the attempt's git view, starts the network gate when the policy is
"allow", and wraps the agent's and the verify commands' argv and environment. After the agent
it reads the agent's HEAD from the view, fetches its commits into the repository, and hands
that HEAD to the workspace's collect (`GitWorkspace.agent_head`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ralph.config import LOCAL_NAME
from ralph.errors import RalphError, SandboxUnavailableError
from ralph.memory import NOTES_MAX_CHARS, notes_path
from ralph.ops.show import SNAPSHOT_VAR
from ralph.sandbox import bwrap, followups
from ralph.sandbox.envfilter import filter_env, without_password
from ralph.sandbox.followups import read_own
from ralph.sandbox.gitview import GitView
from ralph.sandbox.policy import SandboxSettings, host_port, sandbox_edited, wanted

REFUSAL_HINT = "pass --no-sandbox to run agents unconfined"
NOTES_NAME = "notes.md"
NOTES_MAX = NOTES_MAX_CHARS * 4 + 4  # bytes: the worker cuts the text at NOTES_MAX_CHARS


class Sandbox:
    """The policy every attempt of a run gets (bwrap path, network, hosts, extra paths)."""

    def __init__(
        self, exe: str, settings: SandboxSettings, agent: Any, root: Path, ours: list[str]
    ):
        self.exe, self.settings, self.agent, self.root = exe, settings, agent, root
        self.ours = ours  # workspace files ralph itself reads and writes (progress.md, prd.json)
        env = {**os.environ, **agent.env()}
        hosts = [*agent.sandbox_hosts(env), *(host_port(h) for h in settings.allow)]
        self.hosts = list(dict.fromkeys(hosts))
        # "allow" with nothing to allow (a command agent, the demo) is "none": no gate to run.
        self.network = settings.network
        if self.network == "allow" and not self.hosts:
            self.network = "none"
        home = os.environ.get("HOME")
        self.home = Path(home) if home else None
        self.tools = bwrap.tools(self.home, [self._executable()])

    @classmethod
    def resolve(
        cls,
        flag: bool | None,
        settings: SandboxSettings,
        agent: Any,
        root: Path,
        ours: list[str | None] | None = None,
    ) -> Sandbox | None:
        """The run's sandbox, None when it runs unconfined; raises SandboxUnavailableError
        when the sandbox is wanted (the default included) and cannot work here."""
        on, _explicit = wanted(flag, settings)
        if not on:
            return None
        exe, why = bwrap.probe()
        if why is not None or exe is None:
            raise SandboxUnavailableError(f"the sandbox cannot run here: {why}", hint=REFUSAL_HINT)
        sandbox = cls(exe, settings, agent, root, [p for p in ours or () if p])
        if sandbox.network == "allow":
            try:
                from ralph.sandbox import network  # noqa: F401
            except ImportError:
                raise SandboxUnavailableError(
                    'the sandbox cannot run here: network = "allow" needs '
                    "ralph.sandbox.network, which this ralph lacks",
                    hint='set [sandbox] network = "none" or "open", or ' + REFUSAL_HINT,
                ) from None
        return sandbox

    def describe(self) -> str:
        """One line for result.json, doctor and the web page."""
        if self.network == "allow":
            n = len(self.hosts)
            return f"sandbox: bwrap, network=allow ({n} host{'s' if n != 1 else ''})"
        return f"sandbox: bwrap, network={self.network}"

    def confine(
        self, workspace: Any, run_dir: Path, base: str, log: Callable[[str], None]
    ) -> Confined:
        """The confinement of one attempt in `workspace` (a GitWorkspace) from `base`; a
        failure to set it up is SandboxUnavailableError (the run stops, nothing counted)."""
        try:
            return Confined(self, workspace, run_dir, base, log)
        except SandboxUnavailableError:
            raise
        except Exception as exc:
            raise SandboxUnavailableError(f"could not set up the attempt's sandbox: {exc}") from exc

    def _executable(self) -> str:
        command = getattr(self.agent, "command", None) or [""]
        found = shutil.which(command[0]) if command[0] else None
        return found or command[0] or ""


class Confined:
    """One attempt inside the sandbox: its git view, its network gate, its wrapped launches."""

    def __init__(
        self, sandbox: Sandbox, workspace: Any, run_dir: Path, base: str, log: Callable[[str], None]
    ):
        self.sandbox, self.workspace, self.run_dir, self.base = sandbox, workspace, run_dir, base
        self.log = log
        self.agent_dir = run_dir / "agent"  # the one folder of the run dir the agent may write
        self.agent_dir.mkdir(parents=True, exist_ok=True)
        self.view = GitView(workspace.path, run_dir, base)
        self.view.create()
        self.local = workspace.path / LOCAL_NAME  # untracked, read over ralph.toml: guarded
        self.local_before = _read_bytes(self.local)
        self.head: str | None = None
        self.gate: Any = None
        self.net_dir: Path | None = None
        self._proxy: tuple[list[str], dict[str, str]] = ([], {})
        if sandbox.network == "allow":
            try:
                self._start_gate()
            except BaseException:
                self.close()
                raise

    def _start_gate(self) -> None:
        from ralph.sandbox import network  # lazy: start-up (the proxy, only for "allow")

        self.net_dir = Path(tempfile.mkdtemp(prefix="ralph-net-"))  # short: a socket path
        sock = self.net_dir / "proxy.sock"
        log_file = self.run_dir / "sandbox.log"

        def log(line: str) -> None:
            self.log(line)
            with open(log_file, "a") as out:
                out.write(line + "\n")

        self.gate = network.NetworkGate(self.sandbox.hosts, sock, log)
        self.gate.start()
        self._proxy = (network.bridge_argv(str(sock), self.sandbox.hosts), network.proxy_env())

    def wrap(self, argv: list[str], env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        """The agent's launch, confined to its workspace with its git view."""
        argv = self.sandbox.agent.in_sandbox(argv)
        return self._wrap(argv, env, self.workspace.path, self.view.bwrap_args())

    def wrap_verify(
        self, argv: list[str], env: dict[str, str], cwd: Path
    ) -> tuple[list[str], dict[str, str]]:
        """A verify command's launch under the same policy, in `cwd` (the workspace, or the
        folder the rebased result is checked in); the real `.git` stays read-only."""
        mounts = self.view.bwrap_args() if cwd == self.workspace.path else []
        return self._wrap(argv, env, cwd, mounts)

    def _wrap(
        self, argv: list[str], env: dict[str, str], cwd: Path, git_mounts: list[str]
    ) -> tuple[list[str], dict[str, str]]:
        s = self.sandbox
        agent, settings = s.agent, s.settings
        names = [*agent.env(), *agent.sandbox_env_names()]
        inner = filter_env(env, prefixes=agent.env_prefixes, names=names, passthrough=settings.env)
        inner["TMPDIR"] = "/tmp"
        if "RALPH_DB" in inner:
            inner["RALPH_DB"] = without_password(inner["RALPH_DB"])
        inner[followups.VAR] = str(self.agent_dir / followups.FILE)  # `ralph add` queues there
        inner[SNAPSHOT_VAR] = str(self.agent_dir)  # `ralph show $RALPH_TASK_ID` reads it there
        inner["RALPH_NOTES"] = str(self.agent_dir / NOTES_NAME)  # copied out by finish()
        prefix, proxy = self._proxy
        inner.update(proxy)
        command = [*prefix, *argv]
        binds = [self.agent_dir, self.view.dir, *([self.net_dir] if self.net_dir else [])]
        wrapped = bwrap.build(
            s.exe,
            command,
            home=s.home,
            root=self.workspace.root,
            workspace=cwd,
            run_dir=self.run_dir,
            git_mounts=git_mounts,
            home_paths=agent.home_paths,
            tool_dirs=s.tools,
            readable=[_expand(p, s.root) for p in settings.readable],
            writable=[_expand(p, s.root) for p in settings.writable],
            binds=binds,
            share_net=s.network == "open",
        )
        return wrapped, inner

    def finish(self, ref: str) -> str | None:
        """After the agent: its HEAD from the view; its commits fetched into the repository
        under `ref`; collect told where HEAD is. Returns that HEAD."""
        for rel in self.sandbox.ours:  # ralph appends to these on the host: never via a link
            self._unlink_links(self.workspace.path, rel)
        if _read_bytes(self.local) != self.local_before:  # it would set the next run's sandbox
            self.local.unlink(missing_ok=True)
            if self.local_before is not None:
                self.local.write_bytes(self.local_before)
            self.log(f"sandbox: put back {LOCAL_NAME} (changed by the agent)")
        notes = read_own(self.agent_dir / NOTES_NAME, NOTES_MAX)
        if notes:  # where the worker reads RALPH_NOTES: a copy, never through the agent's link
            notes_path(self.run_dir).write_bytes(notes)
        try:
            self.head = self.view.finish()
        except OSError as exc:  # the agent made its git dir unreadable: no commits to keep
            self.log(f"could not read the agent's git view: {exc}")
            self.head = None
        if self.head and self.head != self.base:
            try:
                self.view.import_commits(self.workspace.root, self.head, ref)
            except Exception as exc:  # a broken view is the agent's loss, never ralph's
                self.log(f"could not keep the agent's commits from its git view: {exc}")
                self.head = self.base
        head = self.head
        self.workspace.agent_head = lambda: head
        return head

    def file_followups(self, store: Any, task_id: str, settings: Any) -> None:
        """File what the agent queued with `ralph add --discovered-from` (it cannot reach the
        store; see ralph/sandbox/followups.py): one by one under `max_discovered`, as its own
        adds would have been."""
        specs, skipped = followups.collect(self.agent_dir / followups.FILE, task_id)
        if skipped:
            self.log(f"{task_id}: skipped {skipped} malformed follow-up line(s)")
        for spec in specs:
            try:
                found = store.add_many([spec], max_discovered=settings.max_discovered)
                self.log(f"{task_id}: filed follow-up {found[0].id}: {found[0].title}")
            except RalphError as exc:
                self.log(f"{task_id}: follow-up {spec['title']!r} not filed: {exc.line()}")

    def _unlink_links(self, top: Path, rel: str) -> None:
        """Remove the first symlink on the way from `top` to `rel`: the agent may have linked
        progress.md (or its folder) to a host file, which ralph would read into the next
        prompt and append to."""
        here = top
        for part in Path(rel).parts:
            here = here / part
            if here.is_symlink():
                here.unlink()
                self.log(f"removed the link the agent left at {here.relative_to(top)}")
                return

    def rewound(self) -> str | None:
        """A note when the agent's HEAD does not contain the base (`git reset --hard HEAD~1`):
        the work tree then undoes the base's commits, which must never land. A HEAD that
        cannot be read (the agent broke or re-created its .git) cannot show it did not."""
        head, base = self.head, self.base
        if head is None:
            return "the agent left its git HEAD unreadable, so ralph cannot tell it kept the base"
        if head == base or self.workspace.main.is_ancestor(base, head):
            return None
        return (
            f"the agent rewound history: its HEAD {head[:10]} does not contain the base "
            f"{base[:10]} (kept under refs/ralph/attempts/)"
        )

    def settings_edited(self, tree: str, paths: list[str]) -> str | None:
        """A note when the agent's result changes ralph's [sandbox] settings (see policy)."""

        def read(rev: str, path: str) -> bytes | None:
            try:
                return self.workspace.main("cat-file", "blob", f"{rev}:{path}").encode()
            except Exception:  # no such file at that revision
                return None

        return sandbox_edited(read, self.base, tree, paths)

    def close(self) -> None:
        """Stop the gate, drop the view; collect reads the workspace's own HEAD again."""
        self.workspace.agent_head = None
        if self.gate is not None:
            try:
                self.gate.close()
            except Exception as exc:
                self.log(f"sandbox: closing the network gate failed: {exc}")
            self.gate = None
        if self.net_dir is not None:
            shutil.rmtree(self.net_dir, ignore_errors=True)
        self.view.remove()
        for left in self.agent_dir.rglob("*"):  # links the agent left: no later reader follows
            if left.is_symlink():
                left.unlink()


def _expand(path: str, root: Path) -> str:
    """`~/x` under the real home, a relative path under the project root."""
    p = Path(os.path.expanduser(path))
    return str(p if p.is_absolute() else root / p)


def _read_bytes(path: Path) -> bytes | None:
    """A file's bytes, or None when it is missing or not a plain file (a link is not read)."""
    if path.is_symlink():
        return b"<symlink>"
    return path.read_bytes() if path.is_file() else None
