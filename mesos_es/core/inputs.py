"""What the allocator and the revocation policy see of a folded state (pure).

The leader decides from these; the replay (mesos_es/replay) rebuilds the same view to check
those decisions and report shares.
"""

from __future__ import annotations

from mesos_es.core import allocator
from mesos_es.core.convert import resources_from_proto
from mesos_es.pb import mesos_pb2


def policy_inputs(state) -> dict:
    """What the allocator and the revocation policy both see of the applied state (pure):
    reachable agents, every framework (disconnected ones inactive: they are offered nothing,
    but what they hold counts toward shares and quota), and the roles' weights and quotas."""
    cluster, index = state.cluster, state.index
    agents = []
    for agent_id in sorted(cluster.agents):
        agent = cluster.agents[agent_id]
        if not agent.reachable:
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


def allocation_inputs(state, now: int) -> dict:
    """The allocator's view of the applied state (pure)."""
    cluster, index = state.cluster, state.index
    filters = tuple(allocator.Filter(framework_id=f.framework_id, agent_id=f.agent_id, expires_ms=f.expires_ms,
                                     resources=resources_from_proto(f.resources) if len(f.resources) else None)
                    for f in cluster.filters if f.expires_ms > now)
    return {**policy_inputs(state), "filters": filters, "outstanding": frozenset(index.offered_pairs),
            "now_ms": now}


def revocation_inputs(state) -> dict:
    """The revocation policy's view of the applied state (pure): the allocator's, plus the
    running tasks (revoked or killing ones as already being freed) and outstanding offers."""
    cluster, index = state.cluster, state.index
    tasks = []
    for framework_id in sorted(cluster.frameworks):
        framework = cluster.frameworks[framework_id]
        for task_id in sorted(framework.tasks):
            task = framework.tasks[task_id]
            resources = index.task_resources.get((framework_id, task_id))
            if resources is None:  # terminal, awaiting acknowledgement: holds nothing
                continue
            tasks.append(allocator.RunningTask(
                task_id=task_id, framework_id=framework_id, agent_id=task.info.agent_id, role=task.role,
                resources=resources, launched_ms=task.launched_at_ms,
                killing=bool(task.revoked_at_ms) or task.state == mesos_pb2.TASK_KILLING))
    offers = [allocator.Allocation(o.framework_id, o.agent_id, o.role, resources_from_proto(o.resources))
              for _, o in sorted(cluster.offers.items())]
    return {**policy_inputs(state), "tasks": tasks, "offers": offers}


def wants_revocation(cluster) -> bool:
    """Whether any role has a quota guarantee: without one the policy never revokes, and the
    leader skips building its inputs."""
    return any(len(role.quota_guarantees) for role in cluster.roles.values())
