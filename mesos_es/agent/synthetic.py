"""Synthetic agents: many simulated agents in one process, speaking the real protocol.

Each has its own REGISTER stream, agent id, resources and reliable update queues (in
memory, not checkpointed). A task launches no process: it goes TASK_STARTING, TASK_RUNNING
and, after its duration, TASK_FINISHED (or TASK_FAILED with `mesos-es/exit-code` != 0).
The duration is the label `mesos-es/duration-seconds` on the task, else the agent's default
(`--synthetic_task_duration`; a negative value runs until killed). Kills take effect at once.
With the label `mesos-es/synthetic-updates: minimal` a task reports only the states it rests
in: TASK_RUNNING (no TASK_STARTING) and, if it has a duration of 0, only its terminal state
(benchmarks seed many tasks with fewer calls).

An agent that has an id re-registers with the digest of its non-terminal tasks instead of
their list, as a real agent does (`mesos_es.core.agent_digest`); the master answers 412 when
its view differs, and the agent then sends the list (`register_body(full=True)`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from collections import Counter

import aiohttp
import structlog

from mesos_es.agent import tasks as T
from mesos_es.agent.aio import within
from mesos_es.agent.config import AgentConfig
from mesos_es.agent.master_client import MasterClient
from mesos_es.agent.updates import UpdateQueues
from mesos_es.core import resources as res
from mesos_es.core.agent_digest import tasks_digest

LABEL_DURATION = "mesos-es/duration-seconds"
LABEL_EXIT_CODE = "mesos-es/exit-code"
LABEL_UPDATES = "mesos-es/synthetic-updates"  # "minimal": only the states a task rests in
PROGRESS_INTERVAL_S = 0.5
CALL_CONNECTIONS = 128  # keep-alive connections for the calls of all the agents of one process
PONG_CONNECTIONS = 32  # and for their PONGs, so that liveness never waits behind updates
UPDATES_PER_CALL = 100  # updates of different tasks due at once go in one UPDATES call (as an agent's)
AGENT_LOGGER = "mesos_es.agent.synthetic.agent"  # each agent's own lines (streams, redirects, calls)
AGENT_LINES_UP_TO = 100  # more agents in a process: their own lines only at warning and above
REGISTERS_IN_FLIGHT = 512  # REGISTER requests of one process awaiting the master's answer


def _id(obj):
    return obj.get("value") if isinstance(obj, dict) else None


class SyntheticAgent:
    def __init__(self, index: int, config: AgentConfig, session, task_duration_s: float):
        self.index = index
        self.config = config
        self.agent_id: str | None = None
        self.registration_key = str(uuid.uuid4())  # as the real agent's (mesos_es/agent/agent.py)
        self.agent_info = {**config.agent_info(), "hostname": f"{config.hostname}-synthetic-{index}",
                           "port": config.port + index}
        self.task_duration_s = task_duration_s
        self.tasks: dict[tuple[str, str], dict] = {}   # key -> {"info", "state", "uuid", "timer"}
        self.frameworks: dict[str, dict] = {}
        self.updates = UpdateQueues(*config.update_backoff_s)
        self.log = structlog.get_logger(AGENT_LOGGER).bind(synthetic=index)
        self.client = MasterClient(config.masters, self, session, backoff_max_s=config.registration_backoff_max_s,
                                   log=self.log)
        self._wake = asyncio.Event()
        # How the REGISTER now in flight was sent ("new", "digest", "full"), and how every
        # accepted one was, for the progress line; when (unix time) the last one was accepted.
        self.register_kind = "new"
        self.registrations: Counter = Counter()
        self.registered_at: float | None = None

    # -- handler --------------------------------------------------------------------------------
    def register_body(self, full: bool = False) -> dict:
        """REGISTER; a re-registration sends the digest of its non-terminal tasks instead of
        their list unless `full` (the master answered 412: its view differs)."""
        body = {"protocol": 1, "agent_info": self.agent_info, "executors": [],
                "frameworks": [self.frameworks[f] for f in sorted(self.frameworks)]}
        if self.agent_id and not full:
            body["tasks_digest"] = tasks_digest(k for k, t in self.tasks.items() if not T.is_terminal(t["state"]))
            self.register_kind = "digest"
        else:
            body["tasks"] = [{"task_id": {"value": k[1]}, "framework_id": {"value": k[0]},
                              "agent_id": {"value": self.agent_id}, "name": t["info"].get("name", ""),
                              "state": t["state"], "resources": t["info"].get("resources") or [],
                              "status_update_uuid": t["uuid"]} for k, t in self.tasks.items()]
            self.register_kind = "full" if self.agent_id else "new"
        if self.agent_id:
            body["agent_id"] = {"value": self.agent_id}
        else:
            body["registration_key"] = self.registration_key
        return {"type": "REGISTER", "register": body}

    def on_removed(self) -> None:
        for task in self.tasks.values():
            if task.get("timer"):
                task["timer"].cancel()
        self.tasks.clear()
        self.updates = UpdateQueues(*self.config.update_backoff_s)
        self.agent_id = None
        self.registration_key = str(uuid.uuid4())

    def on_disconnected(self) -> None:
        pass

    async def on_event(self, event: dict) -> None:
        kind = event.get("type")
        body = event.get(str(kind).lower()) if isinstance(event.get(str(kind).lower()), dict) else event
        if kind == "REGISTERED":
            self.agent_id = _id(body.get("agent_id")) or self.agent_id
            self.registration_key = str(uuid.uuid4())
            self.registrations[self.register_kind] += 1
            self.registered_at = time.time()
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
            labels = T.labels(info)
            try:
                duration = float(labels.get(LABEL_DURATION, self.task_duration_s))
                exit_code = int(labels.get(LABEL_EXIT_CODE, "0"))
            except ValueError:
                duration, exit_code = self.task_duration_s, 0
            state = "TASK_FINISHED" if exit_code == 0 else "TASK_FAILED"
            if labels.get(LABEL_UPDATES) == "minimal":
                if duration == 0:  # it ends as it starts: its terminal state alone
                    self._status(key, state, message=f"Command exited with status {exit_code}")
                    continue
            else:
                self._status(key, "TASK_STARTING")
            self._status(key, "TASK_RUNNING")
            if duration >= 0:
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
            deadline = None  # unregistered: nothing to send until REGISTERED wakes it
            if self.client.registered.is_set():
                now = loop.time()
                due = self.updates.due(now)
                for update in due:
                    self.updates.sent(update, now)
                if len(due) == 1:
                    self.client.spawn(self.client.call({"type": "UPDATE", "update": due[0].to_json_call()}))
                for i in range(0, len(due) if len(due) > 1 else 0, UPDATES_PER_CALL):  # as a real agent
                    self.client.spawn(self._send_updates(due[i:i + UPDATES_PER_CALL]))
                deadline = self.updates.next_deadline()
            timeout = None if deadline is None else max(0.01, deadline - loop.time())
            with contextlib.suppress(asyncio.TimeoutError):
                await within(self._wake.wait(), timeout)

    async def _send_updates(self, batch) -> None:
        """One UPDATES call; one UPDATE each to a master that does not know UPDATES (400)."""
        status = await self.client.call({"type": "UPDATES", "updates": {"updates": [u.to_json_call() for u in batch]}})
        if status == 400:
            for update in batch:
                await self.client.call({"type": "UPDATE", "update": update.to_json_call()})

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

    * calls (UPDATE, MESSAGE, ...; they carry a Mesos-Stream-Id) share a pool of at most
      CALL_CONNECTIONS keep-alive connections. Unbounded, a burst of updates opens thousands
      of connections at once, overflows the master's listen backlog, and each dropped SYN
      costs a retransmission of a second or more. PONGs have a pool of their own
      (PONG_CONNECTIONS): an UPDATE holds its connection until the master has committed it,
      and a PONG queued behind thousands of them timed out, so the master marked agents
      unreachable that thousands of separate machines would have kept alive;
    * REGISTER requests (each then holds its connection as the agent's stream) are at most
      REGISTERS_IN_FLIGHT at a time, until the master answers; 10,000 at once would keep
      the masters from doing anything else (including holding their Raft leadership). Not
      many fewer: a REGISTER waits for its commit, so this many per commit latency (0.2-0.5 s
      under load) is the most that can re-register per second after a leader change (64 made
      5,000 agents take 12 s, with the new leader half idle)."""

    def __init__(self, streams: aiohttp.ClientSession, calls: aiohttp.ClientSession,
                 pongs: aiohttp.ClientSession | None = None):
        self.streams, self.calls, self.pongs = streams, calls, pongs or calls
        self.registering = asyncio.Semaphore(REGISTERS_IN_FLIGHT)
        self.counts: Counter = Counter()  # calls made, by type (REGISTER included)

    def post(self, url, **kwargs):
        kind = _call_type(kwargs.get("data"))
        self.counts[kind] += 1
        if "Mesos-Stream-Id" in (kwargs.get("headers") or {}):  # used with `async with`
            return (self.pongs if kind == "PONG" else self.calls).post(url, **kwargs)
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
    if count > AGENT_LINES_UP_TO:
        # Thousands of agents log thousands of lines per leader change (stream ended, no
        # leader yet, redirected, opened), and formatting them took the CPU the masters
        # needed; the progress line says what matters.
        logging.getLogger(AGENT_LOGGER).setLevel(max(logging.WARNING, logging.getLogger().level))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as streams, \
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=min(count, CALL_CONNECTIONS))) as calls, \
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=min(count, PONG_CONNECTIONS))) as pongs:
        session = _Sessions(streams, calls, pongs)
        agents = [SyntheticAgent(i, config, session, task_duration_s) for i in range(count)]
        started_at = time.time()
        runners = []
        for agent in agents:
            runners.append(asyncio.create_task(agent.run()))
            await asyncio.sleep(0)  # spread the registrations a little
        log.info("synthetic_agents_started", count=count, resources=res.to_text(config.resources))
        progress = asyncio.create_task(_report_progress(agents, session.counts, log, started_at=started_at))
        try:
            await stop.wait()
        finally:
            progress.cancel()
            for runner in runners:
                runner.cancel()
            await asyncio.gather(progress, *runners, return_exceptions=True)


def progress(agents: list[SyntheticAgent], counts: Counter, started_at: float | None = None) -> dict:
    """What the progress line says: agents registered now; calls made by type; accepted
    registrations by how they were sent (`new`, by `digest`, `full` task list after a 412);
    the earliest and latest time (unix seconds) at which a registered agent's current
    registration was accepted; tasks known (a terminal one is forgotten once its update is
    acknowledged); status updates not yet acknowledged."""
    registered = [a for a in agents if a.client.registered.is_set()]
    times = [a.registered_at for a in registered if a.registered_at is not None]
    kinds: Counter = Counter()
    for agent in agents:
        kinds.update(agent.registrations)
    return {"registered": len(registered), "count": len(agents), "calls": dict(counts),
            "registrations": dict(sorted(kinds.items())),
            "registered_at_min": min(times) if times else None, "registered_at_max": max(times) if times else None,
            "tasks": sum(len(a.tasks) for a in agents),
            "pending_updates": sum(len(a.updates) for a in agents), "started_at": started_at}


async def _report_progress(agents: list[SyntheticAgent], counts: Counter, log,
                           every_s: float = PROGRESS_INTERVAL_S, started_at: float | None = None) -> None:
    """Log `progress()` whenever it changes (at most every `every_s`); `mesos-es bench
    master` and `bench failover` read these lines."""
    last = None
    while True:
        now = progress(agents, counts, started_at)
        if now != last:
            log.info("synthetic_agents_registered", **now)
            last = now
        await asyncio.sleep(every_s)
