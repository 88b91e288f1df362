"""One master's copy of the state: the fold of every committed event, leader or not.

The replicated log calls `apply` for each committed entry, in order, on the event loop.
Every so many positions the state is written to a snapshot, so a restart folds only the
archive's suffix; the snapshot records the chain hash at its position and is discarded if
the archive disagrees.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import structlog
from google.protobuf.message import DecodeError

from mesos_es.core import digest as canonical
from mesos_es.core.apply import apply as fold
from mesos_es.core.apply import skip_undecodable
from mesos_es.core.outcomes import Outcome
from mesos_es.core.state import State
from mesos_es.log.archive import fsync_directory
from mesos_es.log.chain import GENESIS_HASH
from mesos_es.log.interface import Committed
from mesos_es.pb import events_pb2, state_pb2

log = structlog.get_logger(__name__)

SNAPSHOTS_KEPT = 2
# Set by tests to widen the window in which a state snapshot is half written.
SNAPSHOT_DELAY_ENV = "MESOS_ES_TEST_SNAPSHOT_DELAY_S"


class Replica:
    def __init__(self, snapshot_dir: Path | None = None, snapshot_every: int = 10_000,
                 snapshot_suffix_ratio: float = 0.25):
        self.state = State()
        self.chain_hash = GENESIS_HASH
        self.snapshot_dir = Path(snapshot_dir) if snapshot_dir else None
        # A snapshot is written once `snapshot_every` positions were folded since the last one
        # and their events add up to `snapshot_suffix_ratio` times its size: rewriting a big
        # state (100 MB at 10,000 agents, which also holds up every replica's fold for a
        # second) to spare a restart the fold of a few MB of events does not pay.
        self.snapshot_every = snapshot_every
        self.snapshot_suffix_ratio = snapshot_suffix_ratio
        self._snapshot_position = 0
        self._snapshot_size = 0  # bytes of the last snapshot written or loaded
        self._suffix_bytes = 0  # bytes of the events folded since it
        self._snapshot_task: asyncio.Task | None = None
        self._sync_history: Callable[[], Awaitable[None]] | None = None
        self._digest_cache: tuple[int, str] = (-1, "")
        # Called after each event is folded: (position, event, outcome). The leader's shell
        # carries out the outcome's effects from here.
        self.listeners: list[Callable[[int, events_pb2.Event, Outcome], None]] = []

    # -- the fold -----------------------------------------------------------------------

    def apply(self, committed: Committed) -> Outcome:
        try:
            event = events_pb2.Event.FromString(committed.payload)
        except DecodeError:
            log.error("event_undecodable", position=committed.position)
            outcome = skip_undecodable(self.state, committed.position)
        else:
            outcome = fold(self.state, committed.position, event)
            for listener in self.listeners:
                try:
                    listener(committed.position, event, outcome)
                except Exception:
                    log.error("listener_failed", position=committed.position, exc_info=True)
        self.chain_hash = committed.chain_hash
        self._suffix_bytes += len(committed.payload)
        if (self.snapshot_dir and self.state.position - self._snapshot_position >= self.snapshot_every
                and self._suffix_bytes >= self.snapshot_suffix_ratio * self._snapshot_size):
            self._start_snapshot()
        return outcome

    def digest(self) -> tuple[int, str]:
        """(position, digest) of the current state; cached until the next event."""
        if self._digest_cache[0] != self.state.position:
            self._digest_cache = (self.state.position, canonical.digest(self.state))
        return self._digest_cache

    # -- snapshots ----------------------------------------------------------------------

    def load_snapshot(self) -> tuple[int, bytes]:
        """Load the newest readable snapshot; returns (position, chain hash) to resume from."""
        for path in self._snapshot_files()[::-1]:
            try:
                snapshot = state_pb2.StateSnapshot.FromString(path.read_bytes())
            except (OSError, DecodeError) as e:
                log.warning("snapshot_unreadable", file=path.name, error=str(e))
                continue
            self.state = canonical.from_proto(snapshot.state)
            self.chain_hash = snapshot.chain_hash
            self._snapshot_position = self.state.position
            self._snapshot_size, self._suffix_bytes = path.stat().st_size, 0
            log.info("snapshot_loaded", position=self.state.position)
            return self.state.position, self.chain_hash
        return 0, GENESIS_HASH

    def reset(self) -> None:
        """Forget a snapshot the history disagrees with; the fold restarts at position 1."""
        self.state = State()
        self.chain_hash = GENESIS_HASH
        self._snapshot_position = self._snapshot_size = self._suffix_bytes = 0

    def attach_history(self, sync_history: Callable[[], Awaitable[None]]) -> None:
        """How to make the history durable up to the applied position before a snapshot."""
        self._sync_history = sync_history

    def _start_snapshot(self) -> None:
        if self._snapshot_task is not None and not self._snapshot_task.done():
            return
        self._snapshot_position = self.state.position
        data = snapshot_bytes(self.state, self.chain_hash)
        self._snapshot_size, self._suffix_bytes = len(data), 0
        self._snapshot_task = asyncio.get_running_loop().create_task(
            self._write_snapshot(self.state.position, data)
        )

    async def _write_snapshot(self, position: int, data: bytes) -> None:
        try:
            if self._sync_history is not None:
                await self._sync_history()  # a snapshot must never be ahead of the history
            await asyncio.to_thread(self._write_snapshot_file, position, data)
            log.info("snapshot_written", position=position, size=len(data))
        except Exception:
            log.error("snapshot_failed", position=position, exc_info=True)

    def _write_snapshot_file(self, position: int, data: bytes) -> None:
        directory = self.snapshot_dir
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"state-{position:020d}.pb"
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            delay = float(os.environ.get(SNAPSHOT_DELAY_ENV, "0") or 0)
            if delay:
                time.sleep(delay)
        os.replace(tmp, path)
        fsync_directory(directory)
        for old in self._snapshot_files()[:-SNAPSHOTS_KEPT]:
            old.unlink(missing_ok=True)

    def _snapshot_files(self) -> list[Path]:
        if not self.snapshot_dir or not self.snapshot_dir.exists():
            return []
        return sorted(self.snapshot_dir.glob("state-*.pb"))

    async def close(self) -> None:
        if self._snapshot_task is not None:
            await asyncio.gather(self._snapshot_task, return_exceptions=True)


def snapshot_bytes(state: State, chain_hash: bytes) -> bytes:
    """A serialized `StateSnapshot(state=to_proto(state), chain_hash=chain_hash)`, framed around
    the state's canonical bytes, which are built without copying the cluster and in pieces that
    let the Raft tick thread run (see `canonical_bytes`): the fold waits while it is built."""
    out: list[bytes] = []
    canonical.length_delimited(out, state_pb2.StateSnapshot.STATE_FIELD_NUMBER, canonical.canonical_bytes(state))
    canonical.length_delimited(out, state_pb2.StateSnapshot.CHAIN_HASH_FIELD_NUMBER, chain_hash)
    return b"".join(out)
