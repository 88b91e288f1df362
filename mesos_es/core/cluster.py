"""The master's cluster state: one applier per master event, and a derived index.

`state.cluster` is a protobuf message (frameworks, agents, offers, tasks, roles, filters)
that the appliers mutate in place, naming each part they change in `state.changes` (the
digest hashes again only those: core/digest.py). `ClusterIndex` holds sums the appliers
would otherwise recompute (what each agent has in use or on offer, what each framework holds
per role); it is never serialized and `ClusterIndex.rebuild` recomputes it from the message,
which the property tests compare with the incrementally maintained one.

Rules (see mesos_es/core/apply.py): no clock but `event.timestamp_ms`, no randomness, ids
come from the event, and a stale or conflicting event is a deterministic `Rejected`.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections import defaultdict
from dataclasses import dataclass, field

from mesos_es.core import effects as fx
from mesos_es.core.convert import TERMINAL_STATES, canonical_json, resources_from_proto, resources_to_proto
from mesos_es.core.outcomes import Applied, Outcome, Rejected
from mesos_es.core.resources import EMPTY, Kind, Reservation, ResourceError, Resources, to_text
from mesos_es.pb import events_pb2, mesos_pb2, state_pb2

MAX_REFUSE_SECONDS = 365 * 24 * 3600
DEFAULT_REFUSE_SECONDS = 5.0
COMPLETED_TASKS_KEPT = 100
REMOVED_IDS_KEPT = 1000

S = mesos_pb2  # task states, briefly

# Legal transitions of a task's state (Mesos' task state diagram). Terminal states go nowhere;
# UNREACHABLE may come back when its agent re-registers.
_ACTIVE = {S.TASK_STAGING, S.TASK_STARTING, S.TASK_RUNNING, S.TASK_KILLING, S.TASK_UNREACHABLE}


def legal_transition(old: int, new: int) -> bool:
    if old in TERMINAL_STATES:
        return False
    if new not in _ACTIVE and new not in TERMINAL_STATES:
        return False  # TASK_UNKNOWN answers reconciliation; no task is ever in it
    if new == S.TASK_STAGING:
        return False
    if old == S.TASK_RUNNING and new == S.TASK_STARTING:
        return False
    if old == S.TASK_KILLING and new in (S.TASK_STARTING, S.TASK_RUNNING):
        return False  # a kill under way does not come undone
    return True


@dataclass
class ClusterIndex:
    """Derived sums; rebuilt from the message after a snapshot, kept up to date by appliers."""

    agent_total: dict[str, Resources] = field(default_factory=dict)
    # agent -> its current revocable (oversubscribed) estimate, beside its total
    agent_revocable: dict[str, Resources] = field(default_factory=dict)
    agent_used: dict[str, Resources] = field(default_factory=lambda: defaultdict(Resources))
    agent_offered: dict[str, Resources] = field(default_factory=lambda: defaultdict(Resources))
    # framework -> role -> scalar resources held (active tasks and outstanding offers): only
    # the scalar part, as sums across agents of ranges or sets (ports) are meaningless (the
    # same port range on two agents would merge into one)
    allocated: dict[str, dict[str, Resources]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(Resources)))
    # agent -> {(framework, task)} of its active tasks
    agent_tasks: dict[str, set[tuple[str, str]]] = field(default_factory=lambda: defaultdict(set))
    # (framework, agent) pairs with an outstanding offer
    offered_pairs: set[tuple[str, str]] = field(default_factory=set)
    # resources by task key and by offer id, so a release does not re-parse the protobuf
    task_resources: dict[tuple[str, str], Resources] = field(default_factory=dict)
    offer_resources: dict[str, Resources] = field(default_factory=dict)
    # (framework, agent, expires_ms) of each filter, in the list's order, to bisect it in C;
    # and the same as (expires_ms, framework, agent) in a heap, so that adding a filter drops
    # the expired ones without looking at the others.
    filter_keys: list[tuple[str, str, int]] = field(default_factory=list)
    filter_expiries: list[tuple[int, str, str]] = field(default_factory=list)
    # agent -> (the parts `available` was computed from, its result); see `available`
    _available: dict[str, tuple] = field(default_factory=dict, repr=False, compare=False)

    def total(self, agent_id: str) -> Resources:
        """The agent's total with its revocable estimate."""
        total = self.agent_total.get(agent_id, EMPTY)
        revocable = self.agent_revocable.get(agent_id)
        return total + revocable if revocable else total

    def available(self, agent_id: str) -> Resources:
        """Neither used by tasks nor offered. Memoized: every change to an agent replaces one
        of its (immutable) parts, so the memo holds while the parts are the same (or equal)
        values; an allocation cycle asks this of every agent, and few change between cycles."""
        parts = (self.agent_total.get(agent_id), self.agent_revocable.get(agent_id),
                 self.agent_used.get(agent_id), self.agent_offered.get(agent_id))
        memo = self._available.get(agent_id)
        if memo is not None and memo[0] == parts:  # tuples compare their items by identity first
            return memo[1]
        total, revocable, used, offered = parts[0] or EMPTY, parts[1], parts[2] or EMPTY, parts[3] or EMPTY
        if revocable:  # self.total(agent_id), from the parts read
            total = total + revocable
        try:
            available = total - used - offered
        except ResourceError:
            # The revocable estimate shrank below what tasks hold (the agent kills the newest
            # of them and reports it): none of that resource is available meanwhile.
            available = total.saturating_sub(used).saturating_sub(offered)
        self._available[agent_id] = (parts, available)
        return available

    @classmethod
    def rebuild(cls, cluster: state_pb2.Cluster) -> ClusterIndex:
        index = cls()
        for agent_id, agent in cluster.agents.items():
            index.agent_total[agent_id] = resources_from_proto(agent.info.resources)
            if len(agent.oversubscribed):
                index.agent_revocable[agent_id] = resources_from_proto(agent.oversubscribed)
        for framework_id, framework in cluster.frameworks.items():
            for task_id, task in framework.tasks.items():
                if task.state not in TERMINAL_STATES:
                    index.hold_task(framework_id, task_id, task.info.agent_id, task.role,
                                    resources_from_proto(task.info.resources))
        for offer in cluster.offers.values():
            index.hold_offer(offer, resources_from_proto(offer.resources))
        index.filter_keys, index.filter_expiries = _filter_keys(cluster.filters)
        return index

    def snapshot(self) -> tuple:
        """A comparable form (for tests): drop empty entries."""
        def clean(d):
            return {k: v for k, v in d.items() if v}
        return (
            dict(self.agent_total), clean(self.agent_revocable), clean(self.agent_used), clean(self.agent_offered),
            {f: clean(r) for f, r in self.allocated.items() if clean(r)}, clean(self.agent_tasks),
            set(self.offered_pairs), dict(self.task_resources), dict(self.offer_resources),
            list(self.filter_keys), sorted(self.filter_expiries),
        )

    # -- bookkeeping used by the appliers ---------------------------------------------------
    def hold_task(self, framework_id, task_id, agent_id, role, resources: Resources) -> None:
        self.agent_used[agent_id] = self.agent_used[agent_id] + resources
        held = self.allocated[framework_id]
        held[role] = held[role] + resources.scalar_part()
        self.agent_tasks[agent_id].add((framework_id, task_id))
        self.task_resources[(framework_id, task_id)] = resources

    def hold_tasks(self, framework_id, agent_id, role, resources: Resources, tasks) -> None:
        """`hold_task` of each (task id, its resources) in `tasks`, whose sum is `resources`:
        the sums take the total at once (the same values: the arithmetic is exact)."""
        self.agent_used[agent_id] = self.agent_used[agent_id] + resources
        held = self.allocated[framework_id]
        held[role] = held[role] + resources.scalar_part()
        agent_tasks = self.agent_tasks[agent_id]
        for task_id, task_resources in tasks:
            agent_tasks.add((framework_id, task_id))
            self.task_resources[(framework_id, task_id)] = task_resources

    def release_task(self, framework_id, task_id, agent_id, role) -> None:
        resources = self.task_resources.pop((framework_id, task_id), None)
        if resources is None:
            return
        self.agent_used[agent_id] = self.agent_used[agent_id] - resources
        held = self.allocated[framework_id]
        held[role] = held[role] - resources.scalar_part()
        self.agent_tasks[agent_id].discard((framework_id, task_id))

    def hold_offer(self, offer: mesos_pb2.Offer, resources: Resources) -> None:
        self.hold_offer_of(offer.id, offer.framework_id, offer.agent_id, offer.role, resources)

    def hold_offer_of(self, offer_id: str, framework_id: str, agent_id: str, role: str, resources: Resources) -> None:
        """`hold_offer`, from fields the caller has already read."""
        self.agent_offered[agent_id] = self.agent_offered[agent_id] + resources
        held = self.allocated[framework_id]
        held[role] = held[role] + resources.scalar_part()
        self.offered_pairs.add((framework_id, agent_id))
        self.offer_resources[offer_id] = resources

    def release_offer(self, offer_id: str, framework_id: str, agent_id: str, role: str) -> Resources:
        resources = self.offer_resources.pop(offer_id)
        self.agent_offered[agent_id] = self.agent_offered[agent_id] - resources
        held = self.allocated[framework_id]
        held[role] = held[role] - resources.scalar_part()
        self.offered_pairs.discard((framework_id, agent_id))
        return resources


# -- helpers --------------------------------------------------------------------------------------

def _master_status(task_id: str, agent_id: str, state: int, reason: str, message: str, ts_ms: int,
                   executor_id: str = "") -> mesos_pb2.TaskStatus:
    """A status update the master generates itself (no uuid: nothing to acknowledge)."""
    return mesos_pb2.TaskStatus(task_id=task_id, state=state, source="SOURCE_MASTER", reason=reason,
                                message=message, timestamp=ts_ms / 1000, agent_id=agent_id, executor_id=executor_id)


def _parse(items) -> Resources | None:
    """Resources carried by an event, or None when they are malformed (negative, NaN, empty
    ranges, one name with two types). The HTTP layer refuses such resources, so only a buggy
    leader writes them; every replica then rejects the event alike instead of raising.

    Memoized on the resources' bytes: the same few task sizes and offer shapes come back
    all the time, and parsing costs ten times the lookup. The result (immutable) depends only
    on the messages the bytes encode, so the memo changes nothing but the time."""
    key = tuple(map(_SERIALIZE, items[:]))  # a slice: upb ends iterations on a formatted IndexError
    parsed = _PARSED.get(key, _UNPARSED)
    if parsed is _UNPARSED:
        try:
            parsed = resources_from_proto(items)
        except ResourceError:
            parsed = None
        if len(_PARSED) >= PARSED_KEPT:
            _PARSED.clear()
        _PARSED[key] = parsed
    return parsed


PARSED_KEPT = 10_000
_SERIALIZE = mesos_pb2.Resource.SerializeToString
_PARSED: dict[tuple[bytes, ...], Resources | None] = {}
_UNPARSED = object()


def _remove_offer(state, offer_id: str) -> tuple[str, str, Resources] | None:
    """Remove the offer and release what it held: (its framework, its agent, its resources)."""
    offer = state.cluster.offers.get(offer_id)
    if offer is None:
        return None
    framework_id, agent_id = offer.framework_id, offer.agent_id
    return framework_id, agent_id, _drop_offer(state, offer_id, framework_id, agent_id, offer.role)


def _drop_offer(state, offer_id: str, framework_id: str, agent_id: str, role: str) -> Resources:
    """`_remove_offer` of an existing offer whose fields the caller has read: its resources."""
    resources = state.index.release_offer(offer_id, framework_id, agent_id, role)
    del state.cluster.offers[offer_id]
    state.changes.offers.add(offer_id)
    return resources


def _rescind_where(state, predicate) -> list[fx.Effect]:
    out = []
    for offer_id in sorted(state.cluster.offers):
        if predicate(state.cluster.offers[offer_id]):
            framework_id, _, _ = _remove_offer(state, offer_id)
            out.append(fx.RescindOffer(framework_id, offer_id))
    return out


def _filter_keys(filters) -> tuple[list[tuple[str, str, int]], list[tuple[int, str, str]]]:
    """ClusterIndex.filter_keys and filter_expiries of these filters."""
    keys = [_filter_key(f) for f in filters]
    expiries = [(expires_ms, framework_id, agent_id) for framework_id, agent_id, expires_ms in keys]
    heapq.heapify(expiries)
    return keys, expiries


def _drop_framework_filters(state, framework_id: str) -> None:
    """Remove the framework's filters (the rest stay in order)."""
    cluster, index, kept = state.cluster, state.index, []
    for f, key in zip(cluster.filters[:], index.filter_keys, strict=True):
        if key[0] == framework_id:
            state.changes.filters.add((framework_id, key[1]))
        else:
            kept.append(f)
    if len(kept) != len(cluster.filters):
        del cluster.filters[:]
        cluster.filters.extend(kept)
        index.filter_keys, index.filter_expiries = _filter_keys(kept)


def _drop_expired_filters(state, ts_ms: int) -> None:
    """Remove the filters that expire at or before `ts_ms`, found by their expiries' heap."""
    filters, index, changed = state.cluster.filters, state.index, state.changes.filters
    keys, expiries = index.filter_keys, index.filter_expiries
    while expiries and expiries[0][0] <= ts_ms:
        expires_ms, framework_id, agent_id = heapq.heappop(expiries)
        # Filters alike in all three sit together; the first of their entries takes them all.
        key = (framework_id, agent_id, expires_ms)
        first, last = bisect.bisect_left(keys, key), bisect.bisect_right(keys, key)
        if first < last:
            del filters[first:last]
            del keys[first:last]
            changed.add((framework_id, agent_id))


def _add_filter(state, framework_id: str, agent_id: str, resources: Resources, refuse_seconds: float,
                ts_ms: int) -> None:
    refuse = min(refuse_seconds, MAX_REFUSE_SECONDS)
    if not refuse > 0 or not resources:  # NaN too: int(NaN) would raise
        return
    filters = state.cluster.filters
    _drop_expired_filters(state, ts_ms)  # on the way
    expires_ms = ts_ms + int(refuse * 1000)
    new = state_pb2.Filter(framework_id=framework_id, agent_id=agent_id, expires_ms=expires_ms)
    new.MergeFromString(_filter_resources(resources))  # sets only its resources
    # Into its place in the documented order, without rebuilding the list.
    index, key = state.index, (framework_id, agent_id, expires_ms)
    at = bisect.bisect_right(index.filter_keys, key)
    filters.insert(at, new)
    index.filter_keys.insert(at, key)
    heapq.heappush(index.filter_expiries, (expires_ms, framework_id, agent_id))
    state.changes.filters.add((framework_id, agent_id))


def _filter_key(f: state_pb2.Filter) -> tuple[str, str, int]:
    return f.framework_id, f.agent_id, f.expires_ms


def _filter_resources(resources: Resources) -> bytes:
    """A Filter holding only `resources_to_proto(resources)`, serialized, memoized: what an
    ACCEPT leaves of an agent's offer repeats a lot (nine filters in ten in bench replay's
    history), and merging these bytes into a new Filter costs a third of constructing it
    with the messages."""
    out = _FILTER_RESOURCES.get(resources)
    if out is None:
        if len(_FILTER_RESOURCES) >= PARSED_KEPT:
            _FILTER_RESOURCES.clear()
        out = _FILTER_RESOURCES[resources] = state_pb2.Filter(
            resources=resources_to_proto(resources)).SerializeToString(deterministic=True)
    return out


_FILTER_RESOURCES: dict[Resources, bytes] = {}


def _push_bounded(repeated, item, bound: int) -> None:
    repeated.append(item)
    if len(repeated) > bound:
        del repeated[: len(repeated) - bound]


def _finish_task(state, framework_id: str, framework: state_pb2.Framework, task_id: str) -> None:
    """Move an acknowledged terminal task to the framework's completed list."""
    completed, tasks = framework.completed_tasks, framework.tasks
    completed.add().CopyFrom(tasks[task_id])
    del tasks[task_id]
    if len(completed) > COMPLETED_TASKS_KEPT:
        del completed[: len(completed) - COMPLETED_TASKS_KEPT]
    state.changes.tasks.add((framework_id, task_id))
    state.changes.frameworks.add(framework_id)


def _transition(state, framework_id: str, framework: state_pb2.Framework, task_id: str, task: state_pb2.Task,
                status: mesos_pb2.TaskStatus, track_ack: bool) -> None:
    """Record a new status; release resources on a terminal state."""
    new = status.state
    state.changes.tasks.add((framework_id, task_id))
    task.state = new
    task.latest_status.CopyFrom(status)
    if track_ack and status.uuid:
        task.unacknowledged.append(status)
    if new in TERMINAL_STATES:
        state.index.release_task(framework_id, task_id, task.info.agent_id, task.role)
        if not task.unacknowledged:
            _finish_task(state, framework_id, framework, task_id)


def _partition_aware(framework: state_pb2.Framework) -> bool:
    return "PARTITION_AWARE" in framework.info.capabilities


def _lose_agent_tasks(state, agent_id: str, ts_ms: int, unreachable: bool, message: str) -> list[fx.Effect]:
    effects: list[fx.Effect] = []
    for framework_id, task_id in sorted(state.index.agent_tasks.get(agent_id, ())):
        framework = state.cluster.frameworks.get(framework_id)
        if framework is None or task_id not in framework.tasks:
            continue
        task = framework.tasks[task_id]
        if task.state == S.TASK_UNREACHABLE:
            continue
        if unreachable and _partition_aware(framework):
            new_state, reason = S.TASK_UNREACHABLE, "REASON_AGENT_REMOVED"  # Mesos' reason for both
        else:
            new_state, reason = S.TASK_LOST, "REASON_AGENT_REMOVED"
        status = _master_status(task_id, agent_id, new_state, reason, message, ts_ms, task.info.executor_id)
        if new_state == S.TASK_UNREACHABLE:
            task.state = new_state
            task.latest_status.CopyFrom(status)
            state.changes.tasks.add((framework_id, task_id))
        else:
            _transition(state, framework_id, framework, task_id, task, status, track_ack=False)
        effects.append(fx.ForwardUpdate(framework_id, status))
    return effects


# -- appliers ---------------------------------------------------------------------------------------

def apply_master_elected(state, position: int, event: events_pb2.Event) -> Outcome:
    """Record the new leader. Connected frameworks become disconnected (their failover
    timeouts run from this event) and every outstanding offer is rescinded."""
    e = event.master_elected
    cluster = state.cluster
    cluster.leader, cluster.leader_term, cluster.leader_since_ms = e.leader, e.term, event.timestamp_ms
    state.changes.cluster = True
    # The previous leader's streams are gone: frameworks must re-subscribe (their failover
    # timeouts run from here), and the offers it made are void.
    for framework_id in sorted(cluster.frameworks):
        framework = cluster.frameworks[framework_id]
        if framework.connected:
            framework.connected = False
            framework.disconnected_at_ms = event.timestamp_ms
            state.changes.frameworks.add(framework_id)
    effects = _rescind_where(state, lambda offer: True)
    return Applied(tuple(effects), note=f"{len(effects)} offers rescinded")


def apply_framework_subscribed(state, position: int, event: events_pb2.Event) -> Outcome:
    """Add a new framework, or reconnect a known one with its new FrameworkInfo; a
    reconnecting framework's outstanding offers are rescinded. Rejected: no id, or a removed one."""
    e = event.framework_subscribed
    cluster = state.cluster
    if not e.framework_id:
        return Rejected("framework_id is required")
    if e.framework_id in cluster.removed_frameworks:
        return Rejected(f"framework {e.framework_id} was removed")
    framework = cluster.frameworks.get(e.framework_id)
    effects: list[fx.Effect] = []
    if framework is None:
        framework = cluster.frameworks[e.framework_id]
        framework.id = e.framework_id
        framework.registered_at_ms = event.timestamp_ms
    else:
        # A failover voids the offers made to the previous connection.
        effects = _rescind_where(state, lambda offer: offer.framework_id == e.framework_id)
    framework.info.CopyFrom(e.framework_info)
    framework.connected = True
    framework.disconnected_at_ms = 0
    state.changes.frameworks.add(e.framework_id)
    kept_roles = set(framework.info.roles)
    suppressed = [r for r in framework.suppressed_roles if r in kept_roles]
    del framework.suppressed_roles[:]
    framework.suppressed_roles.extend(sorted(suppressed))
    # Updates not yet acknowledged are sent again on the new stream (by the leader's shell).
    return Applied(tuple(effects))


def apply_framework_updated(state, position: int, event: events_pb2.Event) -> Outcome:
    """Replace the FrameworkInfo. Offers for roles it left, and offers with revocable
    resources when it drops REVOCABLE_RESOURCES, are rescinded. Rejected: unknown framework."""
    e = event.framework_updated
    framework = state.cluster.frameworks.get(e.framework_id)
    if framework is None:
        return Rejected("unknown framework")
    roles = set(e.framework_info.roles)
    revocable_ok = "REVOCABLE_RESOURCES" in e.framework_info.capabilities
    effects = _rescind_where(state, lambda o: o.framework_id == e.framework_id and (
        o.role not in roles or not revocable_ok and any(r.HasField("revocable") for r in o.resources)))
    framework.info.CopyFrom(e.framework_info)
    state.changes.frameworks.add(e.framework_id)
    suppressed = [r for r in framework.suppressed_roles if r in roles]
    del framework.suppressed_roles[:]
    framework.suppressed_roles.extend(suppressed)
    return Applied(tuple(effects))


def apply_framework_disconnected(state, position: int, event: events_pb2.Event) -> Outcome:
    """Mark the framework disconnected and rescind its offers; its tasks keep running
    until its failover timeout. Rejected: unknown or already disconnected framework."""
    framework = state.cluster.frameworks.get(event.framework_disconnected.framework_id)
    if framework is None:
        return Rejected("unknown framework")
    if not framework.connected:
        return Rejected("framework is not connected")
    framework.connected = False
    framework.disconnected_at_ms = event.timestamp_ms
    state.changes.frameworks.add(framework.id)
    effects = _rescind_where(state, lambda offer: offer.framework_id == framework.id)
    return Applied(tuple(effects))


def apply_framework_removed(state, position: int, event: events_pb2.Event) -> Outcome:
    """Forget the framework: its offers go back, its tasks' resources are released (the
    agents are told to shut it down), its filters are dropped, and its id can never subscribe
    again. Rejected: unknown framework."""
    e = event.framework_removed
    cluster = state.cluster
    framework = cluster.frameworks.get(e.framework_id)
    if framework is None:
        return Rejected("unknown framework")
    effects: list[fx.Effect] = []
    _rescind_where(state, lambda offer: offer.framework_id == e.framework_id)  # nobody to tell
    agents = set()
    for task_id in sorted(framework.tasks):
        task = framework.tasks[task_id]
        if task.state not in TERMINAL_STATES:
            state.index.release_task(e.framework_id, task_id, task.info.agent_id, task.role)
            agents.add(task.info.agent_id)
    effects.extend(fx.ShutdownFramework(agent_id, e.framework_id) for agent_id in sorted(agents))
    effects.append(fx.FrameworkGone(e.framework_id, f"framework removed: {e.reason}"))
    state.changes.tasks.update((e.framework_id, task_id) for task_id in framework.tasks)
    state.changes.frameworks.add(e.framework_id)
    del cluster.frameworks[e.framework_id]
    state.index.allocated.pop(e.framework_id, None)
    _drop_framework_filters(state, e.framework_id)
    _push_bounded(cluster.removed_frameworks, e.framework_id, REMOVED_IDS_KEPT)
    state.changes.cluster = True
    return Applied(tuple(effects))


def _roles_or_all(framework: state_pb2.Framework, roles) -> set[str]:
    return set(roles) if roles else set(framework.info.roles)


def apply_framework_suppressed(state, position: int, event: events_pb2.Event) -> Outcome:
    """Add roles (all of the framework's when none are named) to its suppressed roles.
    Rejected: unknown framework."""
    e = event.framework_suppressed
    framework = state.cluster.frameworks.get(e.framework_id)
    if framework is None:
        return Rejected("unknown framework")
    roles = set(framework.suppressed_roles) | (_roles_or_all(framework, e.roles) & set(framework.info.roles))
    del framework.suppressed_roles[:]
    framework.suppressed_roles.extend(sorted(roles))
    state.changes.frameworks.add(e.framework_id)
    return Applied()


def apply_framework_revived(state, position: int, event: events_pb2.Event) -> Outcome:
    """Remove roles (all when none are named) from its suppressed roles and drop all of its
    filters. Rejected: unknown framework."""
    e = event.framework_revived
    cluster = state.cluster
    framework = cluster.frameworks.get(e.framework_id)
    if framework is None:
        return Rejected("unknown framework")
    roles = set(framework.suppressed_roles) - _roles_or_all(framework, e.roles)
    del framework.suppressed_roles[:]
    framework.suppressed_roles.extend(sorted(roles))
    state.changes.frameworks.add(e.framework_id)
    _drop_framework_filters(state, e.framework_id)
    return Applied()


def apply_agent_registered(state, position: int, event: events_pb2.Event) -> Outcome:
    """Add a new reachable agent with its resources. Rejected: an empty, known or removed
    id, or malformed resources."""
    e = event.agent_registered
    cluster = state.cluster
    if not e.agent_id or e.agent_id in cluster.agents or e.agent_id in cluster.removed_agents:
        return Rejected(f"agent id {e.agent_id!r} is taken")
    total = _parse(e.agent_info.resources)
    if total is None:
        return Rejected("malformed agent resources")
    agent = cluster.agents[e.agent_id]
    agent.id = e.agent_id
    agent.info.CopyFrom(e.agent_info)
    agent.reachable = True
    agent.registered_at_ms = event.timestamp_ms
    state.index.agent_total[e.agent_id] = total
    state.changes.agents.add(e.agent_id)
    return Applied()


def _dynamic(kind) -> bool:
    return any(r.type == "DYNAMIC" for r in kind.reservations)


def _with_reservations(reported: Resources, previous: Resources) -> Resources | None:
    """`reported` with the dynamic reservations of `previous` made again, or None when it lacks
    the resources they were made from. Agents do not know the master's reservations
    (mesos_es/agent counts the underlying resources), so a report with none is the agent's
    configuration; one with dynamic reservations of its own is taken as it is."""
    if any(_dynamic(k) for k in reported):
        return reported
    reservations = previous.filter(_dynamic)
    underlying = EMPTY
    for kind, value in reservations.items():
        chain = tuple(r for r in kind.reservations if r.type != "DYNAMIC")
        underlying = underlying + Resources({Kind(kind.name, chain, kind.revocable): value})
    if not reported.contains(underlying):
        return None
    return reported - underlying + reservations


def apply_agent_reregistered(state, position: int, event: events_pb2.Event) -> Outcome:
    """Make a known (or unknown) agent reachable again with its reported resources, on which
    the master's dynamic reservations are made again (agents report what they are configured
    with); its offers are rescinded. Reported tasks the master does not know on this agent are killed
    (unless they already ended); its
    unreachable tasks take the reported state (a terminal one releases their resources); its
    tasks the agent does not report (except STAGING ones) become TASK_LOST, or TASK_GONE for
    partition-aware frameworks. With `tasks_unchanged` (its task digest matched) the tasks are
    left as they are. Rejected: removed agent, malformed resources, resources that no longer
    cover its reservations or its tasks, or `tasks_unchanged` from an agent that is unknown or
    unreachable (its tasks' states must be reported)."""
    e = event.agent_reregistered
    cluster = state.cluster
    if not e.agent_id or e.agent_id in cluster.removed_agents:
        return Rejected(f"agent {e.agent_id!r} was removed (or is empty)")
    if e.tasks_unchanged and (e.tasks or e.agent_id not in cluster.agents or not cluster.agents[e.agent_id].reachable):
        return Rejected("only a reachable agent may re-register without its tasks")
    index = state.index
    reported_total = _parse(e.agent_info.resources)
    if reported_total is None:
        return Rejected("malformed agent resources")
    new_total = _with_reservations(reported_total, index.agent_total.get(e.agent_id, EMPTY))
    if new_total is None:
        return Rejected("the agent's resources no longer cover its dynamic reservations")
    if not new_total.contains(index.agent_used[e.agent_id].non_revocable()):
        return Rejected("the agent's resources no longer cover its tasks")
    effects: list[fx.Effect] = _rescind_where(state, lambda offer: offer.agent_id == e.agent_id)
    agent = cluster.agents[e.agent_id]
    if not agent.id:
        agent.id = e.agent_id
        agent.registered_at_ms = event.timestamp_ms
    agent.info.CopyFrom(e.agent_info)
    if new_total != reported_total:
        agent.info.ClearField("resources")
        agent.info.resources.extend(resources_to_proto(new_total))
    agent.reachable = True
    agent.unreachable_at_ms = 0
    index.agent_total[e.agent_id] = new_total
    state.changes.agents.add(e.agent_id)

    known = set(index.agent_tasks.get(e.agent_id, ()))
    if e.tasks_unchanged:  # the agent runs exactly what the master knows: nothing to reconcile
        return Applied(tuple(effects))
    reported = {(t.framework_id, t.task_id): t for t in e.tasks}
    for key in sorted(reported):
        framework_id, task_id = key
        framework = cluster.frameworks.get(framework_id)
        task = framework.tasks.get(task_id) if framework is not None else None
        if task is None or task.state in TERMINAL_STATES or task.info.agent_id != e.agent_id:
            if reported[key].state not in TERMINAL_STATES:  # one that ended needs no kill
                effects.append(fx.KillTask(e.agent_id, framework_id, task_id))  # unknown to the master here
            continue
        now = reported[key].state
        if task.state == S.TASK_UNREACHABLE and now != S.TASK_UNREACHABLE and (now in _ACTIVE or now in TERMINAL_STATES):
            # Back from a partition: the framework hears the task's state again.
            status = _master_status(task_id, e.agent_id, now, "REASON_AGENT_REREGISTERED",
                                    "agent re-registered", event.timestamp_ms, task.info.executor_id)
            if now in TERMINAL_STATES:  # it ended meanwhile: its resources are free again
                _transition(state, framework_id, framework, task_id, task, status, track_ack=False)
            else:
                task.state = now
                task.latest_status.CopyFrom(status)
                state.changes.tasks.add(key)
            effects.append(fx.ForwardUpdate(framework_id, status))
    for framework_id, task_id in sorted(known - set(reported)):
        framework = cluster.frameworks[framework_id]
        task = framework.tasks[task_id]
        if task.state == S.TASK_STAGING:
            continue  # the launch may still be on its way to the agent
        gone = S.TASK_GONE if _partition_aware(framework) else S.TASK_LOST
        status = _master_status(task_id, e.agent_id, gone, "REASON_RECONCILIATION",
                                "task unknown to the agent after it re-registered", event.timestamp_ms,
                                task.info.executor_id)
        _transition(state, framework_id, framework, task_id, task, status, track_ack=False)
        effects.append(fx.ForwardUpdate(framework_id, status))
    return Applied(tuple(effects))


def apply_agent_marked_unreachable(state, position: int, event: events_pb2.Event) -> Outcome:
    """Mark the agent unreachable and rescind its offers. Its tasks become
    TASK_UNREACHABLE (partition-aware frameworks: they keep their resources) or TASK_LOST.
    Rejected: unknown or already unreachable agent."""
    e = event.agent_marked_unreachable
    agent = state.cluster.agents.get(e.agent_id)
    if agent is None:
        return Rejected("unknown agent")
    if not agent.reachable:
        return Rejected("agent is already unreachable")
    agent.reachable = False
    agent.unreachable_at_ms = event.timestamp_ms
    state.changes.agents.add(e.agent_id)
    effects = _rescind_where(state, lambda offer: offer.agent_id == e.agent_id)
    effects += _lose_agent_tasks(state, e.agent_id, event.timestamp_ms, unreachable=True,
                                 message=e.reason or "agent unreachable")
    return Applied(tuple(effects))


def apply_agent_removed(state, position: int, event: events_pb2.Event) -> Outcome:
    """Forget the agent: its offers go back, its tasks become TASK_LOST (TASK_GONE for
    partition-aware frameworks), and its id can never register again. Rejected: unknown agent."""
    e = event.agent_removed
    cluster = state.cluster
    if e.agent_id not in cluster.agents:
        return Rejected("unknown agent")
    effects = _rescind_where(state, lambda offer: offer.agent_id == e.agent_id)
    for framework_id, task_id in sorted(state.index.agent_tasks.get(e.agent_id, ())):
        framework = cluster.frameworks[framework_id]
        task = framework.tasks[task_id]
        status = _master_status(task_id, e.agent_id, S.TASK_LOST if not _partition_aware(framework) else S.TASK_GONE,
                                "REASON_AGENT_REMOVED", e.reason or "agent removed", event.timestamp_ms,
                                task.info.executor_id)
        _transition(state, framework_id, framework, task_id, task, status, track_ack=False)
        effects.append(fx.ForwardUpdate(framework_id, status))
    del cluster.agents[e.agent_id]
    state.index.agent_total.pop(e.agent_id, None)
    state.index.agent_revocable.pop(e.agent_id, None)
    state.index.agent_tasks.pop(e.agent_id, None)
    _push_bounded(cluster.removed_agents, e.agent_id, REMOVED_IDS_KEPT)
    state.changes.agents.add(e.agent_id)
    state.changes.cluster = True
    return Applied(tuple(effects))


def apply_offers_made(state, position: int, event: events_pb2.Event) -> Outcome:
    """Record each offer that still fits: its framework connected and subscribed to the offer's
    role (not suppressed), its agent reachable, no other offer to the same framework on that
    agent, and its resources available and usable by the role (revocable ones only for
    REVOCABLE_RESOURCES frameworks). Other offers are dropped as stale."""
    cluster, index, changed = state.cluster, state.index, state.changes.offers
    offers, ts = cluster.offers, event.timestamp_ms
    sent: dict[str, list[str]] = defaultdict(list)
    stale = 0
    # Looked up once per framework and agent: making offers changes neither.
    wants: dict[str, tuple[frozenset[str], bool] | None] = {}  # roles offered to, takes revocable
    reachable: dict[str, bool] = {}
    for offer in event.offers_made.offers[:]:  # slices: upb ends iterations on a formatted IndexError
        offer_id, framework_id, agent_id, role = offer.id, offer.framework_id, offer.agent_id, offer.role
        if framework_id not in wants:
            framework = cluster.frameworks.get(framework_id)
            wants[framework_id] = None if framework is None or not framework.connected else (
                frozenset(framework.info.roles[:]).difference(framework.suppressed_roles[:]),
                "REVOCABLE_RESOURCES" in framework.info.capabilities[:])
        if agent_id not in reachable:
            agent = cluster.agents.get(agent_id)
            reachable[agent_id] = agent is not None and agent.reachable
        framework_wants = wants[framework_id]
        resources = None
        if (framework_wants is not None and reachable[agent_id] and offer_id and offer_id not in offers
                and (framework_id, agent_id) not in index.offered_pairs and role in framework_wants[0]):
            resources = _parse(offer.resources)
        if (not resources or not resources.is_allocatable_to(role)
                or (not framework_wants[1] and resources.has_revocable())
                or not index.available(agent_id).contains(resources)):
            stale += 1  # the state moved on since the allocator ran (a SUPPRESS, say)
            continue
        stored = offers[offer_id]
        stored.CopyFrom(offer)
        stored.offered_at_ms = ts
        index.hold_offer_of(offer_id, framework_id, agent_id, role, resources)
        changed.add(offer_id)
        sent[framework_id].append(offer_id)
    effects = tuple(fx.SendOffers(fid, tuple(ids)) for fid, ids in sorted(sent.items()))
    return Applied(effects, note=f"{stale} stale offers dropped" if stale else "")


def apply_offers_rescinded(state, position: int, event: events_pb2.Event) -> Outcome:
    """Remove the named offers that still exist; unknown ids are ignored."""
    effects = []
    for offer_id in event.offers_rescinded.offer_ids[:]:
        removed = _remove_offer(state, offer_id)
        if removed is not None:
            effects.append(fx.RescindOffer(removed[0], offer_id))
    return Applied(tuple(effects))


def apply_offers_declined(state, position: int, event: events_pb2.Event) -> Outcome:
    """Remove the framework's named offers and filter their resources from it for
    `refuse_seconds`. Other frameworks' and unknown offers are ignored. Rejected: unknown framework."""
    e = event.offers_declined
    framework_id = e.framework_id
    if framework_id not in state.cluster.frameworks:
        return Rejected("unknown framework")
    offers, declined = state.cluster.offers, 0
    refuse, ts = e.refuse_seconds, event.timestamp_ms
    refuse = DEFAULT_REFUSE_SECONDS if refuse < 0 else refuse
    for offer_id in e.offer_ids[:]:
        offer = offers.get(offer_id)
        if offer is None or offer.framework_id != framework_id:
            continue
        agent_id = offer.agent_id
        resources = _drop_offer(state, offer_id, framework_id, agent_id, offer.role)
        _add_filter(state, framework_id, agent_id, resources, refuse, ts)
        declined += 1
    return Applied(note=f"{declined} declined")


def _fit(pool: Resources, wanted: Resources, role: str) -> str:
    """Why `wanted` cannot come out of `pool` for `role`, or '' when it can."""
    if not wanted:
        return "a task must use some resources"
    if wanted.has_revocable() and not pool.revocable().contains(wanted.revocable()):
        return "revocable resources not in the offer"
    if not pool.contains(wanted):
        return "resources not in the offers: wanted " + to_text(wanted) + ", offered " + to_text(pool)
    if not wanted.is_allocatable_to(role):
        for kind in wanted:
            if kind.role not in ("*", role) and not role.startswith(kind.role + "/"):
                return f"resources reserved to {kind.role!r} cannot be used by role {role!r}"
    return ""


def apply_offers_accepted(state, position: int, event: events_pb2.Event) -> Outcome:
    """Use the offers: they are removed, each operation is applied in order if it fits in
    what they still hold, and what is left is filtered like a DECLINE. Invalid offers drop the
    whole ACCEPT (TASK_DROPPED); a LAUNCH that does not fit, reuses a task id or carries the
    leader's error gets TASK_ERROR; a RESERVE or UNRESERVE that does not fit is skipped.
    Rejected: unknown framework."""
    e = event.offers_accepted
    cluster, index = state.cluster, state.index
    framework_id = e.framework_id
    framework = cluster.frameworks.get(framework_id)
    if framework is None:
        return Rejected("unknown framework")
    ts = event.timestamp_ms
    # Repeated fields are read as slices (lists): iterating one directly ends on an IndexError
    # that upb formats, which costs as much as the loop.
    offer_ids, operations = e.offer_ids[:], e.operations[:]
    # (id, agent, role) of the named offers that exist and are the framework's, read once.
    valid = []
    for offer_id in offer_ids:
        offer = cluster.offers.get(offer_id)
        if offer is not None and offer.framework_id == framework_id:
            valid.append((offer_id, offer.agent_id, offer.role))
    effects: list[fx.Effect] = []

    def drop_all(reason: str, message: str) -> Outcome:
        launches = [t for op in operations if op.type in ("LAUNCH", "LAUNCH_GROUP") for t in op.task_infos[:]]
        for task in launches:
            if task.task_id in framework.tasks:
                # A copy of a LAUNCH already applied (a retried or duplicated ACCEPT): the task
                # is not dropped, and its own updates tell the framework how it goes.
                continue
            effects.append(fx.ForwardUpdate(framework_id, _master_status(
                task.task_id, task.agent_id, S.TASK_DROPPED, reason, message, ts)))
        # Offers that did exist go back to the pool, as in Mesos.
        for offer_id in sorted({offer_id for offer_id, _, _ in valid}):
            _remove_offer(state, offer_id)
        return Applied(tuple(effects), note=message)

    if not offer_ids:
        return drop_all("REASON_INVALID_OFFERS", "no offers given")
    if len(valid) != len(offer_ids) or len(set(offer_ids)) != len(offer_ids):
        return drop_all("REASON_INVALID_OFFERS", "offer no longer valid (rescinded, declined, used or unknown)")
    agents = {agent_id for _, agent_id, _ in valid}
    roles = {role for _, _, role in valid}
    if len(agents) != 1 or len(roles) != 1:
        return drop_all("REASON_INVALID_OFFERS", "offers from different agents or roles cannot be combined")
    agent_id, role = agents.pop(), roles.pop()
    pool = EMPTY
    for offer_id, _, _ in valid:  # all of offer_ids, in their order
        pool = pool + _drop_offer(state, offer_id, framework_id, agent_id, role)

    for op in operations:
        op_type = op.type
        if op_type in ("LAUNCH", "LAUNCH_GROUP"):
            group = op.task_infos[:]
            task_ids = [t.task_id for t in group]
            executor_resources = EMPTY
            errors = op.error or _launch_errors(framework, group, task_ids, agent_id)
            parsed = [_parse(t.resources) for t in group]
            wanted = EMPTY
            try:
                for resources in parsed:
                    if resources is None:
                        raise ResourceError("malformed")
                    wanted = wanted + resources
            except ResourceError:  # malformed, or one name with two types across the tasks
                errors = errors or "malformed task resources"
            why = errors or _fit(pool, wanted, role)
            if why:
                for t in group:
                    effects.append(fx.ForwardUpdate(framework_id, _master_status(
                        t.task_id, agent_id, S.TASK_ERROR, "REASON_TASK_INVALID", why, ts, t.executor_id)))
                continue
            pool = pool - wanted - executor_resources
            tasks, changed = framework.tasks, state.changes.tasks
            index.hold_tasks(framework_id, agent_id, role, wanted, zip(task_ids, parsed, strict=True))
            for t, task_id in zip(group, task_ids, strict=True):
                task = tasks[task_id]
                info = task.info
                info.CopyFrom(t)
                info.agent_id = agent_id
                task.framework_id = framework_id
                task.role = role
                task.state = S.TASK_STAGING
                task.launched_at_ms = ts
                changed.add((framework_id, task_id))
                # _master_status(task_id, agent_id, TASK_STAGING, "", "", ts, executor_id), set
                # in place (the task is new): constructing and copying a status costs three times.
                staging = task.latest_status
                staging.task_id, staging.state, staging.source = task_id, S.TASK_STAGING, "SOURCE_MASTER"
                staging.timestamp, staging.agent_id, staging.executor_id = ts / 1000, agent_id, info.executor_id
            if op_type == "LAUNCH":
                effects.extend([fx.RunTask(agent_id, framework_id, task_id) for task_id in task_ids])
            else:
                effects.append(fx.RunTaskGroup(agent_id, framework_id, tuple(task_ids), op.executor_json))
        elif op_type in ("RESERVE", "UNRESERVE"):
            # An invalid reservation changes nothing (Mesos drops the operation).
            change = _reservation_sides(_parse(op.resources), reserve=op_type == "RESERVE")
            if change is None or not pool.contains(change[0]) or any(
                    op_type == "RESERVE" and k.role not in (role,) and not k.role.startswith(role + "/")
                    for k in change[1]):
                continue
            source, result = change
            try:
                new_pool = pool - source + result
                new_total = index.agent_total[agent_id] - source + result
            except ResourceError:  # a kind that would hold a scalar and ranges
                continue
            pool, index.agent_total[agent_id] = new_pool, new_total
            cluster.agents[agent_id].info.ClearField("resources")
            cluster.agents[agent_id].info.resources.extend(resources_to_proto(index.agent_total[agent_id]))
            state.changes.agents.add(agent_id)
    refuse = e.refuse_seconds
    _add_filter(state, framework_id, agent_id, pool, DEFAULT_REFUSE_SECONDS if refuse < 0 else refuse, ts)
    return Applied(tuple(effects))


def _launch_errors(framework: state_pb2.Framework, tasks, task_ids: list[str], agent_id: str) -> str:
    seen, known = set(), framework.tasks
    for t, task_id in zip(tasks, task_ids, strict=True):
        if not task_id:
            return "task_id is required"
        if task_id in known or task_id in seen:
            return f"task id {task_id!r} is already in use"
        named = t.agent_id
        if named and named != agent_id:
            return f"task {task_id} names agent {named}, not the offers' agent {agent_id}"
        seen.add(task_id)
    return ""


def _ack(agent_id: str, framework_id: str, task_id: str, uuid: bytes) -> tuple:
    """The effect that releases the agent from resending an update it will not see forwarded
    (a function, not a closure in the applier: a closure's cells cost every update)."""
    return (fx.AcknowledgeToAgent(agent_id, framework_id, task_id, uuid),) if uuid else ()


def apply_task_status_updated(state, position: int, event: events_pb2.Event) -> Outcome:
    """Record the task's new state and keep the update until it is acknowledged; a
    terminal state releases the task's resources. Duplicates, updates for unknown tasks, from
    another agent or with an illegal transition change nothing (the agent is told to stop
    resending); updates while the task's agent is unreachable are ignored (it resends them)."""
    e = event.task_status_updated
    status, framework_id = e.status, e.framework_id
    task_id, uuid, reported_by = status.task_id, status.uuid, status.agent_id

    framework = state.cluster.frameworks.get(framework_id)
    if framework is None:
        # Nobody will acknowledge it: release the agent from resending.
        if not uuid:
            return Rejected("unknown framework")
        return Applied(_ack(reported_by, framework_id, task_id, uuid), note="framework unknown")
    task = framework.tasks.get(task_id)
    if task is None:
        return Applied(_ack(reported_by, framework_id, task_id, uuid), note="task unknown")
    agent_id = task.info.agent_id
    if reported_by and reported_by != agent_id:
        return Applied(_ack(reported_by, framework_id, task_id, uuid),
                       note=f"task {task_id} is not on agent {reported_by}")
    agent = state.cluster.agents.get(agent_id)
    if agent is None or not agent.reachable:
        # As Mesos ignores updates from agents it does not consider registered: the agent
        # sends the update again once it has re-registered (and reported its tasks).
        return Applied(note="the task's agent is unreachable")
    unacknowledged = task.unacknowledged
    if uuid and len(unacknowledged) and any(u.uuid == uuid for u in unacknowledged[:]):
        return Applied(note="duplicate")
    if uuid and task.latest_status.uuid == uuid:
        return Applied(_ack(reported_by, framework_id, task_id, uuid), note="already acknowledged")
    old, new = task.state, status.state
    if not legal_transition(old, new):
        return Applied(_ack(reported_by, framework_id, task_id, uuid),
                       note=f"illegal transition {S.TaskState.Name(old)} -> {S.TaskState.Name(new)}")
    _transition(state, framework_id, framework, task_id, task, status, track_ack=True)
    return Applied((fx.ForwardUpdate(framework_id, status),))


def apply_status_update_acknowledged(state, position: int, event: events_pb2.Event) -> Outcome:
    """Drop the acknowledged update and tell the agent; a terminal task with nothing
    left to acknowledge moves to the completed tasks. Rejected: unknown framework, task or uuid."""
    e = event.status_update_acknowledged
    framework_id, task_id, uuid = e.framework_id, e.task_id, e.uuid
    framework = state.cluster.frameworks.get(framework_id)
    if framework is None:
        return Rejected("unknown framework")
    task = framework.tasks.get(task_id)
    if task is None:
        return Rejected("unknown task")
    unacknowledged = task.unacknowledged
    acknowledged = [i for i, u in enumerate(unacknowledged[:]) if u.uuid == uuid]
    if not acknowledged:
        return Rejected("no such unacknowledged update")
    for i in reversed(acknowledged):
        del unacknowledged[i]
    state.changes.tasks.add((framework_id, task_id))
    agent_id = e.agent_id or task.info.agent_id
    if not unacknowledged and task.state in TERMINAL_STATES:
        _finish_task(state, framework_id, framework, task_id)
    return Applied((fx.AcknowledgeToAgent(agent_id, framework_id, task_id, uuid),))


def apply_task_kill_requested(state, position: int, event: events_pb2.Event) -> Outcome:
    """Ask the task's agent to kill it. An unknown or finished task is answered with
    TASK_LOST (TASK_UNKNOWN for partition-aware frameworks). Rejected: unknown framework."""
    e = event.task_kill_requested
    framework = state.cluster.frameworks.get(e.framework_id)
    if framework is None:
        return Rejected("unknown framework")
    task = framework.tasks.get(e.task_id)
    if task is None or task.state in TERMINAL_STATES:
        unknown = S.TASK_UNKNOWN if _partition_aware(framework) else S.TASK_LOST
        status = _master_status(e.task_id, e.agent_id, unknown, "REASON_RECONCILIATION",
                                "kill of a task the master does not know", event.timestamp_ms)
        return Applied((fx.ForwardUpdate(e.framework_id, status),))
    agent = state.cluster.agents.get(task.info.agent_id)
    if agent is None or not agent.reachable:
        return Applied(note="agent unreachable; the task is killed if its agent comes back and reports it")
    return Applied((fx.KillTask(task.info.agent_id, e.framework_id, e.task_id, e.kill_policy_json),))


def apply_framework_message_relayed(state, position: int, event: events_pb2.Event) -> Outcome:
    """Relay the message. Rejected: unknown framework, or an unknown or unreachable
    agent for a message to an executor."""
    e = event.framework_message_relayed
    if e.framework_id not in state.cluster.frameworks:
        return Rejected("unknown framework")
    if e.to_executor:
        agent = state.cluster.agents.get(e.agent_id)
        if agent is None or not agent.reachable:
            return Rejected("unknown or unreachable agent")
        return Applied((fx.MessageToExecutor(e.agent_id, e.framework_id, e.executor_id, e.data),))
    return Applied((fx.MessageToScheduler(e.framework_id, e.agent_id, e.executor_id, e.data),))


def apply_quota_updated(state, position: int, event: events_pb2.Event) -> Outcome:
    """Replace each listed role's quota guarantees and limits. Rejected (all of it): a
    malformed resource."""
    for config in event.quota_updated.configs:
        # The leader's allocator parses quotas every cycle: a malformed one must not get in.
        if _parse(config.guarantees) is None or _parse(config.limits) is None:
            return Rejected(f"malformed quota for role {config.role!r}")
    for config in event.quota_updated.configs:
        role = state.cluster.roles[config.role]
        role.name = config.role
        if not role.weight:
            role.weight = 1.0
        role.ClearField("quota_guarantees")
        role.ClearField("quota_limits")
        role.quota_guarantees.extend(config.guarantees)
        role.quota_limits.extend(config.limits)
        state.changes.roles.add(config.role)
    return Applied()


def apply_weights_updated(state, position: int, event: events_pb2.Event) -> Outcome:
    """Set each listed role's weight. Rejected (all of it): a weight that is not positive
    and finite."""
    for w in event.weights_updated.weights:
        if not 0 < w.weight < math.inf:  # also refuses NaN
            return Rejected(f"weight of {w.role!r} must be positive and finite")
    for w in event.weights_updated.weights:
        role = state.cluster.roles[w.role]
        role.name = w.role
        role.weight = w.weight
        state.changes.roles.add(w.role)
    return Applied()


def _reservation_sides(target: Resources | None, reserve: bool) -> tuple[Resources, Resources] | None:
    """(what a RESERVE / UNRESERVE of `target` takes, what it gives), or None when `target` is
    malformed, empty, or a resource in it does not end in a dynamic reservation (static
    reservations are the agent's configuration: only the agent changes them)."""
    if not target or any(not k.reservations or k.reservations[-1].type != "DYNAMIC" for k in target):
        return None
    return (target.pop_reservation(), target) if reserve else (target, target.pop_reservation())


def _reservation_change(state, agent_id: str, resources, reserve: bool) -> Outcome:
    index = state.index
    agent = state.cluster.agents.get(agent_id)
    if agent is None:
        return Rejected("unknown agent")
    change = _reservation_sides(_parse(resources), reserve)
    if change is None:
        return Rejected("resources must be well formed and end in a dynamic reservation")
    source, result = change
    if not index.available(agent_id).contains(source):
        return Rejected("the agent does not have these resources available")
    try:
        index.agent_total[agent_id] = index.agent_total[agent_id] - source + result
    except ResourceError as e:
        return Rejected(str(e))
    agent.info.ClearField("resources")
    agent.info.resources.extend(resources_to_proto(index.agent_total[agent_id]))
    state.changes.agents.add(agent_id)
    return Applied()


def apply_resources_reserved(state, position: int, event: events_pb2.Event) -> Outcome:
    """Move available unreserved (or less refined) resources of the agent into the named
    dynamic reservation. Rejected: unknown agent, a resource that does not end in a dynamic
    reservation, or resources not available."""
    e = event.resources_reserved
    return _reservation_change(state, e.agent_id, e.resources, reserve=True)


def apply_resources_unreserved(state, position: int, event: events_pb2.Event) -> Outcome:
    """Move available dynamically reserved resources back out of their last reservation.
    Rejected as for ResourcesReserved."""
    e = event.resources_unreserved
    return _reservation_change(state, e.agent_id, e.resources, reserve=False)


def apply_oversubscribed_resources_updated(state, position: int, event: events_pb2.Event) -> Outcome:
    """Replace the agent's revocable estimate and rescind its outstanding offers holding
    revocable resources (they were cut from the old estimate). Rejected: unknown agent,
    malformed resources, or a resource not marked revocable."""
    e = event.oversubscribed_resources_updated
    agent = state.cluster.agents.get(e.agent_id)
    if agent is None:
        return Rejected("unknown agent")
    estimate = _parse(e.resources)
    if estimate is None:
        return Rejected("malformed resources")
    if estimate.non_revocable():
        return Rejected("oversubscribed resources must all be revocable")
    index = state.index
    if estimate == index.agent_revocable.get(e.agent_id, EMPTY):
        return Applied(note="unchanged")
    effects = _rescind_where(state, lambda offer: offer.agent_id == e.agent_id
                             and any(r.HasField("revocable") for r in offer.resources))
    del agent.oversubscribed[:]
    agent.oversubscribed.extend(resources_to_proto(estimate))
    state.changes.agents.add(e.agent_id)
    if estimate:
        index.agent_revocable[e.agent_id] = estimate
    else:
        index.agent_revocable.pop(e.agent_id, None)
    return Applied(tuple(effects))


def apply_resources_revoked(state, position: int, event: events_pb2.Event) -> Outcome:
    """Rescind the named offers and have each named task killed with the grace period; a
    revoked task is marked so the policy never names it twice. Offers and tasks that are gone,
    finished or already revoked are skipped (the state moved on since the policy ran)."""
    e = event.resources_revoked
    cluster = state.cluster
    effects: list[fx.Effect] = []
    for offer_id in e.offer_ids:
        removed = _remove_offer(state, offer_id)
        if removed is not None:
            effects.append(fx.RescindOffer(removed[0], offer_id))
    policy = canonical_json({"grace_period": {"nanoseconds": max(0, e.grace_period_ms) * 1_000_000}})
    skipped = 0
    for revoked in e.tasks:
        framework = cluster.frameworks.get(revoked.framework_id)
        task = framework.tasks.get(revoked.task_id) if framework is not None else None
        if task is None or task.state in TERMINAL_STATES or task.revoked_at_ms:
            skipped += 1
            continue
        task.revoked_at_ms = event.timestamp_ms
        state.changes.tasks.add((revoked.framework_id, revoked.task_id))
        effects.append(fx.KillTask(task.info.agent_id, revoked.framework_id, revoked.task_id, policy))
    return Applied(tuple(effects), note=f"{skipped} tasks skipped" if skipped else "")


APPLIERS = {
    "master_elected": apply_master_elected,
    "framework_subscribed": apply_framework_subscribed,
    "framework_updated": apply_framework_updated,
    "framework_disconnected": apply_framework_disconnected,
    "framework_removed": apply_framework_removed,
    "framework_suppressed": apply_framework_suppressed,
    "framework_revived": apply_framework_revived,
    "agent_registered": apply_agent_registered,
    "agent_reregistered": apply_agent_reregistered,
    "agent_marked_unreachable": apply_agent_marked_unreachable,
    "agent_removed": apply_agent_removed,
    "offers_made": apply_offers_made,
    "offers_rescinded": apply_offers_rescinded,
    "offers_declined": apply_offers_declined,
    "offers_accepted": apply_offers_accepted,
    "task_status_updated": apply_task_status_updated,
    "status_update_acknowledged": apply_status_update_acknowledged,
    "task_kill_requested": apply_task_kill_requested,
    "framework_message_relayed": apply_framework_message_relayed,
    "quota_updated": apply_quota_updated,
    "weights_updated": apply_weights_updated,
    "resources_reserved": apply_resources_reserved,
    "resources_unreserved": apply_resources_unreserved,
    "oversubscribed_resources_updated": apply_oversubscribed_resources_updated,
    "resources_revoked": apply_resources_revoked,
}

__all__ = ["APPLIERS", "ClusterIndex", "Reservation", "legal_transition"]
