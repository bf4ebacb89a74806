"""The web console: server-rendered pages for rights holders, ISPs and operators, served by the daemon's own
aiohttp application under /console/ (templates and CSS from this package; no public host, no build step)."""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from tracker_watch.api.keys import ENGINE, LIMITER, MAX_BODY, POOL, SETTINGS
from tracker_watch.console import cases, holder, login, operator
from tracker_watch.console.core import SESSIONS, ConsoleError, guard, size, when
from tracker_watch.console.session import SessionStore

HERE = Path(__file__).parent
CONSOLE = web.AppKey("console", web.Application)  # on the API's application: the mounted console


async def _not_found(request: web.Request) -> web.StreamResponse:
    raise ConsoleError(404, f"there is no page {request.path[:200]}")


async def _to_console(request: web.Request) -> web.StreamResponse:
    raise web.HTTPFound("/console/")


def create_console(parent: web.Application, sessions: SessionStore | None = None) -> web.Application:
    app = web.Application(middlewares=[guard])
    for key in (POOL, SETTINGS, ENGINE, LIMITER, MAX_BODY):  # the API's, so its tenant checks work here as there
        app[key] = parent[key]
    app[SESSIONS] = sessions or SessionStore()
    env = aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                               undefined=jinja2.StrictUndefined, default_helpers=False)
    env.filters.update({"when": when, "size": size, "hex": lambda b: bytes(b).hex() if b is not None else "—"})
    app.router.add_static("/static/", HERE / "static", name="static")
    for module in (login, holder, cases, operator):
        module.add_routes(app)
    app.router.add_route("*", "/{tail:.*}", _not_found)
    return app


def mount(parent: web.Application) -> None:
    """Serve the console under /console/ (and send / there)."""
    parent[CONSOLE] = create_console(parent)
    parent.add_subapp("/console", parent[CONSOLE])
    parent.router.add_get("/", _to_console)
