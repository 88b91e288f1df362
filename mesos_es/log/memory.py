"""An in-memory replicated log: replicas in one process sharing one committed history.

For unit tests and simulation. Consensus is replaced by the test: it elects a leader with
`MemoryCluster.elect` and stops replicas with `crash`; a proposal on the leader commits at
once. Delivery keeps the ReplicatedLog contract: in order, once, on the event loop, and a
proposal returns only after its entry was applied on the proposing replica.
"""

from __future__ import annotations

import asyncio

from mesos_es.log.chain import GENESIS_HASH, chain_hash
from mesos_es.log.interface import (
    Apply,
    Committed,
    LogClosed,
    LogStatus,
    NotLeader,
    Proposed,
    ReplicatedLog,
    Role,
    SnapshotMismatch,
)


class MemoryCluster:
    def __init__(self, replica_ids: list[str]):
        self.history: list[Committed] = []
        self.term = 0
        self.leader: str | None = None
        self.replicas = {rid: MemoryLog(self, rid) for rid in replica_ids}

    def elect(self, replica_id: str) -> None:
        self.term += 1
        self.leader = replica_id

    def crash(self, replica_id: str) -> None:
        """Stop a replica (it keeps nothing); `replicas[id]` is replaced by a fresh one."""
        self.replicas[replica_id]._closed = True
        if self.leader == replica_id:
            self.leader = None
        self.replicas[replica_id] = MemoryLog(self, replica_id)

    def commit(self, payload: bytes) -> Committed:
        previous = self.history[-1].chain_hash if self.history else GENESIS_HASH
        position = len(self.history) + 1
        entry = Committed(position, payload, chain_hash(previous, position, payload))
        self.history.append(entry)
        for replica in self.replicas.values():
            replica._notify()
        return entry


class MemoryLog(ReplicatedLog):
    def __init__(self, cluster: MemoryCluster, replica_id: str):
        self.cluster = cluster
        self.replica_id = replica_id
        self._apply: Apply | None = None
        self._applied = 0
        self._closed = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduled = False

    async def start(self, apply: Apply, applied_position: int = 0, applied_hash: bytes = GENESIS_HASH) -> None:
        history = self.cluster.history
        known = history[applied_position - 1].chain_hash if applied_position else GENESIS_HASH
        if applied_position > len(history) or known != applied_hash:
            raise SnapshotMismatch(f"no history matches position {applied_position}")
        self._loop = asyncio.get_running_loop()
        self._apply = apply
        self._applied = applied_position
        self._catch_up()

    async def stop(self) -> None:
        self._closed = True

    def _notify(self) -> None:
        if self._loop is not None and not self._closed and not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._catch_up)

    def _catch_up(self, until: int | None = None) -> object:
        """Apply history up to `until` (default: all); returns the result at `until`."""
        self._scheduled = False
        result = None
        history = self.cluster.history
        end = len(history) if until is None else until
        while self._apply is not None and not self._closed and self._applied < end:
            result = self._apply(history[self._applied])
            self._applied += 1
        return result

    async def propose(self, payload: bytes) -> Proposed:
        if self._closed:
            raise LogClosed("replica stopped")
        if self.cluster.leader != self.replica_id:
            raise NotLeader(self.cluster.leader)
        entry = self.cluster.commit(payload)
        return Proposed(entry.position, self._catch_up(until=entry.position))

    async def barrier(self) -> int:
        if self.cluster.leader != self.replica_id:
            raise NotLeader(self.cluster.leader)
        self._catch_up()
        return self._applied

    def status(self) -> LogStatus:
        is_leader = self.cluster.leader == self.replica_id
        return LogStatus(
            role=Role.LEADER if is_leader else Role.FOLLOWER,
            term=self.cluster.term,
            leader=self.cluster.leader,
            applied_position=self._applied,
            last_contact_ms=0 if self.cluster.leader is not None else None,
        )

    def read(self, first: int, last: int) -> list[Committed]:
        if first < 1 or last < first or last > len(self.cluster.history):
            raise ValueError(f"positions {first}..{last} outside 1..{len(self.cluster.history)}")
        return self.cluster.history[first - 1 : last]

    async def sync(self) -> None:
        return None
