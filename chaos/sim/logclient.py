"""A simulated client of the named-log API (docs/api/logs.md), as a framework that persists
its state in a named log uses it.

It appends entries one at a time, each with its own Idempotency-Key, and retries an append
whose answer it did not get (or that failed) with the same key until it gets a 200: so every
append ends acknowledged, once, at one position. Now and then it reads the log back, from
the leader with `consistency=strong` or from any master with `consistency=eventual`; at the
end of the run it reads the whole log strongly. The checks (chaos/sim/checks.py) hold the
answers against each other and against the committed history.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

from chaos.sim.world import Node

LOG = "chaos"
CALL_TIMEOUT_MS = 3_000


@dataclass
class Append:
    key: str
    data: bytes
    sent_at: int
    tries: int = 0
    acked_at: int | None = None
    position: int | None = None


@dataclass
class Read:
    consistency: str
    master: str
    issued_at: int
    answered_at: int
    entries: list[tuple[int, bytes]]
    # key -> position of every append acknowledged before the read was sent
    acked_before: dict[str, int] = field(default_factory=dict)


class SimLogClient(Node):
    def __init__(self, world, net, name: str, masters: list[str], count: int, spacing_ms: tuple[int, int]):
        super().__init__(world, name)
        self.net = net
        self.masters = masters
        self.count = count
        self.spacing_ms = spacing_ms
        self.master = world.rng.choice(masters)
        self.appends: list[Append] = []
        self.reads: list[Read] = []
        self.final: Read | None = None
        self.final_wanted = False

    def start(self) -> None:
        self.later(self.world.uniform_ms(*self.spacing_ms), self._next)

    def done(self) -> bool:
        return self.final is not None

    def busy(self) -> list[str]:
        pending = [a.key for a in self.appends if a.acked_at is None]
        out = [f"append {k} unacknowledged" for k in pending]
        if len(self.appends) < self.count:
            out.append(f"{self.count - len(self.appends)} appends not sent yet")
        if self.final is None:
            out.append("final read not done")
        return out

    # -- appends --------------------------------------------------------------------------------
    def _next(self) -> None:
        if len(self.appends) >= self.count:
            if self.final_wanted:
                self.read("strong", final=True)
            return
        index = len(self.appends) + 1
        append = Append(key=f"{self.name}-{index}", data=f"entry {index} of seed {self.world.seed}".encode(),
                        sent_at=self.world.now)
        self.appends.append(append)
        self._send(append)

    def _send(self, append: Append) -> None:
        append.tries += 1
        body = {"log": LOG, "key": append.key, "data": append.data}
        self.net.call(self, self.master, "log_append", body,
                      lambda status, answer: self._appended(append, status, answer), CALL_TIMEOUT_MS)

    def _appended(self, append: Append, status: int | None, answer: dict) -> None:
        if status == 200:
            append.acked_at = self.world.now
            append.position = answer["position"]
            self.log(f"append {append.key} acknowledged at {append.position} (try {append.tries})")
            if self.world.chance(0.3):
                self.read("strong" if self.world.chance(0.5) else "eventual")
            self.later(self.world.uniform_ms(*self.spacing_ms), self._next)
            return
        if status == 307:
            self.master = answer["leader"]
            self.later(self.world.uniform_ms(1, 20), self._send, append)
        else:
            self.master = self.world.rng.choice(self.masters)
            self.later(self.world.uniform_ms(200, 800), self._send, append)

    def finish(self) -> None:
        """The liveness phase: once every append is acknowledged, read the whole log."""
        self.final_wanted = True
        if len(self.appends) >= self.count and all(a.acked_at is not None for a in self.appends):
            self.read("strong", final=True)

    # -- reads ----------------------------------------------------------------------------------
    def read(self, consistency: str, final: bool = False) -> None:
        master = self.master if consistency == "strong" else self.world.rng.choice(self.masters)
        acked = {a.key: a.position for a in self.appends if a.acked_at is not None}
        issued = self.world.now
        self.net.call(self, master, "log_read", {"log": LOG, "consistency": consistency},
                      lambda status, answer: self._read(consistency, master, issued, acked, final, status, answer),
                      CALL_TIMEOUT_MS)

    def _read(self, consistency, master, issued, acked, final, status, answer) -> None:
        if status == 200:
            entries = [(p, base64.b64decode(d)) for p, d in answer["entries"]]
            read = Read(consistency, master, issued, self.world.now, entries, acked)
            self.reads.append(read)
            if final:
                self.final = read
                self.log(f"final read: {len(entries)} entries")
            return
        if not final:
            return
        if status == 307:
            self.master = answer["leader"]
        else:
            self.master = self.world.rng.choice(self.masters)
        self.later(self.world.uniform_ms(100, 500), self.read, "strong", True)
