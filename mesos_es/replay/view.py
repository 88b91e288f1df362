"""Shares and quantities of a folded state, for checking the leader's decisions and reporting
fairness. The allocator's inputs themselves come from mesos_es/core/inputs.py, as the
leader's do."""

from __future__ import annotations

from mesos_es.core.resources import Resources
from mesos_es.core.state import State


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
