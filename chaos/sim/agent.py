"""A simulated agent: runs tasks in simulated time and speaks the master-agent protocol
(docs/api/agent-protocol.md) over the simulated network, as mesos_es/agent does.

* REGISTER to the master it believes leads (307 and 503 move it on). A first registration
  carries a registration key, kept until REGISTERED, so that a REGISTER sent again after a
  lost answer finds the agent it made; a re-registration sends the digest of its non-terminal
  tasks (`core.agent_digest.tasks_digest`) and, on 412, the task list; 409 makes it forget
  its id and tasks and register anew.
* RUN_TASK starts a task (a known task id is ignored); the task reports TASK_RUNNING and,
  after the `sleep N` of its command, TASK_FINISHED. KILL_TASK ends it with TASK_KILLED (an
  unknown task gets TASK_LOST), SHUTDOWN_FRAMEWORK kills the framework's tasks.
* Status updates are reliable: per task a checkpointed queue, only its head in flight, resent
  with backoff and at once after each REGISTERED, dropped when the master relays the
  framework's ACKNOWLEDGE of its uuid. A task is forgotten once its terminal update is
  acknowledged.
* A stream silent for 3 ping intervals is dead: the agent registers again.
* A crash loses everything but the checkpoint (its id, its tasks and their update queues).
  On recovery each task's executor has survived, or not (seeded): a survivor finishes when it
  was due (at once if that passed while the agent was down), the others fail.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from chaos.sim.world import EPOCH_MS, Node
from mesos_es.core.agent_digest import tasks_digest
from mesos_es.core.convert import STATE_NAMES, TERMINAL_STATES, id_value, ident
from mesos_es.core.resources import EMPTY, Resources, from_json, to_json

TERMINAL = frozenset(STATE_NAMES[s] for s in TERMINAL_STATES)
UPDATE_BACKOFF_MS = (2_000, 16_000)  # the real agent: 10 s doubling to 10 min (docs/agent.md)
CALL_TIMEOUT_MS = 3_000
# The real agent waits for REGISTER's answer as long as its connection lives (no read
# timeout): here, until TCP would give up on a peer that went silent.
REGISTER_TIMEOUT_MS = 15_000
EXECUTOR_SURVIVES = 0.8


@dataclass
class TaskRun:
    framework_id: str
    task_id: str
    resources: Resources
    duration_ms: int
    state: str = "TASK_STAGING"
    ends_at: int | None = None  # sim time the task finishes, once running


@dataclass
class Checkpoint:
    """What survives a crash of the agent."""

    agent_id: str | None = None
    # Sent with REGISTERs until the first REGISTERED; checkpointed, as the real agent's, so a
    # restart before REGISTERED retries the same registration.
    registration_key: str = ""
    tasks: dict[tuple[str, str], TaskRun] = field(default_factory=dict)
    queues: dict[tuple[str, str], list[dict]] = field(default_factory=dict)
    ran: set[tuple[str, str]] = field(default_factory=set)  # every task it ever started


class SimAgent(Node):
    def __init__(self, world, net, name: str, resources: Resources, masters: list[str], observations,
                 ping_interval_ms: int):
        super().__init__(world, name)
        self.net = net
        self.resources = resources
        self.masters = masters
        self.observations = observations
        self.ping_interval_ms = ping_interval_ms
        self.ckpt = Checkpoint(registration_key=self._new_key())
        self._volatile()

    def _volatile(self) -> None:
        self.master = self.world.rng.choice(self.masters)
        self.stream = None
        self.registering = None
        self.conn = 0  # the connection of its latest REGISTER
        self.last_heard = 0
        self.finish_timers: dict[tuple[str, str], object] = {}
        self.resend_timers: dict[tuple[str, str], object] = {}
        self.backoff: dict[tuple[str, str], int] = {}

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        self.register()
        self.later(self.ping_interval_ms, self._watchdog)

    def crash(self) -> None:
        if self.stream is not None:
            self.stream.client_closed()
        super().crash()
        self.log("crashed")

    def restart(self) -> None:
        """Recover the checkpoint: executors that survived go on, the others' tasks fail."""
        self.alive = True
        self._volatile()
        recovered = []
        for key in sorted(self.ckpt.tasks):
            task = self.ckpt.tasks[key]
            if task.state in TERMINAL:
                continue
            if self.world.chance(EXECUTOR_SURVIVES):
                self._run(task, max(0, (task.ends_at or self.world.now + task.duration_ms) - self.world.now))
                recovered.append(key[1])
            else:
                self._update(key, "TASK_FAILED", source="SOURCE_AGENT", reason="REASON_EXECUTOR_TERMINATED")
        self.log(f"restarted: {len(recovered)} tasks recovered, {len(self.ckpt.queues)} update queues")
        self.start()

    # -- registration ---------------------------------------------------------------------------
    def register(self, full: bool = False) -> None:
        body: dict = {"agent_info": {"hostname": self.name, "port": 5051, "resources": to_json(self.resources)}}
        agent_id = self.ckpt.agent_id
        if agent_id and not full:
            body["tasks_digest"] = tasks_digest(k for k, t in self.ckpt.tasks.items() if t.state not in TERMINAL)
        else:
            body["tasks"] = [{"task_id": ident(t.task_id), "framework_id": ident(t.framework_id), "state": t.state}
                             for _, t in sorted(self.ckpt.tasks.items())]
        if agent_id:
            body["agent_id"] = ident(agent_id)
        else:
            body["registration_key"] = self.ckpt.registration_key
        if self.registering is not None:
            self.registering.finish()
        self.conn += 1
        self.registering = self.net.call(self, self.master, "agent",
                                         {"call": {"type": "REGISTER", "register": body}, "conn": self.conn},
                                         self._registration_answered, REGISTER_TIMEOUT_MS)

    def _registration_answered(self, status: int | None, body: dict) -> None:
        self.registering = None
        if status == 307:
            self.master = body["leader"]
            self.later(self.world.uniform_ms(1, 20), self.register)
        elif status == 412:
            self.register(full=True)
        elif status == 409:
            self.log("removed by the master: forgetting its id and tasks")
            self.observations.note(f"agent {self.name} was removed and registered anew")
            for key in sorted(self.ckpt.tasks):
                self._stop_task(key)
            self.ckpt = Checkpoint(ran=self.ckpt.ran, registration_key=self._new_key())
            self.later(10, self.register)
        else:  # 503, a timeout, 400
            self.master = self.world.rng.choice(self.masters)
            self.later(self.world.uniform_ms(200, 1_000), self.register)

    def _new_key(self) -> str:
        return str(uuid.UUID(int=self.world.rng.getrandbits(128)))

    def _watchdog(self) -> None:
        if self.stream is not None and self.world.now - self.last_heard > 3 * self.ping_interval_ms:
            self.log("stream silent: registering again")
            self._lose_stream()
        self.later(self.ping_interval_ms, self._watchdog)

    def _lose_stream(self) -> None:
        if self.stream is not None:
            self.stream.client_closed()
        self.stream = None
        if self.registering is None:
            self.later(self.world.uniform_ms(10, 200), self.register)

    def on_stream(self, stream, event: dict | None) -> None:
        if event is not None and event["type"] == "REGISTERED":
            if self.registering is None or stream.conn != self.conn:
                stream.client_closed()  # the answer to a request it gave up on, or a duplicate
                return
            if self.stream is not None and self.stream is not stream:
                self.stream.client_closed()
            self.stream = stream
            self.master = stream.server.name
            if self.registering is not None:
                self.registering.finish()
                self.registering = None
            self.ckpt.agent_id = id_value(event["registered"], "agent_id")
            self.ckpt.registration_key = self._new_key()  # the next registration without an id is a new one
            self.last_heard = self.world.now
            self.log(f"registered with {self.master} as {self.ckpt.agent_id}")
            for key in sorted(self.ckpt.queues):
                self._send_head(key, reset=True)
            return
        if event is None and stream is not self.stream and self.registering is not None and stream.conn == self.conn:
            # The connection of the outstanding REGISTER failed before its answer: try again.
            self.registering.finish()
            self.registering = None
            self.later(self.world.uniform_ms(10, 200), self.register)
            return
        if stream is not self.stream:
            return
        if event is None:
            self.stream = None
            self.later(self.world.uniform_ms(10, 200), self.register)
            return
        self.last_heard = self.world.now
        kind = event["type"]
        if kind == "PING":
            self._call({"type": "PONG"}, lambda status, body: self._lose_stream() if status == 403 else None)
        elif kind == "RUN_TASK":
            self._launch(event["run_task"])
        elif kind == "KILL_TASK":
            body = event["kill_task"]
            self._kill((id_value(body, "framework_id"), id_value(body, "task_id")))
        elif kind == "ACKNOWLEDGE":
            self._acknowledged(event["acknowledge"])
        elif kind == "SHUTDOWN_FRAMEWORK":
            framework_id = id_value(event["shutdown_framework"], "framework_id")
            for key in sorted(k for k in self.ckpt.tasks if k[0] == framework_id):
                self._kill(key)

    def _call(self, call: dict, on_reply) -> None:
        if self.stream is None or self.ckpt.agent_id is None:
            return
        call = {**call, "agent_id": ident(self.ckpt.agent_id)}
        self.net.call(self, self.stream.server.name, "agent", {"call": call, "stream_id": self.stream.stream_id},
                      on_reply, CALL_TIMEOUT_MS)

    # -- tasks ----------------------------------------------------------------------------------
    def _launch(self, body: dict) -> None:
        task = body["task"]
        framework_id, task_id = id_value(body["framework_info"], "id"), id_value(task, "task_id")
        key = (framework_id, task_id)
        if key in self.ckpt.tasks:
            return  # a launch sent again: already known
        resources = from_json(task.get("resources") or [])
        in_use = EMPTY
        for other in self.ckpt.tasks.values():
            if other.state not in TERMINAL:
                in_use = in_use + other.resources
        self.observations.agent_launched(self.name, key, self.world.now, key in self.ckpt.ran,
                                         self.resources.contains(in_use + resources))
        self.ckpt.ran.add(key)
        seconds = float(task["command"]["value"].split()[1])
        run = TaskRun(framework_id, task_id, resources, int(seconds * 1000))
        self.ckpt.tasks[key] = run
        self.log(f"launched {task_id}")
        self._run(run, run.duration_ms)
        self.later(self.world.uniform_ms(5, 50), self._started, key)

    def _run(self, task: TaskRun, remaining_ms: int) -> None:
        key = (task.framework_id, task.task_id)
        task.ends_at = self.world.now + remaining_ms
        self.finish_timers[key] = self.later(remaining_ms, self._finished, key)

    def _started(self, key) -> None:
        task = self.ckpt.tasks.get(key)
        if task is not None and task.state == "TASK_STAGING":
            self._update(key, "TASK_RUNNING")

    def _finished(self, key) -> None:
        task = self.ckpt.tasks.get(key)
        if task is not None and task.state not in TERMINAL:
            if task.state == "TASK_STAGING":
                self._update(key, "TASK_RUNNING")
            self._update(key, "TASK_FINISHED")

    def _stop_task(self, key) -> None:
        timer = self.finish_timers.pop(key, None)
        if timer is not None:
            timer.cancel()

    def _kill(self, key) -> None:
        task = self.ckpt.tasks.get(key)
        if task is None:
            if key in self.ckpt.queues:
                return  # its terminal update is on its way
            self._update(key, "TASK_LOST", source="SOURCE_AGENT", reason="REASON_TASK_UNKNOWN")
            return
        if task.state in TERMINAL:
            return
        self._stop_task(key)
        self._update(key, "TASK_KILLED", source="SOURCE_AGENT")

    # -- reliable status updates ----------------------------------------------------------------
    def _update(self, key, state: str, source: str = "SOURCE_EXECUTOR", reason: str = "") -> None:
        task = self.ckpt.tasks.get(key)
        if task is not None:
            task.state = state
            if state in TERMINAL:
                self._stop_task(key)
        status = {"task_id": ident(key[1]), "state": state, "source": source,
                  "uuid": _b64(self.world.new_uuid()), "timestamp": (EPOCH_MS + self.world.now) / 1000}
        if reason:
            status["reason"] = reason
        if self.ckpt.agent_id:
            status["agent_id"] = ident(self.ckpt.agent_id)
        queue = self.ckpt.queues.setdefault(key, [])
        queue.append({"framework_id": key[0], "status": status})
        if len(queue) == 1:
            self._send_head(key, reset=True)

    def _send_head(self, key, reset: bool = False) -> None:
        queue = self.ckpt.queues.get(key)
        if not queue:
            return
        timer = self.resend_timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        low, high = UPDATE_BACKOFF_MS
        backoff = low if reset or key not in self.backoff else min(high, self.backoff[key] * 2)
        self.backoff[key] = backoff
        self.resend_timers[key] = self.later(backoff, self._send_head, key)
        head = queue[0]
        self._call({"type": "UPDATE", "update": {"framework_id": ident(head["framework_id"]), "status": head["status"]}},
                   lambda status, body: self._lose_stream() if status == 403 else None)

    def _acknowledged(self, body: dict) -> None:
        key = (id_value(body, "framework_id"), id_value(body, "task_id"))
        queue = self.ckpt.queues.get(key)
        if not queue or queue[0]["status"]["uuid"] != body["uuid"]:
            return
        queue.pop(0)
        timer = self.resend_timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        if queue:
            self._send_head(key, reset=True)
            return
        del self.ckpt.queues[key]
        task = self.ckpt.tasks.get(key)
        if task is not None and task.state in TERMINAL:
            del self.ckpt.tasks[key]

    # -- for the checks -------------------------------------------------------------------------
    def busy(self) -> list[str]:
        """What keeps this agent from being done: running tasks and unacknowledged updates."""
        out = [f"task {k[1]} {t.state}" for k, t in sorted(self.ckpt.tasks.items()) if t.state not in TERMINAL]
        out += [f"{len(q)} updates of {k[1]} unacknowledged" for k, q in sorted(self.ckpt.queues.items())]
        if self.stream is None:
            out.append("not registered")
        return out


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()
