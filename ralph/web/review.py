"""The dashboard's Review tab: the tasks waiting for review, each one's diff (file by file,
highlighted on the server), its transcript and verify output, and Approve / Reject-with-note.

The decisions are the library calls `ralph approve` / `ralph reject` make (ralph/review/desk.py),
behind the same login and CSRF check as every other change. Diffs are highlighted with pygments
(installed with rich) when it is there, or shown as escaped text; nothing comes from a CDN.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from markupsafe import Markup, escape
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from ralph import errors
from ralph.web import views
from ralph.web.security import csrf_ok, read_form

MAX_DIFF_LINES = 3000  # per file; the rest is `git show`'s to tell
STYLE_SCOPE = ".hl"
_FORMATTER: Any = None  # one pygments HtmlFormatter, made on first use


def _lexer(path: str) -> Any:
    """pygments' lexer for a file name, or None (no pygments, or nothing known)."""
    try:
        from pygments.lexers import get_lexer_for_filename
        from pygments.util import ClassNotFound
    except ImportError:
        return None
    try:
        return get_lexer_for_filename(path, stripnl=False, stripall=False)
    except ClassNotFound:
        return None


def _code(text: str, lexer: Any) -> Markup:
    """One line of code as escaped HTML, its tokens in pygments' classes when it knows them."""
    if lexer is None or not text:
        return escape(text)
    from pygments import highlight
    from pygments.formatters import HtmlFormatter

    global _FORMATTER
    _FORMATTER = _FORMATTER or HtmlFormatter(nowrap=True)
    return Markup(highlight(text, lexer, _FORMATTER).rstrip("\n"))


def diff_rows(path: str, patch: str) -> tuple[list[dict[str, Any]], int]:
    """A file's unified diff as rows {kind, old, new, html}: kind is meta, hunk, add, del or
    ctx; line numbers count from each hunk header. Returns the rows and how many were cut."""
    lexer = _lexer(path)
    rows: list[dict[str, Any]] = []
    old = new = 0
    lines = patch.splitlines()
    cut = max(0, len(lines) - MAX_DIFF_LINES)
    in_hunk = False
    for line in lines[:MAX_DIFF_LINES]:
        if line.startswith("@@"):
            in_hunk = True
            with contextlib.suppress(ValueError, IndexError):
                spans = line.split("@@")[1].split()
                old = int(spans[0][1:].split(",")[0])
                new = int(spans[1][1:].split(",")[0])
            rows.append({"kind": "hunk", "old": "", "new": "", "html": escape(line)})
        elif not in_hunk or line.startswith("\\"):
            rows.append({"kind": "meta", "old": "", "new": "", "html": escape(line)})
        elif line.startswith("+"):
            rows.append({"kind": "add", "old": "", "new": new, "html": _code(line[1:], lexer)})
            new += 1
        elif line.startswith("-"):
            rows.append({"kind": "del", "old": old, "new": "", "html": _code(line[1:], lexer)})
            old += 1
        else:
            rows.append({"kind": "ctx", "old": old, "new": new, "html": _code(line[1:], lexer)})
            old, new = old + 1, new + 1
    return rows, cut


def highlight_css() -> str:
    """pygments' token colours under `.hl` ('' without pygments)."""
    try:
        from pygments.formatters import HtmlFormatter
    except ImportError:
        return ""
    return str(HtmlFormatter(style="default").get_style_defs(STYLE_SCOPE))


def desk_for(store: Any, repo: Path | None) -> Any:
    """The ReviewDesk `ralph approve` would use in `repo` (its config's verify and lock)."""
    if repo is None:
        raise errors.UsageError(
            "this dashboard reads no git repository", hint="start it with `ralph web --repo PATH`"
        )
    from ralph.config import load_settings
    from ralph.review.desk import ReviewDesk

    settings = load_settings(repo)
    return ReviewDesk(
        store,
        repo,
        verify=settings.verify,
        lock_timeout=settings.merge_lock_timeout,
        verify_timeout=settings.task_timeout,
    )


def queue_view(store: Any, repo: Path | None) -> dict[str, Any]:
    """The Review tab's list."""
    items = desk_for(store, repo).queue() if repo is not None else store.review_queue()
    return {"items": items, "repo": repo is not None}


def detail_view(store: Any, repo: Path | None, task_id: str) -> dict[str, Any]:
    """One waiting task: its review, diff file by file, transcript and verify output."""
    task = store.get(task_id)
    review = store.pending_review(task_id)
    files = []
    if repo is not None:
        for item in desk_for(store, repo).files(task_id):
            rows, cut = diff_rows(item["path"], item["patch"])
            files.append({**item, "rows": rows, "cut": cut})
    attempts = store.attempts(task_id)
    chosen = None
    if attempts:
        n = next((i for i, a in enumerate(attempts, 1) if a.id == review["attempt_id"]), None)
        n = n or len(attempts)
        chosen = views.attempt_view(attempts[n - 1], n, len(attempts), task_id)
    return {
        "task": task.to_dict(),
        "review": review,
        "files": files,
        "chosen": chosen,
        "history": [r for r in store.reviews_of(task_id) if r["state"] != "pending"],
    }


class ReviewPages:
    """The Review tab's handlers, on the dashboard's store and repository."""

    def __init__(self, dash: Any):
        self.dash = dash

    async def queue(self, request: Request) -> Response:
        data = await self.dash.read(queue_view, self.dash.store, self.dash.repo)
        return self.dash.page("review.html", request, r=data)

    async def detail(self, request: Request) -> Response:
        task_id = request.path_params["task_id"]
        data = await self.dash.read(detail_view, self.dash.store, self.dash.repo, task_id)
        return self.dash.page("review_task.html", request, d=data)

    async def css(self, request: Request) -> Response:
        return PlainTextResponse(highlight_css(), media_type="text/css")

    async def decide(self, request: Request) -> Response:
        """POST /review/{task_id}/approve or /reject (with a `note`)."""

        form = await read_form(request)
        if not csrf_ok(request.scope.get("state", {}), form.get("csrf")):
            return PlainTextResponse("403: missing or wrong CSRF token\n", status_code=403)
        task_id, action = request.path_params["task_id"], request.path_params["action"]
        by = (form.get("by") or "").strip() or "web"
        desk = desk_for(self.dash.store, self.dash.repo)
        if action == "approve":
            decision = await self.dash.read(desk.approve, task_id, by=by)
        elif action == "reject":
            decision = await self.dash.read(desk.reject, task_id, form.get("note", ""), by=by)
        else:
            return PlainTextResponse("404: no such action\n", status_code=404)
        target = f"/tasks/{task_id}" if decision.status in ("landed", "already") else "/review"
        return RedirectResponse(target, status_code=303)


def routes(dash: Any) -> list[Route]:
    """The Review tab's routes, for create_app."""
    pages = ReviewPages(dash)
    return [
        Route("/review", pages.queue),
        Route("/review/highlight.css", pages.css),
        Route("/review/{task_id}", pages.detail),
        Route("/review/{task_id}/{action}", pages.decide, methods=["POST"]),
    ]
