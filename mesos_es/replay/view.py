"""The allocator's view of a folded state, for checking its decisions and reporting shares.

This mirrors `_policy_inputs` / `allocation_inputs` in mesos_es/master/leader.py (which the
replay must not import: it brings the leader's I/O with it); tests/replay/test_view.py fails
when the two disagree.
"""

from __future__ import annotations

from mesos_es.core import allocator
from mesos_es.core.convert import resources_from_proto
from mesos_es.core.resources import Resources
from mesos_es.core.state import State


def policy_inputs(state: State) -> dict:
    """Reachable agents, every framework (disconnected ones inactive), roles' weights and quotas."""
    cluster, index = state.cluster, state.index
    agents = []
    for agent_id in sorted(cluster.agents):
        if not cluster.agents[agent_id].reachable:
            continue
        agents.append(allocator.AgentSlot(agent_id=agent_id, available=index.available(agent_id),
                                          total=index.total(agent_id)))
    frameworks = []
    for framework_id in sorted(cluster.frameworks):
        framework = cluster.frameworks[framework_id]
        frameworks.append(allocator.FrameworkDemand(
            framework_id=framework_id, roles=tuple(framework.info.roles),
            suppressed_roles=frozenset(framework.suppressed_roles),
            revocable_ok="REVOCABLE_RESOURCES" in framework.info.capabilities,
            allocated={role: r for role, r in index.allocated.get(framework_id, {}).items() if r},
            active=framework.connected))
    roles = {}
    for name in sorted(cluster.roles):
        role = cluster.roles[name]
        roles[name] = allocator.RolePolicy(
            weight=role.weight or 1.0, guarantee=resources_from_proto(role.quota_guarantees),
            limit=resources_from_proto(role.quota_limits) if len(role.quota_limits) else None)
    return {"agents": agents, "frameworks": frameworks, "roles": roles}


def allocation_inputs(state: State, now_ms: int) -> dict:
    cluster, index = state.cluster, state.index
    filters = tuple(allocator.Filter(framework_id=f.framework_id, agent_id=f.agent_id, expires_ms=f.expires_ms,
                                     resources=resources_from_proto(f.resources) if len(f.resources) else None)
                    for f in cluster.filters if f.expires_ms > now_ms)
    return {**policy_inputs(state), "filters": filters, "outstanding": frozenset(index.offered_pairs),
            "now_ms": now_ms}


def quantities(resources: Resources, unreserved_only: bool = False, revocable: bool | None = False) -> dict[str, int]:
    """Scalar amounts by name, in milli-units (reservation labels dropped). `revocable`:
    False counts only non-revocable resources, True only revocable ones, None both."""
    out: dict[str, int] = {}
    for kind, value in resources.items():
        if value.__class__ is not int:
            continue
        if revocable is not None and kind.revocable != revocable:
            continue
        if unreserved_only and kind.reservations:
            continue
        out[kind.name] = out.get(kind.name, 0) + value
    return out


def role_holdings(state: State) -> dict[str, dict[str, int]]:
    """Scalar resources each role holds (tasks and outstanding offers), by name, in milli-units."""
    out: dict[str, dict[str, int]] = {}
    for framework_id in sorted(state.index.allocated):
        for role, held in state.index.allocated[framework_id].items():
            if not held:
                continue
            into = out.setdefault(role, {})
            for name, value in quantities(held, revocable=None).items():
                into[name] = into.get(name, 0) + value
    return out


def cluster_total(state: State) -> dict[str, int]:
    """Scalar totals over reachable agents (revocable estimates included), as the allocator sees them."""
    total: dict[str, int] = {}
    cluster, index = state.cluster, state.index
    for agent_id in sorted(cluster.agents):
        if not cluster.agents[agent_id].reachable:
            continue
        for name, value in quantities(index.total(agent_id), revocable=None).items():
            total[name] = total.get(name, 0) + value
    return total


def dominant_shares(state: State) -> dict[str, float]:
    """Each role's weighted dominant share (docs/allocation.md), for roles holding anything."""
    total = cluster_total(state)
    weights = {name: (role.weight or 1.0) for name, role in state.cluster.roles.items()}
    shares = {}
    for role, held in sorted(role_holdings(state).items()):
        share = max((value / total[name] for name, value in held.items() if total.get(name)), default=0.0)
        shares[role] = share / weights.get(role, 1.0)
    return shares
