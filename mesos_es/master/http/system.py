"""Process-level endpoints: version, health, and the state digest."""

from __future__ import annotations

import os

from aiohttp import web

from mesos_es import __version__
from mesos_es.master.http.common import MASTER, json_response


async def version(request: web.Request) -> web.Response:
    return json_response({"version": __version__})


async def health(request: web.Request) -> web.Response:
    master = request.app[MASTER]
    status = master.log.status()
    return json_response(
        {
            "healthy": True,
            "id": master.config.id,
            "role": status.role.value,
            "term": status.term,
            "leader": master.leader(),
            "applied_position": status.applied_position,
            "pid": os.getpid(),
            # The process that runs Raft (`--raft-process on`: its own; else this one).
            "raft_pid": getattr(master.log, "raft_pid", os.getpid()),
        }
    )


async def digest(request: web.Request) -> web.Response:
    master = request.app[MASTER]
    position, value = master.replica.digest()
    return json_response({"position": position, "digest": value, "leader": master.leader()})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/version", version)
    app.router.add_get("/health", health)
    app.router.add_get("/api/v1/digest", digest)
