"""Checkpoints under `<work_dir>/meta`: written whole, atomically (temp file, fsync, rename).

- `meta/agent.json`: the agent id and the agent info it registered with. Remove it to make
  the agent start as a new agent (its old tasks are then killed).
- `meta/state.json`: frameworks, tasks (with pids and process start times), executors,
  pending status updates, exclusive cores.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import orjson


def atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_json(path: Path):
    try:
        return orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None


class Checkpointer:
    """Coalescing writer: `await save()` returns once a snapshot taken after the call is on
    disk. Serializes on the event loop; writes in a worker thread."""

    def __init__(self, path: Path, snapshot, on_saved=None):
        self.path = path
        self._snapshot = snapshot       # () -> (dict, marker)
        self._on_saved = on_saved       # (marker) -> None
        self._lock = asyncio.Lock()
        self._requested = 0
        self._written = 0

    async def save(self) -> None:
        self._requested += 1
        wanted = self._requested
        async with self._lock:
            if self._written >= wanted:
                return
            generation = self._requested
            data, marker = self._snapshot()
            await asyncio.to_thread(atomic_write, self.path, orjson.dumps(data))
            self._written = generation
            if self._on_saved is not None:
                self._on_saved(marker)

    def save_now(self) -> None:
        """Synchronous, for start-up before the loop serves anything."""
        data, marker = self._snapshot()
        atomic_write(self.path, orjson.dumps(data))
        if self._on_saved is not None:
            self._on_saved(marker)
