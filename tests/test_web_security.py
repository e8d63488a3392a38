"""`ralph web` as a real server: who may read, who may change, and what every page promises."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

import pytest
from webutil import RALPH, clean_env, free_port, request, serve

from ralph.store import open_store


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "project"
    root.mkdir()
    env = clean_env(tmp_path / "home", RALPH_DB=str(root / "ralph.db"))
    with open_store(root / "ralph.db") as store:
        store.add("First task", id="T1")
    return root, env


def csrf_of(page: str) -> str:
    match = re.search(r'name="ralph-csrf" content="([^"]+)"', page)
    assert match, "the page carries no CSRF token"
    return match.group(1)


def test_binding_a_non_loopback_address_without_a_token_refuses_to_start(project):
    root, env = project
    port = free_port()
    done = subprocess.run(
        [*RALPH, "web", "--host", "0.0.0.0", "--port", str(port)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 8
    assert "needs a token" in done.stderr and "--token" in done.stderr


def test_a_post_without_the_token_is_refused_and_changes_nothing(project):
    root, env = project
    with serve(root, env) as (_, base):
        status, _, _ = request(base, "POST", "/actions/pause", body="reason=x")
        assert status == 403
        status, _, _ = request(base, "POST", "/tasks/T1/block", body="blocker=T1&csrf=wrong")
        assert status == 403
        with open_store(root / "ralph.db") as store:
            assert store.paused() is None


def test_a_post_with_the_token_from_another_origin_is_refused(project):
    root, env = project
    with serve(root, env) as (_, base):
        token = csrf_of(request(base, "GET", "/")[2])
        body = urlencode({"csrf": token, "reason": "x"})
        evil = {"Origin": "http://evil.example"}
        assert request(base, "POST", "/actions/pause", body=body, headers=evil)[0] == 403
        status, headers, _ = request(base, "POST", "/actions/pause", body=body)
        assert status == 303 and headers["location"] == "/"
        with open_store(root / "ralph.db") as store:
            assert store.paused()["reason"] == "x"


def test_read_only_serves_pages_without_forms_and_refuses_every_action(project):
    root, env = project
    with serve(root, env, "--read-only") as (_, base):
        status, _, page = request(base, "GET", "/tasks/T1")
        assert status == 200 and '<form method="post"' not in page and "read-only" in page
        token = csrf_of(page)
        body = urlencode({"csrf": token})
        assert request(base, "POST", "/actions/resume", body=body)[0] == 403


def test_pages_carry_a_strict_content_security_policy_and_refuse_other_host_names(project):
    root, env = project
    with serve(root, env) as (_, base):
        status, headers, _ = request(base, "GET", "/tasks")
        csp = headers["content-security-policy"]
        assert status == 200 and "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert headers["x-frame-options"] == "DENY"
        # A page on another name (DNS rebinding) must not read a loopback dashboard.
        assert request(base, "GET", "/", headers={"Host": "evil.example"})[0] == 421


def test_off_loopback_every_read_needs_the_token_given_once_by_login(project):
    root, env = project
    with serve(root, env, "--token", "s3cret-token", host="0.0.0.0") as (_, base):
        assert request(base, "GET", "/")[0] == 401
        assert request(base, "GET", "/login?token=wrong")[0] == 403
        status, headers, _ = request(base, "GET", "/login?token=s3cret-token")
        assert status == 303
        cookie = headers["set-cookie"].split(";")[0]
        assert "HttpOnly" in headers["set-cookie"] and "SameSite=Strict" in headers["set-cookie"]
        status, _, page = request(base, "GET", "/tasks", headers={"Cookie": cookie})
        assert status == 200 and "First task" in page


def test_a_generated_token_is_printed_once_as_a_login_url(project):
    root, env = project
    with serve(root, env, "--token", "generate", host="0.0.0.0") as (proc, base):
        proc.send_signal(2)
        _, err = proc.communicate(timeout=15)
    match = re.search(r"login\?token=(\S+)", err)
    assert match and len(match.group(1)) >= 20


def test_ralph_web_without_the_web_extra_says_how_to_install_it(project):
    root, env = project
    code = "import sys; sys.modules['uvicorn'] = None; from ralph.cli import main; main(['web'])"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True
    )
    assert done.returncode == 8
    assert done.stderr.strip().splitlines() == [
        "error: `ralph web` needs the web extra (uvicorn is not installed) "
        "(pip install 'ralph[web]')"
    ]


def test_actions_report_store_errors_as_a_page_not_a_crash(project):
    root, env = project
    with serve(root, env) as (_, base):
        token = csrf_of(request(base, "GET", "/")[2])
        status, _, page = request(base, "POST", "/tasks/T1/retry", body=urlencode({"csrf": token}))
        assert status == 409 and "T1 is open, not failed" in page
        assert request(base, "GET", "/tasks/nope")[0] == 404


def test_a_port_in_use_is_one_line_and_exit_code_2(project):
    root, env = project
    with serve(root, env) as (_, base):
        port = base.rsplit(":", 1)[1]
        done = subprocess.run(
            [*RALPH, "web", "--port", port], cwd=root, env=env, capture_output=True, text=True
        )
    assert done.returncode == 2
    assert done.stderr.startswith(f"error: cannot serve on 127.0.0.1:{port}: ")
    assert len(done.stderr.strip().splitlines()) == 1
