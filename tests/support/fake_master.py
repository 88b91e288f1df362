"""A fake master for agent tests: the master end of docs/api/agent-protocol.md, nothing else.

It accepts REGISTER (opening the RecordIO event stream), records every call, and lets a test
push events (RUN_TASK, KILL_TASK, ACKNOWLEDGE, MESSAGE, SHUTDOWN_FRAMEWORK, PING, ...). By
default it acknowledges each UPDATE at once, as a framework would; `ack_filter` holds back
the acknowledgements a test wants to keep pending. `framework_updates` is what a framework
would see: each uuid once, however often the agent resends it. `redirect_to` makes it a
standby answering 307 with the leader; `unavailable` makes it answer 503. `GET /health` says
it leads unless one of those is set.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
import uuid as uuidlib
from dataclasses import dataclass, field

import orjson
from aiohttp import web

from mesos_es import recordio
from tests.support.ports import free_port_block


@dataclass
class Stream:
    agent_id: str
    stream_id: str
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    closed: asyncio.Event = field(default_factory=asyncio.Event)


class FakeMaster:
    def __init__(self, port: int | None = None, ping_interval_s: float = 5.0, name: str = "fake"):
        self.port = port or free_port_block(1, (0,))
        self.name = name
        self.ping_interval_s = ping_interval_s
        self.redirect_to: str | None = None
        self.unavailable = False
        self.removed_agents: set[str] = set()
        self.ack_filter = lambda framework_id, status: True
        self.registrations: list[dict] = []
        self.calls: list[dict] = []
        self.updates: list[dict] = []            # every UPDATE call's update, resends included
        self.framework_updates: list[dict] = []  # each uuid once, in arrival order
        self.acked: set[str] = set()
        self.messages: list[dict] = []
        self.streams: dict[str, Stream] = {}
        self.requests = 0
        self.health_requests = 0
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Event()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> FakeMaster:
        app = web.Application()
        app.router.add_post("/api/v1/agent", self._handle)
        app.router.add_get("/health", self._health)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        for stream in self.streams.values():
            stream.queue.put_nowait(None)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- HTTP -------------------------------------------------------------------------------------
    async def _health(self, request: web.Request) -> web.Response:
        """As a master's: it says it leads unless it redirects or has no leader."""
        self.health_requests += 1
        leads = not self.redirect_to and not self.unavailable
        return web.json_response({"role": "leader" if leads else "follower",
                                  "leader": self.address if leads else self.redirect_to})

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        if self.redirect_to:
            return web.Response(status=307, headers={"Location": f"//{self.redirect_to}/api/v1/agent"})
        if self.unavailable:
            return web.Response(status=503, text="no leader")
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return web.Response(status=400, text="malformed JSON")
        if body.get("type") == "REGISTER":
            return await self._register(request, body)
        self.calls.append(body)
        self._notify()
        agent_id = (body.get("agent_id") or {}).get("value")
        stream = self.streams.get(agent_id)
        if stream is None or request.headers.get("Mesos-Stream-Id") != stream.stream_id:
            return web.Response(status=403, text="stale stream")
        kind = body.get("type")
        batch = [body["update"]] if kind == "UPDATE" else body["updates"]["updates"] if kind == "UPDATES" else []
        for update in batch:
            self.updates.append(update)
            status = update["status"]
            if status["uuid"] not in {u["status"]["uuid"] for u in self.framework_updates}:
                self.framework_updates.append(update)
            if self.ack_filter(update["framework_id"]["value"], status):
                self.acknowledge(agent_id, update["framework_id"]["value"], status)
        if kind == "MESSAGE":
            self.messages.append(body["message"])
        self._notify()
        return web.Response(status=202)

    async def _register(self, request: web.Request, body: dict) -> web.StreamResponse:
        register = body.get("register") or {}
        self.registrations.append(register)
        agent_id = (register.get("agent_id") or {}).get("value")
        if agent_id in self.removed_agents:
            return web.Response(status=409, text="agent removed")
        if "tasks" not in register:  # a digest only: this master keeps no view, so it asks for the tasks
            return web.Response(status=412, text='{"error": "send the tasks", "tasks_required": true}')
        agent_id = agent_id or f"agent-{next(self._ids)}-{uuidlib.uuid4().hex[:8]}"
        old = self.streams.get(agent_id)
        if old is not None:
            old.queue.put_nowait(None)
        stream = Stream(agent_id, uuidlib.uuid4().hex)
        self.streams[agent_id] = stream
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json",
                                                           "Mesos-Stream-Id": stream.stream_id})
        response.enable_chunked_encoding()
        await response.prepare(request)
        stream.queue.put_nowait({"type": "REGISTERED", "registered": {
            "agent_id": {"value": agent_id}, "ping_interval_seconds": self.ping_interval_s}})
        self._notify()
        try:
            while True:
                event = await stream.queue.get()
                if event is None:
                    break
                await response.write(recordio.encode(orjson.dumps(event)))
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            stream.closed.set()
            if self.streams.get(agent_id) is stream:
                del self.streams[agent_id]
        return response

    # -- what a test does ---------------------------------------------------------------------------
    def _notify(self) -> None:
        self._changed.set()

    async def wait_for(self, predicate, timeout: float = 10.0, what: str = "condition"):
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"fake master: timed out after {timeout} s waiting for {what}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.2))
            except TimeoutError:
                pass

    async def wait_registered(self, timeout: float = 10.0, count: int = 1) -> str:
        await self.wait_for(lambda: len(self.streams) >= count, timeout, "an agent to register")
        return next(iter(self.streams))

    def push(self, agent_id: str, event: dict) -> None:
        self.streams[agent_id].queue.put_nowait(event)

    def close_stream(self, agent_id: str) -> None:
        self.streams[agent_id].queue.put_nowait(None)

    def run_task(self, agent_id: str, task: dict, framework_id: str = "fw-1", **framework) -> None:
        framework_info = {"id": {"value": framework_id}, "name": "test", "user": "root", **framework}
        task = {"agent_id": {"value": agent_id}, **task}
        self.push(agent_id, {"type": "RUN_TASK", "run_task": {"framework_info": framework_info, "task": task}})

    def kill_task(self, agent_id: str, task_id: str, framework_id: str = "fw-1", grace_s: float | None = None) -> None:
        body = {"framework_id": {"value": framework_id}, "task_id": {"value": task_id}}
        if grace_s is not None:
            body["kill_policy"] = {"grace_period": {"nanoseconds": int(grace_s * 1e9)}}
        self.push(agent_id, {"type": "KILL_TASK", "kill_task": body})

    def acknowledge(self, agent_id: str, framework_id: str, status: dict) -> None:
        self.acked.add(status["uuid"])
        self.push(agent_id, {"type": "ACKNOWLEDGE", "acknowledge": {
            "framework_id": {"value": framework_id}, "task_id": status["task_id"], "uuid": status["uuid"]}})

    def message(self, agent_id: str, executor_id: str, data: bytes, framework_id: str = "fw-1") -> None:
        self.push(agent_id, {"type": "MESSAGE", "message": {
            "framework_id": {"value": framework_id}, "executor_id": {"value": executor_id},
            "data": base64.b64encode(data).decode()}})

    def shutdown_framework(self, agent_id: str, framework_id: str = "fw-1") -> None:
        self.push(agent_id, {"type": "SHUTDOWN_FRAMEWORK", "shutdown_framework": {"framework_id": {"value": framework_id}}})

    def ping(self, agent_id: str) -> None:
        self.push(agent_id, {"type": "PING", "ping": {}})

    def states(self, task_id: str) -> list[str]:
        """The states the framework saw for a task, in order (each uuid once)."""
        return [u["status"]["state"] for u in self.framework_updates if u["status"]["task_id"]["value"] == task_id]

    def statuses(self, task_id: str) -> list[dict]:
        return [u["status"] for u in self.framework_updates if u["status"]["task_id"]["value"] == task_id]

    async def wait_state(self, task_id: str, state: str, timeout: float = 10.0) -> dict:
        await self.wait_for(lambda: state in self.states(task_id), timeout, f"{task_id} to reach {state}")
        return next(s for s in self.statuses(task_id) if s["state"] == state)
