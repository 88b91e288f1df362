"""Named logs for frameworks: `/api/v1/logs` (see docs/api/logs.md).

Writes go to the leader (others answer 307) and answer only once committed. Reads are
served by any master from its own state (`applied_position` says how far it reaches), or by
the leader after a Raft round with `consistency=strong`.
"""

from __future__ import annotations

import asyncio
import base64

import orjson
from aiohttp import web

from mesos_es.core import logs as named_logs
from mesos_es.core.outcomes import Appended, Rejected, Truncated
from mesos_es.master.http.common import (
    MASTER,
    PayloadTooLarge,
    freshness,
    http_error,
    json_response,
    position_param,
    propose,
    read_barrier,
    require_leader,
)
from mesos_es.pb import events_pb2

IDEMPOTENCY_HEADER = "Idempotency-Key"
DEFAULT_READ_LIMIT = 1_000
MAX_READ_LIMIT = 10_000
MAX_READ_BYTES = 16 << 20


def _log_name(request: web.Request) -> str:
    name = request.match_info["name"]
    problem = named_logs.log_name_problem(name)
    if problem:
        raise http_error(web.HTTPBadRequest, problem)
    return name


def _known_log(request: web.Request, name: str):
    try:
        return named_logs.find_log(request.app[MASTER].replica.state, name)
    except named_logs.UnknownLog as e:
        raise http_error(web.HTTPNotFound, str(e)) from None


def _rejected(outcome) -> web.HTTPException:
    return http_error(web.HTTPBadRequest, outcome.reason if isinstance(outcome, Rejected) else repr(outcome))


async def append_entry(request: web.Request) -> web.Response:
    name = _log_name(request)
    master = require_leader(request)
    key = request.headers.get(IDEMPOTENCY_HEADER, "")
    problem = named_logs.idempotency_key_problem(key)
    if problem:
        raise http_error(web.HTTPBadRequest, problem)
    data = await request.read()
    limit = master.config.max_entry_bytes
    if len(data) > limit:
        raise http_error(PayloadTooLarge, f"entry of {len(data)} bytes exceeds {limit} bytes")
    existing = master.replica.state.logs.get(name)
    if key and existing is not None and key in existing.recent_keys:
        # A retry of an append already applied here: answer it without a new event.
        return _appended(master, existing.recent_keys[key], duplicate=True)
    event = events_pb2.Event(
        log_entry_appended=events_pb2.LogEntryAppended(log=name, data=data, idempotency_key=key)
    )
    proposed = await propose(request, event)
    outcome = proposed.result
    if not isinstance(outcome, Appended):
        raise _rejected(outcome)
    return _appended(master, outcome.position, duplicate=outcome.duplicate, applied_position=proposed.position)


def _appended(master, position: int, duplicate: bool, applied_position: int | None = None) -> web.Response:
    body = {
        "position": position,
        "applied_position": applied_position or master.replica.state.position,
        "duplicate": duplicate,
    }
    return json_response(body)


async def truncate(request: web.Request) -> web.Response:
    name = _log_name(request)
    require_leader(request)
    raw = await request.read()
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise http_error(web.HTTPBadRequest, f"malformed JSON body: {e}") from None
    to = body.get("to") if isinstance(body, dict) else None
    if type(to) is not int or to < 1:
        raise http_error(web.HTTPBadRequest, 'expected a JSON body {"to": N} with N a positive integer')
    log = _known_log(request, name)
    if to > log.ending + 1:
        raise http_error(
            web.HTTPBadRequest, f"cannot truncate log {name!r} to {to}: it ends at {log.ending}",
            ending=log.ending,
        )
    event = events_pb2.Event(log_truncated=events_pb2.LogTruncated(log=name, to=to))
    proposed = await propose(request, event)
    outcome = proposed.result
    if not isinstance(outcome, Truncated):
        raise _rejected(outcome)
    return json_response(
        {"beginning": outcome.beginning, "ending": outcome.ending, "applied_position": proposed.position}
    )


async def read_entries(request: web.Request) -> web.Response:
    name = _log_name(request)
    first = position_param(request, "from")
    last = position_param(request, "to")
    limit = position_param(request, "limit") or DEFAULT_READ_LIMIT
    if limit > MAX_READ_LIMIT:
        raise http_error(web.HTTPBadRequest, f"'limit' is at most {MAX_READ_LIMIT}")
    await read_barrier(request)
    master = request.app[MASTER]
    state = master.replica.state
    try:
        wanted = named_logs.read_range(state, name, first, last, limit)
    except named_logs.UnknownLog as e:
        raise http_error(web.HTTPNotFound, str(e)) from None
    except named_logs.PositionTruncated as e:
        raise http_error(web.HTTPGone, str(e), beginning=e.beginning) from None
    except named_logs.PositionBeyondEnd as e:
        raise http_error(web.HTTPRequestRangeNotSatisfiable, str(e), ending=e.ending) from None
    except named_logs.BadRange as e:
        raise http_error(web.HTTPBadRequest, str(e)) from None
    log = state.logs[name]
    body = {"entries": [], "beginning": log.beginning, "ending": log.ending, **freshness(master)}
    entries = await asyncio.to_thread(_load_entries, master.log, wanted)
    body["entries"] = [{"position": p, "data": base64.b64encode(d).decode()} for p, d in entries]
    return json_response(body)


def _load_entries(replicated_log, wanted: list[tuple[int, int]]) -> list[tuple[int, bytes]]:
    """The data of the wanted entries, reading runs of consecutive log positions at once,
    and stopping past MAX_READ_BYTES (a reader pages with `from`)."""
    entries, size, i = [], 0, 0
    while i < len(wanted) and (size <= MAX_READ_BYTES or not entries):
        j = i
        while j + 1 < len(wanted) and wanted[j + 1][1] == wanted[j][1] + 1 and j - i < 255:
            j += 1
        for (position, _), committed in zip(wanted[i : j + 1], replicated_log.read(wanted[i][1], wanted[j][1])):
            data = events_pb2.Event.FromString(committed.payload).log_entry_appended.data
            if entries and size + len(data) > MAX_READ_BYTES:
                return entries
            entries.append((position, data))
            size += len(data)
        i = j + 1
    return entries


async def log_info(request: web.Request) -> web.Response:
    name = _log_name(request)
    await read_barrier(request)
    master = request.app[MASTER]
    log = _known_log(request, name)
    body = {"name": name, "beginning": log.beginning, "ending": log.ending, **freshness(master)}
    return json_response(body)


async def list_logs(request: web.Request) -> web.Response:
    await read_barrier(request)
    master = request.app[MASTER]
    logs = master.replica.state.logs
    body = {
        "logs": [{"name": n, "beginning": logs[n].beginning, "ending": logs[n].ending} for n in sorted(logs)],
        **freshness(master),
    }
    return json_response(body)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/logs", list_logs)
    app.router.add_get("/api/v1/logs/{name}", log_info)
    app.router.add_post("/api/v1/logs/{name}/entries", append_entry)
    app.router.add_get("/api/v1/logs/{name}/entries", read_entries)
    app.router.add_post("/api/v1/logs/{name}/truncate", truncate)
