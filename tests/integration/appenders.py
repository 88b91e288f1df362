"""Concurrent appenders that record which entries got a 200, and the checks on what a
replica holds afterwards."""

from __future__ import annotations

import asyncio
from collections import Counter

from mesos_es.log.client import AsyncLogClient


class Appenders:
    def __init__(self, masters: list[str], log: str, writers: int, per_writer: int):
        self.masters = masters
        self.log = log
        self.writers = writers
        self.per_writer = per_writer
        self.acked: dict[int, list[tuple[int, int]]] = {w: [] for w in range(writers)}  # w -> [(i, position)]

    @property
    def count(self) -> int:
        return sum(len(a) for a in self.acked.values())

    async def _write(self, writer: int, start: int) -> None:
        async with AsyncLogClient(self.masters, retry_timeout_s=60) as client:
            for i in range(start, start + self.per_writer):
                position = await client.append(self.log, f"{writer}:{i}".encode())
                self.acked[writer].append((i, position))

    def start(self, start: int = 0) -> list[asyncio.Task]:
        return [asyncio.create_task(self._write(w, start)) for w in range(self.writers)]

    def check(self, entries) -> None:
        """Every acknowledged append is present exactly once, at the position it was
        acknowledged with, and each writer's entries are in the order it wrote them."""
        data = [e.data.decode() for e in entries]
        duplicated = [d for d, n in Counter(data).items() if n > 1]
        assert not duplicated, f"entries present more than once: {duplicated[:5]}"
        where = {e.data.decode(): e.position for e in entries}
        for writer, acked in self.acked.items():
            for i, position in acked:
                assert where.get(f"{writer}:{i}") == position, f"acknowledged entry {writer}:{i} lost or moved"
        written_order: dict[str, list[int]] = {}
        for entry in entries:  # in log order
            writer, _, i = entry.data.decode().partition(":")
            written_order.setdefault(writer, []).append(int(i))
        for writer, order in written_order.items():
            assert order == sorted(order), f"writer {writer}'s entries are out of order"

async def read_all(master: str, log: str, consistency: str = "eventual"):
    async with AsyncLogClient([master], retry_timeout_s=30) as client:
        return await client.read(log, consistency=consistency)
