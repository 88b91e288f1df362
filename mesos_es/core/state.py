"""The master's folded state.

The fold mutates one State in place (copying a large state per event would be too slow in
Python); only the replica's fold writes it, and readers on the same event loop see it
between events. Snapshots go through the canonical protobuf form in digest.py.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field

from mesos_es.core.cluster import ClusterIndex
from mesos_es.pb import state_pb2


@dataclass
class NamedLog:
    """A framework's named log: its readable entries are the log positions of their events."""

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
class State:
    position: int = 0
    logs: dict[str, NamedLog] = field(default_factory=dict)
    # Frameworks, agents, offers, tasks, roles (a protobuf message the appliers mutate).
    cluster: state_pb2.Cluster = field(default_factory=state_pb2.Cluster)
    # Sums derived from `cluster`; never serialized (see core/cluster.py).
    index: ClusterIndex = field(default_factory=ClusterIndex)
