"""`--reconfiguration_policy`: may a restarted agent keep its id with a changed agent info?

Mesos 1.5 semantics (src/slave/compatibility.cpp): `equal` demands the same agent info;
`additive` allows resources and attributes to be added but nothing to be removed or
changed: same hostname and port, every old resource contained in the new ones, every old
attribute present with the same type and value (ranges may grow). Pure.
"""

from __future__ import annotations

from mesos_es.core import resources as res

POLICIES = ("equal", "additive")


def _canonical_info(info: dict) -> dict:
    return {
        "hostname": info.get("hostname"),
        "port": info.get("port"),
        "resources": res.to_json(res.from_json(info.get("resources") or [])),
        "attributes": sorted((_attribute_key(a) for a in info.get("attributes") or []), key=repr),
    }


def _attribute_value(attribute: dict):
    kind = attribute.get("type", "TEXT")
    if kind == "SCALAR":
        return round(float(attribute.get("scalar", {}).get("value", 0)), 3)
    if kind == "RANGES":
        return tuple(sorted((int(r["begin"]), int(r["end"])) for r in attribute.get("ranges", {}).get("range", [])))
    if kind == "SET":
        return tuple(sorted(attribute.get("set", {}).get("item", [])))
    return attribute.get("text", {}).get("value", "")


def _attribute_key(attribute: dict):
    return (attribute.get("name"), attribute.get("type", "TEXT"), _attribute_value(attribute))


def check(policy: str, previous: dict, current: dict) -> str | None:
    """None when `current` may keep the agent id registered with `previous`, else why not."""
    if policy not in POLICIES:
        return f"unknown reconfiguration policy {policy!r} (expected one of {', '.join(POLICIES)})"
    if policy == "equal":
        old, new = _canonical_info(previous), _canonical_info(current)
        if old == new:
            return None
        changed = [k for k in old if old[k] != new[k]]
        return f"incompatible agent info under the 'equal' policy: {', '.join(changed)} changed"
    if previous.get("hostname") != current.get("hostname"):
        return (f"configuration change not permitted under the 'additive' policy: hostname changed "
                f"from {previous.get('hostname')} to {current.get('hostname')}")
    if previous.get("port") != current.get("port"):
        return (f"configuration change not permitted under the 'additive' policy: port changed "
                f"from {previous.get('port')} to {current.get('port')}")
    old_res = res.from_json(previous.get("resources") or [])
    new_res = res.from_json(current.get("resources") or [])
    if not new_res.contains(old_res):
        return (f"configuration change not permitted under the 'additive' policy: the old resources "
                f"{res.to_text(old_res)} are not contained in the new {res.to_text(new_res)}")
    new_attributes = {a.get("name"): a for a in current.get("attributes") or []}
    for attribute in previous.get("attributes") or []:
        name = attribute.get("name")
        match = new_attributes.get(name)
        if match is None:
            return f"configuration change not permitted under the 'additive' policy: attribute {name!r} was removed"
        if match.get("type", "TEXT") != attribute.get("type", "TEXT"):
            return f"configuration change not permitted under the 'additive' policy: type of attribute {name!r} changed"
        old_value, new_value = _attribute_value(attribute), _attribute_value(match)
        if attribute.get("type") == "RANGES":
            ok = all(any(b <= ob and oe <= e for b, e in new_value) for ob, oe in old_value)
        else:
            ok = old_value == new_value
        if not ok:
            return (f"configuration change not permitted under the 'additive' policy: value of attribute "
                    f"{name!r} changed from {old_value!r} to {new_value!r}")
    return None
