"""Long-lived event streams to frameworks and agents: chunked RecordIO of JSON events.

A stream is opened by a SUBSCRIBE (frameworks) or REGISTER (agents) request and lives as
long as that request. Messages are queued without blocking the caller (effects run inside
the fold) and written by one task per stream, so a slow reader only ever slows itself.
A stream starts *gated*: messages queue until `open()` writes the first event (SUBSCRIBED,
REGISTERED), so nothing can overtake it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque

import orjson
import structlog
from aiohttp import web

from mesos_es.recordio import encode

log = structlog.get_logger(__name__)

# A reader this far behind is cut off; it resubscribes and gets state again.
MAX_QUEUED = 100_000


class EventStream:
    def __init__(self, request: web.Request, kind: str, owner: str):
        self.request = request
        self.kind = kind  # "framework" or "agent"
        self.owner = owner  # framework or agent id
        self.stream_id = str(uuid.uuid4())
        self._queue: deque[bytes] = deque()
        self._gated = True
        self._wakeup = asyncio.Event()
        self._closed = asyncio.Event()
        self.response: web.StreamResponse | None = None

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    def send(self, event: dict) -> None:
        """Queue one event (never blocks)."""
        if self.closed:
            return
        if len(self._queue) >= MAX_QUEUED:
            log.warning("stream_overflow", kind=self.kind, owner=self.owner)
            self.close()
            return
        self._queue.append(encode(orjson.dumps(event)))
        if not self._gated:
            self._wakeup.set()

    async def open(self, first: dict, extra_headers: dict | None = None) -> None:
        """Answer the request (200, chunked) with `first` as the first event."""
        response = web.StreamResponse(status=200, headers={
            "Content-Type": "application/json", "Mesos-Stream-Id": self.stream_id, **(extra_headers or {}),
        })
        response.enable_chunked_encoding()
        await response.prepare(self.request)
        await response.write(encode(orjson.dumps(first)))
        self.response = response
        self._gated = False
        self._wakeup.set()

    def close(self) -> None:
        self._closed.set()
        self._wakeup.set()

    async def run(self, heartbeat_s: float | None = None, heartbeat: dict | None = None) -> None:
        """Write queued events until the stream closes or the peer goes away."""
        try:
            while not self.closed:
                try:
                    await asyncio.wait_for(self._wakeup.wait(), heartbeat_s)
                except TimeoutError:
                    if heartbeat is not None:
                        self._queue.append(encode(orjson.dumps(heartbeat)))
                self._wakeup.clear()
                while self._queue and self.response is not None:
                    batch = b"".join(self._queue.popleft() for _ in range(min(len(self._queue), 256)))
                    await self.response.write(batch)
        except (ConnectionError, asyncio.CancelledError, RuntimeError):
            pass
        finally:
            self._closed.set()
        if self.response is not None:
            try:
                await self.response.write_eof()
            except (ConnectionError, RuntimeError):
                pass
