"""The sandbox as a user meets it: on by default, refused in one line where it cannot run,
described by `ralph doctor`, recorded in result.json, `ralph show` and the web page's worker
rows; `[sandbox]` settings; the filtered environment and the allow-list each agent gets; and an
agent using `mount` or `setsid` fails clearly inside, never hangs."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from gitutil import git, init_repo
from pgserver import in_ci

from ralph.agents.registry import get_agent
from ralph.config import parse_settings
from ralph.errors import ConfigError, SandboxUnavailableError
from ralph.sandbox import bwrap
from ralph.sandbox.envfilter import filter_env
from tests.support.cli import ralph as run_ralph

RALPH = [sys.executable, "-m", "ralph"]
_exe, _why = bwrap.probe()
needs_bwrap = pytest.mark.skipif(
    _why is not None and not in_ci(), reason=f"the sandbox cannot run here: {_why}"
)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return init_repo(tmp_path / "repo", {"README.md": "# project\n"})


def ralph(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("RALPH_")}
    base["HOME"] = str(root.parent / "home")
    return run_ralph(*args, cwd=root, env={**base, **env}, timeout=300)


def test_run_refuses_in_one_line_where_the_sandbox_cannot_run_and_claims_nothing(repo: Path):
    assert ralph(repo, "add", "T", "--id", "T1").returncode == 0
    result = ralph(repo, "run", "--agent", "demo", RALPH_BWRAP="/bin/false")
    assert result.returncode == SandboxUnavailableError.exit_code == 15
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "the sandbox cannot run here" in lines[0], result.stderr
    assert "--no-sandbox" in lines[0]
    shown = json.loads(ralph(repo, "show", "T1", "--json").stdout)
    assert shown["status"] == "open" and shown["attempts"] == 0
    unconfined = ralph(repo, "run", "--agent", "demo", "--no-sandbox", RALPH_BWRAP="/bin/false")
    assert unconfined.returncode == 0, unconfined.stderr


def test_doctor_says_whether_the_sandbox_works_and_which_policy_is_active(repo: Path):
    broken = ralph(repo, "doctor", "--agent", "demo", "--json", RALPH_BWRAP="/bin/false")
    check = {c["name"]: c for c in json.loads(broken.stdout)["checks"]}["sandbox"]
    assert not check["ok"] and "cannot run here" in check["detail"]
    assert broken.returncode == ConfigError.exit_code
    off = ralph(repo, "doctor", "--agent", "demo", "--json", RALPH_SANDBOX="off")
    check = {c["name"]: c for c in json.loads(off.stdout)["checks"]}["sandbox"]
    assert check["ok"] and "unsandboxed" in check["detail"]
    if _why is None:
        on = ralph(repo, "doctor", "--agent", "claude", "--json", ANTHROPIC_API_KEY="x")
        check = {c["name"]: c for c in json.loads(on.stdout)["checks"]}["sandbox"]
        assert check["ok"], check
        assert "bwrap, network=allow (1 host): api.anthropic.com:443" in check["detail"]


@needs_bwrap
def test_result_json_and_show_record_the_policy_each_attempt_ran_under(repo: Path):
    assert ralph(repo, "add", "Sandboxed", "--id", "S1").returncode == 0
    assert ralph(repo, "run", "--agent", "demo", "--once").returncode == 0  # the default: on
    assert ralph(repo, "add", "Not", "--id", "U1").returncode == 0
    assert ralph(repo, "run", "--agent", "demo", "--no-sandbox").returncode == 0
    runs = repo / ".ralph" / "runs"
    assert json.loads((runs / "S1/1/result.json").read_text())["sandbox"] == (
        "sandbox: bwrap, network=none"
    )
    assert json.loads((runs / "U1/1/result.json").read_text())["sandbox"] == "unsandboxed"
    assert json.loads(ralph(repo, "show", "S1", "--json").stdout)["sandbox"] == (
        "sandbox: bwrap, network=none"
    )
    assert "sandbox:    unsandboxed" in ralph(repo, "show", "U1").stdout
    assert git(repo, "rev-list", "--count", "main") == "3"  # both landed


@needs_bwrap
def test_mount_and_setsid_fail_or_end_with_the_attempt_inside_the_sandbox(repo: Path):
    script = (
        "mkdir -p out; mount -t tmpfs none /mnt 2>/dev/null; echo mount=$? > out/m.txt; "
        "setsid sleep 1000 & echo setsid=started >> out/m.txt"
    )
    assert ralph(repo, "add", "Privileged", "--id", "P1").returncode == 0
    cmd = shlex.join(["sh", "-c", script])
    result = ralph(repo, "run", "--agent-cmd", cmd, "--sandbox", "--json")
    assert result.returncode == 0, result.stderr
    said = git(repo, "show", "main:out/m.txt").splitlines()
    assert said[0] != "mount=0" and said[1] == "setsid=started", said


@needs_bwrap
def test_an_agent_cannot_reach_the_store_and_its_ralph_add_fails_loudly(repo: Path):
    """.ralph/ is hidden and read-only inside: no empty store is made on the side (only a
    follow-up, `--discovered-from`, is relayed: the test below)."""
    script = 'mkdir -p out; "$0" -m ralph add "a task" 2> out/err.txt; echo add=$? > out/a.txt'

    assert ralph(repo, "add", "Files a follow-up", "--id", "F1").returncode == 0
    cmd = shlex.join(["sh", "-c", script, sys.executable])
    result = ralph(repo, "run", "--agent-cmd", cmd, "--sandbox", "--json")
    assert result.returncode == 0, result.stderr
    assert git(repo, "show", "main:out/a.txt") != "add=0"
    assert git(repo, "show", "main:out/err.txt")  # it said why
    listed = json.loads(ralph(repo, "list", "--json").stdout)
    assert [t["id"] for t in listed] == ["F1"]


@needs_bwrap
@pytest.mark.parametrize("workers", ["1", "2"])
def test_ralph_show_of_its_own_task_works_inside_the_sandbox_and_no_other(repo: Path, workers: str):
    """The store is out of reach, yet `ralph show $RALPH_TASK_ID` (CLAUDE.md tells agents to run
    it) prints the task as outside, from what the worker left in the attempt's folder."""
    script = (
        "cat > /dev/null; mkdir -p out; "
        '"$0" -m ralph show "$RALPH_TASK_ID" > "out/$RALPH_TASK_ID.txt"'
        ' && "$0" -m ralph show --json "$RALPH_TASK_ID" > "out/$RALPH_TASK_ID.json"'
        ' && { "$0" -m ralph show OTHER 2> "out/$RALPH_TASK_ID.err"; echo "other=$?" >> '
        '"out/$RALPH_TASK_ID.err"; }'
    )
    assert ralph(repo, "add", "Blocker", "--id", "B1").returncode == 0
    assert ralph(repo, "add", "Shown", "--id", "S1", "-d", "line one").returncode == 0
    assert ralph(repo, "add", "Later", "--id", "L1", "--blocked-by", "S1").returncode == 0
    assert ralph(repo, "add", "Someone else", "--id", "OTHER").returncode == 0
    cmd = shlex.join(["sh", "-c", script, sys.executable])
    result = ralph(
        repo, "run", "--agent-cmd", cmd, "--sandbox", "--json", "--workers", workers,
        "--max-tasks", "2",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    text = git(repo, "show", "main:out/S1.txt")
    assert text.startswith("S1: Shown") and "line one" in text and "L1 (open)" in text
    doc = json.loads(git(repo, "show", "main:out/S1.json"))
    assert doc["id"] == "S1" and doc["claim"]["worker"] and doc["blocks_status"][0]["id"] == "L1"
    err = git(repo, "show", "main:out/S1.err")
    assert "only this attempt's task" in err and err.endswith("other=7")


@needs_bwrap
@pytest.mark.parametrize("workers", ["1", "2"])
def test_verify_commands_run_in_the_sandbox_too(repo: Path, workers: str):
    home = repo.parent / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("FAKE KEY\n")
    check = 'test ! -e "$HOME/.ssh/id_ed25519" && touch "$HOME/verify-was-here"'
    (repo.parent / "ralph.toml").write_text(
        f"verify = [{json.dumps(shlex.join(['sh', '-c', check]))}]\n"
    )
    assert ralph(repo, "add", "Checked", "--id", "V1").returncode == 0
    result = ralph(
        repo, "run", "--agent", "demo", "--sandbox", "--json", "--workers", workers,
        "--config", str(repo.parent / "ralph.toml"),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout)["done"] == 1
    assert not (home / "verify-was-here").exists()


@needs_bwrap
def test_follow_ups_an_agent_files_inside_the_sandbox_are_filed_by_ralph_under_the_cap(
    repo: Path,
):
    script = (
        'cat > /dev/null; mkdir -p done; echo "$RALPH_TASK_ID" > "done/$RALPH_TASK_ID.txt"; '
        '[ "$RALPH_TASK_ID" = F1 ] || exit 0; '
        '"$0" -m ralph add "Fix the parser" -d "found while doing F1" -p 3 '
        '--discovered-from "$RALPH_TASK_ID" && '
        '"$0" -m ralph add "Not mine to say" --discovered-from OTHER && '
        '"$0" -m ralph add "One too many" --discovered-from "$RALPH_TASK_ID"'
    )
    config = repo.parent / "ralph.toml"
    config.write_text("max_discovered = 2\n")
    assert ralph(repo, "add", "Finds work", "--id", "F1").returncode == 0
    assert ralph(repo, "add", "Someone else", "--id", "OTHER").returncode == 0
    cmd = shlex.join(["sh", "-c", script, sys.executable])
    result = ralph(repo, "run", "--agent-cmd", cmd, "--sandbox", "--json", "--config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    tasks = {t["title"]: t for t in json.loads(ralph(repo, "list", "--json").stdout)}
    found = tasks["Fix the parser"]
    assert found["discovered_from"] == "F1" and found["priority"] == 3
    assert found["description"] == "found while doing F1" and found["status"] == "done"
    assert tasks["Not mine to say"]["discovered_from"] == "F1"  # the attempt's task, always
    assert "One too many" not in tasks  # max_discovered = 2
    assert "not filed" in result.stderr and "One too many" in result.stderr


@needs_bwrap
def test_a_timed_out_agent_in_the_sandbox_gets_sigterm_and_its_grace(repo: Path):
    """SIGTERM goes to the agent inside, not to bwrap (which would die and SIGKILL it)."""
    script = (
        'mkdir -p out; trap "echo graceful > out/g.txt; exit 3" TERM; '
        "echo started > out/s.txt; while :; do sleep 0.1; done"
    )
    assert ralph(repo, "add", "Slow", "--id", "G1").returncode == 0
    cmd = shlex.join(["sh", "-c", script])
    result = ralph(
        repo, "run", "--agent-cmd", cmd, "--sandbox", "--task-timeout", "2s",
        "--max-attempts", "1", "--json",
    )  # fmt: skip
    assert result.returncode == 13, result.stdout + result.stderr
    assert json.loads(result.stdout)["tasks"][0]["outcome"] == "timeout"
    patch = (repo / ".ralph" / "runs" / "G1" / "1" / "changes.patch").read_text()
    assert "+graceful" in patch and "+started" in patch


def test_the_sandbox_table_is_validated_with_the_file_and_key_named():
    settings = parse_settings(
        {"sandbox": {"enabled": False, "network": "none", "allow": ["x.example:8443"]}}
    )
    assert settings.sandbox.enabled is False and settings.sandbox.network == "none"
    for bad in ({"network": "some"}, {"allow": "x"}, {"colour": 1}, {"enabled": "yes"}):
        with pytest.raises(ConfigError, match=r"ralph\.toml: .*sandbox\."):
            parse_settings({"sandbox": bad})


def test_each_agent_gets_its_own_providers_variables_and_no_other_secret():
    env = {
        "PATH": "/bin",
        "HOME": "/h",
        "LANG": "C.UTF-8",
        "RALPH_TASK_ID": "T1",
        "ANTHROPIC_API_KEY": "a",
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:9/",
        "OPENAI_API_KEY": "o",
        "GEMINI_API_KEY": "g",
        "GITHUB_TOKEN": "t",
        "DB_PASSWORD": "p",
        "AWS_ACCESS_KEY_ID": "k",
        "GIT_DIR": "/real/.git",
        "EDITOR_THEME": "dark",
    }
    claude = get_agent("claude")
    got = filter_env(env, prefixes=claude.env_prefixes, names=claude.env())
    assert {"ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "PATH", "RALPH_TASK_ID"} <= set(got)
    assert not {"OPENAI_API_KEY", "GEMINI_API_KEY", "GITHUB_TOKEN", "GIT_DIR"} & set(got)
    gemini = get_agent("gemini")
    got = filter_env(env, prefixes=gemini.env_prefixes)
    assert "GEMINI_API_KEY" in got and "ANTHROPIC_API_KEY" not in got
    command = get_agent("command", {"command": ["my-agent"]})
    got = filter_env(env, prefixes=command.env_prefixes, passthrough=["GITHUB_TOKEN"])
    assert "EDITOR_THEME" in got and got["GITHUB_TOKEN"] == "t"
    assert not {"ANTHROPIC_API_KEY", "OPENAI_API_KEY", "DB_PASSWORD", "AWS_ACCESS_KEY_ID"} & set(
        got
    )


def test_a_store_url_reaches_a_sandboxed_agent_without_its_password():
    from ralph.sandbox.envfilter import without_password

    assert without_password("postgresql://ralph:s3cret@db.example:5432/ralph") == (
        "postgresql://ralph@db.example:5432/ralph"
    )
    assert without_password("/repo/.ralph/ralph.db") == "/repo/.ralph/ralph.db"


def test_the_allow_list_is_the_agents_api_hosts_and_the_base_urls_it_is_given():
    claude = get_agent("claude")
    assert claude.sandbox_hosts({"ANTHROPIC_BASE_URL": "http://127.0.0.1:8123/v1"}) == [
        "api.anthropic.com:443",
        "127.0.0.1:8123",
    ]
    codex = get_agent(
        "codex",
        {
            "args": [
                "-c", "model_provider=p",
                "-c", 'model_providers.p.base_url="http://127.0.0.1:9001/v1"',
                "-c", "model_providers.p.env_key=P_KEY",
            ]
        },
    )  # fmt: skip
    assert "127.0.0.1:9001" in codex.sandbox_hosts({})
    assert codex.sandbox_env_names() == ["P_KEY"]
    assert filter_env({"P_KEY": "k"}, prefixes=codex.env_prefixes, names=["P_KEY"]) == {
        "P_KEY": "k"
    }


def test_the_web_page_shows_the_policy_of_each_running_attempt(tmp_path: Path):
    from ralph.store import open_store
    from ralph.web.views import overview

    store = open_store(tmp_path / "ralph.db")
    try:
        for n, policy in ((1, "sandbox: bwrap, network=allow (1 host)"), (2, "unsandboxed")):
            run_dir = tmp_path / f"run{n}"
            run_dir.mkdir()
            (run_dir / "sandbox.txt").write_text(policy + "\n")
            store.register_worker(f"w{n}")
            store.add(f"T{n}", id=f"T{n}")
            claim = store.claim(f"T{n}", f"w{n}")
            store.start_attempt(
                f"T{n}", attempt=1, worker=f"w{n}", agent="demo", run_dir=str(run_dir),
                token=claim.token,
            )  # fmt: skip
        rows = {r["name"]: r["sandbox"] for r in overview(store)["workers"]}
    finally:
        store.close()
    assert rows == {"w1": "sandbox: bwrap, network=allow (1 host)", "w2": "unsandboxed"}


@needs_bwrap
def test_an_agent_cannot_loosen_its_own_sandbox_through_ralph_toml_or_ralph_local_toml(
    repo: Path,
):
    """ralph.toml is the agent's to edit like any file, and ralph.local.toml (untracked, read
    over it) sits in the checkout it works in: a change to `[sandbox]` never lands, and the local
    file is put back after the agent, so the next run is confined as before."""
    (repo / "ralph.toml").write_text('max_attempts = 1\n\n[sandbox]\nnetwork = "none"\n')
    git(repo, "add", "ralph.toml")
    git(repo, "commit", "-qm", "ralph settings")
    (repo / ".gitignore").write_text("ralph.local.toml\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "-qm", "ignore the local settings")
    script = (
        "cat > /dev/null; "
        'if [ "$RALPH_TASK_ID" = L1 ]; then printf "[sandbox]\\nenabled = false\\n" '
        "> ralph.local.toml; echo local > local.txt; exit 0; fi; "
        'printf "\\n[sandbox]\\nenabled = false\\n" > ralph.toml; echo edited > edit.txt'
    )
    assert ralph(repo, "add", "Loosen by the local file", "--id", "L1").returncode == 0
    assert ralph(repo, "add", "Loosen by ralph.toml", "--id", "T1").returncode == 0
    cmd = shlex.join(["sh", "-c", script])
    result = ralph(repo, "run", "--agent-cmd", cmd, "--json")
    assert result.returncode == 13, result.stdout + result.stderr  # T1 failed
    assert not (repo / "ralph.local.toml").exists()
    assert git(repo, "show", "main:local.txt") == "local"  # L1's own work landed
    shown = json.loads(ralph(repo, "show", "T1", "--json").stdout)
    assert shown["status"] == "failed"
    assert "[sandbox] settings in ralph.toml" in shown["last_error"]
    assert "enabled = false" not in git(repo, "show", "main:ralph.toml")
    assert "edit.txt" not in git(repo, "ls-tree", "--name-only", "main")


def test_tools_under_tmp_are_bound_back_as_their_outermost_folder_only(tmp_path: Path, monkeypatch):
    """A clone under /tmp whose venv is on PATH: binding /tmp/x, then /tmp/x/.venv/bin, then
    its python inside the first (read-only) bind made bwrap fail ("Can't create file")."""
    clone = Path(tempfile.mkdtemp(prefix="ralph-clone-", dir="/tmp"))
    try:
        venv_bin = clone / ".venv" / "bin"
        venv_bin.mkdir(parents=True)
        python = venv_bin / "python"
        python.write_text("")
        monkeypatch.setenv("PATH", f"{venv_bin}:{clone}:/usr/bin")
        found = bwrap.tools(None, [str(python)])
        assert clone in found
        assert not [p for p in found if p != clone and clone in p.parents], found
    finally:
        shutil.rmtree(clone, ignore_errors=True)
