"""The agent's side of the master-agent protocol (docs/api/agent-protocol.md).

`MasterClient.run()` loops forever: find the leader (any master answers 307 with the
leader, or 503), open the REGISTER stream, hand each RecordIO event to the handler, answer
PINGs with PONG, and re-register whenever the stream ends, errs or stays silent for three
ping intervals. Calls (`call()`) go to the master that holds the stream, with its stream id.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Protocol

import aiohttp
import orjson
import structlog

from mesos_es import recordio
from mesos_es.agent.aio import within

PATH = "/api/v1/agent"
DEFAULT_PING_INTERVAL_S = 5.0
MISSED_PINGS = 3
# A stream silent for this many ping intervals has a ping overdue: the agent asks the other
# masters whether one of them leads now (a leader frozen or cut off from the others keeps
# the stream open and says nothing; the others elect a successor within seconds).
OVERDUE_PINGS = 1.5
HEALTH_TIMEOUT_S = 2.0


class Handler(Protocol):
    def register_body(self, full: bool = False) -> dict: ...
    async def on_event(self, event: dict) -> None: ...
    def on_removed(self) -> None: ...
    def on_disconnected(self) -> None: ...


class NoLeader(Exception):
    pass


class Removed(Exception):
    pass


class LeaderMoved(Exception):
    """Another master leads now; the stream's master was left behind."""


class MasterClient:
    def __init__(self, masters, handler: Handler, session: aiohttp.ClientSession, *,
                 backoff_min_s: float = 0.2, backoff_max_s: float = 10.0, log=None):
        self.masters = list(masters)
        self.handler = handler
        self.session = session
        self.backoff_min_s = backoff_min_s
        self.backoff_max_s = backoff_max_s
        self.log = log or structlog.get_logger("mesos_es.agent.master_client")
        self.leader: str | None = None
        self.stream_id: str | None = None
        self.ping_interval_s = DEFAULT_PING_INTERVAL_S
        self.registered = asyncio.Event()
        self._response: aiohttp.ClientResponse | None = None
        self._background: set[asyncio.Task] = set()

    # -- the stream --------------------------------------------------------------------------
    async def run(self) -> None:
        failures = 0
        while True:
            try:
                await self._one_stream()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Removed:
                self.log.warning("agent_removed_by_master")
                self.handler.on_removed()
                failures = 0
                continue
            except NoLeader as e:
                self.log.info("leader_not_found", reason=str(e))
            except LeaderMoved as e:
                self.log.info("leader_moved", leader=str(e))
                failures = 0
            except (TimeoutError, aiohttp.ClientError, OSError, recordio.RecordIOError, ValueError) as e:
                self.log.info("master_stream_ended", error=f"{type(e).__name__}: {e}")
            finally:
                if self.registered.is_set():
                    # A stream that got REGISTERED was a success, whatever ended it (a stream
                    # always ends by raising): the backoff starts again from its minimum, not
                    # from where the failures before that stream left it (found by chaos run).
                    failures = 0
                self._disconnect()
            failures += 1
            delay = min(self.backoff_max_s, self.backoff_min_s * (2 ** min(failures - 1, 10)))
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))

    def _disconnect(self) -> None:
        was = self.stream_id is not None
        self.stream_id = None
        self.registered.clear()
        if self._response is not None:
            self._response.close()
            self._response = None
        if was:
            self.handler.on_disconnected()

    def reconnect(self) -> None:
        """Drop the stream; run() registers again."""
        if self._response is not None:
            self._response.close()

    async def _open(self) -> aiohttp.ClientResponse:
        body = orjson.dumps(self.handler.register_body())
        full = None  # the body with the task list, once a master asked for it
        candidates = ([self.leader] if self.leader else []) + [m for m in self.masters if m != self.leader]
        errors = []
        for candidate in candidates:
            target = candidate
            for _hop in range(3):
                try:
                    response = await self.session.post(
                        f"http://{target}{PATH}", data=body, allow_redirects=False,
                        headers={"Content-Type": "application/json", "Accept": "application/json"},
                        timeout=aiohttp.ClientTimeout(total=None, sock_connect=5, sock_read=None))
                except (TimeoutError, aiohttp.ClientError, OSError) as e:
                    errors.append(f"{target}: {type(e).__name__}")
                    break
                if response.status == 200:
                    self.leader = target
                    return response
                text = (await response.text())[:200]
                response.release()
                if response.status == 307:
                    location = response.headers.get("Location", "")
                    leader = location.split("//", 1)[-1].split("/", 1)[0] if location else ""
                    if not leader or leader == target:
                        errors.append(f"{target}: bad redirect {location!r}")
                        break
                    self.log.info("leader_redirected", master=target, leader=leader)
                    target = leader
                    continue
                if response.status == 409:
                    raise Removed(text)
                if response.status == 412 and full is None:  # its view differs: send the tasks
                    self.log.info("task_digest_mismatch", master=target)
                    body = full = orjson.dumps(self.handler.register_body(full=True))
                    continue
                errors.append(f"{target}: HTTP {response.status} {text}")
                break
        self.leader = None
        raise NoLeader("; ".join(errors) or "no masters")

    async def _one_stream(self) -> None:
        response = await self._open()
        self._response = response
        self.stream_id = response.headers.get("Mesos-Stream-Id", "")
        self.log.info("master_stream_opened", leader=self.leader, stream_id=self.stream_id)
        decoder = recordio.Decoder()
        loop = asyncio.get_running_loop()
        heard, asked = loop.time(), False
        while True:
            silence = self.ping_interval_s * (MISSED_PINGS if asked else OVERDUE_PINGS)
            try:
                chunk = await within(response.content.readany(), max(0.0, heard + silence - loop.time()))
            except TimeoutError:
                if asked:
                    raise
                asked = True  # once per silence: then the stream is given up after MISSED_PINGS
                moved = await self._leader_elsewhere()
                if moved:
                    self.leader = moved  # registered with first
                    raise LeaderMoved(moved) from None
                continue
            heard, asked = loop.time(), False
            if not chunk:
                decoder.finish()
                raise aiohttp.ClientPayloadError("the master closed the stream")
            for record in decoder.feed(chunk):
                event = orjson.loads(record)
                await self._dispatch(event)

    async def _leader_elsewhere(self) -> str | None:
        """A master other than this stream's that says it leads (`GET /health`), if any:
        Raft has one leader per term, so ours was deposed while it said nothing."""
        others = [m for m in self.masters if m != self.leader]

        async def leads(master: str) -> bool:
            try:
                async with self.session.get(f"http://{master}/health",
                                            timeout=aiohttp.ClientTimeout(total=HEALTH_TIMEOUT_S)) as response:
                    health = await response.json() if response.status == 200 else {}
            except (TimeoutError, aiohttp.ClientError, OSError, ValueError):
                return False
            # Not our own leader under another name (`--master` may spell it differently).
            return isinstance(health, dict) and health.get("role") == "leader" and health.get("leader") != self.leader

        answers = await asyncio.gather(*(leads(m) for m in others))
        return next((m for m, yes in zip(others, answers, strict=True) if yes), None)

    async def _dispatch(self, event: dict) -> None:
        kind = event.get("type")
        if kind == "REGISTERED":
            interval = (event.get("registered") or {}).get("ping_interval_seconds")
            if isinstance(interval, (int, float)) and interval > 0:
                self.ping_interval_s = float(interval)
        elif kind == "PING":
            self.spawn(self.call({"type": "PONG", "pong": {}}))
            return
        elif kind == "ERROR":
            self.log.warning("master_error", message=(event.get("error") or {}).get("message"))
        try:
            await self.handler.on_event(event)
        except Exception:
            self.log.exception("event_failed", type=kind)
        if kind == "REGISTERED":
            self.registered.set()

    def spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- calls ---------------------------------------------------------------------------------
    async def call(self, body: dict) -> int | None:
        """POST a call on the current stream; the HTTP status, or None when not connected.
        A 403/307/503 means the stream is stale: drop it so run() registers again."""
        leader, stream_id = self.leader, self.stream_id
        if stream_id is None or leader is None:
            return None
        agent_id = getattr(self.handler, "agent_id", None)
        if agent_id and "agent_id" not in body:
            body = {**body, "agent_id": {"value": agent_id}}
        try:
            async with self.session.post(
                f"http://{leader}{PATH}", data=orjson.dumps(body), allow_redirects=False,
                headers={"Content-Type": "application/json", "Mesos-Stream-Id": stream_id},
                timeout=aiohttp.ClientTimeout(total=10),
            ) as response:
                if response.status in (403, 307, 503) and self.stream_id == stream_id:
                    self.log.info("call_rejected", type=body.get("type"), status=response.status)
                    self.reconnect()
                elif response.status >= 400:
                    self.log.warning("call_failed", type=body.get("type"), status=response.status,
                                     body=(await response.text())[:200])
                return response.status
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            self.log.info("call_error", type=body.get("type"), error=f"{type(e).__name__}: {e}")
            return None

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        for task in list(self._background):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
