"""A simulated framework: a scheduler with a few jobs, over the v1 scheduler API.

It behaves as a careful Mesos framework does:

* SUBSCRIBE to the master it believes leads (following 307s, moving on after 503s and
  timeouts) and, after a failover, SUBSCRIBE again with the same framework id; a stream
  silent for 3 heartbeats is dead.
* Each job needs one task to finish. An offer that fits pending jobs is ACCEPTed with their
  LAUNCHes (the task is recorded before the call is sent); other offers are DECLINEd, and now
  and then one is left unanswered until the master rescinds it; with nothing left to launch
  it SUPPRESSes, and REVIVEs when a job needs a new attempt (and again every few seconds
  while one waits for offers).
* Every UPDATE with a uuid is ACKNOWLEDGEd, duplicates included (the master ignores repeats);
  each uuid is acted on once. A task that ends other than FINISHED (or KILLED, for a job that
  kills its task) is launched again under a new task id, up to MAX_ATTEMPTS.
* Some jobs KILL their task a while after it runs, and repeat the KILL until it ends.
* It RECONCILEs the tasks it does not know to be terminal after each SUBSCRIBED, after an
  ACCEPT whose answer it did not get, and every few seconds; never a task whose ACCEPT is
  still unanswered (the master answers RECONCILE from what it has committed, so it would say
  TASK_LOST for a launch on its way).

Its framework id, jobs and tasks are its durable state (a real framework persists them).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from chaos.sim.world import Node
from mesos_es.core.convert import STATE_NAMES, TERMINAL_STATES, id_value, ident
from mesos_es.core.resources import Resources, from_json, to_json

TERMINAL = frozenset(STATE_NAMES[s] for s in TERMINAL_STATES)
# What ends a task for the framework: a terminal state, or TASK_UNKNOWN (a partition-aware
# framework's answer to reconciling a task the master does not know: it was never launched).
FINAL = TERMINAL | {"TASK_UNKNOWN"}
MAX_ATTEMPTS = 12
CALL_TIMEOUT_MS = 4_000
SUBSCRIBE_TIMEOUT_MS = 15_000  # SUBSCRIBE's answer is its stream: waited for while the connection lives
RECONCILE_EVERY_MS = 5_000
KILL_RETRY_MS = 3_000
IGNORE_OFFER = 0.05


@dataclass
class Job:
    name: str
    resources: Resources
    duration_s: float
    kill_after_ms: int | None = None
    attempts: list[str] = field(default_factory=list)
    current_failed: bool = False  # its latest attempt ended without doing the job
    done: str = ""  # "", "finished", "killed", "gave up"

    @property
    def needs_launch(self) -> bool:
        return not self.done and (not self.attempts or self.current_failed)


@dataclass
class TaskView:
    task_id: str
    job: str
    agent_id: str
    state: str = ""  # the last state the framework was told ("" until it hears anything)
    kill_sent: bool = False
    # Its ACCEPT is unanswered: not reconciled meanwhile (the master would answer TASK_LOST
    # for a launch it has not committed yet).
    accept_pending: bool = True


class SimFramework(Node):
    def __init__(self, world, net, name: str, masters: list[str], jobs: list[Job], role: str,
                 partition_aware: bool, observations, heartbeat_ms: int):
        super().__init__(world, name)
        self.net = net
        self.masters = masters
        self.jobs = {job.name: job for job in jobs}
        self.role = role
        self.partition_aware = partition_aware
        self.observations = observations
        self.heartbeat_ms = heartbeat_ms
        self.framework_id: str | None = None
        self.tasks: dict[str, TaskView] = {}
        self.seen_uuids: set[str] = set()
        self.removed = False
        self.master = world.rng.choice(masters)
        self.stream = None
        self.subscribing = None
        self.conn = 0  # the connection of its latest SUBSCRIBE
        self.last_heard = 0
        self.suppressed = False
        self.last_offer_at = 0

    # -- subscription ---------------------------------------------------------------------------
    def start(self) -> None:
        self.subscribe()
        self.later(self.heartbeat_ms, self._watchdog)
        self.later(RECONCILE_EVERY_MS, self._periodic_reconcile)

    def subscribe(self) -> None:
        if self.removed:
            return
        info = {"user": "sim", "name": self.name, "roles": [self.role], "failover_timeout": 3600.0,
                "capabilities": [{"type": "MULTI_ROLE"}] + ([{"type": "PARTITION_AWARE"}] if self.partition_aware else [])}
        call: dict = {"type": "SUBSCRIBE", "subscribe": {"framework_info": info}}
        if self.framework_id:
            info["id"] = ident(self.framework_id)
            call["framework_id"] = ident(self.framework_id)
        if self.subscribing is not None:
            self.subscribing.finish()
        self.conn += 1
        self.subscribing = self.net.call(self, self.master, "scheduler", {"call": call, "conn": self.conn},
                                         self._subscribe_answered, SUBSCRIBE_TIMEOUT_MS)

    def _subscribe_answered(self, status: int | None, body: dict) -> None:
        self.subscribing = None
        if status == 307:
            self.master = body["leader"]
            self.later(self.world.uniform_ms(1, 20), self.subscribe)
        elif status == 403:
            self.removed = True
            self.observations.note(f"framework {self.name} was removed: {body.get('error')}")
            self.log(f"removed: {body.get('error')}")
        else:
            self.master = self.world.rng.choice(self.masters)
            self.later(self.world.uniform_ms(200, 1_000), self.subscribe)

    def _watchdog(self) -> None:
        if self.stream is not None and self.world.now - self.last_heard > 3 * self.heartbeat_ms:
            self.log("stream silent: subscribing again")
            self.stream.client_closed()
            self.stream = None
            self.subscribe()
        self.later(self.heartbeat_ms, self._watchdog)

    def on_stream(self, stream, event: dict | None) -> None:
        if event is not None and event["type"] == "SUBSCRIBED":
            if self.subscribing is None or stream.conn != self.conn:
                stream.client_closed()  # the answer to a request it gave up on, or a duplicate
                return
            if self.stream is not None and self.stream is not stream:
                self.stream.client_closed()
            self.stream = stream
            self.master = stream.server.name
            if self.subscribing is not None:
                self.subscribing.finish()
                self.subscribing = None
            self.framework_id = id_value(event["subscribed"], "framework_id")
            self.last_heard = self.world.now
            self.log(f"subscribed with {self.master} as {self.framework_id}")
            self.suppressed = not any(job.needs_launch for job in self.jobs.values())
            self._call({"type": "SUPPRESS" if self.suppressed else "REVIVE"})
            self._reconcile()
            return
        if event is None and stream is not self.stream and self.subscribing is not None and stream.conn == self.conn:
            # The connection of the outstanding SUBSCRIBE failed before its answer: try again.
            self.subscribing.finish()
            self.subscribing = None
            self.later(self.world.uniform_ms(10, 200), self.subscribe)
            return
        if stream is not self.stream:
            return
        if event is None:
            self.stream = None
            self.later(self.world.uniform_ms(10, 200), self.subscribe)
            return
        self.last_heard = self.world.now
        kind = event["type"]
        if kind == "OFFERS":
            self._offers(event["offers"]["offers"])
        elif kind == "UPDATE":
            self._update(event["update"]["status"], stream.server.name)
        elif kind == "ERROR":
            self.log(f"error on its stream: {event['error']['message']}")

    def _call(self, call: dict, on_reply=None) -> None:
        if self.stream is None:
            return
        call = {**call, "framework_id": ident(self.framework_id)}
        self.net.call(self, self.stream.server.name, "scheduler", {"call": call, "stream_id": self.stream.stream_id},
                      on_reply or self._answered, CALL_TIMEOUT_MS)

    def _answered(self, status: int | None, body: dict) -> None:
        if status == 403 and self.stream is not None:
            self.stream.client_closed()
            self.stream = None
            self.subscribe()

    # -- offers ---------------------------------------------------------------------------------
    def _offers(self, offers: list[dict]) -> None:
        self.last_offer_at = self.world.now
        for offer in offers:
            offer_id, agent_id = id_value(offer, "id"), id_value(offer, "agent_id")
            if self.world.chance(IGNORE_OFFER):
                continue  # a slow scheduler: the offer times out and is rescinded
            available = from_json(offer["resources"])
            infos, launched = [], []
            for name in sorted(self.jobs):
                job = self.jobs[name]
                if not job.needs_launch or not available.contains(job.resources):
                    continue
                available = available - job.resources
                task_id = f"{self.name}-{name}-{len(job.attempts) + 1}"
                job.attempts.append(task_id)
                job.current_failed = False
                self.tasks[task_id] = TaskView(task_id, name, agent_id)
                infos.append({"name": name, "task_id": ident(task_id), "agent_id": ident(agent_id),
                              "resources": to_json(job.resources), "command": {"value": f"sleep {job.duration_s}"}})
                launched.append(task_id)
            if not infos:
                self._call({"type": "DECLINE", "decline": {"offer_ids": [ident(offer_id)],
                                                           "filters": {"refuse_seconds": 1.0}}})
                continue
            self.observations.accept_sent(self.name, launched, self.world.now)
            self.log(f"launching {', '.join(launched)} on {agent_id}")
            self._call({"type": "ACCEPT", "accept": {
                "offer_ids": [ident(offer_id)], "filters": {"refuse_seconds": 1.0},
                "operations": [{"type": "LAUNCH", "launch": {"task_infos": infos}}]}},
                lambda status, body, ids=tuple(launched): self._accept_answered(status, body, ids))
        if not self.suppressed and not any(job.needs_launch for job in self.jobs.values()):
            self.suppressed = True
            self._call({"type": "SUPPRESS"})

    def _accept_answered(self, status: int | None, body: dict, task_ids: tuple[str, ...]) -> None:
        for task_id in task_ids:
            self.tasks[task_id].accept_pending = False
        if status != 202:
            # It may or may not have been committed: ask.
            self.later(1_000, self._reconcile, task_ids)
        self._answered(status, body)

    # -- updates --------------------------------------------------------------------------------
    def _update(self, status: dict, via: str) -> None:
        task_id, state = id_value(status, "task_id"), status["state"]
        uuid = status.get("uuid")
        self.observations.delivered(self.name, task_id, uuid, state, self.world.now, via)
        if uuid:
            agent_id = id_value(status, "agent_id", required=False)
            self.observations.acknowledged(self.name, task_id, uuid, self.world.now)
            self._call({"type": "ACKNOWLEDGE", "acknowledge": {
                "task_id": ident(task_id), "uuid": uuid, **({"agent_id": ident(agent_id)} if agent_id else {})}})
            if uuid in self.seen_uuids:
                return
            self.seen_uuids.add(uuid)
        view = self.tasks.get(task_id)
        if view is None:
            self.observations.note(f"framework {self.name} was told about task {task_id}, which it never launched")
            return
        if view.state in FINAL and not uuid:
            # A master's answer without a uuid (reconciliation, a KILL of a task that ended)
            # does not undo an end the framework was told; an agent's update (with a uuid) does.
            if state != view.state:
                self.observations.note(f"task {task_id}: told {state} by the master after {view.state}; kept "
                                       f"{view.state}")
            return
        if view.state in FINAL and state not in FINAL:
            self.observations.note(f"task {task_id}: told {state} after {view.state}")
        view.state = state
        self.log(f"task {task_id} {state}{' (reconciled)' if not uuid else ''}")
        job = self.jobs[view.job]
        if state == "TASK_RUNNING" and job.kill_after_ms is not None and not view.kill_sent and not job.done:
            view.kill_sent = True
            self.later(job.kill_after_ms, self._kill, task_id, 0)
        if state not in FINAL or job.done:
            return
        if state == "TASK_FINISHED":
            job.done = "finished"
        elif state == "TASK_KILLED" and job.kill_after_ms is not None and view.kill_sent:
            job.done = "killed"
        elif job.attempts and job.attempts[-1] == task_id:
            if len(job.attempts) >= MAX_ATTEMPTS:
                job.done = "gave up"
            else:
                job.current_failed = True
                if self.suppressed:
                    self.suppressed = False
                    self._call({"type": "REVIVE"})

    def _kill(self, task_id: str, tries: int) -> None:
        view = self.tasks[task_id]
        if view.state in FINAL or tries > 40:
            return
        self._call({"type": "KILL", "kill": {"task_id": ident(task_id), "agent_id": ident(view.agent_id)}})
        self.later(KILL_RETRY_MS, self._kill, task_id, tries + 1)

    # -- reconciliation -------------------------------------------------------------------------
    def _reconcile(self, task_ids=None) -> None:
        wanted = [t for t in (task_ids or sorted(self.tasks))
                  if self.tasks[t].state not in FINAL and not self.tasks[t].accept_pending]
        if wanted:
            self._call({"type": "RECONCILE", "reconcile": {"tasks": [
                {"task_id": ident(t), "agent_id": ident(self.tasks[t].agent_id)} for t in wanted]}})

    def _periodic_reconcile(self) -> None:
        """Reconcile, and REVIVE again while a job waits: a SUPPRESS and a REVIVE sent close
        together may be committed in either order."""
        self._reconcile()
        if any(job.needs_launch for job in self.jobs.values()) and \
                self.world.now - self.last_offer_at > RECONCILE_EVERY_MS:
            self.suppressed = False
            self._call({"type": "REVIVE"})
        self.later(RECONCILE_EVERY_MS, self._periodic_reconcile)

    # -- for the checks -------------------------------------------------------------------------
    def busy(self) -> list[str]:
        out = [f"job {name} not done ({len(job.attempts)} attempts)" for name, job in sorted(self.jobs.items())
               if not job.done]
        out += [f"task {t} last told {v.state or 'nothing'}" for t, v in sorted(self.tasks.items())
                if v.state not in FINAL]
        if self.stream is None and not self.removed:
            out.append("not subscribed")
        return out


def uuid_bytes(text: str) -> bytes:
    return base64.b64decode(text)
