"""A scripted GitHub on loopback for the real `gh` CLI: HTTPS with a self-signed certificate,
the GraphQL operations `gh` 2.x sends for issues and pull requests, and a state the tests read
and change (a person merging or closing a pull request, commenting, filing an issue).

Point `gh` at it with ``srv.env()``: ``GH_HOST=localhost:<port>`` (gh then talks to
``https://localhost:<port>/api/graphql`` like a GitHub Enterprise host),
``GH_ENTERPRISE_TOKEN`` and ``SSL_CERT_FILE`` naming the certificate, which Go's TLS trusts.
An operation this server does not know is answered with a GraphQL error naming it and recorded
in ``unknown``, so a test fails loudly instead of passing on an empty answer.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

OPERATION = re.compile(r"\b(?:query|mutation)\s+(\w+)")
TYPE_QUERY = re.compile(r'__type\(name:\s*\\?"(\w+)')
FIELDS = {  # what `gh --json` may ask for, by type (its field check before a query)
    "Issue": "id number title body url state stateReason labels comments author createdAt",
    "PullRequest": "id number title body url state headRefName baseRefName mergeCommit reviews "
    "comments author createdAt isDraft",
}


class NotFoundError(Exception):
    """A number this GitHub does not know: answered as a GraphQL NOT_FOUND error."""


@dataclass
class Issue:
    number: int
    title: str
    body: str = ""
    labels: list[str] = field(default_factory=list)
    state: str = "OPEN"  # OPEN | CLOSED
    comments: list[str] = field(default_factory=list)


@dataclass
class PullRequest:
    number: int
    title: str
    body: str
    head: str
    base: str
    state: str = "OPEN"  # OPEN | CLOSED | MERGED
    merge_commit: str | None = None
    reviews: list[tuple[str, str]] = field(default_factory=list)  # (state, body)
    comments: list[str] = field(default_factory=list)


class FakeGitHub:
    """One repository, `owner/name`, with its issues and pull requests."""

    def __init__(self, tmp: Path, owner: str = "acme", name: str = "app", branch: str = "main"):
        self.owner, self.name, self.branch = owner, name, branch
        self.issues: dict[int, Issue] = {}
        self.pulls: dict[int, PullRequest] = {}
        self.requests: list[str] = []  # operation names, in order
        self.unknown: list[str] = []
        self.lock = threading.Lock()
        self._next = 1
        self.cert = tmp / "github-cert.pem"
        key = tmp / "github-key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-keyout", str(key), "-out", str(self.cert), "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            check=True, capture_output=True,
        )  # fmt: skip
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.cert), str(key))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.host = f"localhost:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def env(self, home: Path) -> dict[str, str]:
        """What `gh` needs to talk to this server (and nothing of the user's own gh config)."""
        return {
            "GH_HOST": self.host,
            "GH_ENTERPRISE_TOKEN": "test-token",
            "SSL_CERT_FILE": str(self.cert),
            "GH_CONFIG_DIR": str(home / "gh-config"),
            "GH_PROMPT_DISABLED": "1",
            "GH_NO_UPDATE_NOTIFIER": "1",
            "NO_COLOR": "1",
        }

    # -- what a person on GitHub does ---------------------------------------------------------
    def file_issue(self, title: str, body: str = "", labels: list[str] | None = None) -> int:
        with self.lock:
            number = self._number()
            self.issues[number] = Issue(number, title, body, list(labels or []))
        return number

    def merge(self, number: int, sha: str) -> None:
        with self.lock:
            pr = self.pulls[number]
            pr.state, pr.merge_commit = "MERGED", sha

    def close_pr(self, number: int, review: str | None = None, comment: str | None = None) -> None:
        with self.lock:
            pr = self.pulls[number]
            pr.state = "CLOSED"
            if review:
                pr.reviews.append(("CHANGES_REQUESTED", review))
            if comment:
                pr.comments.append(comment)

    def pull_for(self, head: str) -> list[PullRequest]:
        return [pr for pr in self.pulls.values() if pr.head == head]

    def _number(self) -> int:
        number, self._next = self._next, self._next + 1
        return number

    # -- GraphQL ------------------------------------------------------------------------------
    def answer(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        typed = TYPE_QUERY.search(query)
        if typed:  # gh checks the fields of a type before a --json query
            types = TYPE_QUERY.findall(query)
            return {"data": {t: {"fields": [{"name": n} for n in FIELDS.get(t, "").split()]}
                             for t in types}}  # fmt: skip
        found = OPERATION.search(query)
        op = found.group(1) if found else "?"
        self.requests.append(op)
        handler = getattr(self, f"_op_{op}", None)
        if handler is None:
            self.unknown.append(op)
            return {"errors": [{"message": f"fake GitHub does not know {op}"}]}
        with self.lock:
            try:
                return {"data": handler(query, variables)}
            except NotFoundError as exc:  # as GitHub answers a number it does not know
                return {"data": None, "errors": [{"type": "NOT_FOUND", "message": str(exc)}]}

    def _repo(self) -> dict[str, Any]:
        return {
            "id": "R_1",
            "name": self.name,
            "owner": {"login": self.owner},
            "hasIssuesEnabled": True,
            "description": "",
            "hasWikiEnabled": False,
            "viewerPermission": "ADMIN",
            "defaultBranchRef": {"name": self.branch},
            "parent": None,
            "mergeCommitAllowed": True,
            "rebaseMergeAllowed": True,
            "squashMergeAllowed": True,
        }

    def _issue(self, issue: Issue) -> dict[str, Any]:
        labels = [{"id": f"L_{n}", "name": n, "description": "", "color": "ededed"}
                  for n in issue.labels]  # fmt: skip
        return {
            "__typename": "Issue",
            "id": f"I_{issue.number}",
            "number": issue.number,
            "title": issue.title,
            "body": issue.body,
            "url": f"https://{self.host}/{self.owner}/{self.name}/issues/{issue.number}",
            "state": issue.state,
            "stateReason": None,
            "labels": {"nodes": labels, "totalCount": len(labels)},
            "comments": _comments(issue.comments),
            "author": {"login": "octocat"},
            "createdAt": "2026-12-01T00:00:00Z",
        }

    def _pull(self, pr: PullRequest) -> dict[str, Any]:
        reviews = [
            {"id": f"RV_{pr.number}_{i}", "author": {"login": "reviewer"}, "body": body,
             "authorAssociation": "MEMBER", "submittedAt": "2026-12-01T00:00:00Z",
             "state": state, "commit": None, "reactionGroups": []}
            for i, (state, body) in enumerate(pr.reviews)
        ]  # fmt: skip
        return {
            "__typename": "PullRequest",
            "id": f"PR_{pr.number}",
            "number": pr.number,
            "title": pr.title,
            "body": pr.body,
            "url": f"https://{self.host}/{self.owner}/{self.name}/pull/{pr.number}",
            "state": pr.state,
            "headRefName": pr.head,
            "baseRefName": pr.base,
            "isDraft": False,
            "mergeCommit": {"oid": pr.merge_commit} if pr.merge_commit else None,
            "reviews": {"nodes": reviews, "pageInfo": _no_more(), "totalCount": len(reviews)},
            "comments": _comments(pr.comments),
            "author": {"login": "ralph"},
            "createdAt": "2026-12-01T00:00:00Z",
        }

    def _op_RepositoryInfo(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        return {"repository": self._repo()}

    def _op_IssueList(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        states = variables.get("states") or ["OPEN"]
        wanted = [i for i in sorted(self.issues.values(), key=lambda i: -i.number)
                  if i.state in states]  # fmt: skip
        nodes = [self._issue(i) for i in wanted[: int(variables.get("limit") or 30)]]
        return {
            "repository": {
                "hasIssuesEnabled": True,
                "issues": {"totalCount": len(nodes), "nodes": nodes, "pageInfo": _no_more()},
            }
        }

    def _op_IssueSearch(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        """`gh issue list --label X`: a search query like `label:X repo:o/n state:open`."""
        terms = variables.get("query", "").split()
        labels = [t.split(":", 1)[1].strip('"') for t in terms if t.startswith("label:")]
        states = {"state:open": ["OPEN"], "state:closed": ["CLOSED"]}
        wanted_states = next((states[t] for t in terms if t in states), ["OPEN", "CLOSED"])
        wanted = [i for i in sorted(self.issues.values(), key=lambda i: -i.number)
                  if i.state in wanted_states and set(labels) <= set(i.labels)]  # fmt: skip
        nodes = [self._issue(i) for i in wanted[: int(variables.get("limit") or 30)]]
        return {
            "repository": {"hasIssuesEnabled": True},
            "search": {"issueCount": len(nodes), "nodes": nodes, "pageInfo": _no_more()},
        }

    def _op_IssueByNumber(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        number = int(variables["number"])
        item: Any = self.issues.get(number) or self.pulls.get(number)
        found = None
        if isinstance(item, Issue):
            found = self._issue(item)
        elif isinstance(item, PullRequest):
            found = self._pull(item)
        return {"repository": {"hasIssuesEnabled": True, "issue": found}}

    def _op_CommentsForIssue(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        kind, number = variables["id"].split("_", 1)
        target = self.issues[int(number)] if kind == "I" else self.pulls[int(number)]
        comments = _comments(target.comments)  # this query asks for the author's login only
        for node in comments["nodes"]:
            node["author"] = {"login": node["author"]["login"]}
        return {"node": {"comments": comments}}

    def _op_CommentCreate(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        subject, body = variables["input"]["subjectId"], variables["input"]["body"]
        kind, number = subject.split("_", 1)
        target = self.issues[int(number)] if kind == "I" else self.pulls[int(number)]
        target.comments.append(body)
        return {"addComment": {"commentEdge": {"node": {"url": "https://x/comment"}}}}

    def _op_IssueClose(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        number = int(variables["input"]["issueId"].split("_", 1)[1])
        self.issues[number].state = "CLOSED"
        return {"closeIssue": {"issue": {"id": f"I_{number}"}}}

    def _op_PullRequestList(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        states = variables.get("state") or ["OPEN"]
        head, base = variables.get("headBranch"), variables.get("baseBranch")
        wanted = [
            p for p in sorted(self.pulls.values(), key=lambda p: -p.number)
            if p.state in states and head in (None, p.head) and base in (None, p.base)
        ]  # fmt: skip
        nodes = [self._pull(p) for p in wanted]
        return {
            "repository": {
                "pullRequests": {"totalCount": len(nodes), "nodes": nodes, "pageInfo": _no_more()}
            }
        }

    def _op_PullRequestForBranch(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        head, states = variables.get("headRefName"), variables.get("states")  # create: [OPEN]
        nodes = [self._pull(p) for p in self.pulls.values()
                 if p.head == head and (not states or p.state in states)]  # fmt: skip
        return {"repository": {"pullRequests": {"nodes": nodes}}}

    def _op_PullRequestByNumber(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        number = int(variables["pr_number"])
        if number not in self.pulls:
            raise NotFoundError(f"Could not resolve to a PullRequest with the number of {number}.")
        return {"repository": {"pullRequest": self._pull(self.pulls[number])}}

    def _op_PullRequestCreate(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        given = variables["input"]
        pr = PullRequest(
            self._number(),
            given["title"],
            given.get("body") or "",
            given["headRefName"].split(":")[-1],
            given["baseRefName"],
        )
        self.pulls[pr.number] = pr
        return {"createPullRequest": {"pullRequest": self._pull(pr)}}


def _comments(bodies: list[str]) -> dict[str, Any]:
    nodes = [{"id": f"C_{i}", "author": {"login": "reviewer", "id": "U_1", "name": "Reviewer"},
              "authorAssociation": "MEMBER", "body": body, "createdAt": "2026-12-01T00:00:00Z",
              "includesCreatedEdit": False, "isMinimized": False, "minimizedReason": "",
              "reactionGroups": [], "url": "https://x/c", "viewerDidAuthor": False}
             for i, body in enumerate(bodies)]  # fmt: skip
    return {"nodes": nodes, "pageInfo": _no_more(), "totalCount": len(nodes)}


def _no_more() -> dict[str, Any]:
    return {"hasNextPage": False, "endCursor": ""}


def _handler(github: FakeGitHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b"{}"
            if self.path.rstrip("/").endswith("/graphql"):
                body = json.loads(raw or b"{}")
                answer = github.answer(body.get("query", ""), body.get("variables") or {})
            else:
                github.unknown.append(f"{self.command} {self.path}")
                answer = {"message": f"fake GitHub has no REST {self.path}"}
            self._send(200 if self.path.endswith("graphql") else 404, answer)

        do_GET = do_PATCH = do_POST

        def _send(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.send_header("x-github-request-id", str(time.monotonic_ns()))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


# .ci/run installs gh: in CI a missing gh fails instead of skipping
needs_gh = pytest.mark.skipif(
    shutil.which("gh") is None and os.environ.get("CI") != "true", reason="needs the gh CLI"
)
