"""`ralph web` as a real server: who may read, who may change, and what every page promises."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

import pytest
from webutil import RALPH, clean_env, free_port, login, login_path, request, serve

from ralph.store import open_store


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "project"
    root.mkdir()
    env = clean_env(tmp_path / "home", RALPH_DB=str(root / "ralph.db"))
    with open_store(root / "ralph.db") as store:
        store.add("First task", id="T1")
    return root, env


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
        assert status == 401
        status, _, _ = request(base, "POST", "/tasks/T1/block", body="blocker=T1&csrf=wrong")
        assert status == 401
        with open_store(root / "ralph.db") as store:
            assert store.paused() is None


def test_a_page_fetched_without_login_carries_no_credential_and_no_form(project):
    root, env = project
    with serve(root, env) as (proc, base):
        token = login_path(proc).split("token=", 1)[1]
        for path in ("/", "/tasks", "/tasks/T1", "/part/tasks/T1", "/nope"):
            status, headers, page = request(base, "GET", path)
            assert status in (200, 404), path
            assert token not in page and token not in str(headers), path
            assert 'name="ralph-csrf" content=""' in page or path.startswith("/part/"), path
            assert '<form method="post"' not in page, path
        # What a local process could do before: post the page's token back. Refused, no change.
        body = urlencode({"csrf": token, "reason": "from curl"})
        assert request(base, "POST", "/actions/pause", body=body)[0] == 401
        with open_store(root / "ralph.db") as store:
            assert store.paused() is None


def test_a_post_with_the_session_cookie_needs_the_session_csrf_token(project):
    root, env = project
    with serve(root, env) as (proc, base):
        cookie, csrf = login(proc, base)
        token = login_path(proc).split("token=", 1)[1]
        assert csrf != token
        for body in ({"reason": "no csrf"}, {"csrf": "wrong", "reason": "x"}):
            status, _, _ = request(
                base, "POST", "/actions/pause", body=urlencode(body), headers=cookie
            )
            assert status == 403
        # Another session's CSRF token does not fit this session either.
        other_cookie, other_csrf = login(proc, base)
        assert other_csrf != csrf
        body = urlencode({"csrf": other_csrf, "reason": "x"})
        assert request(base, "POST", "/actions/pause", body=body, headers=cookie)[0] == 403
        with open_store(root / "ralph.db") as store:
            assert store.paused() is None
        body = urlencode({"csrf": csrf, "reason": "both"})
        status, headers, _ = request(base, "POST", "/actions/pause", body=body, headers=cookie)
        assert status == 303 and headers["location"] == "/"
        # fetch() sends the CSRF token in a header instead of the form.
        status, _, _ = request(
            base, "POST", "/actions/resume", headers={**cookie, "X-Ralph-Token": csrf}, body=""
        )
        assert status == 303
        with open_store(root / "ralph.db") as store:
            assert [e.kind for e in store.events()][-2:] == ["paused", "resumed"]


def test_a_script_may_change_things_with_the_token_as_a_bearer_header(project):
    root, env = project
    with serve(root, env) as (proc, base):
        token = login_path(proc).split("token=", 1)[1]
        wrong = {"Authorization": "Bearer not-the-token"}
        assert request(base, "POST", "/actions/pause", body="reason=x", headers=wrong)[0] == 401
        right = {"Authorization": f"Bearer {token}"}
        assert request(base, "POST", "/actions/pause", body="reason=x", headers=right)[0] == 303
        with open_store(root / "ralph.db") as store:
            assert store.paused()["reason"] == "x"


def test_a_post_with_the_session_from_another_origin_is_refused(project):
    root, env = project
    with serve(root, env) as (proc, base):
        cookie, csrf = login(proc, base)
        body = urlencode({"csrf": csrf, "reason": "x"})
        evil = {**cookie, "Origin": "http://evil.example"}
        assert request(base, "POST", "/actions/pause", body=body, headers=evil)[0] == 403
        status, headers, _ = request(base, "POST", "/actions/pause", body=body, headers=cookie)
        assert status == 303 and headers["location"] == "/"
        with open_store(root / "ralph.db") as store:
            assert store.paused()["reason"] == "x"


def test_read_only_serves_pages_without_forms_and_refuses_every_action(project):
    root, env = project
    with serve(root, env, "--read-only", "--token", "ro-token") as (_, base):
        status, _, page = request(base, "GET", "/tasks/T1")
        assert status == 200 and '<form method="post"' not in page and "read-only" in page
        bearer = {"Authorization": "Bearer ro-token"}
        assert request(base, "POST", "/actions/resume", body="", headers=bearer)[0] == 403


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
        assert "Secure" not in headers["set-cookie"]  # plain http: a Secure cookie never returns
        assert "s3cret-token" not in cookie  # the cookie names a session, not the token
        status, _, page = request(base, "GET", "/tasks", headers={"Cookie": cookie})
        assert status == 200 and "First task" in page and "s3cret-token" not in page


def test_behind_a_tls_proxy_the_session_cookie_is_secure(project):
    root, env = project
    with serve(root, env, "--token", "s3cret-token", host="0.0.0.0") as (_, base):
        # uvicorn takes the scheme from X-Forwarded-Proto of a proxy on 127.0.0.1.
        tls = {"X-Forwarded-Proto": "https"}
        status, headers, _ = request(base, "GET", "/login?token=s3cret-token", headers=tls)
        assert status == 303 and "; Secure" in headers["set-cookie"]


def test_a_generated_token_is_printed_once_as_a_login_url(project):
    root, env = project
    with serve(root, env, "--token", "generate", host="0.0.0.0") as (proc, base):
        proc.send_signal(2)
        proc.wait(timeout=15)
        err = proc.stderr.read()  # through serve's reader: what it read ahead is in its buffer
    match = re.search(r"login\?token=(\S+)", err)
    assert match and len(match.group(1)) >= 20 and err.count("login?token=") == 1


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
    with serve(root, env) as (proc, base):
        cookie, csrf = login(proc, base)
        body = urlencode({"csrf": csrf})
        status, _, page = request(base, "POST", "/tasks/T1/retry", body=body, headers=cookie)
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
