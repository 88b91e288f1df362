"""Kafka export: the leader publishes every committed event, in log order, to one topic.

Each record of the archive (framework log entries included, so positions have no gaps)
becomes one Kafka message on partition 0 of the topic (`--kafka-topic`, default
`mesos-es.events`): value = the event's protobuf bytes, headers `position` (decimal),
`type` (the event's message name, e.g. `OffersMade`) and `hash` (the chain hash at that
position, hex), produced with aiokafka and `acks=all`.

Exactly once, without Kafka's idempotent or transactional producer (docs/replay.md):

* Only the leader exports, from its archive, which holds only committed events.
* On taking over, and after any error (a failed or timed-out batch may or may not be in the
  topic), the exporter reads the topic's tail (from a hint, the offset it last confirmed,
  stored as the offset of the consumer group `mesos-es.exporter`) and resumes at the position
  after the highest one there. It never asks the broker for its end offset.
* So a position is written twice only when a batch was retried after it did land, or
  while a deposed leader has not yet noticed (at most its check-quorum window); the copies
  are identical (same position, same hash), and readers drop repeats by position
  (mesos_es/replay/sources.py does).

Kafka being slow or down never blocks the master: the exporter is its own task, reading the
archive in a worker thread and retrying with backoff; the lag (archive position minus the
last exported one) is reported at `GET /api/v1/export` and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog
from aiohttp import web
from google.protobuf.message import DecodeError

from mesos_es.log.archive import ArchiveGap
from mesos_es.pb import events_pb2

log = structlog.get_logger(__name__)

DEFAULT_TOPIC = "mesos-es.events"
HINT_GROUP = "mesos-es.exporter"
BATCH_EVENTS = 2000
BATCH_BYTES = 4 << 20
IDLE_S = 0.02  # how often an idle exporter looks for new positions
TAIL_POLL_MS = 300
TAIL_IDLE_POLLS = 2
SEND_TIMEOUT_S = 15.0
HINT_EVERY_S = 1.0
HINT_TIMEOUT_S = 5.0
LAG_LOG_EVERY_S = 30.0
BACKOFF_S = (0.2, 5.0)
REFUSED_RETRY_S = 30.0
EXPORT_PATH = "/api/v1/export"

_TYPE_NAMES = {f.name: f.message_type.name for f in events_pb2.Event.DESCRIPTOR.oneofs_by_name["kind"].fields}


class ExportRefused(Exception):
    """The topic holds a different history (another cluster, or a wiped work dir)."""


def event_type(payload: bytes) -> str:
    try:
        kind = events_pb2.Event.FromString(payload).WhichOneof("kind")
    except DecodeError:
        return "Undecodable"
    return _TYPE_NAMES.get(kind, kind or "Unknown")


def headers(position: int, payload: bytes, chain_hash: bytes) -> list[tuple[str, bytes]]:
    return [("position", str(position).encode()), ("type", event_type(payload).encode()),
            ("hash", chain_hash.hex().encode())]


class KafkaExporter:
    def __init__(self, master, bootstrap: str, topic: str = DEFAULT_TOPIC, max_request_bytes: int = 2 << 20):
        self.master = master
        self.bootstrap = bootstrap
        self.topic = topic
        self.max_request_bytes = max_request_bytes
        self.next_position: int | None = None  # None: read the topic's tail first
        self.exported_position = 0
        self.exported_at_ms = 0
        self.produced = 0
        self.errors = 0
        self.last_error: str | None = None
        self.state = "standby"
        self._producer = None
        self._consumer = None
        self._task: asyncio.Task | None = None
        self._hint_offset: int | None = None
        self._hint_sent_at = 0.0
        self._hint_task: asyncio.Task | None = None
        self._lag_logged_at = 0.0

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._close()

    def status(self) -> dict:
        archive = self.master.archive
        archive_position = archive.last_position if archive is not None else 0
        exporting = self.state == "exporting"
        return {
            "topic": self.topic, "bootstrap": self.bootstrap, "state": self.state,
            "exported_position": self.exported_position, "archive_position": archive_position,
            # the metric: how many committed positions are not in Kafka yet (on the leader)
            "export_lag_events": max(0, archive_position - self.exported_position) if exporting else None,
            "exported_at_ms": self.exported_at_ms, "produced": self.produced, "errors": self.errors,
            "last_error": self.last_error,
        }

    # -- the loop ----------------------------------------------------------------------------
    async def _run(self) -> None:
        backoff = BACKOFF_S[0]
        while True:
            try:
                if not self.master.is_leader():
                    if self._producer is not None or self.state != "standby":
                        await self._close()
                        self.state, self.next_position = "standby", None
                    await asyncio.sleep(IDLE_S * 5)
                    continue
                if self._producer is None:
                    self.state = "connecting"
                    await self._connect()
                if self.next_position is None:
                    self.state = "reading the tail"
                    self.next_position = await self._find_tail() + 1
                    log.info("export_resumed", topic=self.topic, position=self.next_position)
                self.state = "exporting"
                if not await self._export_batch():
                    await asyncio.sleep(IDLE_S)
                self._maybe_log_lag()
                backoff = BACKOFF_S[0]
            except asyncio.CancelledError:
                raise
            except ExportRefused as e:
                self.state, self.last_error = "refused", str(e)
                log.error("export_refused", topic=self.topic, error=str(e))
                await self._close()
                self.next_position = None
                await asyncio.sleep(REFUSED_RETRY_S)
            except Exception as e:  # noqa: BLE001 - Kafka down, timeouts, anything: never stop the master
                self.errors += 1
                self.last_error = f"{type(e).__name__}: {e}"
                log.warning("export_failed", topic=self.topic, position=self.next_position, error=self.last_error)
                await self._close()
                self.state = "retrying"
                self.next_position = None  # the batch may or may not have landed: read the tail again
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_S[1])

    async def _connect(self) -> None:
        from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=False, linger_ms=2,
            max_batch_size=1 << 20, max_request_size=self.max_request_bytes, request_timeout_ms=10_000,
            retry_backoff_ms=200, client_id="mesos-es-exporter")
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=HINT_GROUP, enable_auto_commit=False,
            auto_offset_reset="earliest", fetch_max_wait_ms=TAIL_POLL_MS, request_timeout_ms=10_000,
            max_partition_fetch_bytes=8 << 20, client_id="mesos-es-exporter")
        self._producer, self._consumer = producer, consumer
        await asyncio.wait_for(producer.start(), SEND_TIMEOUT_S)
        await asyncio.wait_for(consumer.start(), SEND_TIMEOUT_S)
        await self._create_topic()

    async def _create_topic(self) -> None:
        from aiokafka.admin import AIOKafkaAdminClient, NewTopic

        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=10_000)
        try:
            await asyncio.wait_for(admin.start(), SEND_TIMEOUT_S)
            response = await asyncio.wait_for(admin.create_topics([NewTopic(self.topic, 1, 1)]), SEND_TIMEOUT_S)
            for topic, code, *_ in getattr(response, "topic_errors", ()):
                if code not in (0, 36):  # 36: it exists already
                    log.warning("export_topic_not_created", topic=topic, error_code=code)
        except Exception as e:  # noqa: BLE001 - a broker may forbid it; producing may still create it
            log.warning("export_topic_not_created", topic=self.topic, error=str(e))
        finally:
            await admin.close()

    async def _close(self) -> None:
        if self._hint_task is not None:
            self._hint_task.cancel()
            await asyncio.gather(self._hint_task, return_exceptions=True)
            self._hint_task = None
        producer, consumer = self._producer, self._consumer
        self._producer = self._consumer = None
        for client in (producer, consumer):
            if client is not None:
                with contextlib.suppress(Exception):  # it is being thrown away
                    await asyncio.wait_for(client.stop(), 5)

    async def _find_tail(self) -> int:
        """The highest position in the topic (0 when empty), read from the last confirmed
        offset on: never `end_offsets` (unreliable on some brokers, tansu among them)."""
        from aiokafka import TopicPartition

        consumer = self._consumer
        tp = TopicPartition(self.topic, 0)
        consumer.assign([tp])
        hint = await asyncio.wait_for(consumer.committed(tp), SEND_TIMEOUT_S)
        if hint:
            consumer.seek(tp, max(0, hint - 1))
        else:
            await consumer.seek_to_beginning(tp)
        highest, highest_hash, seen = await self._read_to_end(tp)
        if hint and not seen:  # the topic was recreated below the hint: read it all
            await consumer.seek_to_beginning(tp)
            highest, highest_hash, seen = await self._read_to_end(tp)
        self._hint_offset = None
        if highest:
            archive = self.master.archive
            if archive is not None and archive.last_position >= highest and highest_hash is not None:
                ours = await asyncio.to_thread(archive.hash_at, highest)
                if ours != highest_hash:
                    raise ExportRefused(f"position {highest} in {self.topic} has chain hash {highest_hash.hex()[:16]}..., "
                                        f"ours is {ours.hex()[:16]}...: the topic holds another history")
        self.exported_position = highest
        return highest

    async def _read_to_end(self, tp) -> tuple[int, bytes | None, int]:
        highest, highest_hash, seen, idle = 0, None, 0, 0
        while idle < TAIL_IDLE_POLLS:
            fetched = await self._consumer.getmany(tp, timeout_ms=TAIL_POLL_MS, max_records=10_000)
            messages = fetched.get(tp, [])
            if not messages:
                idle += 1
                continue
            idle = 0
            for message in messages:
                seen += 1
                found = dict(message.headers or ())
                try:
                    position = int(found.get("position", b""))
                except ValueError:
                    continue  # not ours
                if position > highest:
                    highest = position
                    try:
                        highest_hash = bytes.fromhex(found["hash"].decode()) if "hash" in found else None
                    except ValueError:
                        highest_hash = None
        return highest, highest_hash, seen

    async def _export_batch(self) -> int:
        archive = self.master.archive
        first = self.next_position
        last = archive.last_position
        if first > last:
            return 0
        try:
            records = await asyncio.to_thread(archive.read, first, min(last, first + BATCH_EVENTS - 1), BATCH_BYTES)
        except ArchiveGap:
            return 0  # this master is still fetching that part of the history from a peer
        producer = self._producer
        futures = []
        for record in records:
            futures.append(await producer.send(self.topic, value=record.payload, partition=0,
                                               headers=headers(record.position, record.payload, record.hash)))
        results = await asyncio.wait_for(asyncio.gather(*futures), SEND_TIMEOUT_S)
        if self._hint_offset is not None and results[0].offset < self._hint_offset:
            # Offsets went backwards: the broker lost the topic (tansu's memory storage does
            # when it restarts). Start over from its tail; what it lost is not written again.
            self.next_position = None
            raise RuntimeError(f"the topic restarted at offset {results[0].offset} (was at {self._hint_offset})")
        self.next_position = records[-1].position + 1
        self.exported_position = records[-1].position
        self.exported_at_ms = time.time_ns() // 1_000_000
        self.produced += len(records)
        self._hint_offset = results[-1].offset + 1
        self._save_hint()
        return len(records)

    def _save_hint(self) -> None:
        """Commit the offset after the last confirmed message as the group's offset, at most
        every HINT_EVERY_S, in the background: it only shortens the next tail read, so it
        may fail or lag (a broker that lost the topic retries a commit for ever)."""
        now = time.monotonic()
        busy = self._hint_task is not None and not self._hint_task.done()
        if self._hint_offset is None or busy or now - self._hint_sent_at < HINT_EVERY_S:
            return
        from aiokafka import TopicPartition
        from aiokafka.structs import OffsetAndMetadata

        self._hint_sent_at = now
        commit = self._consumer.commit(
            {TopicPartition(self.topic, 0): OffsetAndMetadata(self._hint_offset, f"position={self.exported_position}")})
        self._hint_task = asyncio.get_running_loop().create_task(_quietly(commit, HINT_TIMEOUT_S))

    def _maybe_log_lag(self) -> None:
        now = time.monotonic()
        if now - self._lag_logged_at >= LAG_LOG_EVERY_S:
            self._lag_logged_at = now
            status = self.status()
            log.info("export_progress", topic=self.topic, exported_position=self.exported_position,
                     lag_events=status["export_lag_events"], errors=self.errors)


async def _quietly(awaitable, timeout: float) -> None:
    try:
        await asyncio.wait_for(awaitable, timeout)
    except asyncio.CancelledError:
        raise
    except Exception as e:  # noqa: BLE001 - a hint that did not get through
        log.debug("export_hint_not_saved", error=str(e))


async def export_status(request: web.Request) -> web.Response:
    from mesos_es.master.http.common import json_response

    exporter = request.app[EXPORTER]
    if exporter is None:
        return json_response({"enabled": False})
    return json_response({"enabled": True, **exporter.status()})


EXPORTER = web.AppKey("exporter", object)


def add_routes(app: web.Application, exporter: KafkaExporter | None) -> None:
    app[EXPORTER] = exporter
    app.router.add_get(EXPORT_PATH, export_status)
