"""Synthetic agents: many simulated agents in one process, speaking the real protocol.

Each has its own REGISTER stream, agent id, resources and reliable update queues (in
memory, not checkpointed). A task launches no process: it goes TASK_STARTING, TASK_RUNNING
and, after its duration, TASK_FINISHED (or TASK_FAILED with `mesos-es/exit-code` != 0).
The duration is the label `mesos-es/duration-seconds` on the task, else the agent's default
(`--synthetic_task_duration`; a negative value runs until killed). Kills take effect at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter

import aiohttp
import structlog

from mesos_es.agent import tasks as T
from mesos_es.agent.aio import within
from mesos_es.agent.config import AgentConfig
from mesos_es.agent.master_client import MasterClient
from mesos_es.agent.updates import UpdateQueues
from mesos_es.core import resources as res

LABEL_DURATION = "mesos-es/duration-seconds"
LABEL_EXIT_CODE = "mesos-es/exit-code"
PROGRESS_INTERVAL_S = 0.5
CALL_CONNECTIONS = 128  # keep-alive connections for the calls of all the agents of one process
REGISTERS_IN_FLIGHT = 64  # REGISTER requests of one process awaiting the master's answer


def _id(obj):
    return obj.get("value") if isinstance(obj, dict) else None


class SyntheticAgent:
    def __init__(self, index: int, config: AgentConfig, session, task_duration_s: float):
        self.index = index
        self.config = config
        self.agent_id: str | None = None
        self.agent_info = {**config.agent_info(), "hostname": f"{config.hostname}-synthetic-{index}",
                           "port": config.port + index}
        self.task_duration_s = task_duration_s
        self.tasks: dict[tuple[str, str], dict] = {}   # key -> {"info", "state", "uuid", "timer"}
        self.frameworks: dict[str, dict] = {}
        self.updates = UpdateQueues(*config.update_backoff_s)
        self.log = structlog.get_logger("mesos_es.agent.synthetic").bind(synthetic=index)
        self.client = MasterClient(config.masters, self, session, backoff_max_s=config.registration_backoff_max_s,
                                   log=self.log)
        self._wake = asyncio.Event()

    # -- handler --------------------------------------------------------------------------------
    def register_body(self) -> dict:
        body = {"protocol": 1, "agent_info": self.agent_info, "executors": [],
                "frameworks": [self.frameworks[f] for f in sorted(self.frameworks)],
                "tasks": [{"task_id": {"value": k[1]}, "framework_id": {"value": k[0]},
                           "agent_id": {"value": self.agent_id}, "name": t["info"].get("name", ""),
                           "state": t["state"], "resources": t["info"].get("resources") or [],
                           "status_update_uuid": t["uuid"]} for k, t in self.tasks.items()]}
        if self.agent_id:
            body["agent_id"] = {"value": self.agent_id}
        return {"type": "REGISTER", "register": body}

    def on_removed(self) -> None:
        for task in self.tasks.values():
            if task.get("timer"):
                task["timer"].cancel()
        self.tasks.clear()
        self.updates = UpdateQueues(*self.config.update_backoff_s)
        self.agent_id = None

    def on_disconnected(self) -> None:
        pass

    async def on_event(self, event: dict) -> None:
        kind = event.get("type")
        body = event.get(str(kind).lower()) if isinstance(event.get(str(kind).lower()), dict) else event
        if kind == "REGISTERED":
            self.agent_id = _id(body.get("agent_id")) or self.agent_id
            self.updates.resend_all_now()
            self._wake.set()
        elif kind == "RUN_TASK":
            self._run((body.get("framework_info") or {}), [body.get("task") or {}])
        elif kind == "RUN_TASK_GROUP":
            executor = body.get("executor") or {}
            self._run(body.get("framework_info") or {},
                      [{**t, "executor": executor} for t in (body.get("task_group") or {}).get("tasks") or []])
        elif kind == "KILL_TASK":
            key = (_id(body.get("framework_id")), _id(body.get("task_id")))
            if key in self.tasks:
                self._finish(key, "TASK_KILLED", "killed")
            elif not self.updates.has_pending(key) and None not in key:
                self._status(key, "TASK_LOST", source="SOURCE_AGENT", reason="REASON_TASK_UNKNOWN",
                             message="the agent does not know this task")
        elif kind == "ACKNOWLEDGE":
            key = (_id(body.get("framework_id")), _id(body.get("task_id")))
            if self.updates.acknowledge(key[0], key[1], body.get("uuid")) is not None:
                task = self.tasks.get(key)
                if task is not None and T.is_terminal(task["state"]) and not self.updates.has_pending(key):
                    del self.tasks[key]
                self._wake.set()
        elif kind == "SHUTDOWN_FRAMEWORK":
            framework_id = _id(body.get("framework_id"))
            for key in [k for k in self.tasks if k[0] == framework_id]:
                timer = self.tasks.pop(key).get("timer")
                if timer:
                    timer.cancel()
            self.updates.drop_framework(framework_id)
            self.frameworks.pop(framework_id, None)

    # -- tasks ------------------------------------------------------------------------------------
    def _run(self, framework_info: dict, infos: list[dict]) -> None:
        framework_id = _id(framework_info.get("id"))
        if not framework_id:
            return
        self.frameworks[framework_id] = framework_info
        for info in infos:
            key = (framework_id, _id(info.get("task_id")))
            if key[1] is None or key in self.tasks or self.updates.has_pending(key):
                continue
            self.tasks[key] = {"info": info, "state": "TASK_STAGING", "uuid": None, "timer": None}
            if not info.get("command") and not info.get("executor"):
                self._finish(key, "TASK_ERROR", "the task has no command and no executor", source="SOURCE_AGENT",
                             reason="REASON_TASK_INVALID")
                continue
            self._status(key, "TASK_STARTING")
            self._status(key, "TASK_RUNNING")
            labels = T.labels(info)
            try:
                duration = float(labels.get(LABEL_DURATION, self.task_duration_s))
                exit_code = int(labels.get(LABEL_EXIT_CODE, "0"))
            except ValueError:
                duration, exit_code = self.task_duration_s, 0
            if duration >= 0:
                state = "TASK_FINISHED" if exit_code == 0 else "TASK_FAILED"
                loop = asyncio.get_running_loop()
                self.tasks[key]["timer"] = loop.call_later(
                    duration, self._finish, key, state, f"Command exited with status {exit_code}")

    def _finish(self, key, state: str, message: str, source: str = "SOURCE_EXECUTOR", reason=None) -> None:
        task = self.tasks.get(key)
        if task is None or T.is_terminal(task["state"]):
            return
        if task.get("timer"):
            task["timer"].cancel()
        self._status(key, state, message=message, source=source, reason=reason)

    def _status(self, key, state: str, source: str = "SOURCE_EXECUTOR", reason=None, message=None) -> None:
        status = T.make_status(key[1], state, uuid=os.urandom(16), timestamp=time.time(), agent_id=self.agent_id,
                               source=source, reason=reason, message=message)
        task = self.tasks.get(key)
        if task is not None:
            task["state"], task["uuid"] = state, status["uuid"]
        update = self.updates.add(key[0], status)
        if update is not None:
            update.saved = True  # nothing to checkpoint
        self._wake.set()

    async def _pump(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            if self.client.registered.is_set():
                now = loop.time()
                for update in self.updates.due(now):
                    self.updates.sent(update, now)
                    self.client.spawn(self.client.call({"type": "UPDATE", "update": {
                        "framework_id": {"value": update.framework_id}, "status": update.status}}))
            deadline = self.updates.next_deadline()
            timeout = None if deadline is None else max(0.01, deadline - loop.time())
            with contextlib.suppress(asyncio.TimeoutError):
                await within(self._wake.wait(), timeout)

    async def run(self) -> None:
        pump = asyncio.create_task(self._pump())
        try:
            await self.client.run()
        finally:
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump
            await self.client.close()


class _Sessions:
    """What the agents' MasterClients post with. Many agents in one process must not hit the
    master all at once, as thousands of separate machines would not from one address:

    * calls (UPDATE, PONG, ...; they carry a Mesos-Stream-Id) share a pool of at most
      CALL_CONNECTIONS keep-alive connections. Unbounded, a burst of updates opens thousands
      of connections at once, overflows the master's listen backlog, and each dropped SYN
      costs a retransmission of a second or more;
    * REGISTER requests (each then holds its connection as the agent's stream) are at most
      REGISTERS_IN_FLIGHT at a time, until the master answers; 10,000 at once would keep
      the masters from doing anything else (including holding their Raft leadership)."""

    def __init__(self, streams: aiohttp.ClientSession, calls: aiohttp.ClientSession):
        self.streams, self.calls = streams, calls
        self.registering = asyncio.Semaphore(REGISTERS_IN_FLIGHT)
        self.counts: Counter = Counter()  # calls made, by type (REGISTER included)

    def post(self, url, **kwargs):
        self.counts[_call_type(kwargs.get("data"))] += 1
        if "Mesos-Stream-Id" in (kwargs.get("headers") or {}):
            return self.calls.post(url, **kwargs)  # used with `async with`
        return self._register(url, kwargs)  # awaited: the response is the stream

    async def _register(self, url, kwargs):
        async with self.registering:
            return await self.streams.post(url, **kwargs)


def _call_type(data) -> str:
    """The `type` of a call body as MasterClient encodes it (orjson, `type` first)."""
    if isinstance(data, bytes) and data.startswith(b'{"type":"'):
        end = data.find(b'"', 9)
        if end > 0:
            return data[9:end].decode(errors="replace")
    return "other"


async def serve_synthetic(config: AgentConfig, count: int, task_duration_s: float, stop: asyncio.Event) -> None:
    log = structlog.get_logger("mesos_es.agent.synthetic")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as streams, \
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=min(count, CALL_CONNECTIONS))) as calls:
        session = _Sessions(streams, calls)
        agents = [SyntheticAgent(i, config, session, task_duration_s) for i in range(count)]
        runners = []
        for agent in agents:
            runners.append(asyncio.create_task(agent.run()))
            await asyncio.sleep(0)  # spread the registrations a little
        log.info("synthetic_agents_started", count=count, resources=res.to_text(config.resources))
        progress = asyncio.create_task(_report_progress(agents, session.counts, log))
        try:
            await stop.wait()
        finally:
            progress.cancel()
            for runner in runners:
                runner.cancel()
            await asyncio.gather(progress, *runners, return_exceptions=True)


async def _report_progress(agents: list[SyntheticAgent], counts: Counter, log,
                           every_s: float = PROGRESS_INTERVAL_S) -> None:
    """Log how many agents are registered and how many calls they made, whenever that
    changes (at most every `every_s`); `mesos-es bench master` reads these lines."""
    last = None
    while True:
        registered = sum(1 for a in agents if a.client.registered.is_set())
        now = (registered, dict(counts))
        if now != last:
            log.info("synthetic_agents_registered", registered=registered, count=len(agents), calls=now[1])
            last = now
        await asyncio.sleep(every_s)
