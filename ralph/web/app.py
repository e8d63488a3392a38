"""The dashboard's Starlette app: pages, live streams and the actions (each one store call).

`create_app(store, ...)` builds it; `ralph web` serves it with uvicorn. Pages are rendered by
jinja2 with autoescape; the page's script (static/app.js) swaps in server-rendered fragments when
an event arrives, so nothing the agents wrote is ever interpreted as HTML or script.
"""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import anyio.to_thread
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ralph import __version__, errors
from ralph.metrics import exposition
from ralph.models import iso
from ralph.store.base import SQLStore
from ralph.web import views
from ralph.web.live import EventHub, follow_transcript
from ralph.web.review import routes as review_routes
from ralph.web.security import Guard, GuardMiddleware, csrf_ok, read_form

HERE = Path(__file__).parent
STATUS_FOR_ERROR = {3: 404, 2: 400, 4: 409, 5: 409, 6: 409}


def _templates() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["iso"] = iso
    env.filters["money"] = lambda v: f"${v:,.4f}" if isinstance(v, int | float) else "unknown"
    env.filters["secs"] = _secs
    return env


def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    value = float(value)
    if value < 60:
        return f"{value:.1f}s"
    minutes, seconds = divmod(int(value), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


class Dashboard:
    """The app's state: the store, the guard, where the git repository is, the event hub."""

    def __init__(self, store: SQLStore, guard: Guard, *, repo: Path | None, db_label: str):
        self.store = store
        self.guard = guard
        self.repo = repo
        self.db_label = db_label
        self.hub = EventHub(store)
        self.env = _templates()

    # -- rendering -------------------------------------------------------------------------
    def page(self, name: str, request: Request, status: int = 200, **ctx: Any) -> HTMLResponse:
        csrf = request.scope.get("state", {}).get("csrf")  # the session's; never the token
        html = self.env.get_template(name).render(
            csrf=csrf or "",
            read_only=self.guard.read_only or csrf is None,
            logged_out=csrf is None and not self.guard.read_only,
            db=self.db_label,
            version=__version__,
            path=request.url.path,
            **ctx,
        )
        return HTMLResponse(html, status_code=status)

    async def read(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))

    # -- pages -----------------------------------------------------------------------------
    async def overview(self, request: Request) -> Response:
        data = await self.read(views.overview, self.store)
        name = "parts/overview.html" if request.url.path == "/part/overview" else "overview.html"
        return self.page(name, request, o=data)

    async def metrics(self, request: Request) -> Response:
        """Prometheus metrics of the whole store (ralph.metrics)."""

        body, kind = await self.read(exposition, self.store)
        return Response(body, media_type=kind)

    async def series(self, request: Request) -> Response:
        return JSONResponse(await self.read(views.series, self.store))

    async def tasks(self, request: Request) -> Response:
        query = dict(request.query_params)
        data = await self.read(views.task_list, self.store, query)
        name = "parts/tasks.html" if request.url.path == "/part/tasks" else "tasks.html"
        return self.page(name, request, t=data, qs=_qs(query))

    async def task(self, request: Request) -> Response:
        task_id = request.path_params["task_id"]
        try:
            attempt = int(request.query_params["attempt"])
        except (KeyError, ValueError):
            attempt = None
        data = await self.read(
            views.task_detail, self.store, task_id, repo=self.repo, attempt=attempt
        )
        path = request.url.path
        name = "task.html"
        if path.endswith("/transcript"):
            name = "parts/transcript.html"
        elif path.startswith("/part/"):
            name = "parts/task.html"
        return self.page(name, request, d=data)

    async def graph(self, request: Request) -> Response:
        data = await self.read(views.graph, self.store, request.path_params["task_id"])
        return JSONResponse(data)

    # -- live ------------------------------------------------------------------------------
    async def events(self, request: Request) -> Response:
        after = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
        try:
            start = int(after)
        except ValueError:
            start = 0
        return StreamingResponse(
            self.hub.stream(start),
            media_type="text/event-stream",
            headers={"X-Accel-Buffering": "no"},
        )

    async def transcript(self, request: Request) -> Response:
        task_id = request.path_params["task_id"]
        n = int(request.path_params["n"])
        attempts = await self.read(self.store.attempts, task_id)
        if not 1 <= n <= len(attempts) or not attempts[n - 1].run_dir:
            return PlainTextResponse("no such attempt", status_code=404)
        try:
            offset = max(0, int(request.query_params.get("offset", "0")))
        except ValueError:
            offset = 0
        return StreamingResponse(
            follow_transcript(Path(attempts[n - 1].run_dir), offset),
            media_type="text/event-stream",
            headers={"X-Accel-Buffering": "no"},
        )

    # -- actions (each is the library call the CLI makes) ----------------------------------
    async def action(self, request: Request) -> Response:
        form = await read_form(request)
        if not csrf_ok(request.scope.get("state", {}), form.get("csrf")):
            return PlainTextResponse("403: missing or wrong CSRF token\n", status_code=403)
        name = request.path_params.get("action") or request.url.path.rsplit("/", 1)[-1]
        task_id = request.path_params.get("task_id")
        store = self.store
        calls = {
            "add": lambda: store.add(
                form.get("title", "").strip() or _missing("title"),
                description=form.get("description", ""),
                priority=_int(form.get("priority")),
                labels=_split(form.get("labels")),
                requires=_split(form.get("requires")),
                blocked_by=_split(form.get("blocked_by")),
                parent=form.get("parent") or None,
            ),
            "retry": lambda: store.retry(task_id),
            "block": lambda: store.block(task_id, form.get("blocker", "").strip()),
            "unblock": lambda: store.unblock(task_id, form.get("blocker", "").strip()),
            "stop": lambda: store.stop_worker(request.path_params["worker"]),
            "pause": lambda: store.pause(
                form.get("reason", "").strip() or "paused from the dashboard", by="web"
            ),
            "resume": lambda: store.resume(by="web"),
        }
        if name not in calls:
            return PlainTextResponse("404: no such action\n", status_code=404)
        try:
            result = await self.read(calls[name])
        except errors.RalphError as exc:
            status = STATUS_FOR_ERROR.get(exc.exit_code, 400)
            if "application/json" in request.headers.get("accept", ""):
                return JSONResponse({"error": exc.line()}, status_code=status)
            return self.page(
                "error.html", request, status=status, message=exc.line(), back=_next(form, request)
            )
        target = _next(form, request)
        if name == "add" and result is not None:
            target = f"/tasks/{result.id}"
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse({"ok": True, "next": target})
        return RedirectResponse(target, status_code=303)

    async def not_found(self, request: Request, exc: Exception) -> Response:
        return self.page("error.html", request, status=404, message="not found", back="/")

    async def ralph_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, errors.RalphError)
        status = STATUS_FOR_ERROR.get(exc.exit_code, 500)
        return self.page("error.html", request, status=status, message=exc.line(), back="/")


def _missing(what: str) -> str:
    raise errors.UsageError(f"missing {what}")


def _int(value: str | None) -> int:
    try:
        return int(value or 0)
    except ValueError as exc:
        raise errors.UsageError(f"not a whole number: {value!r}") from exc


def _split(value: str | None) -> list[str]:
    return [v.strip() for v in (value or "").replace("\n", ",").split(",") if v.strip()]


def _qs(query: dict[str, str]) -> str:
    return urlencode({k: v for k, v in query.items() if v and k != "page"})


def _next(form: dict[str, str], request: Request) -> str:
    """Where to go after an action: a local path only (never another site)."""
    target = form.get("next") or "/"
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


def create_app(
    store: SQLStore, guard: Guard, *, repo: Path | None = None, db_label: str = ""
) -> Starlette:
    """The ASGI app serving the dashboard of `store`."""
    dash = Dashboard(store, guard, repo=repo, db_label=db_label)

    @asynccontextmanager
    async def lifespan(app: Starlette):  # type: ignore[no-untyped-def]
        await dash.hub.start()
        try:
            yield
        finally:
            await dash.hub.stop()

    routes = [
        Route("/", dash.overview),
        Route("/part/overview", dash.overview),
        Route("/api/series", dash.series),
        Route("/metrics", dash.metrics),
        Route("/tasks", dash.tasks),
        Route("/part/tasks", dash.tasks),
        Route("/tasks/{task_id}", dash.task),
        Route("/part/tasks/{task_id}", dash.task),
        Route("/part/tasks/{task_id}/transcript", dash.task),
        Route("/api/tasks/{task_id}/graph", dash.graph),
        Route("/tasks/{task_id}/attempts/{n:int}/stream", dash.transcript),
        Route("/events", dash.events),
        Route("/actions/{action}", dash.action, methods=["POST"]),
        Route("/tasks/{task_id}/{action}", dash.action, methods=["POST"]),
        Route("/workers/{worker}/{action}", dash.action, methods=["POST"]),
        *review_routes(dash),  # the Review tab (ralph/web/review.py)
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: dash.not_found, errors.RalphError: dash.ralph_error},
    )
    app.state.dashboard = dash
    app.state.started = time.time()
    return GuardMiddleware(app, guard)  # type: ignore[return-value]
