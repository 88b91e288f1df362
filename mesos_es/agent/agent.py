"""The agent: tasks, executors, reliable updates, checkpoints and recovery.

Everything runs on one event loop. Each master event is handled to completion or handed
to a background task (launches, kills, health checks); no handler raises out of the agent.
Status updates go through `self.updates` (checkpointed before they are sent) and the
update pump, which sends the head of each task's queue until the master relays the
framework's acknowledgement.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import os
import shutil
import signal
import time
import uuid as uuidlib
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import structlog

from mesos_es.agent import checkpoint, estimator, health, isolation, launcher, reconfig
from mesos_es.agent import tasks as T
from mesos_es.agent.aio import within
from mesos_es.agent.config import AgentConfig
from mesos_es.agent.master_client import MasterClient
from mesos_es.agent.updates import PendingUpdate, UpdateQueues
from mesos_es.core import resources as res
from mesos_es.core.agent_digest import tasks_digest

Key = tuple[str, str]
PROTOCOL_VERSION = 1
UPDATES_PER_CALL = 100  # updates of different tasks due at once go in one UPDATES call


class AgentStartError(Exception):
    """The agent refuses to start (e.g. an incompatible reconfiguration)."""


@dataclass
class Task:
    framework_id: str
    task_id: str
    info: dict
    executor_id: str | None = None      # None: a command task, run by the agent itself
    sandbox: str = ""
    state: str = "TASK_STAGING"
    status_uuid: str | None = None
    pid: int | None = None
    pid_start: int | None = None
    cores: list[int] = field(default_factory=list)
    launched_at: float = 0.0
    killing: bool = False
    killed_by_health: bool = False
    healthy: bool | None = None
    # runtime only
    handle: launcher.ProcessHandle | None = None
    health_task: asyncio.Task | None = None
    kill_grace_s: float | None = None
    preempted: bool = False

    @property
    def key(self) -> Key:
        return (self.framework_id, self.task_id)

    def resources(self) -> res.Resources:
        return res.from_json(self.info.get("resources") or [])

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in (
            "framework_id", "task_id", "info", "executor_id", "sandbox", "state", "status_uuid", "pid",
            "pid_start", "cores", "launched_at", "killing", "killed_by_health", "healthy")}

    @classmethod
    def from_json(cls, obj: dict) -> Task:
        return cls(**obj)


@dataclass(eq=False)
class Executor:
    framework_id: str
    executor_id: str
    info: dict
    sandbox: str = ""
    pid: int | None = None
    pid_start: int | None = None
    # runtime only
    handle: launcher.ProcessHandle | None = None
    queued: list[dict] = field(default_factory=list)
    stream: asyncio.Queue | None = None
    subscribed: asyncio.Event = field(default_factory=asyncio.Event)
    shutting_down: bool = False

    @property
    def key(self) -> Key:
        return (self.framework_id, self.executor_id)

    def send(self, event: dict) -> bool:
        if self.stream is None:
            return False
        self.stream.put_nowait(event)
        return True

    def to_json(self) -> dict:
        return {k: getattr(self, k) for k in ("framework_id", "executor_id", "info", "sandbox", "pid", "pid_start")}


def _id(obj) -> str | None:
    if isinstance(obj, dict) and isinstance(obj.get("value"), str):
        return obj["value"]
    return None


def flatten(resources: res.Resources) -> res.Resources:
    """Drop dynamic reservations (the master makes them; the agent counts the underlying)."""
    items: res.Resources = res.EMPTY
    for kind, value in resources.items():
        chain = tuple(r for r in kind.reservations if r.type == "STATIC")
        items = items + res.Resources({res.Kind(kind.name, chain, kind.revocable): value})
    return items


class Agent:
    def __init__(self, config: AgentConfig, session_factory=None):
        self.config = config
        self.log = structlog.get_logger("mesos_es.agent")
        self.meta = config.work_dir / "meta"
        self.agent_id: str | None = None
        # Sent with REGISTERs until the first REGISTERED: a retry of a registration whose
        # answer was lost then finds the agent it made (docs/api/agent-protocol.md). recover()
        # takes the checkpointed one, so a restart before REGISTERED retries too.
        self.registration_key = str(uuidlib.uuid4())
        self.agent_info = config.agent_info()
        self.frameworks: dict[str, dict] = {}
        self.tasks: dict[Key, Task] = {}
        self.executors: dict[Key, Executor] = {}
        self.updates = UpdateQueues(*config.update_backoff_s)
        self.cores = isolation.CoreAllocator(sorted(os.sched_getaffinity(0)))
        self.estimator = estimator.SlackEstimator(margin=config.oversubscription_margin)
        self.estimate_cpus = 0.0
        self.usage_sampler = launcher.session_cpu_ticks
        self.checkpointer = checkpoint.Checkpointer(self.meta / "state.json", self._snapshot, self._mark_saved)
        self.client: MasterClient | None = None
        self._session_factory = session_factory
        self._wake = asyncio.Event()
        self._background: set[asyncio.Task] = set()
        self._terminating: set[Executor] = set()   # shut down, not yet exited
        self._base_env = launcher.base_environment()
        self.started = asyncio.Event()

    # -- checkpoints ---------------------------------------------------------------------------
    def _snapshot(self):
        data = {
            "version": 1,
            "frameworks": self.frameworks,
            "tasks": [t.to_json() for t in self.tasks.values()],
            "executors": [e.to_json() for e in self.executors.values()],
            "updates": self.updates.to_json(),
            "estimate_cpus": self.estimate_cpus,
        }
        return data, [u for u in self.updates.all() if not u.saved]

    def _mark_saved(self, marker: list[PendingUpdate]) -> None:
        for update in marker:
            update.saved = True
        if marker:
            self._wake.set()

    def _draw_registration_key(self) -> None:
        """A new key for the next registration without an id, checkpointed before any REGISTER
        carries it: an agent restarted before its REGISTERED arrives sends the same key, and
        the master takes it for the agent it already made (found by chaos sim)."""
        self.registration_key = str(uuidlib.uuid4())
        checkpoint.atomic_write(self.meta / "registration.json",
                                checkpoint.orjson.dumps({"registration_key": self.registration_key}))

    def _save_agent_file(self) -> None:
        checkpoint.atomic_write(self.meta / "agent.json", checkpoint.orjson.dumps(
            {"agent_id": self.agent_id, "agent_info": self.agent_info}))

    async def save(self) -> None:
        try:
            await self.checkpointer.save()
        except OSError as e:
            # A full or read-only disk: keep running; updates stay unsent until a save succeeds.
            self.log.error("checkpoint_failed", error=str(e))

    # -- recovery --------------------------------------------------------------------------------
    def recover(self) -> None:
        """Read the checkpoints (before serving). Raises AgentStartError on an incompatible
        reconfiguration."""
        agent_file = checkpoint.read_json(self.meta / "agent.json")
        saved = checkpoint.read_json(self.meta / "registration.json")
        if isinstance(saved, dict) and isinstance(saved.get("registration_key"), str):
            self.registration_key = saved["registration_key"]
        else:
            self._draw_registration_key()
        state = checkpoint.read_json(self.meta / "state.json")
        if agent_file is None and state is not None:
            self.log.warning("state_without_agent_id_discarded")
            self._kill_leftovers(state)
            (self.meta / "state.json").unlink(missing_ok=True)
            state = None
        if agent_file is not None:
            why = reconfig.check(self.config.reconfiguration_policy, agent_file["agent_info"], self.agent_info)
            if why is not None:
                raise AgentStartError(
                    f"{why}. The checkpointed agent id {agent_file['agent_id']} cannot be kept under "
                    f"--reconfiguration_policy={self.config.reconfiguration_policy}. Restore the previous "
                    f"configuration, or remove {self.meta / 'agent.json'} to start as a new agent "
                    f"(its tasks will be killed).")
            self.agent_id = agent_file["agent_id"]
            self._save_agent_file()  # the new info (additive changes) is now the reference
        if state is None:
            return
        self.frameworks = state.get("frameworks", {})
        self.estimate_cpus = float(state.get("estimate_cpus", 0.0))
        self.updates = UpdateQueues.from_json(state.get("updates", []), initial_backoff_s=self.config.update_backoff_s[0],
                                              max_backoff_s=self.config.update_backoff_s[1])
        for obj in state.get("executors", []):
            executor = Executor(**obj)
            self.executors[executor.key] = executor
        for obj in state.get("tasks", []):
            task = Task.from_json(obj)
            self.tasks[task.key] = task
            if task.cores:
                self.cores.restore(task.key, task.cores)
        self.log.info("state_recovered", agent_id=self.agent_id, tasks=len(self.tasks),
                      executors=len(self.executors), pending_updates=len(self.updates))

    def _kill_leftovers(self, state: dict) -> None:
        for obj in [*state.get("tasks", []), *state.get("executors", [])]:
            if launcher.is_same_process(obj.get("pid"), obj.get("pid_start")):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(obj["pid"], signal.SIGKILL)

    async def reattach(self) -> None:
        """After recover(): watch live processes again; report those that died meanwhile."""
        for executor in list(self.executors.values()):
            if launcher.is_same_process(executor.pid, executor.pid_start):
                executor.handle = launcher.ProcessHandle(executor.pid, executor.pid_start)
                self.spawn(self._watch_executor(executor))
                self.spawn(self._expect_subscription(executor, self.config.executor_reregistration_timeout_s))
                self.log.info("executor_reattached", executor_id=executor.executor_id, pid=executor.pid)
            else:
                await self._executor_gone(executor, "Executor terminated while the agent was down (exit status unknown)")
        for task in list(self.tasks.values()):
            if T.is_terminal(task.state):
                continue
            if task.executor_id is not None:
                if (task.framework_id, task.executor_id) not in self.executors:
                    await self._update(task, "TASK_FAILED", source="SOURCE_AGENT", reason="REASON_EXECUTOR_TERMINATED",
                                       message="Executor terminated while the agent was down (exit status unknown)")
                continue
            if task.pid is None:
                task.killing = False
                await self._update(task, "TASK_FAILED", source="SOURCE_AGENT", reason="REASON_AGENT_RESTARTED",
                                   message="The agent restarted before the task's process was started")
                continue
            if launcher.is_same_process(task.pid, task.pid_start):
                task.handle = launcher.ProcessHandle(task.pid, task.pid_start)
                self.spawn(self._watch_task(task))
                if task.info.get("health_check") and not task.killing:
                    task.health_task = self.spawn(self._health_loop(task))
                if task.killing:
                    self.spawn(self._kill_process(task, self._grace(task, None)))
                self.log.info("task_reattached", task_id=task.task_id, pid=task.pid)
            else:
                self._release(task)
                await self._update(task, "TASK_FAILED", reason="REASON_EXECUTOR_TERMINATED",
                                   message="Command terminated while the agent was down; its exit status is lost")
        await self.save()

    # -- lifecycle -------------------------------------------------------------------------------
    def spawn(self, coroutine) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(self._guard(coroutine))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def _guard(self, coroutine):
        try:
            return await coroutine
        except asyncio.CancelledError:
            raise
        except Exception:
            self.log.exception("background_task_failed")

    async def run(self, stop: asyncio.Event) -> None:
        session = (self._session_factory or (lambda: aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0))))()
        self.client = MasterClient(self.config.masters, self, session,
                                   backoff_max_s=self.config.registration_backoff_max_s, log=self.log)
        await self.reattach()
        runners = [
            asyncio.create_task(self.client.run(), name="master-client"),
            asyncio.create_task(self._update_pump(), name="update-pump"),
        ]
        if self.config.resource_estimator == "slack":
            runners.append(asyncio.create_task(self._estimator_loop(), name="estimator"))
        self.started.set()
        try:
            await stop.wait()
        finally:
            self.log.info("agent_stopping")
            for runner in runners:
                runner.cancel()
            for runner in runners:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await runner
            await self.client.close()
            for executor in self.executors.values():
                if executor.stream is not None:
                    executor.stream.put_nowait(None)
            for task in list(self._background):
                task.cancel()
            for task in list(self._background):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            with contextlib.suppress(OSError):
                self.checkpointer.save_now()
            await session.close()

    async def unregister(self) -> None:
        """Graceful decommission (SIGUSR1, as Mesos): kill every task and executor, tell the
        master (UNREGISTER: it reports the tasks lost), forget the agent id and state."""
        self.log.info("agent_unregistering", tasks=len(self.tasks), executors=len(self.executors))
        handles = []
        for task in list(self.tasks.values()):
            if task.handle is not None and not T.is_terminal(task.state):
                task.killing = True
                handles.append(task.handle)
                self.spawn(self._kill_process(task, self._grace(task, None)))
        for executor in list(self.executors.values()):
            if executor.handle is not None:
                handles.append(executor.handle)
            self.spawn(self.shutdown_executor(executor))
        if handles:
            with contextlib.suppress(TimeoutError):
                await within(asyncio.gather(*(h.exited.wait() for h in handles)),
                             self.config.default_kill_grace_period_s + self.config.executor_shutdown_grace_period_s + 1)
        if self.client is not None:
            await self.client.call({"type": "UNREGISTER", "unregister": {}})
        self.kill_everything()
        self.tasks.clear()
        self.executors.clear()
        self.frameworks.clear()
        self.updates = UpdateQueues(*self.config.update_backoff_s)
        self.agent_id = None
        self._draw_registration_key()
        for name in ("agent.json", "state.json"):
            (self.meta / name).unlink(missing_ok=True)

    def kill_everything(self) -> None:
        """Tests and `--synthetic` teardown: SIGKILL every task and executor process group."""
        for item in [*self.tasks.values(), *self.executors.values(), *self._terminating]:
            if launcher.is_same_process(item.pid, item.pid_start) or (item.handle and item.handle.child):
                with contextlib.suppress(ProcessLookupError, PermissionError, TypeError):
                    os.killpg(item.pid, signal.SIGKILL)

    # -- the master client's handler ---------------------------------------------------------------
    def register_body(self, full: bool = False) -> dict:
        """REGISTER; a re-registration sends the digest of its tasks instead of the list
        unless `full` (the master answered 412: its view differs)."""
        body: dict = {
            "protocol": PROTOCOL_VERSION,
            "agent_info": self.agent_info,
            "executors": [{**e.info, "framework_id": {"value": e.framework_id}} for e in self.executors.values()],
            "frameworks": [self.frameworks[f] for f in sorted(self.frameworks)],
        }
        if self.agent_id and not full:
            body["tasks_digest"] = tasks_digest(key for key, t in self.tasks.items() if not T.is_terminal(t.state))
        else:
            body["tasks"] = [self._task_json(t) for t in self.tasks.values()]
        if self.agent_id:
            body["agent_id"] = {"value": self.agent_id}
        else:
            body["registration_key"] = self.registration_key
        return {"type": "REGISTER", "register": body}

    def _task_json(self, task: Task) -> dict:
        out = {"task_id": {"value": task.task_id}, "framework_id": {"value": task.framework_id},
               "name": task.info.get("name", ""), "state": task.state,
               "resources": task.info.get("resources") or []}
        if self.agent_id:
            out["agent_id"] = {"value": self.agent_id}
        if task.executor_id:
            out["executor_id"] = {"value": task.executor_id}
        if task.status_uuid:
            out["status_update_uuid"] = task.status_uuid
        return out

    def on_removed(self) -> None:
        """409: the master removed this agent. Kill everything, forget it, register anew."""
        self.kill_everything()
        for task in self.tasks.values():
            if task.health_task:
                task.health_task.cancel()
        self.tasks.clear()
        self.executors.clear()
        self.frameworks.clear()
        self.updates = UpdateQueues(*self.config.update_backoff_s)
        self.cores = isolation.CoreAllocator(self.cores.cores)
        self.agent_id = None
        self._draw_registration_key()
        (self.meta / "agent.json").unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.checkpointer.save_now()

    def on_disconnected(self) -> None:
        self.log.info("master_disconnected")

    async def on_event(self, event: dict) -> None:
        kind = event.get("type")
        body = event.get(str(kind).lower())
        if not isinstance(body, dict):
            body = event
        handler = {
            "REGISTERED": self._on_registered,
            "RUN_TASK": self._on_run_task,
            "RUN_TASK_GROUP": self._on_run_task_group,
            "KILL_TASK": self._on_kill_task,
            "ACKNOWLEDGE": self._on_acknowledge,
            "MESSAGE": self._on_message,
            "SHUTDOWN_FRAMEWORK": self._on_shutdown_framework,
        }.get(kind)
        if handler is None:
            if kind not in ("PING", "ERROR"):
                self.log.info("event_ignored", type=kind)
            return
        await handler(body)

    async def _on_registered(self, body: dict) -> None:
        agent_id = _id(body.get("agent_id"))
        if not agent_id:
            self.log.error("registered_without_agent_id")
            return
        if agent_id != self.agent_id:
            self.agent_id = agent_id
            await asyncio.to_thread(self._save_agent_file)
            await asyncio.to_thread(self._draw_registration_key)  # the next registration without an id is a new one
        self.log.info("agent_registered", agent_id=agent_id, leader=self.client.leader if self.client else None)
        self.updates.resend_all_now()
        self._wake.set()
        if self.config.resource_estimator == "slack":
            self.spawn(self._report_estimate())

    # -- launching ----------------------------------------------------------------------------------
    async def _on_run_task(self, body: dict) -> None:
        framework_info, info = body.get("framework_info"), body.get("task")
        framework_id = _id((framework_info or {}).get("id"))
        task_id = _id((info or {}).get("task_id"))
        if not framework_id or not task_id or not isinstance(info, dict):
            self.log.warning("run_task_malformed", body=str(body)[:300])
            return
        if (framework_id, task_id) in self.tasks or self.updates.has_pending((framework_id, task_id)):
            self.log.info("run_task_duplicate_ignored", task_id=task_id)
            return
        self.frameworks[framework_id] = framework_info
        task = Task(framework_id, task_id, info, launched_at=time.time())
        self.tasks[task.key] = task
        error = self._validate(task)
        if error is not None:
            await self._update(task, "TASK_ERROR", source="SOURCE_AGENT", reason="REASON_TASK_INVALID", message=error)
            return
        if info.get("executor"):
            task.executor_id = _id(info["executor"].get("executor_id"))
            await self._launch_on_executor(task, info["executor"],
                                           {"type": "LAUNCH", "launch": {"task": info}})
        else:
            self.spawn(self._launch_command(task))

    async def _on_run_task_group(self, body: dict) -> None:
        framework_info, executor_info = body.get("framework_info"), body.get("executor")
        group = (body.get("task_group") or {}).get("tasks") or []
        framework_id = _id((framework_info or {}).get("id"))
        if not framework_id or not isinstance(executor_info, dict) or not group:
            self.log.warning("run_task_group_malformed", body=str(body)[:300])
            return
        self.frameworks[framework_id] = framework_info
        executor_id = _id(executor_info.get("executor_id"))
        new = []
        for info in group:
            task_id = _id(info.get("task_id")) if isinstance(info, dict) else None
            if not task_id or (framework_id, task_id) in self.tasks:
                continue
            task = Task(framework_id, task_id, {**info, "executor": executor_info}, executor_id=executor_id,
                        launched_at=time.time())
            self.tasks[task.key] = task
            new.append(task)
        if not new:
            return
        errors = [e for e in (self._validate(t) for t in new) if e]
        if not errors and executor_info.get("type") == "DEFAULT" \
                and not (executor_info.get("command") or {}).get("value") \
                and (framework_id, executor_id) not in self.executors:
            errors.append("this agent has no default executor: a task group needs an executor with a command")
        if errors:
            for task in new:
                await self._update(task, "TASK_ERROR", source="SOURCE_AGENT", reason="REASON_TASK_GROUP_INVALID",
                                   message="; ".join(errors))
            return
        await self._launch_on_executor(new[0], executor_info,
                                       {"type": "LAUNCH_GROUP", "launch_group": {"task_group": {"tasks": group}}},
                                       group=new)

    def _validate(self, task: Task) -> str | None:
        info = task.info
        if not T.valid_id(task.task_id):
            return f"invalid task id {task.task_id!r}: no '/', whitespace, '.' or '..'"
        if not T.valid_id(task.framework_id):
            return f"invalid framework id {task.framework_id!r}"
        executor = info.get("executor")
        command = info.get("command")
        if executor and command:
            return "a task has either a command or an executor, not both"
        if not executor and not (isinstance(command, dict) and isinstance(command.get("value"), str) and command["value"]):
            return "the task has no command (TaskInfo.command.value) and no executor"
        if executor:
            executor_id = _id(executor.get("executor_id"))
            if not T.valid_id(executor_id):
                return f"invalid executor id {executor_id!r}"
            running = self.executors.get((task.framework_id, executor_id))
            if running is None and not (executor.get("command") or {}).get("value") \
                    and executor.get("type") != "DEFAULT":
                return f"unknown executor {executor_id!r}: it is not running here and has no command to start it"
        try:
            wanted = flatten(task.resources())
            if executor and (task.framework_id, _id(executor.get("executor_id"))) not in self.executors:
                wanted = wanted + flatten(res.from_json(executor.get("resources") or []))
        except res.ResourceError as e:
            return f"bad resources: {e}"
        free = self._free_resources(exclude=task.key)
        if not free.contains(wanted):
            return (f"the task asks for {res.to_text(wanted)} but this agent has only {res.to_text(free)} free")
        if info.get("health_check") is not None:
            why = health.validate(info["health_check"])
            if why:
                return f"bad health check: {why}"
        labels = T.labels(info)
        try:
            isolation.qos_class(labels, bool(wanted.revocable()))
        except isolation.IsolationError as e:
            return str(e)
        return None

    def _allocated(self, exclude: Key | None = None) -> res.Resources:
        total = res.EMPTY
        for task in self.tasks.values():
            if task.key != exclude and not T.is_terminal(task.state):
                with contextlib.suppress(res.ResourceError):
                    total = total + flatten(task.resources())
        for executor in self.executors.values():
            with contextlib.suppress(res.ResourceError):
                total = total + flatten(res.from_json(executor.info.get("resources") or []))
        return total

    def _free_resources(self, exclude: Key | None = None) -> res.Resources:
        allocated = self._allocated(exclude)
        offered = flatten(self.config.resources)
        if self.estimate_cpus > 0:
            offered = offered + res.Resources({res.Kind("cpus", (), True): round(self.estimate_cpus * 1000)})
        out = res.EMPTY
        for kind, value in offered.items():
            have = res.Resources({kind: value})
            used = allocated.filter(lambda k, kind=kind: k == kind)
            out = out + (have - used if have.contains(used) else res.EMPTY)
        return out

    def _make_sandbox(self, framework_id: str, executor_id: str) -> Path:
        sandbox = (self.config.work_dir / "sandboxes" / framework_id / executor_id / uuidlib.uuid4().hex)
        sandbox.mkdir(parents=True, exist_ok=False)
        return sandbox

    def _environment(self, framework_id: str, executor_id: str, sandbox: Path, command: dict | None) -> dict:
        framework = self.frameworks.get(framework_id) or {}
        env = dict(self._base_env)
        env.update({
            "MESOS_FRAMEWORK_ID": framework_id,
            "MESOS_EXECUTOR_ID": executor_id,
            "MESOS_DIRECTORY": str(sandbox),
            "MESOS_SANDBOX": str(sandbox),
            "MESOS_AGENT_ID": self.agent_id or "",
            "MESOS_SLAVE_ID": self.agent_id or "",
            "MESOS_AGENT_ENDPOINT": f"{self.config.ip}:{self.config.port}",
            "MESOS_CHECKPOINT": "1" if framework.get("checkpoint") else "0",
            "MESOS_EXECUTOR_SHUTDOWN_GRACE_PERIOD": f"{self.config.executor_shutdown_grace_period_s}secs",
        })
        if command:
            env.update(launcher.command_environment(command))
        return env

    def _isolation(self, task: Task, info: dict) -> tuple:
        labels = T.labels(info)
        resources = task.resources()
        cpus = resources.scalar("cpus")
        cores = None
        if isolation.wants_exclusive_cpus(labels):
            cores = self.cores.allocate(task.key, isolation.exclusive_core_count(cpus or 1))
            task.cores = list(cores)
        else:
            cores = self.cores.shared()
        nice = isolation.QOS_NICE[isolation.qos_class(labels, bool(resources.revocable()))]
        mem = resources.scalar("mem")
        return cores, nice, int(mem * (1 << 20)) if mem > 0 else None

    async def _launch_command(self, task: Task) -> None:
        command = task.info["command"]
        try:
            sandbox = self._make_sandbox(task.framework_id, task.task_id)
        except OSError as e:
            await self._update(task, "TASK_FAILED", source="SOURCE_AGENT", reason="REASON_CONTAINER_LAUNCH_FAILED",
                               message=f"could not create the sandbox: {e}")
            return
        task.sandbox = str(sandbox)
        try:
            cores, nice, mem = self._isolation(task, task.info)
        except isolation.IsolationError as e:
            await self._update(task, "TASK_FAILED", source="SOURCE_AGENT", reason="REASON_CONTAINER_LAUNCH_FAILED",
                               message=str(e))
            return
        await self._update(task, "TASK_STARTING")
        if task.killing:
            self._release(task)
            await self._update(task, "TASK_KILLED", message="killed before the command started")
            return
        env = self._environment(task.framework_id, task.task_id, sandbox, command)
        env["MESOS_TASK_ID"] = task.task_id
        try:
            task.handle = await launcher.spawn(command, sandbox, env, isolation.preexec(cores, nice, mem))
        except Exception as e:  # noqa: BLE001 - OSError, SubprocessError from preexec, ValueError
            self._release(task)
            await self._update(task, "TASK_FAILED", reason="REASON_CONTAINER_LAUNCH_FAILED",
                               message=f"could not start the command: {type(e).__name__}: {e}")
            return
        task.pid, task.pid_start = task.handle.pid, task.handle.start_time
        self.log.info("task_started", task_id=task.task_id, pid=task.pid, sandbox=task.task_id)
        self.spawn(self._watch_task(task))
        await self._update(task, "TASK_RUNNING")
        if task.killing:
            self.spawn(self._kill_process(task, self._grace(task, None)))
        elif task.info.get("health_check"):
            task.health_task = self.spawn(self._health_loop(task))

    async def _watch_task(self, task: Task) -> None:
        returncode = await task.handle.wait()
        task.handle.reap_group()
        if task.health_task is not None:
            task.health_task.cancel()
        self._release(task)
        if self.tasks.get(task.key) is not task or T.is_terminal(task.state):
            return
        if returncode is None and task.killing:
            await self._update(task, "TASK_KILLED", reason="REASON_CONTAINER_PREEMPTED" if task.preempted else None,
                               message="Command killed (its exit status is unknown after an agent restart)",
                               healthy=False if task.killed_by_health else None)
            return
        if returncode is None:
            await self._update(task, "TASK_FAILED", reason="REASON_EXECUTOR_TERMINATED",
                               message="Command terminated while the agent was not watching; its exit status is lost",
                               healthy=False if task.killed_by_health else None)
            return
        state = T.exit_state(returncode, task.killing)
        message = "Command " + T.describe_exit(returncode)
        if task.killed_by_health:
            message += " (killed after failing health checks)"
        reason = None
        if task.killing and task.preempted:
            reason = "REASON_CONTAINER_PREEMPTED"
        await self._update(task, state, message=message, reason=reason,
                           healthy=False if task.killed_by_health else None)

    def _release(self, task: Task) -> None:
        self.cores.release(task.key)

    async def _launch_on_executor(self, task: Task, executor_info: dict, event: dict, group=None) -> None:
        group = group or [task]
        key = (task.framework_id, task.executor_id)
        executor = self.executors.get(key)
        if executor is None:
            executor = Executor(task.framework_id, task.executor_id, executor_info)
            try:
                sandbox = self._make_sandbox(task.framework_id, task.executor_id)
            except OSError as e:
                for t in group:
                    await self._update(t, "TASK_FAILED", source="SOURCE_AGENT", reason="REASON_CONTAINER_LAUNCH_FAILED",
                                       message=f"could not create the executor's sandbox: {e}")
                return
            executor.sandbox = str(sandbox)
            command = executor_info.get("command") or {}
            env = self._environment(task.framework_id, task.executor_id, sandbox, command)
            try:
                labels = T.labels(executor_info)
                nice = isolation.QOS_NICE[isolation.qos_class(labels, False)]
                mem = res.from_json(executor_info.get("resources") or []).scalar("mem")
                executor.handle = await launcher.spawn(command, sandbox, env, isolation.preexec(
                    self.cores.shared(), nice, int(mem * (1 << 20)) if mem > 0 else None))
            except Exception as e:  # noqa: BLE001
                for t in group:
                    await self._update(t, "TASK_FAILED", source="SOURCE_AGENT", reason="REASON_CONTAINER_LAUNCH_FAILED",
                                       message=f"could not start the executor: {type(e).__name__}: {e}")
                return
            executor.pid, executor.pid_start = executor.handle.pid, executor.handle.start_time
            self.executors[key] = executor
            self.log.info("executor_started", executor_id=executor.executor_id, pid=executor.pid)
            self.spawn(self._watch_executor(executor))
            self.spawn(self._expect_subscription(executor, self.config.executor_registration_timeout_s))
        for t in group:
            t.sandbox = executor.sandbox
        if not executor.send(event):
            executor.queued.append(event)
        await self.save()

    async def _expect_subscription(self, executor: Executor, timeout_s: float) -> None:
        try:
            await within(executor.subscribed.wait(), timeout_s)
        except TimeoutError:
            if self.executors.get(executor.key) is executor and executor.handle is not None:
                self.log.warning("executor_did_not_subscribe", executor_id=executor.executor_id, timeout_s=timeout_s)
                executor.handle.signal_group(signal.SIGKILL)

    async def _watch_executor(self, executor: Executor) -> None:
        returncode = await executor.handle.wait()
        executor.handle.reap_group()
        if self.executors.get(executor.key) is not executor:
            return
        why = "Executor terminated" if returncode is None else f"Executor {T.describe_exit(returncode)}"
        self.log.info("executor_exited", executor_id=executor.executor_id, returncode=returncode)
        await self._executor_gone(executor, why)

    async def _executor_gone(self, executor: Executor, message: str) -> None:
        self.executors.pop(executor.key, None)
        if executor.stream is not None:
            executor.stream.put_nowait(None)
        for task in list(self.tasks.values()):
            if (task.framework_id, task.executor_id) == executor.key and not T.is_terminal(task.state):
                await self._update(task, "TASK_FAILED", source="SOURCE_AGENT", reason="REASON_EXECUTOR_TERMINATED",
                                   message=message)
        await self.save()

    # -- status updates ------------------------------------------------------------------------------
    async def _update(self, task: Task, state: str, *, source: str = "SOURCE_EXECUTOR", reason: str | None = None,
                      message: str | None = None, healthy: bool | None = None) -> None:
        """Record a new state of a task, queue its update, checkpoint, then let the pump send it."""
        if not T.transition_allowed(task.state, state):
            self.log.info("transition_ignored", task_id=task.task_id, state=task.state, new=state)
            return
        status = T.make_status(
            task.task_id, state, uuid=os.urandom(16), timestamp=time.time(), agent_id=self.agent_id, source=source,
            executor_id=task.executor_id, reason=reason, message=message, healthy=healthy)
        await self._queue(task, status)

    async def _queue(self, task: Task | None, status: dict, framework_id: str | None = None) -> None:
        if task is not None:
            task.state = status["state"]
            task.status_uuid = status["uuid"]
            if "healthy" in status:
                task.healthy = status["healthy"]
            framework_id = task.framework_id
            if T.is_terminal(task.state):
                self._release(task)
        self.updates.add(framework_id, status)
        self.log.info("status_update_queued", task_id=status["task_id"]["value"], state=status["state"],
                      uuid=status["uuid"], message=status.get("message"))
        await self.save()
        self._wake.set()

    async def _update_pump(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            now = loop.time()
            if self.client is not None and self.client.registered.is_set():
                due = self.updates.due(now)
                for update in due:
                    self.updates.sent(update, now)
                if len(due) == 1:
                    self.client.spawn(self.client.call({"type": "UPDATE", "update": due[0].to_json_call()}))
                for i in range(0, len(due) if len(due) > 1 else 0, UPDATES_PER_CALL):  # a burst: few calls
                    self.client.spawn(self._send_updates(due[i:i + UPDATES_PER_CALL]))
            deadline = self.updates.next_deadline()
            if any(not u.saved for u in self.updates.all()):
                # A checkpoint failed (disk full?): retry it every second; the updates it
                # holds are sent once it succeeds.
                self.spawn(self.save())
                deadline = min(deadline, now + 1.0) if deadline is not None else now + 1.0
            timeout = None if deadline is None else max(0.01, deadline - loop.time())
            with contextlib.suppress(TimeoutError):
                await within(self._wake.wait(), timeout)

    async def _send_updates(self, batch: list[PendingUpdate]) -> None:
        """One UPDATES call; one UPDATE each to a master that does not know UPDATES (400)."""
        status = await self.client.call({"type": "UPDATES", "updates": {
            "updates": [u.to_json_call() for u in batch]}})
        if status == 400:
            for update in batch:
                await self.client.call({"type": "UPDATE", "update": update.to_json_call()})

    async def _on_acknowledge(self, body: dict) -> None:
        framework_id, task_id, uuid = _id(body.get("framework_id")), _id(body.get("task_id")), body.get("uuid")
        acked = self.updates.acknowledge(framework_id, task_id, uuid)
        if acked is None:
            self.log.info("acknowledgement_ignored", task_id=task_id, uuid=uuid)
            return
        task = self.tasks.get((framework_id, task_id))
        if task is not None and task.executor_id and acked.status.get("source") == "SOURCE_EXECUTOR":
            executor = self.executors.get((framework_id, task.executor_id))
            if executor is not None:
                executor.send({"type": "ACKNOWLEDGED",
                               "acknowledged": {"task_id": {"value": task_id}, "uuid": uuid}})
        if task is not None and T.is_terminal(task.state) and not self.updates.has_pending(task.key):
            del self.tasks[task.key]
        await self.save()
        self._wake.set()

    # -- kills, messages, shutdown ------------------------------------------------------------------------
    def _grace(self, task: Task, kill_policy) -> float:
        if kill_policy and kill_policy.get("grace_period"):
            return T.duration_seconds(kill_policy["grace_period"], self.config.default_kill_grace_period_s)
        if task.kill_grace_s is not None:
            return task.kill_grace_s
        policy = task.info.get("kill_policy") or {}
        return T.duration_seconds(policy.get("grace_period"), self.config.default_kill_grace_period_s)

    async def _on_kill_task(self, body: dict) -> None:
        framework_id, task_id = _id(body.get("framework_id")), _id(body.get("task_id"))
        if not framework_id or not task_id:
            return
        task = self.tasks.get((framework_id, task_id))
        if task is None:
            if self.updates.has_pending((framework_id, task_id)):
                return  # its terminal update is on its way
            status = T.make_status(task_id, "TASK_LOST", uuid=os.urandom(16), timestamp=time.time(),
                                   agent_id=self.agent_id, source="SOURCE_AGENT", reason="REASON_TASK_UNKNOWN",
                                   message="the agent does not know this task")
            await self._queue(None, status, framework_id=framework_id)
            return
        await self.kill(task, body.get("kill_policy"))

    async def kill(self, task: Task, kill_policy=None, preempted: bool = False) -> None:
        if T.is_terminal(task.state):
            return
        task.kill_grace_s = self._grace(task, kill_policy)
        if preempted:
            task.preempted = True
        if task.executor_id:
            executor = self.executors.get((task.framework_id, task.executor_id))
            if executor is None:
                await self._update(task, "TASK_KILLED", source="SOURCE_AGENT", message="its executor is gone")
                return
            queued = [e for e in executor.queued if e.get("type") == "LAUNCH"
                      and _id(e["launch"]["task"].get("task_id")) == task.task_id]
            if queued:
                executor.queued = [e for e in executor.queued if e not in queued]
                await self._update(task, "TASK_KILLED", source="SOURCE_AGENT",
                                   message="killed before it reached its executor")
                return
            kill = {"task_id": {"value": task.task_id}}
            if kill_policy:
                kill["kill_policy"] = kill_policy
            if not executor.send({"type": "KILL", "kill": kill}):
                executor.queued.append({"type": "KILL", "kill": kill})  # delivered when it (re)subscribes
            return
        first = not task.killing
        task.killing = True
        if task.handle is None:
            return  # the launch sees `killing` and reports TASK_KILLED
        if not first:
            return
        capabilities = {c.get("type") for c in (self.frameworks.get(task.framework_id) or {}).get("capabilities") or []}
        if "TASK_KILLING_STATE" in capabilities:
            await self._update(task, "TASK_KILLING")
        else:
            await self.save()
        self.spawn(self._kill_process(task, task.kill_grace_s))

    async def _kill_process(self, task: Task, grace_s: float) -> None:
        if task.health_task is not None and task.health_task is not asyncio.current_task():
            task.health_task.cancel()
        await task.handle.kill(grace_s)

    async def _on_message(self, body: dict) -> None:
        framework_id, executor_id = _id(body.get("framework_id")), _id(body.get("executor_id"))
        executor = self.executors.get((framework_id, executor_id))
        if executor is None or not executor.send({"type": "MESSAGE", "message": {"data": body.get("data", "")}}):
            self.log.info("framework_message_dropped", executor_id=executor_id, reason="executor not subscribed")

    async def _on_shutdown_framework(self, body: dict) -> None:
        framework_id = _id(body.get("framework_id"))
        if not framework_id:
            return
        self.log.info("framework_shutting_down", framework_id=framework_id)
        for executor in [e for e in self.executors.values() if e.framework_id == framework_id]:
            self.spawn(self.shutdown_executor(executor))
        for task in [t for t in self.tasks.values() if t.framework_id == framework_id]:
            del self.tasks[task.key]
            self._release(task)
            if task.health_task is not None:
                task.health_task.cancel()
            if task.handle is not None and not task.executor_id:
                task.killing = True
                self.spawn(task.handle.kill(self._grace(task, None)))
        self.updates.drop_framework(framework_id)
        self.frameworks.pop(framework_id, None)
        await self.save()

    async def shutdown_executor(self, executor: Executor) -> None:
        executor.shutting_down = True
        self.executors.pop(executor.key, None)
        executor.send({"type": "SHUTDOWN"})
        if executor.handle is None:
            return
        self._terminating.add(executor)
        try:
            await within(asyncio.shield(executor.handle.exited.wait()),
                                   self.config.executor_shutdown_grace_period_s)
        except TimeoutError:
            executor.handle.signal_group(signal.SIGKILL)
        self._terminating.discard(executor)
        if executor.stream is not None:
            executor.stream.put_nowait(None)
        await self.save()

    # -- health checks -------------------------------------------------------------------------------------
    async def _health_loop(self, task: Task) -> None:
        check = task.info["health_check"]
        config = health.settings(check)
        loop = asyncio.get_running_loop()
        tracker = health.HealthTracker(config["grace_period_seconds"], config["consecutive_failures"],
                                       started_at=loop.time())
        await asyncio.sleep(config["delay_seconds"])
        env = self._environment(task.framework_id, task.task_id, Path(task.sandbox), None)
        while not T.is_terminal(task.state) and not task.killing:
            ok, detail = await health.check_once(check, config["timeout_seconds"], task.sandbox, env)
            change = tracker.record(ok, loop.time())
            if change is not None and not task.killing and not T.is_terminal(task.state):
                self.log.info("task_health_changed", task_id=task.task_id, healthy=change.healthy, detail=detail,
                              failures=change.consecutive_failures)
                await self._update(task, "TASK_RUNNING", reason="REASON_TASK_HEALTH_CHECK_STATUS_UPDATED",
                                   healthy=change.healthy,
                                   message=None if change.healthy else f"health check failed: {detail}")
                if change.kill:
                    task.killed_by_health = True
                    await self.kill(task)
                    return
            await asyncio.sleep(config["interval_seconds"])

    # -- oversubscription ----------------------------------------------------------------------------------
    async def _estimator_loop(self) -> None:
        loop = asyncio.get_running_loop()
        ticks_per_s = os.sysconf("SC_CLK_TCK")
        previous, previous_at = await asyncio.to_thread(self.usage_sampler), loop.time()
        while True:
            await asyncio.sleep(self.config.oversubscription_interval_s)
            current, now = await asyncio.to_thread(self.usage_sampler), loop.time()
            regular = [t for t in self.tasks.values() if not T.is_terminal(t.state) and t.pid
                       and not t.resources().revocable()]
            sessions = {t.pid for t in regular}
            used = estimator.cpu_usage({k: v for k, v in previous.items() if k in sessions},
                                       {k: v for k, v in current.items() if k in sessions},
                                       now - previous_at, ticks_per_s)
            previous, previous_at = current, now
            allocated = sum(t.resources().non_revocable().scalar("cpus") for t in regular)
            await self.apply_estimate(self.estimator.estimate(allocated, used))

    async def apply_estimate(self, estimate_cpus: float) -> None:
        """Adopt a new estimate: report it if it changed, and kill the newest revocable tasks
        that no longer fit."""
        changed = abs(estimate_cpus - self.estimate_cpus) > 1e-9
        self.estimate_cpus = estimate_cpus
        holders = [estimator.RevocableTask(t.key, t.resources().revocable().scalar("cpus"), t.launched_at)
                   for t in self.tasks.values() if not T.is_terminal(t.state) and not t.killing
                   and t.resources().revocable()]
        for key in estimator.victims(holders, estimate_cpus):
            task = self.tasks[key]
            self.log.info("revocable_task_preempted", task_id=task.task_id, estimate_cpus=estimate_cpus)
            await self.kill(task, {"grace_period": {"nanoseconds": 0}}, preempted=True)
        if changed:
            await self.save()
            await self._report_estimate()

    async def _report_estimate(self) -> None:
        if self.client is None:
            return
        resources = []
        if self.estimate_cpus > 0:
            resources = res.to_json(res.Resources({res.Kind("cpus", (), True): round(self.estimate_cpus * 1000)}))
        await self.client.call({"type": "UPDATE_OVERSUBSCRIBED_RESOURCES",
                                "update_oversubscribed_resources": {"oversubscribed_resources": resources}})

    # -- the executor API's hooks --------------------------------------------------------------------------
    def executor_for(self, framework_id: str | None, executor_id: str | None) -> Executor | None:
        return self.executors.get((framework_id, executor_id))

    async def executor_update(self, executor: Executor, status: dict) -> str | None:
        """An UPDATE call from an executor; None when accepted, else why not (400)."""
        task_id = _id(status.get("task_id"))
        task = self.tasks.get((executor.framework_id, task_id))
        state = status.get("state")
        if task is None or task.executor_id != executor.executor_id:
            # Completed and forgotten (or never ours): Mesos accepts such updates, and so do
            # we, so that an executor does not die of a late one.
            self.log.info("update_for_unknown_task_ignored", task_id=task_id, state=state,
                          executor_id=executor.executor_id)
            return None
        if state not in T.STATES:
            return f"unknown task state {state!r}"
        try:
            raw = base64.b64decode(status.get("uuid") or "", validate=True)
        except (binascii.Error, ValueError, TypeError):
            raw = b""
        if len(raw) != 16:
            return "the status needs a uuid: 16 bytes, base64"
        if any(u.uuid == status["uuid"] for u in self.updates.pending(task.key)):
            return None  # a resend of one we hold
        if T.is_terminal(task.state):
            self.log.info("update_after_terminal_ignored", task_id=task_id, state=state)
            return None
        status = {**status, "agent_id": {"value": self.agent_id}, "executor_id": {"value": executor.executor_id},
                  "source": status.get("source") or "SOURCE_EXECUTOR"}
        status.setdefault("timestamp", time.time())
        await self._queue(task, status)
        return None

    async def executor_message(self, executor: Executor, data: str) -> None:
        if self.client is not None:
            self.client.spawn(self.client.call({"type": "MESSAGE", "message": {
                "framework_id": {"value": executor.framework_id},
                "executor_id": {"value": executor.executor_id}, "data": data}}))

    def executor_subscribed_event(self, executor: Executor) -> dict:
        return {"type": "SUBSCRIBED", "subscribed": {
            "executor_info": {**executor.info, "framework_id": {"value": executor.framework_id}},
            "framework_info": self.frameworks.get(executor.framework_id) or {"id": {"value": executor.framework_id}},
            "agent_info": {**self.agent_info, "id": {"value": self.agent_id}},
            "container_id": {"value": Path(executor.sandbox).name},
        }}

    def known_update(self, executor: Executor, task_id: str, uuid: str) -> bool:
        return any(u.uuid == uuid for u in self.updates.pending((executor.framework_id, task_id)))

    # -- introspection -------------------------------------------------------------------------------------
    def state_json(self) -> dict:
        return {
            "agent_id": self.agent_id,
            "agent_info": self.agent_info,
            "leader": self.client.leader if self.client else None,
            "registered": bool(self.client and self.client.registered.is_set()),
            "tasks": [{**t.to_json(), "info": None} for t in self.tasks.values()],
            "executors": [{**e.to_json(), "subscribed": e.subscribed.is_set()} for e in self.executors.values()],
            "pending_updates": [u.to_json() for u in self.updates.all()],
            "oversubscribed_cpus": self.estimate_cpus,
            "exclusive_cores": {f"{k[0]}/{k[1]}": list(v) for k, v in self.cores.owners.items()},
        }


def remove_sandboxes(work_dir: Path) -> None:
    shutil.rmtree(work_dir / "sandboxes", ignore_errors=True)
