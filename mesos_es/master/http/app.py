"""The master's aiohttp application: routes, body limits, and errors as JSON."""

from __future__ import annotations

import time

import structlog
from aiohttp import web

from mesos_es.master.context import MasterContext
from mesos_es.master.http import agents, archive, logs, operator, proxy, scheduler, system
from mesos_es.master.http.common import MASTER, hold_for_leader, json_response

log = structlog.get_logger(__name__)

# Bodies beyond the largest entry are refused by aiohttp with 413 before they are read.
BODY_SLACK_BYTES = 64 << 10


@web.middleware
async def errors_as_json(request: web.Request, handler) -> web.StreamResponse:
    """Every error answers `{"error": ...}`, including aiohttp's own (404, 405, 413)."""
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.content_type == "application/json" or e.empty_body:
            raise
        message = e.text or e.reason
        if message.startswith(f"{e.status}: "):
            message = message[len(f"{e.status}: "):]
        response = json_response({"error": message}, status=e.status)
        response.headers.update(_kept_headers(e))
        return response
    except Exception:
        log.error("request_failed", method=request.method, path=request.path, exc_info=True)
        return json_response({"error": "internal error; see the master's log"}, status=500)


@web.middleware
async def scheduler_api_proxy(request: web.Request, handler) -> web.StreamResponse:
    """`--scheduler_api=proxy`: a master that does not lead passes the scheduler API through
    to the leader instead of redirecting (see proxy.py)."""
    master = request.app[MASTER]
    if request.path != scheduler.PATH or master.config.scheduler_api != "proxy":
        return await handler(request)
    held_since = time.monotonic()
    if not _leading(master):
        await hold_for_leader(request)
    return await (handler(request) if _leading(master) else proxy.forward(request, serve=handler,
                                                                          held_since=held_since))


def _leading(master) -> bool:
    return master.leader_shell is not None and master.leader_shell.is_leading()


def _kept_headers(error: web.HTTPException) -> dict:
    return {k: v for k, v in error.headers.items() if k in ("Allow", "Location", "Retry-After")}


def build_app(master: MasterContext) -> web.Application:
    app = web.Application(
        middlewares=[errors_as_json, scheduler_api_proxy],
        client_max_size=master.config.max_entry_bytes + BODY_SLACK_BYTES,
    )
    app[MASTER] = master
    proxy.add_session(app)
    system.add_routes(app)
    logs.add_routes(app)
    archive.add_routes(app)
    scheduler.add_routes(app)
    agents.add_routes(app)
    operator.add_routes(app)
    return app
