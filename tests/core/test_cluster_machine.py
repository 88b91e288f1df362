"""A hypothesis state machine driving random master events through `apply`.

Every rule builds one event as the leader would, or as a stale, conflicting or malformed
leader decision would look, and applies it. After every event the machine checks that the
applier did not raise (apply() turns an exception into a rejection: that counts as raising),
that a `Rejected` event changed nothing, and that every task moved along a legal edge of the
task state diagram. After every step the invariants check the state: no resource offered or
used twice and never more allocated than an agent has; reservations neither make nor lose
resources; the incrementally kept `ClusterIndex` equals one rebuilt from the message;
terminal tasks hold nothing; every offer's framework is connected and subscribed to its
role, its agent reachable, at most one offer per (framework, agent); live tasks on an
unreachable agent are TASK_UNREACHABLE. After every event, too, the incremental digest
equals a full computation of it (a part changed without being marked in `state.changes`
would not) and survives a snapshot round trip. At teardown the recorded events, replayed
from scratch into a fresh `State`, give the same digest and the same outcomes and effects,
and a snapshot round trip keeps the digest (a rule also continues from a snapshot mid-run).

CI runs it derandomized (tests/conftest.py); `--hypothesis-show-statistics` shows which events
ran and how they ended. A bug it finds gets a focused regression test in test_cluster.py.
"""

from __future__ import annotations

import math
from collections import Counter

from hypothesis import event as statistic
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from mesos_es.core import digest
from mesos_es.core import effects as fx
from mesos_es.core.apply import apply
from mesos_es.core.cluster import COMPLETED_TASKS_KEPT, ClusterIndex
from mesos_es.core.convert import TERMINAL_STATES, resources_from_proto, resources_to_proto
from mesos_es.core.outcomes import Applied, Rejected
from mesos_es.core.resources import EMPTY, Kind, Reservation, Resources
from mesos_es.core.state import State
from mesos_es.pb import events_pb2 as ev
from mesos_es.pb import mesos_pb2 as pb

S = pb
ROLES = ("a", "b", "a/x")
CAPABILITIES = ("PARTITION_AWARE", "REVOCABLE_RESOURCES", "MULTI_ROLE")
ALL_STATES = tuple(sorted(pb.TaskState.values()))
CPUS, MEM, PORTS, DISKS = Kind("cpus"), Kind("mem"), Kind("ports"), Kind("disks")
REVOCABLE_CPUS = Kind("cpus", (), True)


# -- resources ------------------------------------------------------------------------------------

def static(kind: Kind, role: str) -> Kind:
    return Kind(kind.name, (Reservation(role, "STATIC"),), kind.revocable)


agent_resources = st.builds(
    lambda cpus, mem, ports, disks, reserved, revocable: Resources({
        CPUS: cpus * 1000, MEM: mem * 256_000, PORTS: ((31000, 31000 + ports),), DISKS: disks,
        **({static(CPUS, reserved): 1000} if reserved else {}),
        **({REVOCABLE_CPUS: 2000} if revocable else {}),
    }),
    st.integers(1, 8), st.integers(1, 8), st.integers(0, 9),
    st.sampled_from([("d1",), ("d1", "d2"), ()]), st.sampled_from([None, None, "a", "b"]), st.booleans(),
)


def part_of(data, resources: Resources, label: str = "part") -> Resources:
    """A random sub-bag of `resources` (possibly empty)."""
    out = {}
    for kind, value in resources.sorted_items():
        if not data.draw(st.booleans(), label=f"{label}: take {kind.name}"):
            continue
        if isinstance(value, int):
            out[kind] = data.draw(st.integers(1, value), label=f"{label}: {kind.name} milli")
        elif value and isinstance(value[0], tuple):
            b, e = value[0]
            first = data.draw(st.integers(b, e), label=f"{label}: {kind.name} begin")
            out[kind] = ((first, data.draw(st.integers(first, e), label=f"{label}: {kind.name} end")),)
        else:
            items = data.draw(st.lists(st.sampled_from(value), min_size=1, unique=True), label=f"{label}: items")
            out[kind] = tuple(sorted(items))
    return Resources(out)


def without_dynamic_reservations(resources: Resources) -> Resources:
    dynamic = resources.filter(lambda k: any(r.type == "DYNAMIC" for r in k.reservations))
    out = resources.filter(lambda k: k not in dynamic)
    for kind, value in dynamic.items():
        chain = tuple(r for r in kind.reservations if r.type != "DYNAMIC")
        out = out + Resources({Kind(kind.name, chain, kind.revocable): value})
    return out


def _overlap(a, b) -> bool:
    if isinstance(a, int):
        return False
    if a and isinstance(a[0], tuple):
        return any(ab <= be and bb <= ae for ab, ae in a for bb, be in b)
    return bool(set(a) & set(b))


def disjoint_sum(parts: list[Resources]) -> Resources:
    """The sum of `parts`, asserting no range or set item is in two of them (a sum alone
    would merge overlapping ranges and hide a port offered twice)."""
    total = EMPTY
    for part in parts:
        for kind, value in part.items():
            if kind in total:
                assert not _overlap(total[kind], value), f"{kind} held twice: {total[kind]} and {value}"
        total = total + part
    return total


# -- the legal edges of the task state diagram -------------------------------------------------------

def legal(old: int, new: int, kind: str) -> bool:
    if old == new:
        return True
    if old in TERMINAL_STATES:
        return False
    if new == S.TASK_STAGING:
        # Only a re-registering agent may say a task it had while unreachable is still staging.
        return old == S.TASK_UNREACHABLE and kind == "agent_reregistered"
    if new == S.TASK_UNKNOWN:
        return False  # a reconciliation answer, never a task's state
    if old == S.TASK_RUNNING and new == S.TASK_STARTING:
        return False
    if old == S.TASK_KILLING and new in (S.TASK_STARTING, S.TASK_RUNNING):
        return False  # a kill under way does not come undone
    return True


def task_states(cluster) -> dict[tuple[str, str], int]:
    return {(fid, tid): t.state for fid, f in cluster.frameworks.items() for tid, t in f.tasks.items()}


def framework_info(roles, caps, failover=0.0) -> pb.FrameworkInfo:
    return pb.FrameworkInfo(user="u", name="fw", roles=sorted(roles), capabilities=sorted(caps),
                            failover_timeout=failover)


role_sets = st.sets(st.sampled_from(ROLES), min_size=1).map(sorted)
capability_sets = st.sets(st.sampled_from(CAPABILITIES)).map(sorted)
refuse = st.sampled_from([-1.0, 0.0, 0.5, 5.0, 1e12, math.inf, math.nan])


class ClusterMachine(RuleBasedStateMachine):
    frameworks = Bundle("frameworks")
    agents = Bundle("agents")
    offers = Bundle("offers")
    tasks = Bundle("tasks")

    def __init__(self):
        super().__init__()
        self.state = State()
        self.events: list[bytes] = []
        self.outcomes: list = []
        self.now_ms = 1_700_000_000_000
        self.serial = 0
        # What each agent registered with, less dynamic reservations: reserving and
        # unreserving move resources around an agent but never make or lose any.
        self.capacity: dict[str, Resources] = {}

    # -- plumbing ------------------------------------------------------------------------------
    def new_id(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}{self.serial}"

    def new_uuid(self) -> bytes:
        self.serial += 1
        return self.serial.to_bytes(16, "big")

    def apply(self, **kind):
        (name, body), = kind.items()
        self.now_ms += 250
        event = ev.Event(timestamp_ms=self.now_ms, **{name: body})
        cluster_before = self.state.cluster.SerializeToString(deterministic=True)
        index_before = self.state.index.snapshot()
        tasks_before = task_states(self.state.cluster)
        try:
            outcome = apply(self.state, self.state.position + 1, event)
        except Exception as e:  # an applier that raises wedges every replica
            raise AssertionError(f"the {name} applier raised {e!r} on {event}") from e
        self.events.append(event.SerializeToString())
        self.outcomes.append(outcome)
        statistic(f"{name}: {type(outcome).__name__}")  # pytest --hypothesis-show-statistics
        assert isinstance(outcome, Applied | Rejected), outcome
        # apply() records an applier's exception as a rejection so replicas keep folding;
        # here it is a bug all the same.
        assert not (isinstance(outcome, Rejected) and outcome.reason.startswith("applier for")), outcome
        if isinstance(outcome, Rejected):
            assert self.state.cluster.SerializeToString(deterministic=True) == cluster_before, (
                f"{name} was rejected ({outcome.reason}) but changed the cluster")
            assert self.state.index.snapshot() == index_before
        self.check_transitions(name, tasks_before)
        self.check_effects(name, outcome)
        self.check_digest(name)
        if name in ("agent_registered", "agent_reregistered") and isinstance(outcome, Applied):
            agent_id = body.agent_id
            self.capacity[agent_id] = without_dynamic_reservations(
                resources_from_proto(self.state.cluster.agents[agent_id].info.resources))
        return outcome

    def check_transitions(self, kind: str, before: dict) -> None:
        cluster = self.state.cluster
        after = task_states(cluster)
        for key, new in after.items():
            old = before.get(key)
            if old is None:
                assert kind == "offers_accepted" and new == S.TASK_STAGING, (key, kind, new)
            else:
                assert legal(old, new, kind), (
                    f"{key}: {S.TaskState.Name(old)} -> {S.TaskState.Name(new)} by {kind}")
        for key in set(before) - set(after):
            framework_id, task_id = key
            framework = cluster.frameworks.get(framework_id)
            if framework is None:
                assert kind == "framework_removed"
                continue
            done = [t for t in framework.completed_tasks if t.info.task_id == task_id]
            assert done and done[-1].state in TERMINAL_STATES, f"{key} vanished by {kind}"
            assert legal(before[key], done[-1].state, kind)

    def check_digest(self, kind: str) -> None:
        """After every event: the incremental digest equals the same definition computed from
        scratch (an applier changed a part it did not name in `state.changes` otherwise), and a
        snapshot round trip keeps it."""
        incremental = digest.digest(self.state)
        assert incremental == digest.full_digest(self.state), f"{kind} changed a part without marking it"
        assert digest.digest(digest.from_proto(digest.to_proto(self.state))) == incremental

    def check_effects(self, kind: str, outcome) -> None:
        if not isinstance(outcome, Applied):
            return
        cluster = self.state.cluster
        for effect in outcome.effects:
            name = type(effect).__name__
            if name == "SendOffers":
                assert all(cluster.offers[i].framework_id == effect.framework_id for i in effect.offer_ids)
            elif name == "RescindOffer":
                assert effect.offer_id not in cluster.offers
            elif name in ("RunTask", "RunTaskGroup"):
                ids = effect.task_ids if name == "RunTaskGroup" else (effect.task_id,)
                for task_id in ids:
                    task = cluster.frameworks[effect.framework_id].tasks[task_id]
                    assert task.state == S.TASK_STAGING and task.info.agent_id == effect.agent_id

    def current_offers(self) -> list[str]:
        return sorted(self.state.cluster.offers)

    def tracked_tasks(self) -> list[tuple[str, str]]:
        return sorted(k for k, s in task_states(self.state.cluster).items())

    # -- a cluster to start from, so that short runs reach tasks ---------------------------------
    @initialize(target=frameworks, aware=capability_sets, other=role_sets)
    def initial_frameworks(self, aware, other):
        return multiple(self.subscribe(["a", "b"], sorted({"PARTITION_AWARE", *aware}), 60.0),
                        self.subscribe(other, [], 0.0))

    @initialize(target=agents, first=agent_resources, second=agent_resources)
    def initial_agents(self, first, second):
        return multiple(self.register_agent(first), self.register_agent(second))

    # -- frameworks -----------------------------------------------------------------------------
    # Rare events are grouped into one rule each, so that hypothesis (which picks rules
    # uniformly) spends its steps on offers and tasks rather than on tearing them down.
    @rule(framework_id=frameworks, data=st.data(),
          how=st.sampled_from(["resubscribe", "disconnect", "remove", "update", "suppress", "revive", "message"]))
    def framework_changes(self, framework_id, data, how):
        some_roles = st.lists(st.sampled_from((*ROLES, "zz")), max_size=2)
        if how == "message":
            self.message(framework_id, data.draw(st.sampled_from([*sorted(self.state.cluster.agents), "S-none"])),
                         data.draw(st.booleans()))
        elif how == "resubscribe":
            self.resubscribe(framework_id, data.draw(role_sets), data.draw(capability_sets))
        elif how == "disconnect":
            self.disconnect(framework_id)
        elif how == "remove":
            self.remove_framework(framework_id, data.draw(st.sampled_from(["TEARDOWN", "FAILOVER_TIMEOUT"])))
        elif how == "update":
            self.update_framework(framework_id, data.draw(role_sets), data.draw(capability_sets))
        elif how == "suppress":
            self.suppress(framework_id, data.draw(some_roles))
        else:
            self.revive(framework_id, data.draw(some_roles))

    @rule(target=frameworks, roles=role_sets, caps=capability_sets, failover=st.sampled_from([0.0, 60.0]))
    def subscribe(self, roles, caps, failover):
        framework_id = self.new_id("F")
        self.apply(framework_subscribed=ev.FrameworkSubscribed(
            framework_id=framework_id, framework_info=framework_info(roles, caps, failover)))
        return framework_id

    def resubscribe(self, framework_id, roles, caps):
        outcome = self.apply(framework_subscribed=ev.FrameworkSubscribed(
            framework_id=framework_id, framework_info=framework_info(roles, caps), resubscribed=True))
        assert isinstance(outcome, Rejected) == (framework_id in self.state.cluster.removed_frameworks)

    def disconnect(self, framework_id):
        self.apply(framework_disconnected=ev.FrameworkDisconnected(framework_id=framework_id))
        if framework_id in self.state.cluster.frameworks:
            assert not self.state.cluster.frameworks[framework_id].connected

    def remove_framework(self, framework_id, reason):
        self.apply(framework_removed=ev.FrameworkRemoved(framework_id=framework_id, reason=reason))
        assert framework_id not in self.state.cluster.frameworks

    def suppress(self, framework_id, roles):
        self.apply(framework_suppressed=ev.FrameworkSuppressed(framework_id=framework_id, roles=roles))

    def revive(self, framework_id, roles):
        self.apply(framework_revived=ev.FrameworkRevived(framework_id=framework_id, roles=roles))

    def update_framework(self, framework_id, roles, caps):
        self.apply(framework_updated=ev.FrameworkUpdated(framework_id=framework_id,
                                                         framework_info=framework_info(roles, caps)))

    def message(self, framework_id, agent_id, to_executor):
        self.apply(framework_message_relayed=ev.FrameworkMessageRelayed(
            framework_id=framework_id, agent_id=agent_id, executor_id="e", data=b"hi", to_executor=to_executor))

    # -- agents ---------------------------------------------------------------------------------
    @rule(target=agents, resources=agent_resources)
    def register_agent(self, resources):
        agent_id = self.new_id("S")
        outcome = self.apply(agent_registered=ev.AgentRegistered(agent_id=agent_id, agent_info=pb.AgentInfo(
            hostname=f"{agent_id}.test", port=5051, resources=resources_to_proto(resources))))
        assert isinstance(outcome, Applied)
        return agent_id

    def register_taken_id(self, agent_id, resources):
        outcome = self.apply(agent_registered=ev.AgentRegistered(agent_id=agent_id, agent_info=pb.AgentInfo(
            hostname="x", resources=resources_to_proto(resources))))
        assert isinstance(outcome, Rejected)

    @rule(bundled=st.one_of(agents, st.just("S-never-seen")), data=st.data())
    def reregister_agent(self, bundled, data):
        cluster = self.state.cluster
        unreachable = sorted(a for a, agent in cluster.agents.items() if not agent.reachable)
        agent_id = bundled
        if unreachable and data.draw(st.booleans(), label="an unreachable one"):
            agent_id = data.draw(st.sampled_from(unreachable), label="agent")
        reports = []
        for framework_id, task_id in sorted(self.state.index.agent_tasks.get(agent_id, ())):
            current = cluster.frameworks[framework_id].tasks[task_id].state
            choice = data.draw(st.sampled_from(["omit", "same", "other"]), label=f"report {task_id}")
            if choice != "omit":
                reported = current if choice == "same" else data.draw(st.sampled_from(ALL_STATES), label="as")
                reports.append(ev.TaskReport(framework_id=framework_id, task_id=task_id, state=reported))
        strays = data.draw(st.lists(st.sampled_from(self.tracked_tasks() + [("F-gone", "t-gone")]), max_size=2,
                                    unique=True), label="strays")
        reports += [ev.TaskReport(framework_id=f, task_id=t, state=S.TASK_RUNNING) for f, t in strays]
        how = data.draw(st.sampled_from(["as configured", "with the reservations", "changed"]), label="resources")
        if agent_id in cluster.agents and how == "as configured":  # what mesos_es/agent sends
            resources = resources_to_proto(without_dynamic_reservations(
                resources_from_proto(cluster.agents[agent_id].info.resources)))
        elif agent_id in cluster.agents and how == "with the reservations":
            resources = list(cluster.agents[agent_id].info.resources)
        else:
            resources = resources_to_proto(data.draw(agent_resources, label="new resources"))
        self.apply(agent_reregistered=ev.AgentReregistered(
            agent_id=agent_id, agent_info=pb.AgentInfo(hostname=f"{agent_id}.test", resources=resources),
            tasks=reports))

    @rule(bundled=agents, how=st.sampled_from(["unreachable", "removed", "id taken"]), resources=agent_resources,
          data=st.data())
    def agent_changes(self, bundled, how, resources, data):
        busy = sorted(a for a, held in self.state.index.agent_tasks.items() if held)
        agent_id = bundled
        if busy and data.draw(st.booleans(), label="an agent with tasks"):
            agent_id = data.draw(st.sampled_from(busy), label="agent")
        if how == "unreachable":
            self.mark_unreachable(agent_id)
        elif how == "removed":
            self.remove_agent(agent_id)
        else:
            self.register_taken_id(agent_id, resources)

    @rule(bundled=st.one_of(agents, st.just("S-never-seen")), cpus=st.integers(0, 3),
          how=st.sampled_from(["estimate", "estimate", "not revocable"]))
    def oversubscribe(self, bundled, cpus, how):
        """The agent's estimator reports a new revocable estimate (or a malformed one)."""
        kind = REVOCABLE_CPUS if how == "estimate" else CPUS
        before = dict(self.state.cluster.offers)
        outcome = self.apply(oversubscribed_resources_updated=ev.OversubscribedResourcesUpdated(
            agent_id=bundled, resources=resources_to_proto(Resources({kind: cpus * 1000}))))
        known = bundled in self.state.cluster.agents
        assert isinstance(outcome, Applied) == (known and (how == "estimate" or cpus == 0)), outcome
        if isinstance(outcome, Applied) and outcome.note != "unchanged":
            assert not any(o.agent_id == bundled and resources_from_proto(o.resources).revocable()
                           for o in self.state.cluster.offers.values()), "a revocable offer outlived its estimate"
            assert len(before) - len(self.state.cluster.offers) == len(outcome.effects)

    @rule(data=st.data(), grace_ms=st.sampled_from([0, 5000]))
    def revoke(self, data, grace_ms):
        """The revocation policy takes back some offers and tasks (some already gone)."""
        cluster = self.state.cluster
        offer_ids = data.draw(st.lists(st.sampled_from([*self.current_offers(), "O-gone"]), max_size=2,
                                       unique=True), label="offers")
        picked = data.draw(st.lists(st.sampled_from([*self.tracked_tasks(), ("F-none", "t-none")]), max_size=3,
                                    unique=True), label="tasks")
        killable = {key for key in picked if key in self.tracked_tasks()
                    and cluster.frameworks[key[0]].tasks[key[1]].state not in TERMINAL_STATES
                    and not cluster.frameworks[key[0]].tasks[key[1]].revoked_at_ms}
        outcome = self.apply(resources_revoked=ev.ResourcesRevoked(
            offer_ids=offer_ids, tasks=[ev.RevokedTask(framework_id=f, task_id=t) for f, t in picked],
            for_roles=["a"], grace_period_ms=grace_ms))
        assert not set(offer_ids) & set(cluster.offers)
        kills = {(e.framework_id, e.task_id) for e in outcome.effects if isinstance(e, fx.KillTask)}
        assert kills == killable, (kills, killable)
        assert all(cluster.frameworks[f].tasks[t].revoked_at_ms == self.now_ms for f, t in kills)

    def mark_unreachable(self, agent_id):
        self.apply(agent_marked_unreachable=ev.AgentMarkedUnreachable(agent_id=agent_id, reason="pings"))

    def remove_agent(self, agent_id):
        self.apply(agent_removed=ev.AgentRemoved(agent_id=agent_id, reason="unregistered"))
        assert agent_id not in self.state.cluster.agents

    @rule(bad=st.sampled_from(["negative", "nan", "inf", "inverted range", "mixed types"]),
          where=st.sampled_from(["agent", "offer", "quota", "reserve"]), agent_id=agents)
    def malformed_resources(self, bad, where, agent_id):
        """Resources the HTTP layer would never let through: the applier must reject them."""
        r = pb.Resource(name="cpus", type=pb.Value.SCALAR)
        extra = []
        if bad == "negative":
            r.scalar.value = -1
        elif bad == "nan":
            r.scalar.value = math.nan
        elif bad == "inf":
            r.scalar.value = math.inf
        elif bad == "inverted range":
            r = pb.Resource(name="ports", type=pb.Value.RANGES)
            r.ranges.range.add(begin=9, end=3)
        else:
            r.scalar.value = 1
            extra = [pb.Resource(name="cpus", type=pb.Value.RANGES)]
            extra[0].ranges.range.add(begin=1, end=2)
        resources = [r, *extra]
        if where == "agent":
            outcome = self.apply(agent_registered=ev.AgentRegistered(
                agent_id=self.new_id("S"), agent_info=pb.AgentInfo(hostname="bad", resources=resources)))
        elif where == "offer":
            framework_id = min(self.state.cluster.frameworks, default="F-none")
            role = (list(self.state.cluster.frameworks[framework_id].info.roles) or ["a"])[0] \
                if framework_id in self.state.cluster.frameworks else "a"
            outcome = self.apply(offers_made=ev.OffersMade(offers=[pb.Offer(
                id=self.new_id("O"), framework_id=framework_id, agent_id=agent_id, role=role,
                resources=resources)]))
            assert isinstance(outcome, Rejected) or not outcome.effects, outcome
            return
        elif where == "quota":
            outcome = self.apply(quota_updated=ev.QuotaUpdated(configs=[ev.QuotaConfig(
                role="a", guarantees=resources)]))
        else:
            for r in resources:
                r.reservations.add(type="DYNAMIC", role="a")
            outcome = self.apply(resources_reserved=ev.ResourcesReserved(agent_id=agent_id, resources=resources))
        assert isinstance(outcome, Rejected), outcome

    # -- offers ---------------------------------------------------------------------------------
    def offerable(self):
        """(framework, agent) pairs an allocator could offer to now."""
        cluster, index = self.state.cluster, self.state.index
        pairs = []
        for framework_id in sorted(cluster.frameworks):
            framework = cluster.frameworks[framework_id]
            if not framework.connected:
                continue
            for agent_id in sorted(cluster.agents):
                if cluster.agents[agent_id].reachable and (framework_id, agent_id) not in index.offered_pairs:
                    pairs.append((framework_id, agent_id))
        return pairs

    @precondition(lambda self: self.offerable())
    @rule(target=offers, data=st.data())
    def make_offers(self, data):
        """One allocation cycle's worth of valid offers, from what is available."""
        cluster = self.state.cluster
        available = {a: self.state.index.available(a) for a in cluster.agents}
        offers = []
        for framework_id, agent_id in self.offerable():
            if not data.draw(st.integers(0, 4), label=f"offer {agent_id} to {framework_id}"):
                continue
            framework = cluster.frameworks[framework_id]
            roles = sorted(set(framework.info.roles) - set(framework.suppressed_roles))
            if not roles:
                continue
            role = data.draw(st.sampled_from(roles), label="role")
            pool = available[agent_id].allocatable_to(role)
            if "REVOCABLE_RESOURCES" not in framework.info.capabilities:
                pool = pool.non_revocable()
            resources = part_of(data, pool, "offer")
            if not resources:
                continue
            available[agent_id] = available[agent_id] - resources
            offers.append(pb.Offer(id=self.new_id("O"), framework_id=framework_id, agent_id=agent_id,
                                   hostname=f"{agent_id}.test", role=role, resources=resources_to_proto(resources)))
        outcome = self.apply(offers_made=ev.OffersMade(offers=offers))
        assert sorted(i for e in outcome.effects for i in e.offer_ids) == sorted(o.id for o in offers), (
            f"a valid offer was dropped: {outcome.note}")
        for offer in offers:  # a busy framework launches as soon as it is offered
            if len(self.tracked_tasks()) < 12 and data.draw(st.booleans(), label=f"launch on {offer.id} at once"):
                self.launch_on(offer.id, data)
        return multiple(*[o.id for o in offers])

    @rule(target=offers, data=st.data(), how=st.sampled_from([
        "over-allocate", "reused id", "same pair twice", "unknown framework", "disconnected framework",
        "unknown agent", "unreachable agent", "role not subscribed", "empty", "suppressed role",
        "other role's reservation", "revocable to an incapable framework"]))
    def make_stale_offer(self, data, how):
        """An offer the allocator decided on a state that has since moved on (or a buggy one):
        the applier must drop it and change nothing."""
        cluster, index = self.state.cluster, self.state.index
        pairs = [(f, a) for f in sorted(cluster.frameworks) for a in sorted(cluster.agents)]
        framework_id, agent_id = data.draw(st.sampled_from(pairs), label="pair") if pairs else ("F-none", "S-none")
        framework = cluster.frameworks.get(framework_id)
        role = framework.info.roles[0] if framework is not None else "a"
        resources = index.available(agent_id).allocatable_to(role).non_revocable() or Resources({CPUS: 1000})
        offer_id = self.new_id("O")
        offers = [pb.Offer(id=offer_id, framework_id=framework_id, agent_id=agent_id, role=role)]
        if how == "over-allocate":
            resources = resources + Resources({CPUS: 1000, PORTS: ((1, 2),)})
        elif how == "reused id" and cluster.offers:
            offers[0].id = offer_id = data.draw(st.sampled_from(self.current_offers()), label="reused")
        elif how == "same pair twice":
            first = part_of(data, resources, "first") or resources
            offers.insert(0, pb.Offer(id=self.new_id("O"), framework_id=framework_id, agent_id=agent_id,
                                      role=role, resources=resources_to_proto(first)))
            resources = resources - first or Resources({MEM: 1000})
        elif how == "unknown framework":
            offers[0].framework_id = "F-unknown"
        elif how == "disconnected framework" and framework is not None:
            self.apply(framework_disconnected=ev.FrameworkDisconnected(framework_id=framework_id))
        elif how == "unknown agent":
            offers[0].agent_id = "S-unknown"
        elif how == "unreachable agent" and agent_id in cluster.agents:
            self.apply(agent_marked_unreachable=ev.AgentMarkedUnreachable(agent_id=agent_id))
        elif how == "role not subscribed":
            offers[0].role = "zz"
        elif how == "empty":
            resources = EMPTY
        elif how == "suppressed role" and framework is not None:
            self.apply(framework_suppressed=ev.FrameworkSuppressed(framework_id=framework_id, roles=[role]))
        elif how == "other role's reservation":
            resources = index.available(agent_id).reserved().filter(
                lambda k: k.role != role and not role.startswith(k.role + "/"))
            if not resources:
                return multiple()
        elif how == "revocable to an incapable framework" and framework is not None:
            resources = index.available(agent_id).revocable()
            if not resources or "REVOCABLE_RESOURCES" in framework.info.capabilities:
                return multiple()
        else:
            return multiple()
        offers[-1].resources.extend(resources_to_proto(resources))
        before = set(cluster.offers)
        outcome = self.apply(offers_made=ev.OffersMade(offers=offers))
        made = {i for e in outcome.effects for i in e.offer_ids}
        assert offer_id not in made or (how == "same pair twice" and offers[0].id not in made), (how, outcome)
        assert set(cluster.offers) == before | made
        return multiple(*[o.id for o in offers])

    @rule(offer_ids=st.lists(offers, max_size=3), framework_id=frameworks, refuse_seconds=refuse,
          how=st.sampled_from(["OFFER_TIMEOUT", "AGENT_UNREACHABLE", "declined"]))
    def offers_go_back(self, offer_ids, framework_id, refuse_seconds, how):
        if how == "declined":
            self.decline(framework_id, offer_ids, refuse_seconds)
        else:
            self.rescind(offer_ids, how)

    def rescind(self, offer_ids, reason):
        self.apply(offers_rescinded=ev.OffersRescinded(offer_ids=offer_ids, reason=reason))
        assert not set(offer_ids) & set(self.state.cluster.offers)

    def decline(self, framework_id, offer_ids, refuse_seconds):
        mine = {i for i in offer_ids if self.state.cluster.offers.get(i, pb.Offer()).framework_id == framework_id}
        others = {i for i in offer_ids if i in self.state.cluster.offers} - mine
        self.apply(offers_declined=ev.OffersDeclined(framework_id=framework_id, offer_ids=offer_ids,
                                                     refuse_seconds=refuse_seconds))
        assert not mine & set(self.state.cluster.offers)
        assert others <= set(self.state.cluster.offers)  # nobody declines another's offer

    @precondition(lambda self: self.state.cluster.offers)
    @rule(target=tasks, data=st.data(), refuse_seconds=refuse)
    def accept(self, data, refuse_seconds):
        """ACCEPT with LAUNCH / LAUNCH_GROUP / RESERVE / UNRESERVE operations, valid or not."""
        cluster = self.state.cluster
        offer = cluster.offers[data.draw(st.sampled_from(self.current_offers()), label="offer")]
        framework_id, agent_id, role = offer.framework_id, offer.agent_id, offer.role
        framework = cluster.frameworks[framework_id]
        offer_ids = [offer.id]
        mangle = data.draw(st.sampled_from(["none"] * 6 + ["unknown", "twice", "another's", "empty"]),
                           label="offer ids")
        if mangle == "unknown":
            offer_ids.append("O-unknown")
        elif mangle == "twice":
            offer_ids.append(offer.id)
        elif mangle == "another's":
            others = [o for o in self.current_offers() if cluster.offers[o].framework_id != framework_id]
            offer_ids += others[:1]
            mangle = mangle if others else "none"
        elif mangle == "empty":
            offer_ids = []
        pool = resources_from_proto(offer.resources)
        operations, launched = [], []
        known = sorted(framework.tasks)
        for _ in range(data.draw(st.integers(1, 3), label="operations")):
            what = data.draw(st.sampled_from(["launch", "launch", "launch group", "too big", "duplicate id",
                                              "leader error", "wrong agent", "no resources", "malformed",
                                              "reserve", "unreserve"]), label="operation")
            if what == "reserve":
                chosen = part_of(data, pool.unreserved().non_revocable(), "reserve")
                target = chosen.push_reservation(Reservation(role, "DYNAMIC", "p"))
                operations.append(ev.Operation(type="RESERVE", resources=resources_to_proto(target)))
                if chosen:
                    pool = pool - chosen + target
                continue
            if what == "unreserve":
                chosen = part_of(data, pool.filter(lambda k: bool(k.reservations) and
                                                   k.reservations[-1].type == "DYNAMIC"), "unreserve")
                operations.append(ev.Operation(type="UNRESERVE", resources=resources_to_proto(chosen)))
                if chosen:
                    pool = pool - chosen + chosen.pop_reservation()
                continue
            count = 2 if what == "launch group" else 1
            infos = []
            for _ in range(count):
                task_id = self.new_id("t")
                if what == "duplicate id" and (known or infos):
                    task_id = data.draw(st.sampled_from(known + [t.task_id for t in infos]), label="dup")
                wanted = part_of(data, pool, "task")
                if what == "too big":
                    wanted = pool + Resources({MEM: 1000})
                elif what == "no resources":
                    wanted = EMPTY
                infos.append(pb.TaskInfo(task_id=task_id, name="t", agent_id="S-other" if what == "wrong agent"
                                         else agent_id, resources=resources_to_proto(wanted),
                                         executor_id="ex" if count > 1 else "", json=b"{}"))
                if what == "malformed":
                    infos[-1].resources.add(name="mem", scalar=pb.Value.Scalar(value=-1.0))
                if what in ("launch", "launch group") and wanted and pool.contains(wanted):
                    pool = pool - wanted
            op = ev.Operation(type="LAUNCH_GROUP" if count > 1 else "LAUNCH", task_infos=infos,
                              executor_json=b'{"executor_id":{"value":"ex"}}' if count > 1 else b"")
            if what == "leader error":
                op.error = "task needs a command"
            operations.append(op)
            launched += [(framework_id, t.task_id) for t in infos]
        tasks_before = set(framework.tasks)
        self.apply(offers_accepted=ev.OffersAccepted(framework_id=framework_id, offer_ids=offer_ids,
                                                     operations=operations, refuse_seconds=refuse_seconds))
        if offer_ids:
            assert offer.id not in cluster.offers  # used, or returned to the pool
        new = set(cluster.frameworks[framework_id].tasks) - tasks_before
        if mangle != "none":
            assert not new, f"offers {offer_ids} are not all valid, yet {new} launched"
        return multiple(*sorted(set(launched)))

    @precondition(lambda self: self.state.cluster.offers)
    @rule(target=tasks, data=st.data())
    def accept_launch(self, data):
        """The common case: launch tasks that fit in one offer (the rule above also tries the
        odd ones; this one gets runs to tasks quickly)."""
        return self.launch_on(data.draw(st.sampled_from(self.current_offers()), label="offer"), data)

    def launch_on(self, offer_id: str, data):
        cluster = self.state.cluster
        offer = cluster.offers[offer_id]
        pool, infos = resources_from_proto(offer.resources), []
        for _ in range(data.draw(st.integers(1, 2), label="tasks")):
            wanted = part_of(data, pool, "task")
            if not wanted:
                continue
            pool = pool - wanted
            infos.append(pb.TaskInfo(task_id=self.new_id("t"), name="t", agent_id=offer.agent_id,
                                     resources=resources_to_proto(wanted), json=b"{}"))
        tasks_before = set(cluster.frameworks[offer.framework_id].tasks)
        self.apply(offers_accepted=ev.OffersAccepted(
            framework_id=offer.framework_id, offer_ids=[offer.id], refuse_seconds=0.0,
            operations=[ev.Operation(type="LAUNCH", task_infos=infos)]))
        launched = set(cluster.frameworks[offer.framework_id].tasks) - tasks_before
        assert launched == {t.task_id for t in infos}, "a task that fits its offer was not launched"
        return multiple(*[(offer.framework_id, t) for t in sorted(launched)])

    # -- tasks ----------------------------------------------------------------------------------
    def live_tasks(self) -> list[tuple[str, str]]:
        """Tasks whose agent could send an update now."""
        cluster = self.state.cluster
        return sorted((f, t) for (f, t), s in task_states(cluster).items() if s not in TERMINAL_STATES
                      and cluster.agents[cluster.frameworks[f].tasks[t].info.agent_id].reachable)

    @precondition(lambda self: self.live_tasks())
    @rule(data=st.data())
    def progress_task(self, data):
        """The agent reports a live task's next state along the usual path."""
        framework_id, task_id = data.draw(st.sampled_from(self.live_tasks()), label="task")
        task = self.state.cluster.frameworks[framework_id].tasks[task_id]
        following = {S.TASK_STAGING: [S.TASK_STARTING, S.TASK_RUNNING, S.TASK_FAILED],
                     S.TASK_STARTING: [S.TASK_RUNNING, S.TASK_FAILED],
                     S.TASK_RUNNING: [S.TASK_RUNNING, S.TASK_FINISHED, S.TASK_KILLING, S.TASK_FAILED],
                     S.TASK_KILLING: [S.TASK_KILLED],
                     S.TASK_UNREACHABLE: [S.TASK_RUNNING, S.TASK_LOST]}[task.state]
        status = pb.TaskStatus(task_id=task_id, state=data.draw(st.sampled_from(following), label="state"),
                               uuid=self.new_uuid(), agent_id=task.info.agent_id, source="SOURCE_EXECUTOR")
        outcome = self.apply(task_status_updated=ev.TaskStatusUpdated(framework_id=framework_id, status=status))
        assert outcome.effects and task.latest_status == status, "a legal update was not recorded"

    def pick_task(self, data, bundled):
        known = self.tracked_tasks()
        if known and data.draw(st.integers(0, 3), label="known task") > 0:
            return data.draw(st.sampled_from(known), label="task")
        return bundled

    @rule(bundled=st.one_of(tasks, st.just(("F-none", "t-none"))), data=st.data(),
          new_state=st.sampled_from(ALL_STATES))
    def status_update(self, bundled, data, new_state):
        framework_id, task_id = self.pick_task(data, bundled)
        framework = self.state.cluster.frameworks.get(framework_id)
        task = framework.tasks.get(task_id) if framework is not None else None
        uuids = [u.uuid for u in task.unacknowledged] + [task.latest_status.uuid] if task is not None else []
        how = data.draw(st.sampled_from(["fresh", "fresh", "none", "duplicate"]), label="uuid")
        uuid = self.new_uuid() if how == "fresh" else b""
        if how == "duplicate" and any(uuids):
            uuid = data.draw(st.sampled_from([u for u in uuids if u]), label="duplicate uuid")
        agent_id = task.info.agent_id if task is not None else "S-none"
        status = pb.TaskStatus(task_id=task_id, state=new_state, uuid=uuid, agent_id=agent_id,
                               source="SOURCE_EXECUTOR", timestamp=self.now_ms / 1000)
        before = task.state if task is not None else None
        self.apply(task_status_updated=ev.TaskStatusUpdated(framework_id=framework_id, status=status))
        if how == "duplicate" and task is not None and uuid:
            after = self.state.cluster.frameworks[framework_id].tasks.get(task_id)
            assert after is None or after.state == before  # a duplicate changes nothing

    @precondition(lambda self: self.tracked_tasks())
    @rule(data=st.data(), bundled=st.one_of(tasks, st.just(("F-none", "t-none"))))
    def acknowledge(self, data, bundled):
        cluster = self.state.cluster
        pending = [(f, t, u.uuid) for f, t in self.tracked_tasks()
                   for u in cluster.frameworks[f].tasks[t].unacknowledged]
        if pending and data.draw(st.integers(0, 3), label="a pending one"):
            framework_id, task_id, uuid = data.draw(st.sampled_from(pending), label="ack")
        else:
            (framework_id, task_id), uuid = bundled, self.new_uuid()
        outcome = self.apply(status_update_acknowledged=ev.StatusUpdateAcknowledged(
            framework_id=framework_id, task_id=task_id, uuid=uuid))
        if (framework_id, task_id, uuid) in pending:
            assert isinstance(outcome, Applied)
            task = cluster.frameworks[framework_id].tasks.get(task_id)
            assert task is None or uuid not in [u.uuid for u in task.unacknowledged]

    @precondition(lambda self: self.tracked_tasks())
    @rule(bundled=st.one_of(tasks, st.just(("F-none", "t-none"))), data=st.data())
    def kill(self, bundled, data):
        framework_id, task_id = self.pick_task(data, bundled)
        self.apply(task_kill_requested=ev.TaskKillRequested(framework_id=framework_id, task_id=task_id))

    # -- operator -------------------------------------------------------------------------------
    @rule(role=st.sampled_from(ROLES), quota=st.none() | st.tuples(st.integers(0, 4), st.booleans()),
          weight=st.sampled_from([1.0, 2.5, 0.0, -1.0, math.nan, math.inf]))
    def operator_policy(self, role, quota, weight):
        if quota is None:
            self.update_weights(role, weight)
        else:
            self.update_quota(role, *quota)

    @rule(agent_id=agents, role=st.sampled_from(ROLES), data=st.data(), reserve=st.booleans())
    def operator_reservation(self, agent_id, role, data, reserve):
        if reserve:
            self.operator_reserve(agent_id, role, data)
        else:
            self.operator_unreserve(agent_id, data)

    def update_quota(self, role, cpus, limit):
        resources = resources_to_proto(Resources({CPUS: cpus * 1000}))
        self.apply(quota_updated=ev.QuotaUpdated(configs=[ev.QuotaConfig(
            role=role, guarantees=resources, limits=resources if limit else [])]))

    def update_weights(self, role, weight):
        outcome = self.apply(weights_updated=ev.WeightsUpdated(weights=[ev.WeightInfo(role=role, weight=weight)]))
        assert isinstance(outcome, Applied) == (0 < weight < math.inf)

    def operator_reserve(self, agent_id, role, data):
        available = self.state.index.available(agent_id) if agent_id in self.state.cluster.agents else EMPTY
        chosen = part_of(data, available.unreserved().non_revocable(), "reserve")
        if data.draw(st.booleans(), label="more than available"):
            chosen = chosen + Resources({CPUS: 100_000})
        # Part by one principal and the rest by another: one UNRESERVE of both must add them up.
        by_p = part_of(data, chosen.filter(lambda k: k.name != "ports"), "by p")
        target = (by_p.push_reservation(Reservation(role, "DYNAMIC", "p"))
                  + (chosen - by_p).push_reservation(Reservation(role, "DYNAMIC", "q")))
        self.apply(resources_reserved=ev.ResourcesReserved(agent_id=agent_id, resources=resources_to_proto(target)))

    def operator_unreserve(self, agent_id, data):
        available = self.state.index.available(agent_id) if agent_id in self.state.cluster.agents else EMPTY
        chosen = part_of(data, available.reserved(), "unreserve")
        self.apply(resources_unreserved=ev.ResourcesUnreserved(agent_id=agent_id,
                                                               resources=resources_to_proto(chosen)))

    @rule(term=st.integers(1, 5))
    def elect(self, term):
        self.apply(master_elected=ev.MasterElected(leader="m:5050", term=term))
        assert not self.state.cluster.offers

    @rule()
    def snapshot_and_restore(self):
        """Continue from a snapshot: what follows must not tell the difference."""
        before = digest.digest(self.state)
        self.state = digest.from_proto(digest.to_proto(self.state))
        assert digest.digest(self.state) == before

    # -- invariants -----------------------------------------------------------------------------
    @invariant()
    def index_matches_a_rebuild(self):
        assert ClusterIndex.rebuild(self.state.cluster).snapshot() == self.state.index.snapshot()

    @invariant()
    def nothing_is_held_twice_or_beyond_an_agent(self):
        cluster = self.state.cluster
        held = {agent_id: [] for agent_id in cluster.agents}
        for framework in cluster.frameworks.values():
            for task in framework.tasks.values():
                if task.state not in TERMINAL_STATES:
                    assert task.info.agent_id in held, f"active task {task.info.task_id} on a gone agent"
                    held[task.info.agent_id].append(resources_from_proto(task.info.resources))
        for offer in cluster.offers.values():
            held[offer.agent_id].append(resources_from_proto(offer.resources))
        for agent_id, parts in held.items():
            agent = cluster.agents[agent_id]
            total = resources_from_proto(agent.info.resources)
            estimate = resources_from_proto(agent.oversubscribed)
            allocated = disjoint_sum(parts)
            steady = allocated.non_revocable()
            assert total.contains(steady), f"{agent_id} has {total!r} but {steady!r} is allocated"
            # Revocable resources fit the estimate, except that tasks may hold more for a while
            # after it shrank (the agent kills the newest of them); no offer adds to that.
            offered = disjoint_sum([resources_from_proto(o.resources) for o in cluster.offers.values()
                                    if o.agent_id == agent_id]).revocable()
            if offered:
                assert (total + estimate).revocable().contains(allocated.revocable()), (agent_id, allocated)

    @invariant()
    def reservations_neither_make_nor_lose_resources(self):
        for agent_id, agent in self.state.cluster.agents.items():
            total = resources_from_proto(agent.info.resources)
            assert without_dynamic_reservations(total) == self.capacity[agent_id], (agent_id, total)

    @invariant()
    def offers_are_outstanding_to_connected_frameworks_on_reachable_agents(self):
        cluster = self.state.cluster
        pairs = Counter((o.framework_id, o.agent_id) for o in cluster.offers.values())
        assert all(n == 1 for n in pairs.values()), pairs
        for offer_id, offer in cluster.offers.items():
            framework = cluster.frameworks[offer.framework_id]
            assert offer.id == offer_id and framework.connected and cluster.agents[offer.agent_id].reachable
            assert offer.role in framework.info.roles
            resources = resources_from_proto(offer.resources)
            assert resources and resources.allocatable_to(offer.role) == resources
            assert not resources.revocable() or "REVOCABLE_RESOURCES" in framework.info.capabilities, offer

    @invariant()
    def terminal_tasks_hold_nothing(self):
        index = self.state.index
        for framework_id, framework in self.state.cluster.frameworks.items():
            assert framework.id == framework_id
            assert set(framework.suppressed_roles) <= set(framework.info.roles)
            assert len(framework.completed_tasks) <= COMPLETED_TASKS_KEPT
            assert all(t.state in TERMINAL_STATES for t in framework.completed_tasks)
            for task_id, task in framework.tasks.items():
                assert task.info.task_id == task_id and task.framework_id == framework_id
                assert task.state != S.TASK_UNKNOWN
                uuids = [u.uuid for u in task.unacknowledged]
                assert len(uuids) == len(set(uuids)) and all(uuids)
                key = (framework_id, task_id)
                holds = key in index.task_resources
                assert holds == (task.state not in TERMINAL_STATES), (key, S.TaskState.Name(task.state))
                assert (key in index.agent_tasks.get(task.info.agent_id, ())) == holds
                if task.state in TERMINAL_STATES:
                    assert task.unacknowledged, f"{key} is terminal and acknowledged but not completed"
                elif not self.state.cluster.agents[task.info.agent_id].reachable:
                    assert task.state == S.TASK_UNREACHABLE, f"{key} is {S.TaskState.Name(task.state)} on an " \
                                                             "unreachable agent"

    @invariant()
    def removed_ids_stay_removed(self):
        cluster = self.state.cluster
        assert not set(cluster.removed_frameworks) & set(cluster.frameworks)
        assert not set(cluster.removed_agents) & set(cluster.agents)
        assert list(cluster.filters) == sorted(cluster.filters, key=lambda f: (f.framework_id, f.agent_id,
                                                                              f.expires_ms))

    def teardown(self):
        replayed, outcomes = State(), []
        for position, raw in enumerate(self.events, start=1):
            outcomes.append(apply(replayed, position, ev.Event.FromString(raw)))
        assert digest.digest(replayed) == digest.digest(self.state), "a replay from scratch diverged"
        assert outcomes == self.outcomes, "a replay computed different outcomes or effects"
        restored = digest.from_proto(digest.to_proto(self.state))
        assert digest.digest(restored) == digest.digest(self.state)
        assert restored.index.snapshot() == self.state.index.snapshot()


ClusterMachine.TestCase.settings = settings(max_examples=50, stateful_step_count=80)
TestClusterMachine = ClusterMachine.TestCase
