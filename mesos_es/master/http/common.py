"""Helpers every handler shares: JSON bodies and errors, leader redirects, proposals."""

from __future__ import annotations

import asyncio
import contextlib
import time

import orjson
from aiohttp import web

from mesos_es.log.interface import EntryTooLarge, LogError, NotLeader, Proposed
from mesos_es.master.context import MasterContext
from mesos_es.pb import events_pb2

MASTER = web.AppKey("master", MasterContext)
RETRY_AFTER_S = "1"


class PayloadTooLarge(web.HTTPClientError):
    """413 with our JSON body (aiohttp's own class insists on sizes in its message)."""

    status_code = 413


def json_response(data: dict, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def http_error(error_class: type[web.HTTPException], message: str, **extra) -> web.HTTPException:
    """An aiohttp error whose body is `{"error": message, ...extra}`."""
    body = orjson.dumps({"error": message, **extra}).decode()
    return error_class(text=body, content_type="application/json")


def unavailable(message: str, **extra) -> web.HTTPException:
    error = http_error(web.HTTPServiceUnavailable, message, **extra)
    error.headers["Retry-After"] = RETRY_AFTER_S
    return error


def to_leader(request: web.Request, path: str | None = None) -> web.HTTPException:
    """307 to the leader, or 503 while none is known. Without `path`: the same URL on the
    leader; with it (the Mesos APIs): `Location: //leader<path>`, scheme-relative, as Mesos
    answers and pymesos expects."""
    master = request.app[MASTER]
    leader = master.leader()
    if leader is None or leader == master.config.address:
        return unavailable("no leading master is elected yet; retry shortly", leader=None)
    location = f"http://{leader}{request.path_qs}" if path is None else f"//{leader}{path}"
    body = orjson.dumps({"error": f"this master does not lead; the leader is {leader}", "leader": leader})
    return web.HTTPTemporaryRedirect(location, text=body.decode(), content_type="application/json")


async def hold_for_leader(request: web.Request) -> None:
    """Wait, up to `--leader-hold-timeout-s`, until this master leads or knows who does
    (Nomad's rpc_hold_timeout). Answered at once with 503, agents and schedulers back off
    during an election and come back seconds after the new leader is ready; held, they are
    redirected (or served) the moment it is."""
    master = request.app[MASTER]
    shell = master.leader_shell
    if shell is None or shell.leader_known.is_set() or master.config.leader_hold_timeout_s <= 0:
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(master.config.leader_hold_timeout_s):
            await shell.leader_known.wait()


def require_leader(request: web.Request) -> MasterContext:
    master = request.app[MASTER]
    if not master.is_leader():
        raise to_leader(request)
    return master


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def propose(request: web.Request, event: events_pb2.Event) -> Proposed:
    """Stamp the event with the leader's clock, commit it, and map failures to HTTP."""
    master = request.app[MASTER]
    event.timestamp_ms = now_ms()
    try:
        return await master.log.propose(event.SerializeToString())
    except NotLeader:
        raise to_leader(request) from None
    except EntryTooLarge as e:
        raise http_error(PayloadTooLarge, str(e)) from None
    except LogError as e:
        if e.safe_to_retry:
            raise unavailable(f"{e}; nothing was written, retry", retry="safe") from None
        raise unavailable(
            f"{e}; the write may or may not have happened: retry with the same Idempotency-Key",
            retry="idempotent-only",
        ) from None


async def read_barrier(request: web.Request) -> None:
    """Honour `consistency=strong` (the leader answers, after a Raft round) or the default
    `consistency=eventual` (this master answers from its own state)."""
    consistency = request.query.get("consistency", "eventual")
    if consistency == "eventual":
        return
    if consistency != "strong":
        raise http_error(web.HTTPBadRequest, "'consistency' must be 'eventual' or 'strong'")
    master = require_leader(request)
    try:
        await master.log.barrier()
    except NotLeader:
        raise to_leader(request) from None
    except LogError as e:
        raise unavailable(f"could not confirm leadership: {e}") from None


def freshness(master: MasterContext) -> dict:
    """What every read answers with: how far this master's state reaches, and the leader."""
    return {"applied_position": master.replica.state.position, "leader": master.leader()}


def position_param(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    if value is None or value == "":
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 19:
        raise http_error(web.HTTPBadRequest, f"'{name}' must be a non-negative integer, not {value!r}")
    return int(value)
