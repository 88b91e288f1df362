"""`replay diff A B`: what changed in the state between two positions.

Both states are taken in their canonical form (the one the digest hashes) as JSON, and
compared key by key: objects in maps (frameworks, agents, offers, roles, tasks) are added,
removed, or changed in named fields; lists are compared whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from google.protobuf.json_format import MessageToDict

from mesos_es.core import digest as canonical
from mesos_es.core.state import State

# Paths whose values are maps keyed by id: shown as "added" / "removed" objects.
KEYED = ("cluster.frameworks", "cluster.agents", "cluster.offers", "cluster.roles", ".tasks")


def state_dict(state: State) -> dict:
    data = MessageToDict(canonical.to_proto(state), preserving_proto_field_name=True)
    # Named logs are a list sorted by name: key them by name to compare them as objects.
    data["logs"] = {entry["name"]: entry for entry in data.get("logs", [])}
    data.pop("position", None)
    return data


@dataclass
class Change:
    op: str  # "added", "removed", "changed"
    path: str
    old: Any = None
    new: Any = None

    def to_json(self) -> dict:
        out = {"op": self.op, "path": self.path}
        if self.op != "added":
            out["old"] = self.old
        if self.op != "removed":
            out["new"] = self.new
        return out

    def render(self) -> str:
        if self.op == "added":
            return f"+ {self.path}{_brief(self.new)}"
        if self.op == "removed":
            return f"- {self.path}{_brief(self.old)}"
        if isinstance(self.old, list) and isinstance(self.new, list):
            return f"~ {self.path}: {_list_change(self.old, self.new)}"
        return f"~ {self.path}: {_short(self.old)} -> {_short(self.new)}"


def _list_change(old: list, new: list) -> str:
    if len(new) > len(old) and new[: len(old)] == old:
        return f"{len(new) - len(old)} appended: {_short(new[len(old):])}"
    if len(old) > len(new) and old[len(old) - len(new):] == new:
        return f"{len(old) - len(new)} dropped from the front"
    return f"{len(old)} -> {len(new)} items: {_short(new)}"


def _brief(value) -> str:
    if not isinstance(value, dict):
        return f" = {_short(value)}"
    keys = ("state", "role", "framework_id", "agent_id", "reachable", "connected", "weight", "ending")
    shown = [f"{k} {_short(value[k])}" for k in keys if k in value]
    info = value.get("info")
    if isinstance(info, dict) and "name" in info:
        shown.insert(0, f"name {info['name']!r}")
    return f" ({', '.join(shown)})" if shown else ""


def _short(value, limit: int = 80) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def diff(old: dict, new: dict, path: str = "") -> list[Change]:
    changes: list[Change] = []
    for key in sorted(set(old) | set(new)):
        where = f"{path}.{key}" if path else str(key)
        if key not in new:
            changes.append(Change("removed", where, old=old[key]))
        elif key not in old:
            changes.append(Change("added", where, new=new[key]))
        elif old[key] != new[key]:
            a, b = old[key], new[key]
            if isinstance(a, dict) and isinstance(b, dict):
                changes.extend(diff(a, b, where))
            else:
                changes.append(Change("changed", where, old=a, new=b))
    return changes


KINDS = ("frameworks", "agents", "offers", "roles", "tasks", "logs")


def summarize(changes: list[Change]) -> dict[str, int]:
    """Counts of objects added, removed or changed, by kind: {'added tasks': 3, 'changed agents': 1}.
    A field that appears or goes inside an object counts as a change of that object."""
    counts: dict[str, int] = {}
    changed: set[tuple[str, ...]] = set()
    for change in changes:
        parts = change.path.split(".")
        found = [i for i, p in enumerate(parts[:-1]) if p in KINDS]
        if not found:
            label = f"changed {parts[0]}" if len(parts) > 1 else f"{change.op} {parts[0]}"
            key = tuple(parts[:2])
        else:
            i = found[-1]
            key = tuple(parts[: i + 2])
            label = f"{change.op} {parts[i]}" if len(parts) == i + 2 else f"changed {parts[i]}"
        if label.startswith("changed"):
            if key in changed:
                continue
            changed.add(key)
        counts[label] = counts.get(label, 0) + 1
    return dict(sorted(counts.items()))
