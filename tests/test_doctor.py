"""`ralph doctor`, the preflight of `ralph run`, and `--dry-run` without the agent's binary.

A stand-in `gemini` script on PATH plays the CLI (its version, and a marker file if launched);
HOME is a temp folder, so credentials come only from what each test puts there.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from ralph.agents import get_agent
from ralph.doctor import preflight, run_checks
from ralph.errors import AgentAuthError, ConfigError
from tests.support.cli import ralph as run_ralph
from tests.support.clis import clean_env, gemini_home, git_repo


def fake_cli(bin_dir: Path, name: str, version: str) -> Path:
    """An executable `name` printing `version` for --version, else leaving a marker file."""
    bin_dir.mkdir(exist_ok=True)
    path = bin_dir / name
    path.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "--version" ]; then echo "{version}"; exit 0; fi\n'
        'touch "$PWD/launched"\n'
    )
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """A clean repo, an empty HOME, and a fake gemini 0.61.0 first on PATH."""
    repo = git_repo(tmp_path / "repo")
    home = tmp_path / "home"
    home.mkdir()
    fake_cli(tmp_path / "bin", "gemini", "0.61.0")
    env = clean_env(home, PATH=f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    for key in [k for k in os.environ if k not in env]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return repo, home, env


def ralph(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_ralph(*args, cwd=repo, env=env, timeout=120)


@pytest.fixture
def amp_missing(setup, tmp_path, monkeypatch):
    """`setup` with no `amp` on PATH (CI installs the real one): each PATH folder holding it is
    replaced by a folder of links to everything else in it."""
    repo, home, env = setup
    folders = []
    for n, folder in enumerate(env["PATH"].split(os.pathsep)):
        if (Path(folder) / "amp").exists():
            links = tmp_path / f"path{n}"
            links.mkdir()
            for entry in Path(folder).iterdir():
                if entry.name != "amp":
                    (links / entry.name).symlink_to(entry)
            folder = str(links)
        folders.append(folder)
    env = {**env, "PATH": os.pathsep.join(folders)}
    monkeypatch.setenv("PATH", env["PATH"])
    return repo, home, env


def by_name(checks):
    return {c.name: c for c in checks}


def test_doctor_names_the_missing_gemini_auth_and_its_fix(setup):
    repo, _, _ = setup
    checks = by_name(run_checks("gemini", repo, None))
    assert checks["gemini installed"].ok and checks["gemini version"].ok
    creds = checks["gemini credentials"]
    assert not creds.ok and creds.fatal and "settings.json" in creds.detail
    assert "GEMINI_API_KEY" in creds.fix
    assert checks["git identity"].ok and checks["clean tree"].ok and checks["task store"].ok


def test_doctor_cli_exits_8_with_a_checklist_and_0_once_fixed(setup):
    repo, home, env = setup
    out = ralph(repo, env, "doctor", "--agent", "gemini")
    assert out.returncode == 8
    assert "FAIL  gemini credentials" in out.stdout and "fix: set GEMINI_API_KEY" in out.stdout
    gemini_home(home)
    fixed = ralph(repo, {**env, "GEMINI_API_KEY": "k"}, "doctor", "--agent", "gemini", "--json")
    assert fixed.returncode == 0, fixed.stdout
    report = json.loads(fixed.stdout)
    assert report["ok"] and all(c["ok"] for c in report["checks"])


def test_doctor_flags_an_untested_version_and_a_dirty_tree_without_making_them_fatal(setup):
    repo, home, _ = setup
    fake_cli(home.parent / "bin", "gemini", "0.50.1")
    (repo / "stray.txt").write_text("x")
    checks = by_name(run_checks("gemini", repo, None))
    version = checks["gemini version"]
    assert not version.ok and not version.fatal and "0.50.1 (tested: 0.61.x)" in version.detail
    assert not checks["clean tree"].ok and "--allow-dirty" in checks["clean tree"].fix


def test_doctor_reports_an_unknown_agent_and_a_missing_binary(amp_missing):
    repo, _, _ = amp_missing
    assert not by_name(run_checks("nope", repo, None))["agent nope"].ok
    missing = by_name(run_checks("amp", repo, None))["amp installed"]
    assert not missing.ok and "amp login" in missing.fix


def test_codex_credentials_come_from_its_provider_key_variable(setup):
    _, home, _ = setup
    agent = get_agent("codex", {"args": ["-c", "model_provider=mock",
                                         "-c", "model_providers.mock.env_key=MY_KEY"]})  # fmt: skip
    assert agent.credentials({"MY_KEY": "k"}, home) == (True, "MY_KEY is set")
    assert agent.credentials({}, home) == (False, "MY_KEY is not set")


def test_a_wrapper_command_is_never_credential_checked(setup):
    repo, _, _ = setup
    agent = get_agent("gemini", {"command": [sys.executable, "wrapper.py"]})
    preflight(agent, repo)  # nothing raised: ralph cannot know what the wrapper needs


def test_preflight_raises_auth_error_for_credentials_and_config_error_for_the_binary(
    amp_missing,
):
    repo, _, _ = amp_missing
    with pytest.raises(AgentAuthError, match="gemini credentials") as exc:
        preflight(get_agent("gemini"), repo)
    assert exc.value.exit_code == 10 and "GEMINI_API_KEY" in exc.value.hint
    with pytest.raises(ConfigError):
        preflight(get_agent("amp"), repo)


def test_run_without_credentials_exits_10_before_claiming_or_launching(setup):
    repo, _, env = setup
    added = ralph(repo, env, "add", "Task", "--json")
    task_id = json.loads(added.stdout)["id"]
    out = ralph(repo, env, "run", "--agent", "gemini", "--quiet")
    assert out.returncode == 10, out.stderr
    assert "gemini credentials" in out.stderr and "GEMINI_API_KEY" in out.stderr
    assert not (repo / "launched").exists()
    shown = json.loads(ralph(repo, env, "show", task_id, "--json").stdout)
    assert shown["status"] == "open" and shown["attempts"] == 0


def test_dry_run_works_without_the_agent_binary_and_says_it_is_missing(amp_missing):
    repo, _, env = amp_missing
    ralph(repo, env, "add", "Write the parser")
    out = ralph(repo, env, "run", "--agent", "amp", "--dry-run")
    assert out.returncode == 0, out.stderr
    assert "'amp' is not on PATH" in out.stderr
    assert "$ amp --dangerously-allow-all" in out.stdout and "Write the parser" in out.stdout


def test_doctor_says_when_a_token_only_agent_has_no_price(setup, tmp_path):
    from ralph.config import parse_settings

    repo, _, _ = setup
    no_model = by_name(run_checks("codex", repo, None))["codex cost"]
    assert not no_model.ok and "[agents.codex]" in no_model.fix
    unknown = parse_settings({"agents": {"codex": {"model": "my-model"}}})
    check = by_name(run_checks("codex", repo, None, unknown))["codex cost"]
    assert not check.ok and '[prices."my-model"]' in check.fix
    priced = parse_settings({"agents": {"codex": {"model": "my-model"}},
                             "prices": {"my-model": {"input": 1, "output": 2}}})  # fmt: skip
    assert by_name(run_checks("codex", repo, None, priced))["codex cost"].ok


def test_doctor_accepts_a_named_command_agent_that_run_accepts(setup, tmp_path):
    repo, _, env = setup
    agent = tmp_path / "bin" / "my-agent"
    agent.write_text("#!/bin/sh\nexit 0\n")
    agent.chmod(0o755)
    (repo / "ralph.toml").write_text(f'[agents.mine]\ncommand = ["{agent}"]\n')
    out = ralph(repo, env, "doctor", "--agent", "mine", "--json")
    checks = {c["name"]: c for c in json.loads(out.stdout)["checks"]}
    assert "agent mine" not in checks
    assert checks["mine installed"]["ok"] and checks["mine installed"]["detail"] == str(agent)
    ralph(repo, env, "add", "Task")
    dry = ralph(repo, env, "run", "--agent", "mine", "--dry-run")
    assert dry.returncode == 0 and f"$ {agent}" in dry.stdout, dry.stderr


def test_run_help_names_installed_plugin_agents(setup):
    repo, _, env = setup
    plugin = Path(__file__).parent / "fixtures" / "agents" / "thirdparty" / "plugin"
    env = {**env, "PYTHONPATH": os.pathsep.join([str(plugin), env.get("PYTHONPATH", "")])}
    out = ralph(repo, env, "run", "--help")
    assert out.returncode == 0 and "thirdparty" in out.stdout, out.stderr


def test_doctor_says_when_gemini_s_model_has_no_price(setup):
    from ralph.config import parse_settings

    repo, _, _ = setup
    unpriced = parse_settings({"agents": {"gemini": {"model": "gemini-9-ultra"}}})
    check = by_name(run_checks("gemini", repo, None, unpriced))["gemini cost"]
    assert not check.ok and "gemini-9-ultra" in check.detail
    priced = parse_settings({"agents": {"gemini": {"model": "gemini-3.1-pro-preview"}}})
    assert by_name(run_checks("gemini", repo, None, priced))["gemini cost"].ok


def test_doctor_checks_every_agent_of_a_fallback_list(setup):
    repo, home, _ = setup
    gemini_home(home)
    checks = by_name(run_checks("nope,gemini", repo, None))
    assert not checks["agent nope"].ok  # and the next one is still checked
    assert checks["gemini installed"].ok and "gemini credentials" in checks
