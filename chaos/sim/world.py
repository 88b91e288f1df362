"""The simulated world: one clock, one queue of timed actions, one random generator, one trace.

Time is an integer number of simulated milliseconds that only moves when the queue says so;
nothing here sleeps or reads a clock. Every random choice of a run comes from `rng`, which is
`random.Random(seed)`, so a seed replays the same run action for action. Actions at the same
millisecond run in the order they were scheduled (a sequence number breaks ties).

Every node (master, agent, framework, client) schedules through `Node.later`, which drops
the action if the node crashed since: a crash is the end of a process and of its timers.
"""

from __future__ import annotations

import hashlib
import heapq
import random
from collections.abc import Callable

# What the leaders' wall clocks read at simulated time 0 (ms since the Unix epoch).
EPOCH_MS = 1_700_000_000_000


class Timer:
    """A scheduled action; `cancel()` keeps it from running."""

    __slots__ = ("args", "at", "cancelled", "fn")

    def __init__(self, at: int, fn: Callable, args: tuple):
        self.at = at
        self.fn = fn
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class World:
    def __init__(self, seed: int, keep_trace: bool = False):
        self.seed = seed
        self.rng = random.Random(seed)
        self.now = 0
        self._queue: list[tuple[int, int, Timer]] = []
        self._seq = 0
        self.steps = 0
        self.keep_trace = keep_trace
        self.trace: list[str] = []
        self._trace_hash = hashlib.sha256()
        self._ids = 0

    # -- scheduling ---------------------------------------------------------------------------
    def at(self, delay_ms: int, fn: Callable, *args) -> Timer:
        timer = Timer(self.now + max(0, int(delay_ms)), fn, args)
        self._seq += 1
        heapq.heappush(self._queue, (timer.at, self._seq, timer))
        return timer

    def run(self, until_ms: int, stop: Callable[[], bool] | None = None, stop_every_ms: int = 500) -> bool:
        """Run actions up to `until_ms`; with `stop`, also ask it every `stop_every_ms` and
        return True as soon as it says so (False when the time ran out)."""
        next_check = self.now + stop_every_ms if stop is not None else None
        queue = self._queue
        while queue and queue[0][0] <= until_ms:
            at, _, timer = heapq.heappop(queue)
            if next_check is not None and at >= next_check:
                self.now = max(self.now, next_check)
                if stop():
                    heapq.heappush(queue, (at, _, timer))
                    return True
                next_check = self.now + stop_every_ms
            self.now = at
            if timer.cancelled:
                continue
            self.steps += 1
            timer.fn(*timer.args)
        self.now = max(self.now, until_ms)
        return bool(stop is not None and stop())

    # -- choices --------------------------------------------------------------------------------
    def uniform_ms(self, low: int, high: int) -> int:
        return self.rng.randint(low, high)

    def chance(self, p: float) -> bool:
        return p > 0 and self.rng.random() < p

    def new_id(self, suffix: str) -> str:
        """An id as the real leader makes one (`uuid4()-suffix`), from the seed."""
        self._ids += 1
        return f"{self.rng.getrandbits(40):010x}{self._ids:04x}-{suffix}"

    def new_uuid(self) -> bytes:
        return self.rng.getrandbits(128).to_bytes(16, "big")

    # -- the trace ------------------------------------------------------------------------------
    def log(self, who: str, what: str) -> None:
        """One line of the run's trace; all of them hash into `trace_digest`."""
        line = f"{self.now:>9} {who:<4} {what}"
        self._trace_hash.update(line.encode())
        self._trace_hash.update(b"\n")
        if self.keep_trace:
            self.trace.append(line)

    def trace_digest(self) -> str:
        return self._trace_hash.hexdigest()


class Node:
    """A process of the simulated cluster: alive or crashed, and its incarnation (`epoch`)."""

    def __init__(self, world: World, name: str):
        self.world = world
        self.name = name
        self.alive = True
        self.epoch = 0

    def later(self, delay_ms: int, fn: Callable, *args) -> Timer:
        """Run `fn(*args)` after `delay_ms` unless this incarnation of the node is gone."""
        return self.world.at(delay_ms, self._guarded, self.epoch, fn, args)

    def _guarded(self, epoch: int, fn: Callable, args: tuple) -> None:
        if self.alive and epoch == self.epoch:
            fn(*args)

    def crash(self) -> None:
        self.alive = False
        self.epoch += 1

    def log(self, what: str) -> None:
        self.world.log(self.name, what)
