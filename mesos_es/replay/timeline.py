"""`replay timeline`: one task's, agent's or framework's history, event by event.

Each row says when (position and the leader's time), who decided (a framework, an agent,
the operator, or the leader: its allocator or its timers), what happened, and what the fold
made of it (applied, or the applier's deterministic refusal). A task's row for its launch
names the offers it used and the position where each was made.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mesos_es.core import effects as fx
from mesos_es.core.convert import resources_from_proto
from mesos_es.core.outcomes import Applied, Ignored, Outcome, Rejected
from mesos_es.core.resources import to_text
from mesos_es.core.state import State
from mesos_es.pb import events_pb2, mesos_pb2

TASK_STATE = mesos_pb2.TaskState.Name

# Who decides each kind of event (the HTTP call or timer the leader turned into it).
FRAMEWORK_KINDS = {"framework_subscribed", "framework_updated", "framework_suppressed", "framework_revived",
                   "offers_declined", "offers_accepted", "status_update_acknowledged", "task_kill_requested"}
AGENT_KINDS = {"agent_registered", "agent_reregistered", "agent_removed", "oversubscribed_resources_updated"}
OPERATOR_KINDS = {"quota_updated", "weights_updated", "resources_reserved", "resources_unreserved"}


def actor(kind: str, event: events_pb2.Event, state: State) -> str:
    leader = state.cluster.leader or "leader"
    if kind in FRAMEWORK_KINDS:
        return f"framework {_field(event, kind, 'framework_id')}"
    if kind in AGENT_KINDS:
        return f"agent {_field(event, kind, 'agent_id')}"
    if kind in OPERATOR_KINDS:
        return "operator"
    if kind == "task_status_updated":
        status = event.task_status_updated.status
        if status.source == "SOURCE_MASTER":
            return f"leader {leader}"
        return f"{'executor' if status.source == 'SOURCE_EXECUTOR' else 'agent'} on {status.agent_id}"
    if kind == "framework_message_relayed":
        e = event.framework_message_relayed
        return f"framework {e.framework_id}" if e.to_executor else f"executor {e.executor_id} on {e.agent_id}"
    if kind == "framework_removed" and event.framework_removed.reason == "TEARDOWN":
        return f"framework {event.framework_removed.framework_id}"
    if kind == "framework_disconnected":
        return f"framework {event.framework_disconnected.framework_id} (its stream closed)"
    if kind == "master_elected":
        return f"master {event.master_elected.leader}"
    if kind == "offers_made":
        return f"leader {leader} (allocator)"
    if kind in ("log_entry_appended", "log_truncated"):
        return "a framework (log API)"
    return f"leader {leader} (timers)"


def _field(event, kind: str, name: str) -> str:
    return getattr(getattr(event, kind), name, "")


def describe_outcome(outcome: Outcome) -> str:
    if isinstance(outcome, Rejected):
        return f"rejected: {outcome.reason}"
    if isinstance(outcome, Ignored):
        return f"ignored (unknown kind {outcome.kind})"
    if isinstance(outcome, Applied) and outcome.note:
        return outcome.note
    return "applied"


@dataclass
class Row:
    position: int
    timestamp_ms: int
    actor: str
    kind: str
    what: str
    outcome: str

    def to_json(self) -> dict:
        from mesos_es.replay.fold import format_ms

        return {"position": self.position, "timestamp_ms": self.timestamp_ms, "time": format_ms(self.timestamp_ms),
                "actor": self.actor, "event": self.kind, "what": self.what, "outcome": self.outcome}


def _resources(items) -> str:
    try:
        return to_text(resources_from_proto(items)) or "nothing"
    except ValueError:
        return "malformed resources"


def _status_text(status: mesos_pb2.TaskStatus) -> str:
    parts = [TASK_STATE(status.state)]
    if status.reason:
        parts.append(status.reason)
    if status.message:
        parts.append(repr(status.message))
    if status.uuid:
        parts.append(f"uuid {status.uuid.hex()[:8]}")
    return " ".join(parts)


@dataclass
class Timeline:
    """Collects the rows for one object; `observe` is a Fold observer, `before` its hook."""

    task: str | None = None
    agent: str | None = None
    framework: str | None = None
    rows: list[Row] = field(default_factory=list)
    offer_made_at: dict[str, int] = field(default_factory=dict)  # offer id -> position of its OffersMade
    mine: set[str] = field(default_factory=set)  # offers of this agent / framework / the task's framework
    _pending: dict | None = None  # what `before` saw of the state for the current event
    task_framework: str | None = None  # the framework that launched the task

    def matches_framework(self, framework_id: str) -> bool:
        return self.framework is None or self.framework == framework_id

    def before(self, position: int, event: events_pb2.Event, state: State) -> None:
        kind = event.WhichOneof("kind")
        self._pending = None
        if kind == "offers_accepted" and self.task is not None:
            e = event.offers_accepted
            if any(t.task_id == self.task for op in e.operations for t in op.task_infos):
                offers = [state.cluster.offers[o] for o in e.offer_ids if o in state.cluster.offers]
                self._pending = {"offers": [(o.id, o.agent_id, o.role) for o in offers]}

    def observe(self, position: int, event: events_pb2.Event | None, outcome: Outcome, state: State) -> None:
        if event is None:
            return
        kind = event.WhichOneof("kind")
        if kind == "offers_made":
            for offer in event.offers_made.offers:
                if offer.id in state.cluster.offers:
                    self.offer_made_at[offer.id] = position
        handler = getattr(self, f"_{kind}", None)
        what = handler(event, outcome, state) if handler is not None else None
        if what is not None:
            self.rows.append(Row(position, event.timestamp_ms, actor(kind, event, state), kind, what,
                                 describe_outcome(outcome)))

    # -- per kind: a description when the event concerns the object, else None ---------------
    def _offers_made(self, event, outcome, state):
        lines = []
        for offer in event.offers_made.offers:
            if (self.agent and offer.agent_id == self.agent) or (self.framework and offer.framework_id == self.framework):
                recorded = offer.id in state.cluster.offers
                if recorded:
                    self.mine.add(offer.id)
                lines.append(f"offer {offer.id}: {_resources(offer.resources)} of {offer.agent_id} to "
                             f"{offer.framework_id} as {offer.role!r}" + ("" if recorded else " (dropped as stale)"))
        return "; ".join(lines) or None

    def _offers_rescinded(self, event, outcome, state):
        named = [o for o in event.offers_rescinded.offer_ids if o in self.mine]
        return f"rescinded {', '.join(named)} ({event.offers_rescinded.reason})" if named else None

    def _resources_revoked(self, event, outcome, state):
        e = event.resources_revoked
        named = [o for o in e.offer_ids if o in self.mine]
        tasks = [t.task_id for t in e.tasks if (self.task and t.task_id == self.task and self.matches_framework(
            t.framework_id)) or (self.framework and t.framework_id == self.framework)]
        if self.agent:
            tasks += [t.task_id for t in e.tasks if _task_agent(state, t.framework_id, t.task_id) == self.agent]
        if not named and not tasks:
            return None
        return f"revoked offers {named} and tasks {sorted(set(tasks))} (grace {e.grace_period_ms} ms)"

    def _offers_declined(self, event, outcome, state):
        e = event.offers_declined
        named = [o for o in e.offer_ids if o in self.mine]
        if not named and not (self.framework and e.framework_id == self.framework):
            return None
        return f"declined {', '.join(e.offer_ids)} (filter {e.refuse_seconds:g} s)"

    def _offers_accepted(self, event, outcome, state):
        e = event.offers_accepted
        launched = [t for op in e.operations if op.type in ("LAUNCH", "LAUNCH_GROUP") for t in op.task_infos]
        ops = ", ".join(f"{op.type} {[t.task_id for t in op.task_infos] if op.task_infos else _resources(op.resources)}"
                        for op in e.operations) or "no operation"
        if self.task is not None:
            task = next((t for t in launched if t.task_id == self.task), None)
            if task is None or not self.matches_framework(e.framework_id):
                return None
            self.task_framework = e.framework_id
            offers = (self._pending or {}).get("offers", [])
            origin = ", ".join(f"{oid} (made at position {self.offer_made_at.get(oid, '?')}, agent {agent}, "
                               f"role {role!r})" for oid, agent, role in offers) or "offers no longer valid"
            framework = state.cluster.frameworks.get(e.framework_id)
            now = framework.tasks.get(self.task) if framework is not None else None
            result = (f"launched on {now.info.agent_id}" if now is not None and now.launched_at_ms == event.timestamp_ms
                      else "not launched (see the update that follows)")
            return f"{result}: {_resources(task.resources)} from {origin}"
        if (self.framework and e.framework_id == self.framework) or any(o in self.mine for o in e.offer_ids):
            return f"accepted {', '.join(e.offer_ids)}: {ops}"
        return None

    def _task_status_updated(self, event, outcome, state):
        e = event.task_status_updated
        status = e.status
        if self._is_my_task(e.framework_id, status.task_id, status.agent_id, state):
            return f"{status.task_id}: {_status_text(status)}"
        return None

    def _status_update_acknowledged(self, event, outcome, state):
        e = event.status_update_acknowledged
        if self._is_my_task(e.framework_id, e.task_id, e.agent_id, state):
            return f"{e.task_id}: acknowledged update uuid {e.uuid.hex()[:8]}"
        return None

    def _task_kill_requested(self, event, outcome, state):
        e = event.task_kill_requested
        if self._is_my_task(e.framework_id, e.task_id, e.agent_id, state):
            return f"{e.task_id}: kill requested"
        return None

    def _is_my_task(self, framework_id: str, task_id: str, agent_id: str, state: State) -> bool:
        if self.task is not None:
            return task_id == self.task and self.matches_framework(framework_id)
        if self.framework is not None:
            return framework_id == self.framework
        return bool(self.agent) and (agent_id == self.agent or _task_agent(state, framework_id, task_id) == self.agent)

    def _generic(self, event, kind: str, outcome: Outcome):
        """Other kinds: framework_* and agent_* events by the ids they name; for a task, the
        updates the master decided for it (TASK_LOST when its agent was lost, ...)."""
        body = getattr(event, kind)
        framework_id = getattr(body, "framework_id", None)
        agent_id = getattr(body, "agent_id", None)
        if self.framework and framework_id == self.framework:
            return _summary(kind, body)
        if self.agent and agent_id == self.agent:
            return _summary(kind, body)
        if self.task and isinstance(outcome, Applied):
            for effect in outcome.effects:
                if isinstance(effect, fx.ForwardUpdate) and effect.status.task_id == self.task \
                        and self.matches_framework(effect.framework_id):
                    return f"{self.task}: {_status_text(effect.status)} (decided by the master)"
                if isinstance(effect, fx.ShutdownFramework) and self.task_framework == effect.framework_id:
                    return f"framework {effect.framework_id} removed: its tasks on {effect.agent_id} are killed"
        return None


def _task_agent(state: State, framework_id: str, task_id: str) -> str | None:
    framework = state.cluster.frameworks.get(framework_id)
    if framework is None:
        return None
    task = framework.tasks.get(task_id)
    if task is not None:
        return task.info.agent_id
    for done in reversed(framework.completed_tasks):
        if done.info.task_id == task_id:
            return done.info.agent_id
    return None


def _summary(kind: str, body) -> str:
    parts = []
    for descriptor, value in body.ListFields():
        if descriptor.name in ("framework_id", "agent_id"):
            continue
        if descriptor.name == "framework_info":
            parts.append(f"roles {list(value.roles)}, capabilities {list(value.capabilities)}")
        elif descriptor.name == "agent_info":
            parts.append(f"{value.hostname}, {_resources(value.resources)}")
        elif descriptor.name == "tasks":
            parts.append(f"{len(value)} tasks reported")
        elif descriptor.name == "resources":
            parts.append(_resources(value))
        elif isinstance(value, (str, int, float, bool)):
            parts.append(f"{descriptor.name} {value}")
    return "; ".join(parts) or kind.replace("_", " ")


def _install_generic() -> None:
    """Kinds without a handler above go through `_generic` (ids they name, master updates)."""
    for kind in events_pb2.Event.DESCRIPTOR.oneofs_by_name["kind"].fields:
        name = f"_{kind.name}"
        if not hasattr(Timeline, name):
            setattr(Timeline, name, lambda self, event, outcome, state, _kind=kind.name:
                    self._generic(event, _kind, outcome))


_install_generic()
