"""The v1 operator API, `POST /api/v1`, with Mesos' call and field names.

Writes (UPDATE_QUOTA, UPDATE_WEIGHTS, RESERVE_RESOURCES, UNRESERVE_RESOURCES) become events
on the leader (a standby answers 307). Reads (GET_*) are answered by any master from its
own folded state, eventually consistent; headers say how fresh it is (`freshness_headers`).
`?consistency=strong` reads go to the leader (a standby forwards them).
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from mesos_es import __version__
from mesos_es.core.convert import (
    STATE_NAMES,
    InvalidObject,
    agent_info_to_json,
    framework_info_to_json,
    id_value,
    ident,
    resources_json_to_proto,
    resources_proto_to_json,
    task_status_to_json,
)
from mesos_es.core.outcomes import Rejected
from mesos_es.core.resources import to_json
from mesos_es.master.http import proxy
from mesos_es.master.http.common import MASTER, json_response, propose, read_barrier, to_leader
from mesos_es.master.http.scheduler import bad_request, read_call, section
from mesos_es.pb import events_pb2, mesos_pb2

PATH = "/api/v1"


def _scalar_map(obj, what: str) -> list[mesos_pb2.Resource]:
    """Mesos' quota maps `{"cpus": {"value": 4}}` -> scalar resources."""
    if obj is None:
        return []
    if not isinstance(obj, Mapping):
        raise bad_request(f"{what} must map resource names to {{\"value\": number}}")
    items = []
    for name in sorted(obj):
        value = obj[name].get("value") if isinstance(obj[name], Mapping) else None
        if not isinstance(value, (int, float)) or value < 0:
            raise bad_request(f"{what}.{name} must be {{\"value\": non-negative number}}")
        items.append({"name": name, "type": "SCALAR", "scalar": {"value": value}})
    return resources_json_to_proto(items)


async def operator(request: web.Request) -> web.Response:
    master = request.app[MASTER]
    call = await read_call(request)
    kind = call["type"]
    try:
        if kind in WRITES:
            if not (master.leader_shell and master.leader_shell.is_leading()):
                raise to_leader(request, PATH)
            event = WRITES[kind](call)
            proposed = await propose(request, event)
            if isinstance(proposed.result, Rejected):
                raise bad_request(proposed.result.reason)
            return web.Response(status=200)
        if kind in READS:
            if await strong_read(request):
                # Served here after all if this master is elected while the read waits.
                return await proxy.forward(request, serve=operator)
            response = json_response({"type": kind, kind.lower(): READS[kind](master)})
            response.headers.update(freshness_headers(master))
            return response
    except InvalidObject as e:
        raise bad_request(str(e)) from None
    raise bad_request(f"unsupported call type {kind!r}")


async def strong_read(request: web.Request) -> bool:
    """`?consistency=strong`: True when a standby must forward the read to the leader; on
    the leader, first a Raft round confirms it still leads and has applied every commit."""
    if request.query.get("consistency", "eventual") == "eventual":
        return False
    master = request.app[MASTER]
    if not master.is_leader():
        if request.query.get("consistency") != "strong":
            raise bad_request("'consistency' must be 'eventual' or 'strong'")
        return True
    await read_barrier(request)
    return False


def freshness_headers(master) -> dict[str, str]:
    """How fresh a read is (as Nomad's X-Nomad-Index / X-Nomad-LastContact): the applied
    position, the state digest there, the leader this master knows, and milliseconds since it
    last heard from that leader (0 on the leader; empty when it never has)."""
    position, digest = master.replica.digest()
    contact = master.log.status().last_contact_ms
    return {"Mesos-ES-Position": str(position), "Mesos-ES-Digest": digest, "Mesos-ES-Leader": master.leader() or "",
            "Mesos-ES-Last-Contact-Ms": "" if contact is None else str(contact)}


def update_quota(call) -> events_pb2.Event:
    body = section(call, "update_quota")
    configs = body.get("quota_configs")
    if not isinstance(configs, list) or not configs:
        raise bad_request("update_quota.quota_configs must be a non-empty list")
    out = []
    for c in configs:
        if not isinstance(c, Mapping) or not isinstance(c.get("role"), str) or not c["role"]:
            raise bad_request("each quota config needs a role")
        out.append(events_pb2.QuotaConfig(role=c["role"], guarantees=_scalar_map(c.get("guarantees"), "guarantees"),
                                          limits=_scalar_map(c.get("limits"), "limits")))
    return events_pb2.Event(quota_updated=events_pb2.QuotaUpdated(configs=out))


def update_weights(call) -> events_pb2.Event:
    infos = section(call, "update_weights").get("weight_infos")
    if not isinstance(infos, list) or not infos:
        raise bad_request("update_weights.weight_infos must be a non-empty list")
    weights = []
    for w in infos:
        if not isinstance(w, Mapping) or not isinstance(w.get("role"), str) or \
                not isinstance(w.get("weight"), (int, float)) or w["weight"] <= 0:
            raise bad_request("each weight info is {\"role\": name, \"weight\": positive number}")
        weights.append(events_pb2.WeightInfo(role=w["role"], weight=float(w["weight"])))
    return events_pb2.Event(weights_updated=events_pb2.WeightsUpdated(weights=weights))


def _reservation(call, name: str):
    body = section(call, name)
    return id_value(body, "agent_id"), resources_json_to_proto(body.get("resources") or [])


def reserve(call) -> events_pb2.Event:
    agent_id, resources = _reservation(call, "reserve_resources")
    return events_pb2.Event(resources_reserved=events_pb2.ResourcesReserved(agent_id=agent_id, resources=resources))


def unreserve(call) -> events_pb2.Event:
    agent_id, resources = _reservation(call, "unreserve_resources")
    return events_pb2.Event(resources_unreserved=events_pb2.ResourcesUnreserved(agent_id=agent_id,
                                                                                resources=resources))


WRITES = {"UPDATE_QUOTA": update_quota, "UPDATE_WEIGHTS": update_weights,
          "RESERVE_RESOURCES": reserve, "UNRESERVE_RESOURCES": unreserve}


# -- reads --------------------------------------------------------------------------------------

def _task_json(task) -> dict:
    return {"name": task.info.name, "task_id": ident(task.info.task_id), "framework_id": ident(task.framework_id),
            "agent_id": ident(task.info.agent_id), "state": STATE_NAMES[task.state],
            "resources": resources_proto_to_json(task.info.resources),
            "statuses": [task_status_to_json(task.latest_status)] if task.latest_status.task_id else [],
            **({"executor_id": ident(task.info.executor_id)} if task.info.executor_id else {})}


def get_frameworks(master) -> dict:
    cluster = master.replica.state.cluster
    index = master.replica.state.index
    out = []
    for fid in sorted(cluster.frameworks):
        f = cluster.frameworks[fid]
        allocated = None
        for resources in index.allocated.get(fid, {}).values():
            allocated = resources if allocated is None else allocated + resources
        out.append({"framework_info": framework_info_to_json(f.info, fid), "active": f.connected,
                    "connected": f.connected, "registered_time": {"nanoseconds": f.registered_at_ms * 1_000_000},
                    "allocated_resources": to_json(allocated) if allocated else [],
                    "offered_resources": [], "suppressed_roles": list(f.suppressed_roles)})
    return {"frameworks": out}


def get_agents(master) -> dict:
    state = master.replica.state
    out = []
    for aid in sorted(state.cluster.agents):
        a = state.cluster.agents[aid]
        out.append({"agent_info": agent_info_to_json(a.info, aid), "active": a.reachable,
                    "total_resources": resources_proto_to_json(a.info.resources),
                    "allocated_resources": to_json(state.index.agent_used[aid] + state.index.agent_offered[aid]),
                    "registered_time": {"nanoseconds": a.registered_at_ms * 1_000_000}})
    return {"agents": out}


def get_tasks(master) -> dict:
    cluster = master.replica.state.cluster
    tasks, completed = [], []
    for fid in sorted(cluster.frameworks):
        f = cluster.frameworks[fid]
        tasks += [_task_json(f.tasks[t]) for t in sorted(f.tasks)]
        completed += [_task_json(t) for t in f.completed_tasks]
    return {"tasks": tasks, "completed_tasks": completed}


def get_roles(master) -> dict:
    cluster = master.replica.state.cluster
    names = set(cluster.roles)
    for f in cluster.frameworks.values():
        names.update(f.info.roles)
    out = []
    for name in sorted(names):
        role = cluster.roles.get(name)
        out.append({"name": name, "weight": role.weight if role is not None and role.weight else 1.0,
                    "quota": {"role": name,
                              "guarantees": {r["name"]: {"value": r["scalar"]["value"]}
                                             for r in resources_proto_to_json(role.quota_guarantees)} if role else {},
                              "limits": {r["name"]: {"value": r["scalar"]["value"]}
                                         for r in resources_proto_to_json(role.quota_limits)} if role else {}},
                    "frameworks": [ident(fid) for fid in sorted(cluster.frameworks)
                                   if name in cluster.frameworks[fid].info.roles]})
    return {"roles": out}


def get_master(master) -> dict:
    host, _, port = master.config.address.rpartition(":")
    return {"master_info": {"id": master.config.id, "hostname": host, "port": int(port), "version": __version__,
                            "address": {"hostname": host, "port": int(port)}},
            "leader": master.leader(), "applied_position": master.replica.state.position}


def get_state(master) -> dict:
    return {"get_frameworks": get_frameworks(master), "get_agents": get_agents(master),
            "get_tasks": get_tasks(master)}


def get_metrics(master) -> dict:
    """Mesos' metric names where it has them, ours under `mesos-es/`."""
    state, status = master.replica.state, master.log.status()
    cluster = state.cluster
    states: dict[str, int] = {}
    for framework in cluster.frameworks.values():
        for task in framework.tasks.values():
            name = STATE_NAMES[task.state].lower()
            states[name] = states.get(name, 0) + 1
    active = sum(f.connected for f in cluster.frameworks.values())
    reachable = sum(a.reachable for a in cluster.agents.values())
    metrics = {
        "master/elected": float(bool(master.leader_shell and master.leader_shell.is_leading())),
        "master/frameworks_active": active, "master/frameworks_inactive": len(cluster.frameworks) - active,
        "master/slaves_active": reachable, "master/slaves_unreachable": len(cluster.agents) - reachable,
        "master/outstanding_offers": len(cluster.offers),
        **{f"master/{name}": count for name, count in sorted(states.items())},
        "mesos-es/log/applied_position": state.position, "mesos-es/log/term": status.term,
        "mesos-es/log/last_contact_ms": -1 if status.last_contact_ms is None else status.last_contact_ms,
    }
    return {"metrics": [{"name": name, "value": float(value)} for name, value in metrics.items()]}


READS = {
    "GET_HEALTH": lambda master: {"healthy": True},
    "GET_VERSION": lambda master: {"version_info": {"version": __version__}},
    "GET_FRAMEWORKS": get_frameworks, "GET_AGENTS": get_agents, "GET_TASKS": get_tasks,
    "GET_ROLES": get_roles, "GET_MASTER": get_master, "GET_STATE": get_state, "GET_METRICS": get_metrics,
}

def add_routes(app: web.Application) -> None:
    app.router.add_post(PATH, operator)
