"""The contract between consensus and the rest of mesos-es.

A ReplicatedLog turns proposals into committed entries with contiguous positions from 1
(one per proposal, however proposals are batched into Raft entries) and hands every
committed entry, in position order and exactly once per start, to one apply callback on the
asyncio loop. Everything else (the master's fold, the named-log API, replay) is built on
this; nothing below it knows what the payloads mean.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

from mesos_es.log.chain import GENESIS_HASH


@dataclass(frozen=True)
class Committed:
    position: int
    payload: bytes
    # The hash chain at this position (see chain.py): equal on every replica.
    chain_hash: bytes


@dataclass(frozen=True)
class Proposed:
    """A committed proposal, with what the apply callback returned for it on this replica."""

    position: int
    result: object


class Role(enum.Enum):
    LEADER = "leader"
    FOLLOWER = "follower"
    CANDIDATE = "candidate"


@dataclass(frozen=True)
class LogStatus:
    role: Role
    term: int
    # Id of the replica this one believes leads (its Raft address), or None.
    leader: str | None
    # Last position handed to the apply callback.
    applied_position: int
    # Milliseconds since this replica last heard from the leader (0 on the leader; None when
    # it never has): how stale a standby's reads may be.
    last_contact_ms: int | None = None


Apply = Callable[[Committed], object]


class LogError(Exception):
    """A proposal that did not (or may not have) become a committed entry."""

    # Whether resubmitting the same payload cannot produce a duplicate.
    safe_to_retry = False


class NotLeader(LogError):
    """This replica does not lead; nothing was proposed."""

    safe_to_retry = True

    def __init__(self, leader: str | None):
        super().__init__(f"not the leader (leader: {leader or 'unknown'})")
        self.leader = leader


class NotCommitted(LogError):
    """The proposal was definitely not committed."""

    safe_to_retry = True


class OutcomeUnknown(LogError):
    """The proposal may or may not have been committed (e.g. leadership changed in flight)."""


class EntryTooLarge(LogError):
    safe_to_retry = False


class LogClosed(LogError):
    """The log was stopped while the proposal waited."""


class SnapshotMismatch(Exception):
    """The caller's applied position and hash disagree with the log's history."""


class ReplicatedLog(ABC):
    @abstractmethod
    async def start(
        self, apply: Apply, applied_position: int = 0, applied_hash: bytes = GENESIS_HASH
    ) -> None:
        """Begin delivering committed entries after `applied_position` to `apply`.

        `applied_hash` is the chain hash the caller holds for that position (from its state
        snapshot); if the history disagrees, SnapshotMismatch is raised and nothing starts.
        """

    @abstractmethod
    async def stop(self) -> None: ...

    @abstractmethod
    async def propose(self, payload: bytes) -> Proposed:
        """Commit `payload` as the next entry; returns once it is applied on this replica.

        Raises NotLeader, NotCommitted or OutcomeUnknown (see LogError.safe_to_retry).
        """

    @abstractmethod
    async def barrier(self) -> int:
        """Wait until every entry committed before the call is applied here; return that
        position. Goes through consensus, so it also proves this replica still leads."""

    @abstractmethod
    def status(self) -> LogStatus: ...

    @abstractmethod
    def read(self, first: int, last: int) -> list[Committed]:
        """Committed entries first..last from this replica's history (blocking file I/O)."""

    @abstractmethod
    async def sync(self) -> None:
        """Make the history durable up to the applied position (before a state snapshot)."""
