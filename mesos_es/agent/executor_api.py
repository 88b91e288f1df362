"""The v1 executor API (`POST /api/v1/executor`) on the agent's port, as an unmodified
pymesos `MesosExecutorDriver` uses it.

SUBSCRIBE answers `200` with a chunked RecordIO stream of JSON events: SUBSCRIBED first,
then LAUNCH / LAUNCH_GROUP / KILL / ACKNOWLEDGED / MESSAGE / SHUTDOWN as they happen. UPDATE
and MESSAGE calls answer `202` once accepted (an UPDATE after it is checkpointed).
"""

from __future__ import annotations

import asyncio
import contextlib

import orjson
from aiohttp import web

from mesos_es import recordio

AGENT = web.AppKey("agent", object)


def _id(obj):
    return obj.get("value") if isinstance(obj, dict) and isinstance(obj.get("value"), str) else None


def bad_request(message: str) -> web.Response:
    return web.Response(status=400, text=message)


async def executor_api(request: web.Request) -> web.StreamResponse:
    agent = request.app[AGENT]
    try:
        call = orjson.loads(await request.read())
    except orjson.JSONDecodeError as e:
        return bad_request(f"malformed JSON: {e}")
    if not isinstance(call, dict):
        return bad_request("a call must be a JSON object")
    kind = call.get("type")
    executor = agent.executor_for(_id(call.get("framework_id")), _id(call.get("executor_id")))
    if kind not in ("SUBSCRIBE", "UPDATE", "MESSAGE"):
        return bad_request(f"unknown call type {kind!r}")
    if executor is None:
        return bad_request(f"unknown executor {_id(call.get('executor_id'))!r} of framework "
                           f"{_id(call.get('framework_id'))!r}")
    if kind == "SUBSCRIBE":
        return await subscribe(request, agent, executor, call.get("subscribe") or {})
    if kind == "UPDATE":
        status = (call.get("update") or {}).get("status")
        if not isinstance(status, dict):
            return bad_request("UPDATE needs update.status")
        why = await agent.executor_update(executor, status)
        return bad_request(why) if why else web.Response(status=202)
    data = (call.get("message") or {}).get("data")
    if not isinstance(data, str):
        return bad_request("MESSAGE needs message.data (base64)")
    await agent.executor_message(executor, data)
    return web.Response(status=202)


async def subscribe(request: web.Request, agent, executor, body: dict) -> web.StreamResponse:
    if executor.stream is not None:
        executor.stream.put_nowait(None)  # a newer subscription replaces the old stream
    queue: asyncio.Queue = asyncio.Queue()
    executor.stream = queue
    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    queue.put_nowait(agent.executor_subscribed_event(executor))
    # Updates the executor still holds but we no longer do were acknowledged while it was
    # away: tell it, so it drops them.
    for update in body.get("unacknowledged_updates") or []:
        status = (update or {}).get("status") or {}
        task_id, uuid = _id(status.get("task_id")), status.get("uuid")
        if task_id and uuid and not agent.known_update(executor, task_id, uuid):
            queue.put_nowait({"type": "ACKNOWLEDGED", "acknowledged": {"task_id": {"value": task_id}, "uuid": uuid}})
    for event in executor.queued:
        queue.put_nowait(event)
    executor.queued = []
    executor.subscribed.set()
    agent.log.info("executor_subscribed", executor_id=executor.executor_id)
    try:
        while True:
            event = await queue.get()
            if event is None:
                break
            await response.write(recordio.encode(orjson.dumps(event)))
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        if executor.stream is queue:
            executor.stream = None
            executor.subscribed.clear()
    with contextlib.suppress(ConnectionResetError, RuntimeError):
        await response.write_eof()
    return response


async def state(request: web.Request) -> web.Response:
    return web.Response(body=orjson.dumps(request.app[AGENT].state_json()), content_type="application/json")


async def health(request: web.Request) -> web.Response:
    agent = request.app[AGENT]
    return web.json_response({"agent_id": agent.agent_id,
                              "registered": bool(agent.client and agent.client.registered.is_set())})


def build_app(agent) -> web.Application:
    app = web.Application(client_max_size=16 << 20)
    app[AGENT] = agent
    app.router.add_post("/api/v1/executor", executor_api)
    app.router.add_get("/state", state)
    app.router.add_get("/health", health)
    return app
