"""The master's folded state.

The fold mutates one State in place (copying a large state per event would be too slow in
Python); only the replica's fold writes it, and readers on the same event loop see it
between events. Snapshots go through the canonical protobuf form in digest.py.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import Any

from mesos_es.core.cluster import ClusterIndex
from mesos_es.pb import state_pb2


@dataclass
class NamedLog:
    """A framework's named log: its readable entries are the log positions of their events.

    Both sequences only grow at the end and shrink at the front (appends, truncations and
    evictions of the oldest key): the digest (core/digest.py) relies on it to find what
    changed from the log's ends alone.
    """

    name: str
    beginning: int = 1
    # Replicated-log positions of the readable entries, in order: entry `beginning + i`
    # is the event at log_positions[i].
    log_positions: array = field(default_factory=lambda: array("Q"))
    # idempotency key -> position in this named log, oldest first (dicts keep insertion
    # order, which is the same on every replica).
    recent_keys: dict[str, int] = field(default_factory=dict)

    @property
    def ending(self) -> int:
        """Last appended position; beginning - 1 when nothing is readable."""
        return self.beginning + len(self.log_positions) - 1


@dataclass
class Changes:
    """What the appliers changed since the last digest, by key, so that the digest hashes
    again only those parts (core/digest.py). An applier that changes a part without naming
    it here leaves the digest stale: the tests compare it with a full computation after
    every event. A key may name a part that is gone (removed) or unchanged."""

    frameworks: set[str] = field(default_factory=set)  # the framework itself, not its tasks
    tasks: set[tuple[str, str]] = field(default_factory=set)  # (framework, task)
    agents: set[str] = field(default_factory=set)
    offers: set[str] = field(default_factory=set)
    roles: set[str] = field(default_factory=set)
    filters: set[tuple[str, str]] = field(default_factory=set)  # (framework, agent) of the filters
    logs: set[str] = field(default_factory=set)
    # The cluster's other fields: leader, leader_term, leader_since_ms, removed ids.
    cluster: bool = False

    def count(self) -> int:
        return (len(self.frameworks) + len(self.tasks) + len(self.agents) + len(self.offers) + len(self.roles)
                + len(self.filters) + len(self.logs))

    def clear(self) -> None:
        for keys in (self.frameworks, self.tasks, self.agents, self.offers, self.roles, self.filters, self.logs):
            keys.clear()
        self.cluster = False


@dataclass
class State:
    position: int = 0
    logs: dict[str, NamedLog] = field(default_factory=dict)
    # Frameworks, agents, offers, tasks, roles (a protobuf message the appliers mutate).
    cluster: state_pb2.Cluster = field(default_factory=state_pb2.Cluster)
    # Sums derived from `cluster`; never serialized (see core/cluster.py).
    index: ClusterIndex = field(default_factory=ClusterIndex)
    # Marked by the appliers, cleared by the digest; and the digest's hash tree as of its
    # last computation (owned by core/digest.py; None until the first). Never serialized.
    changes: Changes = field(default_factory=Changes, repr=False, compare=False)
    digest_tree: Any = field(default=None, repr=False, compare=False)
