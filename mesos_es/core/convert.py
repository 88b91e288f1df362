"""Mesos v1 JSON <-> the protobuf the master stores, written by hand for speed.

protobuf's json_format converts a few thousand messages a second, far too slow for offer
and update streams; these functions touch only the fields the master interprets and carry
the rest as canonical JSON bytes. Field names are exactly Mesos' v1 JSON names.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Mapping

import orjson

from mesos_es.core.resources import (
    Kind,
    Reservation,
    ResourceError,
    Resources,
    _merge_ranges,
    from_json,
    to_json,
)
from mesos_es.pb import mesos_pb2

STATE_NAMES = {v: k for k, v in mesos_pb2.TaskState.items()}
TERMINAL_STATES = frozenset({
    mesos_pb2.TASK_FINISHED, mesos_pb2.TASK_FAILED, mesos_pb2.TASK_KILLED, mesos_pb2.TASK_ERROR,
    mesos_pb2.TASK_LOST, mesos_pb2.TASK_DROPPED, mesos_pb2.TASK_GONE, mesos_pb2.TASK_GONE_BY_OPERATOR,
})


class InvalidObject(ValueError):
    """A Mesos object in a call that is missing a field or has the wrong shape."""


def canonical_json(obj) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def id_value(obj: Mapping, field: str, required: bool = True) -> str:
    """`{"framework_id": {"value": "x"}}` -> "x"."""
    inner = obj.get(field) if isinstance(obj, Mapping) else None
    value = inner.get("value") if isinstance(inner, Mapping) else None
    if isinstance(value, str) and value:
        return value
    if required:
        raise InvalidObject(f"missing {field}.value")
    return ""


def ident(value: str) -> dict:
    return {"value": value}


# -- resources ----------------------------------------------------------------------------------

def resources_to_proto(resources: Resources) -> list[mesos_pb2.Resource]:
    out = []
    for kind, value in resources.sorted_items():
        r = mesos_pb2.Resource(name=kind.name)
        for step in kind.reservations:
            r.reservations.add(type=step.type, role=step.role, principal=step.principal)
        if kind.revocable:
            r.revocable.SetInParent()
        if isinstance(value, int):
            r.type = mesos_pb2.Value.SCALAR
            r.scalar.value = value / 1000
        elif value and isinstance(value[0], tuple):
            r.type = mesos_pb2.Value.RANGES
            for b, e in value:
                r.ranges.range.add(begin=b, end=e)
        else:
            r.type = mesos_pb2.Value.SET
            r.set.item.extend(value)
        out.append(r)
    return out


def resources_from_proto(items: Iterable[mesos_pb2.Resource]) -> Resources:
    """The canonical form (ranges merged, set items unique). Raises ResourceError on what
    `from_json` refuses too: negative or non-finite scalars, empty ranges, unknown types, a
    name that is both a scalar and ranges. Appliers turn that into a rejection."""
    out: dict[Kind, object] = {}
    for r in items:
        kind = Kind(r.name, tuple(Reservation(s.role, s.type, s.principal) for s in r.reservations),
                    r.HasField("revocable"))
        if r.type == mesos_pb2.Value.SCALAR:
            milli = r.scalar.value * 1000
            if not milli >= 0 or milli == math.inf:  # also NaN
                raise ResourceError(f"{r.name}: {r.scalar.value} is not a non-negative number")
            value = round(milli)
        elif r.type == mesos_pb2.Value.RANGES:
            value = _merge_ranges((x.begin, x.end) for x in r.ranges.range)
        elif r.type == mesos_pb2.Value.SET:
            value = tuple(sorted(set(r.set.item)))
        else:
            raise ResourceError(f"{r.name}: resources of type {r.type} are not supported")
        mine = out.get(kind)
        # One entry per kind is the rule; the arithmetic (and its checks) only for repeats.
        out[kind] = value if mine is None else (Resources({kind: mine}) + Resources({kind: value})).get(kind, 0)
    return Resources(out)


def resources_json_to_proto(objs) -> list[mesos_pb2.Resource]:
    try:
        return resources_to_proto(from_json(objs))
    except ResourceError as e:
        raise InvalidObject(str(e)) from None


def resources_proto_to_json(items: Iterable[mesos_pb2.Resource]) -> list[dict]:
    return to_json(resources_from_proto(items))


# -- frameworks, agents ------------------------------------------------------------------------

def framework_info_from_json(obj: Mapping) -> mesos_pb2.FrameworkInfo:
    if not isinstance(obj, Mapping):
        raise InvalidObject("framework_info must be an object")
    user, name = obj.get("user", ""), obj.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidObject("framework_info.name is required")
    roles = obj.get("roles")
    if roles is None:
        roles = [obj.get("role") or "*"]
    if not isinstance(roles, list) or not all(isinstance(r, str) and r for r in roles):
        raise InvalidObject("framework_info.roles must be a list of role names")
    capabilities = obj.get("capabilities") or []
    try:
        caps = sorted({c["type"] for c in capabilities})
        failover = float(obj.get("failover_timeout", 0.0))
    except (KeyError, TypeError, ValueError):
        raise InvalidObject("malformed framework_info") from None
    stored = {k: v for k, v in obj.items() if k != "id"}
    return mesos_pb2.FrameworkInfo(
        user=str(user), name=name, roles=sorted(set(roles)), failover_timeout=max(failover, 0.0),
        checkpoint=bool(obj.get("checkpoint", False)), principal=str(obj.get("principal", "")),
        hostname=str(obj.get("hostname", "")), webui_url=str(obj.get("webui_url", "")),
        capabilities=caps, json=canonical_json(stored),
    )


def framework_info_to_json(info: mesos_pb2.FrameworkInfo, framework_id: str) -> dict:
    obj = orjson.loads(info.json) if info.json else {"user": info.user, "name": info.name}
    obj["id"] = ident(framework_id)
    return obj


def attributes_from_json(objs) -> list[mesos_pb2.Attribute]:
    out = []
    for a in objs or []:
        try:
            attr = mesos_pb2.Attribute(name=a["name"])
            kind = a.get("type", "TEXT")
            if kind == "SCALAR":
                attr.type, attr.scalar.value = mesos_pb2.Value.SCALAR, float(a["scalar"]["value"])
            elif kind == "RANGES":
                attr.type = mesos_pb2.Value.RANGES
                for r in a["ranges"]["range"]:
                    attr.ranges.range.add(begin=int(r["begin"]), end=int(r["end"]))
            elif kind == "SET":
                attr.type = mesos_pb2.Value.SET
                attr.set.item.extend(str(i) for i in a["set"]["item"])
            else:
                attr.type, attr.text.value = mesos_pb2.Value.TEXT, str(a["text"]["value"])
        except (KeyError, TypeError, ValueError):
            raise InvalidObject(f"malformed attribute {a!r}") from None
        out.append(attr)
    return sorted(out, key=lambda x: x.name)


def attributes_to_json(attrs: Iterable[mesos_pb2.Attribute]) -> list[dict]:
    out = []
    for a in attrs:
        if a.type == mesos_pb2.Value.SCALAR:
            out.append({"name": a.name, "type": "SCALAR", "scalar": {"value": a.scalar.value}})
        elif a.type == mesos_pb2.Value.RANGES:
            out.append({"name": a.name, "type": "RANGES",
                        "ranges": {"range": [{"begin": r.begin, "end": r.end} for r in a.ranges.range]}})
        elif a.type == mesos_pb2.Value.SET:
            out.append({"name": a.name, "type": "SET", "set": {"item": list(a.set.item)}})
        else:
            out.append({"name": a.name, "type": "TEXT", "text": {"value": a.text.value}})
    return out


def agent_info_from_json(obj: Mapping) -> mesos_pb2.AgentInfo:
    if not isinstance(obj, Mapping) or not isinstance(obj.get("hostname"), str):
        raise InvalidObject("agent_info.hostname is required")
    try:
        port = int(obj.get("port", 5051))
    except (TypeError, ValueError):
        raise InvalidObject("agent_info.port must be an integer") from None
    return mesos_pb2.AgentInfo(
        hostname=obj["hostname"], port=port,
        resources=resources_json_to_proto(obj.get("resources") or []),
        attributes=attributes_from_json(obj.get("attributes")),
    )


def agent_info_to_json(info: mesos_pb2.AgentInfo, agent_id: str) -> dict:
    return {"id": ident(agent_id), "hostname": info.hostname, "port": info.port,
            "resources": resources_proto_to_json(info.resources),
            "attributes": attributes_to_json(info.attributes)}


# -- tasks ---------------------------------------------------------------------------------------

def task_info_from_json(obj: Mapping) -> mesos_pb2.TaskInfo:
    """A TaskInfo from a LAUNCH operation (agent_id as the framework wrote it)."""
    if not isinstance(obj, Mapping):
        raise InvalidObject("a task_info must be an object")
    task_id = id_value(obj, "task_id")
    name = obj.get("name")
    if not isinstance(name, str):
        raise InvalidObject(f"task {task_id}: name is required")
    executor = obj.get("executor")
    executor_id = id_value(executor, "executor_id") if executor is not None else ""
    if executor is None and not isinstance(obj.get("command"), Mapping) and obj.get("container") is None:
        raise InvalidObject(f"task {task_id}: needs a command or an executor")
    return mesos_pb2.TaskInfo(
        task_id=task_id, name=name, agent_id=id_value(obj, "agent_id", required=False),
        resources=resources_json_to_proto(obj.get("resources") or []), executor_id=executor_id,
        json=canonical_json(obj),
    )


def task_info_to_json(info: mesos_pb2.TaskInfo) -> dict:
    obj = orjson.loads(info.json)
    obj["agent_id"] = ident(info.agent_id)
    return obj


def task_status_from_json(obj: Mapping) -> mesos_pb2.TaskStatus:
    if not isinstance(obj, Mapping):
        raise InvalidObject("status must be an object")
    state = obj.get("state")
    if state not in mesos_pb2.TaskState.keys():
        raise InvalidObject(f"unknown task state {state!r}")
    try:
        uuid = base64.b64decode(obj.get("uuid") or "", validate=True)
        data = base64.b64decode(obj.get("data") or "", validate=True)
        timestamp = float(obj.get("timestamp", 0.0))
    except (ValueError, TypeError):
        raise InvalidObject("status.uuid and status.data must be base64; timestamp a number") from None
    status = mesos_pb2.TaskStatus(
        task_id=id_value(obj, "task_id"), state=mesos_pb2.TaskState.Value(state),
        message=str(obj.get("message", "")), source=str(obj.get("source", "")),
        reason=str(obj.get("reason", "")), uuid=uuid, timestamp=timestamp,
        agent_id=id_value(obj, "agent_id", required=False),
        executor_id=id_value(obj, "executor_id", required=False), data=data,
    )
    if "healthy" in obj:
        status.healthy = bool(obj["healthy"])
    return status


def task_status_to_json(status: mesos_pb2.TaskStatus) -> dict:
    obj = {"task_id": ident(status.task_id), "state": STATE_NAMES[status.state], "timestamp": status.timestamp}
    if status.agent_id:
        obj["agent_id"] = ident(status.agent_id)
    if status.executor_id:
        obj["executor_id"] = ident(status.executor_id)
    if status.message:
        obj["message"] = status.message
    if status.source:
        obj["source"] = status.source
    if status.reason:
        obj["reason"] = status.reason
    if status.uuid:
        obj["uuid"] = base64.b64encode(status.uuid).decode()
    if status.HasField("healthy"):
        obj["healthy"] = status.healthy
    if status.data:
        obj["data"] = base64.b64encode(status.data).decode()
    return obj


def offer_to_json(offer: mesos_pb2.Offer, agent: mesos_pb2.AgentInfo | None = None) -> dict:
    obj = {
        "id": ident(offer.id), "framework_id": ident(offer.framework_id), "agent_id": ident(offer.agent_id),
        "hostname": offer.hostname, "resources": resources_proto_to_json(offer.resources),
        "allocation_info": {"role": offer.role},
    }
    for r in obj["resources"]:
        r["allocation_info"] = {"role": offer.role}
    if agent is not None:
        obj["attributes"] = attributes_to_json(agent.attributes)
        obj["url"] = {"scheme": "http", "address": {"hostname": agent.hostname, "port": agent.port},
                      "path": "/slave(1)"}
    return obj
