"""Properties of the allocator (mesos_es/core/allocator.py) and its revocation policy.

Random clusters check what must hold after every cycle (determinism, nothing offered twice
or beyond what is available, filters, suppression, reservations, revocable resources, quota
limits and headroom); scenarios check quota guarantees; simulations over many cycles check
that weighted DRF converges to fair dominant shares.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesos_es.core import allocator
from mesos_es.core.allocator import (
    AgentSlot,
    Allocation,
    Filter,
    FrameworkDemand,
    Revocation,
    RolePolicy,
    RunningTask,
    allocate,
    quota_consumption,
    revocations,
)
from mesos_es.core.resources import EMPTY, Kind, Reservation, Resources

NOW = 1_000_000
ROLES = ("a", "b", "c", "a/x")  # a/x may use what is reserved to a
FRAMEWORK_IDS = ("f0", "f1", "f2", "f3", "f4")


def res(cpus: float = 0, mem: float = 0, disk: float = 0, *, role: str | None = None, revocable: bool = False,
        ports: tuple[int, int] | None = None) -> Resources:
    """Resources in units (cpus, MB); reserved to `role` when given."""
    chain = (Reservation(role=role, type="STATIC"),) if role else ()
    items = {}
    for name, amount in (("cpus", cpus), ("mem", mem), ("disk", disk)):
        if amount:
            items[Kind(name, chain, revocable)] = int(round(amount * 1000))
    if ports:
        items[Kind("ports", chain, revocable)] = (ports,)
    return Resources(items)


def scalar_sums(resources: Resources, *, unreserved_only: bool = False) -> dict[str, int]:
    out: dict[str, int] = {}
    for kind, value in resources.items():
        if isinstance(value, int) and not (unreserved_only and (kind.reservations or kind.revocable)):
            out[kind.name] = out.get(kind.name, 0) + value
    return out


def dominant_share(resources: Resources, total: dict[str, int]) -> float:
    return max((v / total[n] for n, v in scalar_sums(resources).items() if total.get(n)), default=0.0)


# -- random clusters ---------------------------------------------------------------------------

@st.composite
def fractions(draw, resources: Resources) -> Resources:
    """A part of `resources`: each scalar cut to 0, 1/2 or all; ranges kept or not."""
    items = {}
    for kind, value in resources.sorted_items():
        if isinstance(value, int):
            items[kind] = value * draw(st.sampled_from([0, 1, 2])) // 2
        elif draw(st.booleans()):
            items[kind] = value
    return Resources(items)


@st.composite
def agent_slots(draw, agent_id: str) -> AgentSlot:
    total = res(draw(st.integers(1, 16)), draw(st.sampled_from([64, 512, 4096, 16384])),
                draw(st.sampled_from([0, 100])), ports=(31000, 31000 + draw(st.integers(0, 9))))
    if draw(st.integers(0, 3)) == 0:
        total = total + res(draw(st.integers(1, 4)), 1024, role=draw(st.sampled_from(["a", "b", "a/x"])))
    if draw(st.integers(0, 3)) == 0:
        total = total + res(draw(st.integers(1, 4)), revocable=True)
    used = draw(fractions(total))
    return AgentSlot(agent_id, total - used, total)


@st.composite
def policies(draw) -> RolePolicy:
    guarantee = EMPTY
    limit = None
    if draw(st.booleans()):
        guarantee = res(draw(st.integers(0, 24)), draw(st.sampled_from([0, 1024, 8192])))
    if draw(st.booleans()):
        limit = res(draw(st.integers(0, 24)), draw(st.sampled_from([0, 2048, 32768])))
    return RolePolicy(weight=draw(st.sampled_from([0.5, 1.0, 2.0, 3.0])), guarantee=guarantee, limit=limit)


@st.composite
def clusters(draw) -> dict:
    n_agents = draw(st.integers(1, 7))
    agents = [draw(agent_slots(f"s{i}")) for i in range(n_agents)]
    frameworks = []
    for fid in FRAMEWORK_IDS[:draw(st.integers(1, len(FRAMEWORK_IDS)))]:
        roles = tuple(draw(st.lists(st.sampled_from(ROLES), min_size=1, max_size=2, unique=True)))
        held = {}
        for role in draw(st.lists(st.sampled_from(ROLES), max_size=2, unique=True)):
            held[role] = res(draw(st.integers(0, 8)), draw(st.sampled_from([0, 512, 4096])))
            if role in ("a", "b") and draw(st.booleans()):
                held[role] = held[role] + res(1, 256, role=role)
        frameworks.append(FrameworkDemand(
            fid, roles,
            suppressed_roles=frozenset(draw(st.lists(st.sampled_from(roles), max_size=1))),
            revocable_ok=draw(st.booleans()),
            allocated={r: v for r, v in held.items() if v},
            active=draw(st.integers(0, 5)) > 0,
        ))
    roles = {role: draw(policies()) for role in draw(st.lists(st.sampled_from(ROLES), unique=True))}
    pairs = [(f.framework_id, a.agent_id) for f in frameworks for a in agents]
    outstanding = frozenset(draw(st.lists(st.sampled_from(pairs), max_size=3)))
    filters = []
    for _ in range(draw(st.integers(0, 4))):
        fid, aid = draw(st.sampled_from(pairs))
        agent = next(a for a in agents if a.agent_id == aid)
        refused = draw(st.sampled_from([None, agent.available, agent.total, res(1)]))
        filters.append(Filter(fid, aid, NOW + draw(st.sampled_from([-1, 0, 1, 5000])), refused,
                              draw(st.sampled_from([None, *ROLES]))))
    minimums = draw(st.sampled_from([allocator.DEFAULT_MIN_ALLOCATABLE, ()]))
    return {"agents": agents, "frameworks": frameworks, "roles": roles, "filters": filters,
            "outstanding": outstanding, "now_ms": NOW, "min_allocatable": minimums}


def run(inputs: dict) -> list[Allocation]:
    return allocate(**inputs)


@settings(max_examples=100)
@given(clusters(), st.randoms(use_true_random=False))
def test_deterministic_and_independent_of_input_order(inputs, rnd):
    first = run(inputs)
    assert run(inputs) == first
    shuffled = dict(inputs)
    for key in ("agents", "frameworks", "filters"):
        items = list(inputs[key])
        rnd.shuffle(items)
        shuffled[key] = items
    shuffled["roles"] = dict(sorted(inputs["roles"].items(), key=lambda kv: rnd.random()))
    assert run(shuffled) == first
    # The fast path (whole agents, no caps) is an optimization: the general one agrees.
    allocator._FAST_PATH = False
    try:
        assert run(inputs) == first
    finally:
        allocator._FAST_PATH = True


@settings(max_examples=250)
@given(clusters())
def test_every_offer_is_allowed(inputs):
    offers = run(inputs)
    check_allowed(inputs, offers)
    check_limits(inputs, offers)
    check_headroom(inputs, offers)


def check_allowed(inputs: dict, offers: list[Allocation]) -> None:
    agents = {a.agent_id: a for a in inputs["agents"]}
    frameworks = {f.framework_id: f for f in inputs["frameworks"]}

    # At most one offer per (framework, agent), and none where one is outstanding.
    pairs = [(o.framework_id, o.agent_id) for o in offers]
    assert len(set(pairs)) == len(pairs)
    assert not set(pairs) & inputs["outstanding"]

    # Never more than available: each agent's offers together fit in its `available`.
    offered = {aid: EMPTY for aid in agents}
    for o in offers:
        assert o.resources, o
        offered[o.agent_id] = offered[o.agent_id] + o.resources
    for aid, total in offered.items():
        assert agents[aid].available.contains(total), (aid, total, agents[aid].available)

    for o in offers:
        fw = frameworks[o.framework_id]
        # Only active frameworks, in one of their roles, never a suppressed one.
        assert fw.active and o.role in fw.roles and o.role not in fw.suppressed_roles, o
        # Reservations only to their role (or a child role); revocable only if accepted.
        for kind in o.resources:
            if kind.reservations:
                assert o.role == kind.role or o.role.startswith(kind.role + "/"), o
            if kind.revocable:
                assert fw.revocable_ok, o
        # Filters in force are honoured.
        for f in inputs["filters"]:
            if (f.framework_id, f.agent_id) == (o.framework_id, o.agent_id) and f.expires_ms > NOW \
                    and f.role in (None, o.role):
                assert f.resources is not None and not f.resources.contains(o.resources), (o, f)
        # Each offer is worth making.
        minimums = inputs["min_allocatable"]
        if minimums:
            sums = scalar_sums(o.resources)
            assert any(all(sums.get(n, 0) >= v for n, v in scalar_sums(m).items()) for m in minimums), o


def _quota_view(inputs: dict):
    consumed = quota_consumption(inputs["agents"], inputs["frameworks"])
    unmet = {}
    for role, policy in inputs["roles"].items():
        for name, amount in scalar_sums(policy.guarantee).items():
            missing = amount - consumed.get(role, {}).get(name, 0)
            if missing > 0:
                unmet.setdefault(role, {})[name] = missing
    return consumed, unmet


def _unreserved_offered(offers: list[Allocation]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for o in offers:
        for name, amount in scalar_sums(o.resources, unreserved_only=True).items():
            d = out.setdefault(o.role, {})
            d[name] = d.get(name, 0) + amount
    return out


def check_limits(inputs: dict, offers: list[Allocation]) -> None:
    """Quota limits are never exceeded (by unreserved resources: reservations count toward
    quota whether offered or not)."""
    consumed, _ = _quota_view(inputs)
    given_to = _unreserved_offered(offers)
    for role, policy in inputs["roles"].items():
        if policy.limit is None:
            continue
        for name, limit in scalar_sums(policy.limit).items():
            before = consumed.get(role, {}).get(name, 0)
            assert given_to.get(role, {}).get(name, 0) <= max(0, limit - before), (role, name)


def check_headroom(inputs: dict, offers: list[Allocation]) -> None:
    """Headroom: what roles get beyond their own unmet guarantee, in all, never cuts into the free
    unreserved resources that the unmet guarantees of all roles need."""
    _, unmet = _quota_view(inputs)
    free: dict[str, int] = {}
    for agent in inputs["agents"]:
        for name, amount in scalar_sums(agent.available, unreserved_only=True).items():
            free[name] = free.get(name, 0) + amount
    required: dict[str, int] = {}
    for needs in unmet.values():
        for name, amount in needs.items():
            required[name] = required.get(name, 0) + amount
    given_to = _unreserved_offered(offers)
    for name, need in required.items():
        beyond = sum(max(0, amounts.get(name, 0) - unmet.get(role, {}).get(name, 0))
                     for role, amounts in given_to.items())
        assert beyond <= max(0, free.get(name, 0) - need), (name, beyond, free.get(name), need)


def test_coarse_grained_whole_agent_offers():
    """Without quota, a framework is offered everything of the agent its role may use."""
    reserved = res(2, 1024, role="a")
    agents = [
        AgentSlot("s1", res(4, 4096, 10, ports=(31000, 31010)), res(8, 8192, 10, ports=(31000, 31010))),
        AgentSlot("s2", res(4, 4096) + reserved + res(2, revocable=True), res(8, 8192) + reserved + res(2, revocable=True)),
    ]
    fw = FrameworkDemand("f", ("a",), revocable_ok=True)
    offers = allocate(agents, [fw], {}, [], frozenset(), NOW)
    assert [(o.agent_id, o.resources) for o in offers] == [("s1", agents[0].available), ("s2", agents[1].available)]
    # A framework without the capability gets the rest; the revocable part goes to one that has it.
    plain = FrameworkDemand("a-plain", ("a",))
    offers = allocate(agents[1:], [plain, FrameworkDemand("b-rev", ("b",), revocable_ok=True,
                                                          allocated={"b": res(100)})], {}, [], frozenset(), NOW)
    assert [(o.framework_id, o.resources) for o in offers] == [
        ("a-plain", res(4, 4096) + reserved), ("b-rev", res(2, revocable=True))]


def test_filters_suppression_and_outstanding_offers():
    agents = [AgentSlot(f"s{i}", res(4, 4096), res(4, 4096)) for i in range(3)]
    f1 = FrameworkDemand("f1", ("a",))
    f2 = FrameworkDemand("f2", ("a", "b"), suppressed_roles=frozenset({"a"}))
    filters = [Filter("f1", "s0", NOW + 1),  # refuses s0 altogether
               Filter("f1", "s1", NOW + 1, res(8, 8192)),  # refuses what s1 has
               Filter("f1", "s2", NOW, None)]  # expired: no effect
    offers = allocate(agents, [f1, f2], {}, filters, frozenset({("f2", "s2")}), NOW)
    assert [(o.framework_id, o.agent_id, o.role) for o in offers] == [
        ("f2", "s0", "b"), ("f2", "s1", "b"), ("f1", "s2", "a")]
    # A filter of smaller resources does not refuse a larger offer; one for another role neither.
    offers = allocate(agents[:1], [f1], {}, [Filter("f1", "s0", NOW + 1, res(1, 1024)),
                                              Filter("f1", "s0", NOW + 1, None, role="b")], frozenset(), NOW)
    assert [(o.framework_id, o.agent_id) for o in offers] == [("f1", "s0")]


# -- quota guarantees --------------------------------------------------------------------------

@settings(max_examples=100)
@given(
    st.lists(st.tuples(st.integers(1, 16), st.integers(1, 64)), min_size=1, max_size=12),
    st.floats(0.0, 1.0), st.floats(0.0, 1.0), st.integers(0, 3), st.booleans(),
)
def test_quota_guarantees_hold_when_satisfiable(shapes, cpu_part, mem_part, greedy_roles, reserve):
    """A role below its guarantee reaches it in one cycle whenever the cluster has enough
    free, however many roles with lower shares and larger weights compete; reservations
    to it count toward it. And the resources beyond guarantees still go out."""
    agents = []
    for i, (cpus, gb) in enumerate(shapes):
        total = res(cpus, gb * 1024)
        if reserve and i == 0:
            total = total + res(1, 512, role="q")
        agents.append(AgentSlot(f"s{i:02d}", total, total))
    free: dict[str, int] = {}
    for agent in agents:
        for name, amount in scalar_sums(agent.available).items():
            free[name] = free.get(name, 0) + amount
    guarantee = Resources({Kind("cpus"): int(free["cpus"] * cpu_part), Kind("mem"): int(free["mem"] * mem_part)})
    roles = {"q": RolePolicy(weight=0.5, guarantee=guarantee)}
    frameworks = [FrameworkDemand("q-fw", ("q",), allocated={"q": EMPTY})]
    for k in range(greedy_roles):
        roles[f"g{k}"] = RolePolicy(weight=10.0)
        frameworks.append(FrameworkDemand(f"g{k}-fw", (f"g{k}",)))
    offers = allocate(agents, frameworks, roles, [], frozenset(), NOW, min_allocatable=())
    got = scalar_sums(sum((o.resources for o in offers if o.role == "q"), EMPTY))
    for name, amount in scalar_sums(guarantee).items():
        assert got.get(name, 0) >= amount, (name, got, guarantee)
    if greedy_roles:  # nothing stays unoffered
        offered = scalar_sums(sum((o.resources for o in offers), EMPTY))
        assert offered == free


def test_headroom_is_held_for_a_role_without_frameworks():
    agents = [AgentSlot(f"s{i}", res(4, 4096), res(4, 4096)) for i in range(4)]
    roles = {"q": RolePolicy(guarantee=res(6, 2048))}
    offers = allocate(agents, [FrameworkDemand("f", ("a",))], roles, [], frozenset(), NOW)
    given = scalar_sums(sum((o.resources for o in offers), EMPTY))
    assert given == {"cpus": 10_000, "mem": 14_336_000}  # 16 - 6 cpus, 16384 - 2048 MB
    # Once the role holds its guarantee (reservations count), nothing is held back.
    agents[0] = AgentSlot("s0", res(4, 4096, role="q"), res(4, 4096, role="q"))
    roles = {"q": RolePolicy(guarantee=res(4, 2048))}
    offers = allocate(agents, [FrameworkDemand("f", ("a",))], roles, [], frozenset(), NOW)
    assert scalar_sums(sum((o.resources for o in offers), EMPTY)) == {"cpus": 12_000, "mem": 12_288_000}


def test_quota_stage_offers_up_to_the_guarantee_then_fair_share_adds_to_the_same_offer():
    agents = [AgentSlot("s0", res(8, 8192), res(8, 8192))]
    roles = {"q": RolePolicy(guarantee=res(2, 1024))}
    q = FrameworkDemand("q-fw", ("q",))
    other = FrameworkDemand("o-fw", ("o",), allocated={"o": res(4, 4096)})
    offers = allocate(agents, [q, other], roles, [], frozenset(), NOW)
    # q gets its guarantee first; then, still the lowest share, the rest in the same offer.
    assert offers == [Allocation("q-fw", "s0", "q", res(8, 8192))]
    # With a limit, the quota stage's part stays, the rest goes to the other role.
    roles = {"q": RolePolicy(guarantee=res(2, 1024), limit=res(3, 2048))}
    offers = allocate(agents, [q, other], roles, [], frozenset(), NOW)
    assert offers == [Allocation("q-fw", "s0", "q", res(3, 2048)), Allocation("o-fw", "s0", "o", res(5, 6144))]
    # Had the other role the lower share after the quota stage, it would get the rest.
    other = FrameworkDemand("o-fw", ("o",), allocated={"o": res(1, 1024)})
    offers = allocate(agents, [q, other], {"q": RolePolicy(guarantee=res(2, 1024))}, [], frozenset(), NOW)
    assert offers == [Allocation("q-fw", "s0", "q", res(2, 1024)), Allocation("o-fw", "s0", "o", res(6, 7168))]


def test_a_limit_counts_every_resource_of_an_offer_that_meets_a_guarantee():
    """Regression (found by test_every_offer_is_allowed): the offer that met the last unmet
    guarantee stopped the headroom bookkeeping, and with it the limit's, halfway through."""
    agents = [AgentSlot(f"s{i}", res(1, 64), res(1, 64)) for i in range(4)]
    agents.append(AgentSlot("s4", res(1, 4096), res(1, 4096)))
    roles = {"a/x": RolePolicy(guarantee=res(1), limit=res(0, 2048))}
    offers = allocate(agents, [FrameworkDemand("f1", ("a/x",))], roles, [], frozenset(), NOW)
    assert scalar_sums(sum((o.resources for o in offers), EMPTY))["mem"] == 2_048_000


# -- weighted DRF --------------------------------------------------------------------------------

def _shares_by_role(frameworks, offers, total) -> dict[str, float]:
    held: dict[str, Resources] = {}
    for f in frameworks:
        for role, r in f.allocated.items():
            held[role] = held.get(role, EMPTY) + r
    for o in offers:
        held[o.role] = held.get(o.role, EMPTY) + o.resources
    return {role: dominant_share(r, total) for role, r in held.items()}


@settings(max_examples=100)
@given(
    st.lists(st.tuples(st.integers(1, 32), st.integers(1, 64)), min_size=2, max_size=40),
    st.lists(st.sampled_from([1.0, 2.0, 3.0]), min_size=2, max_size=4),
    st.lists(st.integers(1, 3), min_size=4, max_size=4),
)
def test_one_cycle_is_progressive_filling(shapes, weights, per_role):
    """From an empty cluster, one cycle hands agents out so that no role's weighted dominant
    share exceeds another's by more than its own largest single offer (and within a role,
    no framework's share another's): weighted DRF with whole-agent offers."""
    agents = [AgentSlot(f"s{i:02d}", res(c, g * 1024), res(c, g * 1024)) for i, (c, g) in enumerate(shapes)]
    total = scalar_sums(sum((a.total for a in agents), EMPTY))
    roles = {f"r{k}": RolePolicy(weight=w) for k, w in enumerate(weights)}
    frameworks = [FrameworkDemand(f"r{k}-f{j}", (f"r{k}",)) for k in range(len(weights)) for j in range(per_role[k])]
    offers = allocate(agents, frameworks, roles, [], frozenset(), NOW)
    assert len(offers) == len(agents)  # every agent, whole
    shares = _shares_by_role(frameworks, offers, total)
    for i in roles:
        for j in roles:
            if j not in shares:
                continue
            step = max(dominant_share(o.resources, total) for o in offers if o.role == j) / roles[j].weight
            assert shares.get(i, 0.0) / roles[i].weight >= shares[j] / roles[j].weight - step - 1e-9, (i, j)
    for role in roles:
        mine = [o for o in offers if o.role == role]
        by_fw: dict[str, list[Allocation]] = {}
        for o in mine:
            by_fw.setdefault(o.framework_id, []).append(o)
        fw_share = {f: dominant_share(sum((o.resources for o in os_), EMPTY), total) for f, os_ in by_fw.items()}
        for f in (fw.framework_id for fw in frameworks if fw.roles == (role,)):
            for g, os_ in by_fw.items():
                step = max(dominant_share(o.resources, total) for o in os_)
                assert fw_share.get(f, 0.0) >= fw_share[g] - step - 1e-9, (f, g)


def simulate(shapes, weights, lifetime, cycles, seed):
    """Frameworks (one per role) that accept every offer whole, as one task that ends after
    `lifetime` cycles. At the start the first role holds the whole cluster, its tasks
    ending over the first `lifetime` cycles. Returns, per cycle, the weighted shares at its
    end and, for each role offered something in it, the weighted share of its largest offer;
    and the largest weighted share of one agent."""
    rnd = random.Random(seed)
    agents = {f"s{i:02d}": res(c, g * 1024) for i, (c, g) in enumerate(shapes)}
    total = scalar_sums(sum(agents.values(), EMPTY))
    roles = {f"r{k}": RolePolicy(weight=w) for k, w in enumerate(weights)}
    tasks = [("r0", aid, r, rnd.randrange(lifetime)) for aid, r in agents.items()]  # role, agent, res, ends
    history = []
    largest = max(dominant_share(r, total) for r in agents.values()) / min(weights)
    for cycle in range(cycles):
        tasks = [t for t in tasks if t[3] > cycle]
        used = {aid: EMPTY for aid in agents}
        held = {role: EMPTY for role in roles}
        for role, aid, r, _ in tasks:
            used[aid] = used[aid] + r
            held[role] = held[role] + r
        slots = [AgentSlot(aid, agents[aid] - used[aid], agents[aid]) for aid in agents]
        frameworks = [FrameworkDemand(f"{role}-fw", (role,), allocated={role: held[role]}) for role in roles]
        steps: dict[str, float] = {}
        for o in allocate(slots, frameworks, roles, [], frozenset(), cycle * 1000, min_allocatable=()):
            tasks.append((o.role, o.agent_id, o.resources, cycle + lifetime))
            held[o.role] = held[o.role] + o.resources
            step = dominant_share(o.resources, total) / roles[o.role].weight
            steps[o.role] = max(steps.get(o.role, 0.0), step)
        history.append(({role: dominant_share(held[role], total) / roles[role].weight for role in roles}, steps))
    return history, largest


@settings(max_examples=40)
@given(
    st.lists(st.sampled_from([(16, 32), (4, 64), (8, 16), (32, 32)]), min_size=12, max_size=30),
    st.lists(st.sampled_from([1.0, 2.0, 3.0]), min_size=2, max_size=3),
    st.integers(1, 4), st.integers(0, 2**16),
)
def test_drf_shares_converge_as_tasks_end(shapes, weights, lifetime, seed):
    """Starting from one role holding everything, weighted dominant shares converge.

    Every cycle, a role offered something ends it at most its largest offer above the lowest
    role: it was the lowest when it got it, and shares only grow while offers are made (the
    DRF invariant, exact). And once every first task has ended, all roles stay within two
    agents' worth of each other (whole agents are indivisible, and a role whose tasks end
    gets back only what the lower roles leave it)."""
    history, largest = simulate(shapes, weights, lifetime, cycles=lifetime * 3 + 3, seed=seed)
    for shares, steps in history:
        for role, step in steps.items():
            assert shares[role] <= min(shares.values()) + step + 1e-9, (role, shares, steps)
    for shares, _ in history[lifetime + 1:]:
        assert max(shares.values()) - min(shares.values()) <= 2 * largest + 1e-9, shares


def test_drf_weights_split_a_uniform_cluster_in_proportion():
    """100 equal agents, roles weighted 3:1, both demanding without end: 75/25 (to one agent)."""
    history, _ = simulate([(8, 16)] * 100, [3.0, 1.0], lifetime=2, cycles=8, seed=1)
    # history holds weighted shares; unweighted: role0 ~ 0.75, role1 ~ 0.25
    last = history[-1][0]
    assert abs(last["r0"] * 3 - 0.75) <= 0.01 + 1e-9 and abs(last["r1"] - 0.25) <= 0.01 + 1e-9, last


def test_drf_frameworks_in_a_role_share_it_by_dominant_share():
    # f-cpu runs cpu-heavy tasks, f-mem mem-heavy: each whole agent counts by its dominant share.
    agents = [AgentSlot(f"s{i:02d}", res(4, 4096), res(4, 4096)) for i in range(10)]
    cpu_heavy = FrameworkDemand("f-cpu", ("a",), allocated={"a": res(4, 0)})
    mem_heavy = FrameworkDemand("f-mem", ("a",), allocated={"a": res(0, 8192)})
    total = {"cpus": 40_000, "mem": 40_960_000}
    offers = allocate(agents, [cpu_heavy, mem_heavy], {}, [], frozenset(), NOW)
    held = {"f-cpu": res(4, 0), "f-mem": res(0, 8192)}
    for o in offers:
        held[o.framework_id] = held[o.framework_id] + o.resources
    shares = {f: dominant_share(r, total) for f, r in held.items()}
    assert abs(shares["f-cpu"] - shares["f-mem"]) <= 0.1 + 1e-9, shares


# -- revocation --------------------------------------------------------------------------------

def _task(tid, fid, aid, role, r, launched, killing=False):
    return RunningTask(tid, fid, aid, role, r, launched, killing)


def test_revocations_free_what_an_unmet_guarantee_needs_from_roles_above_theirs():
    agents = [AgentSlot(f"s{i}", EMPTY, res(4, 4096)) for i in range(4)]
    tasks = [_task(f"t{i}", "greedy", f"s{i}", "g", res(4, 4096), launched=i) for i in range(4)]
    frameworks = [FrameworkDemand("greedy", ("g",), allocated={"g": res(16, 16384)}),
                  FrameworkDemand("q-fw", ("q",))]
    roles = {"q": RolePolicy(guarantee=res(6, 1024))}
    out = revocations(agents, frameworks, roles, tasks)
    # 6 cpus needed: the two newest tasks (4 cpus each), none more.
    assert [(r.task_id, r.role, r.for_roles) for r in out] == [("t3", "g", ("q",)), ("t2", "g", ("q",))]
    # Tasks already being killed count as freed: then only one more is needed.
    tasks[3] = _task("t3", "greedy", "s3", "g", res(4, 4096), launched=3, killing=True)
    assert [r.task_id for r in revocations(agents, frameworks, roles, tasks)] == ["t2"]
    # Free resources count too; a suppressing (uninterested) role triggers nothing.
    free = [AgentSlot("s9", res(6, 1024), res(6, 1024))]
    assert revocations(agents + free, frameworks, roles, tasks) == []
    bored = [frameworks[0], FrameworkDemand("q-fw", ("q",), suppressed_roles=frozenset({"q"}))]
    assert revocations(agents, bored, roles, tasks) == []


def test_revocations_rescind_offers_first_and_never_push_a_role_below_its_guarantee():
    agents = [AgentSlot(f"s{i}", EMPTY, res(4, 4096)) for i in range(4)]
    tasks = [_task("t0", "g-fw", "s0", "g", res(4, 4096), 0), _task("t1", "g-fw", "s1", "g", res(4, 4096), 1),
             _task("t2", "h-fw", "s2", "h", res(4, 4096), 2)]
    offer = Allocation("h-fw", "s3", "h", res(4, 4096))
    frameworks = [FrameworkDemand("g-fw", ("g",), allocated={"g": res(8, 8192)}),
                  FrameworkDemand("h-fw", ("h",), allocated={"h": res(8, 8192)}),
                  FrameworkDemand("q-fw", ("q",))]
    roles = {"q": RolePolicy(guarantee=res(8, 1024)), "g": RolePolicy(guarantee=res(4, 0))}
    out = revocations(agents, frameworks, roles, tasks, offers=[offer])
    # 8 cpus are missing. The offer goes first (no work lost): 4 cpus. Then the role with the
    # largest share, g (8 of 16 cpus; h holds 4 once its offer is gone), loses its newest
    # task, which leaves it at its guarantee: enough.
    assert [(r.framework_id, r.task_id) for r in out] == [("h-fw", None), ("g-fw", "t1")]


@settings(max_examples=100)
@given(clusters(), st.data())
def test_revocation_properties(inputs, data):
    agents, frameworks, roles = inputs["agents"], inputs["frameworks"], inputs["roles"]
    tasks = []
    for f in frameworks:
        for role, held in f.allocated.items():
            # split what it holds into one or two tasks on some agent
            aid = data.draw(st.sampled_from([a.agent_id for a in agents]))
            tasks.append(RunningTask(f"{f.framework_id}-{role}", f.framework_id, aid, role, held,
                                     data.draw(st.integers(0, 5)), data.draw(st.integers(0, 4)) == 0))
    out = revocations(agents, frameworks, roles, tasks)
    assert out == revocations(list(reversed(agents)), list(reversed(frameworks)), roles, list(reversed(tasks)))
    named = [r.task_id for r in out]
    assert len(set(named)) == len(named)
    killing = {t.task_id for t in tasks if t.killing}
    assert not set(named) & killing
    consumed, unmet = _quota_view(inputs)
    for r in out:
        assert r.role not in unmet  # never from a role below its guarantee
        assert isinstance(r, Revocation) and r.task_id is not None and set(r.for_roles) <= set(unmet)
    # No victim pushes its role below its guarantee.
    taken: dict[str, dict[str, int]] = {}
    for r in out:
        for name, amount in scalar_sums(r.resources, unreserved_only=True).items():
            d = taken.setdefault(r.role, {})
            d[name] = d.get(name, 0) + amount
    for role, amounts in taken.items():
        guarantee = scalar_sums(roles[role].guarantee) if role in roles else {}
        for name, amount in amounts.items():
            assert consumed.get(role, {}).get(name, 0) - amount >= guarantee.get(name, 0) or amount == 0


def test_no_revocation_without_quota():
    agents = [AgentSlot("s0", EMPTY, res(4, 4096))]
    tasks = [_task("t0", "f", "s0", "a", res(4, 4096), 0)]
    assert revocations(agents, [FrameworkDemand("f", ("a",), allocated={"a": res(4, 4096)})], {}, tasks) == []


def test_bad_inputs():
    with pytest.raises(ValueError):
        RolePolicy(weight=0)
    slot = AgentSlot("s0", res(1, 64), res(1, 64))
    with pytest.raises(ValueError):
        allocate([slot, slot], [], {}, [], frozenset(), NOW)
    with pytest.raises(ValueError):
        allocate([slot], [FrameworkDemand("f", ("a",))] * 2, {}, [], frozenset(), NOW)
    assert allocate([], [], {}, [], frozenset(), NOW) == []
    assert allocate([slot], [], {}, [], frozenset(), NOW) == []
