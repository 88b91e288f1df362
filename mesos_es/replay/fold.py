"""The replay's fold: the masters' own pure `apply`, fed from a source, checking the chain.

Each record's chain hash is recomputed (sha256(previous || position || event), as the
archive does) and compared with the hash the source stored, so a replay from any source
proves the events are the ones the masters committed. An undecodable event is skipped
exactly as a master skips it (`skip_undecodable`), so the digest still matches.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError

from mesos_es.core import digest as canonical
from mesos_es.core.apply import apply, skip_undecodable
from mesos_es.core.outcomes import Outcome
from mesos_es.core.state import State
from mesos_es.log.chain import GENESIS_HASH
from mesos_es.pb import events_pb2
from mesos_es.replay.errors import ChainBroken, OutOfOrder, ReplayError, TruncatedInput
from mesos_es.replay.sources import Record, Source

# observer(position, event or None when undecodable, outcome, state), after the event is folded
Observer = Callable[[int, events_pb2.Event | None, Outcome, State], None]
# before(position, event, state), before it is folded
BeforeHook = Callable[[int, events_pb2.Event, State], None]


@dataclass
class Target:
    """Where to stop: a position, a time (the last event stamped at or before it), or the end."""

    position: int | None = None
    time_ms: int | None = None

    @classmethod
    def parse(cls, text: str | None) -> Target:
        """`1234` (a position) or an ISO 8601 time (`2026-11-23T12:00:00Z`; no zone means UTC)."""
        if text is None or text == "":
            return cls()
        text = text.strip()
        if text.isdigit():
            return cls(position=int(text))
        try:
            moment = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise ReplayError(f"--at {text!r} is neither a position (an integer) nor an ISO 8601 time "
                              "(e.g. 2026-11-23T12:00:00Z)") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=datetime.UTC)
        return cls(time_ms=int(moment.timestamp() * 1000))

    def describe(self) -> str:
        if self.position is not None:
            return f"position {self.position}"
        if self.time_ms is not None:
            return f"time {format_ms(self.time_ms)}"
        return "the end"


def format_ms(ms: int) -> str:
    if not ms:
        return "-"
    moment = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


@dataclass
class ChainBreak:
    position: int
    stored: bytes
    computed: bytes


@dataclass
class Fold:
    """A state and the chain hash at its position; `run` folds records into it."""

    state: State = field(default_factory=State)
    chain_hash: bytes = GENESIS_HASH
    # False: a chain break is recorded in `breaks` (verify) and the fold goes on from the
    # stored hash; True: it raises ChainBroken.
    strict_chain: bool = True
    breaks: list[ChainBreak] = field(default_factory=list)
    undecodable: list[int] = field(default_factory=list)
    last_timestamp_ms: int = 0
    events: int = 0
    snapshot_position: int = 0  # the fold started from a snapshot at this position (0: from 1)

    @property
    def position(self) -> int:
        return self.state.position

    def digest(self) -> str:
        return canonical.digest(self.state)

    def run(self, batches: Iterator[list[Record]], target: Target | None = None, *,
            observer: Observer | None = None, before: BeforeHook | None = None,
            progress: Callable[[int], None] | None = None) -> None:
        """Fold every record up to the target (all of them without one)."""
        target = target or Target()
        stop_position, stop_time = target.position, target.time_ms
        state = self.state
        chain = self.chain_hash
        sha256 = hashlib.sha256
        parse = events_pb2.Event.FromString
        strict = self.strict_chain
        alternative = None
        # Kept in locals and stored once at the end (the finally): attribute stores on every
        # event cost a few percent of a log entry's fold.
        events, last_timestamp_ms = self.events, self.last_timestamp_ms
        try:
            for batch in batches:
                for position, payload, stored in batch:
                    if stop_position is not None and position > stop_position:
                        return
                    if position != state.position + 1:
                        raise OutOfOrder(f"position {position} follows position {state.position}", position)
                    h = sha256(chain)
                    h.update(position.to_bytes(8, "big"))
                    h.update(payload)
                    computed = h.digest()
                    if alternative is not None:
                        # After a break: does the history go on from the hash recorded there
                        # (the event was altered) or from the one computed (its hash was)?
                        if stored is not None and stored != computed:
                            h = sha256(alternative)
                            h.update(position.to_bytes(8, "big"))
                            h.update(payload)
                            if h.digest() == stored:
                                computed = stored
                        alternative = None
                    try:
                        event = parse(payload)
                    except DecodeError:
                        event = None
                    timestamp_ms = event.timestamp_ms if event is not None else 0
                    if stop_time is not None and event is not None and timestamp_ms > stop_time:
                        return
                    if stored is not None and stored != computed:
                        if strict:
                            raise ChainBroken(
                                f"hash chain broken at position {position}: the stored hash {stored.hex()[:16]}... "
                                f"is not sha256(hash at {position - 1} || {position} || event) = "
                                f"{computed.hex()[:16]}...; the event or an earlier one was altered", position)
                        self.breaks.append(ChainBreak(position, stored, computed))
                        alternative = stored  # later records show which of the two was altered
                    chain = computed
                    if event is None:
                        self.undecodable.append(position)
                        outcome = skip_undecodable(state, position)
                    else:
                        if before is not None:
                            before(position, event, state)
                        outcome = apply(state, position, event)
                        if timestamp_ms:
                            last_timestamp_ms = timestamp_ms
                    events += 1
                    if observer is not None:
                        self.chain_hash, self.events, self.last_timestamp_ms = chain, events, last_timestamp_ms
                        observer(position, event, outcome, state)
                if progress is not None:
                    progress(len(batch))
        finally:
            self.chain_hash, self.events, self.last_timestamp_ms = chain, events, last_timestamp_ms

    def fold_to(self, source: Source, target: Target | None = None, **kwargs) -> None:
        """Read `source` from the next position on and fold to the target."""
        target = target or Target()
        first = self.state.position + 1
        last = target.position
        if last is not None and last < self.state.position:
            raise ReplayError(f"cannot go back from position {self.state.position} to {last}", last)
        if last is not None and last == self.state.position:
            return
        try:
            self.run(source.batches(first, last), target, **kwargs)
        except ChainBroken as e:
            if self.snapshot_position and e.position == self.snapshot_position + 1:
                raise ChainBroken(f"the snapshot at position {self.snapshot_position} does not chain onto the "
                                  f"history at position {e.position} (its chain hash differs from the archive's): "
                                  "replay with --no-snapshots", e.position) from None
            raise
        if last is not None and self.state.position < last:
            raise TruncatedInput(f"{source.description} ends at position {self.state.position}, "
                                 f"before position {last}", self.state.position + 1)


def start(source: Source, target: Target | None, use_snapshots: bool = True) -> Fold:
    """A fold at the best starting point for `target`: a snapshot at or below it, or nothing."""
    if use_snapshots and (target is None or target.time_ms is None):
        found = source.snapshot(target.position if target else None)
        if found is not None:
            state, chain_hash = found
            return Fold(state=state, chain_hash=chain_hash, snapshot_position=state.position)
    return Fold()
