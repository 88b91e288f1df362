"""Long-lived event streams to frameworks and agents: chunked RecordIO of events.

A stream is opened by a SUBSCRIBE (frameworks) or REGISTER (agents) request and lives as
long as that request. Messages are queued without blocking the caller (effects run inside
the fold) and written by one task per stream, so a slow reader only ever slows itself.
A stream starts *gated*: messages queue until `open()` writes the first event (SUBSCRIBED,
REGISTERED), so nothing can overtake it.

Events are dicts in Mesos' v1 JSON form, encoded when queued: as JSON by default, or by the
encoder the stream was opened with (a framework that asked for protobuf). An event the
encoder refuses is logged and left out; it never raises into the caller.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Callable

import orjson
import structlog
from aiohttp import web

from mesos_es.recordio import encode

log = structlog.get_logger(__name__)

# A reader this far behind is cut off; it resubscribes and gets state again.
MAX_QUEUED = 100_000


class EventStream:
    def __init__(self, request: web.Request, kind: str, owner: str,
                 content_type: str = "application/json", encoder: Callable[[dict], bytes] = orjson.dumps):
        self.request = request
        self.kind = kind  # "framework" or "agent"
        self.owner = owner  # framework or agent id
        self.content_type = content_type
        self._encoder = encoder
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
        try:
            record = encode(self._encoder(event))
        except (TypeError, ValueError) as e:  # a bug in whoever built the event; the stream goes on
            log.error("stream_event_not_encoded", kind=self.kind, owner=self.owner,
                      event_type=event.get("type"), content_type=self.content_type, error=str(e))
            return
        self._queue.append(record)
        if not self._gated:
            self._wakeup.set()

    async def open(self, first: dict, extra_headers: dict | None = None) -> None:
        """Answer the request (200, chunked) with `first` as the first event."""
        record = encode(self._encoder(first))
        response = web.StreamResponse(status=200, headers={
            "Content-Type": self.content_type, "Mesos-Stream-Id": self.stream_id, **(extra_headers or {}),
        })
        response.enable_chunked_encoding()
        await response.prepare(self.request)
        await response.write(record)
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
                try:  # asyncio.timeout: wait_for would make a task per wake-up
                    async with asyncio.timeout(heartbeat_s):
                        await self._wakeup.wait()
                except TimeoutError:
                    if heartbeat is not None:
                        self._queue.append(encode(self._encoder(heartbeat)))
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
