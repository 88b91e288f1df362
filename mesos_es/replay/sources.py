"""Where a replay reads the history from. Every source gives the same thing: batches of
`(position, event bytes, stored chain hash or None)` in position order, from a position on,
with no gap, duplicate or reordering (anything else is a ReplayError naming the position).

* `ArchiveSource`: a master's work dir, read-only (the master may be running). Every record
  is checked as the master checks it on opening (length, crc32, position); the chain hash
  is checked by the fold. State snapshots (`snapshots/state-<position>.pb`) let a replay
  start near the position it wants instead of at 1.
* `HttpSource`: a live master's archive, `GET /api/v1/archive/entries?from=A&to=B`
  (RecordIO of `ArchivedEntry`, paged by the master), the endpoint peers use to fill gaps.
* `KafkaSource`: the topic the leader exports to (docs/replay.md): headers `position`,
  `type` and `hash`, value the event bytes. A record repeated by a producer retry or a
  leader change is dropped by position (after checking it is the same record).

`open_source("DIR" | "http://host:port" | "kafka://host:port/topic")` picks one.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import struct
import urllib.parse
import zlib
from collections.abc import Iterator
from pathlib import Path

from google.protobuf.message import DecodeError

from mesos_es import recordio
from mesos_es.core import digest as canonical
from mesos_es.core.state import State
from mesos_es.log.chain import GENESIS_HASH
from mesos_es.pb import log_pb2, state_pb2
from mesos_es.replay.errors import (
    CorruptInput,
    MissingPositions,
    OutOfOrder,
    ReplayError,
    SourceUnavailable,
    TruncatedInput,
)

# The archive's on-disk format (mesos_es/log/archive.py, docs/log.md); read here without the
# Archive class, which opens the newest segment for writing and repairs a torn tail.
SEGMENT_MAGIC = b"MESARCH1"
SEGMENT_HEADER = struct.Struct(">8sQ32sQ")
RECORD_HEADER = struct.Struct("<II")
BODY_HEADER = struct.Struct(">QQ32s")

Record = tuple  # (position: int, payload: bytes, stored hash: bytes | None)
BATCH = 4096
ARCHIVE_ENTRIES_PATH = "/api/v1/archive/entries"
HTTP_TIMEOUT_S = 30.0
KAFKA_IDLE_POLLS = 2  # empty fetches in a row that mean "the end of the topic, for now"
KAFKA_POLL_MS = 500
KAFKA_CONNECT_TIMEOUT_S = 10.0
DEFAULT_TOPIC = "mesos-es.events"


class Source:
    """The interface; see the module docstring."""

    description = ""

    def batches(self, first: int = 1, last: int | None = None) -> Iterator[list[Record]]:
        raise NotImplementedError

    def last_position(self) -> int | None:
        """How far the history reaches now, if the source can tell cheaply (progress bars)."""
        return None

    def snapshot(self, at: int | None) -> tuple[State, bytes] | None:
        """A folded state at or below `at` (None: the newest) and its chain hash, if kept."""
        return None

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def open_source(spec: str) -> Source:
    if spec.startswith(("http://", "https://")):
        return HttpSource(spec)
    if spec.startswith("kafka://"):
        return KafkaSource.from_url(spec)
    if "://" in spec:
        raise SourceUnavailable(f"unknown source {spec!r}: use a directory, http://HOST:PORT or kafka://HOST:PORT/TOPIC")
    return ArchiveSource(Path(spec))


# -- a master's work dir -----------------------------------------------------------------------

class ArchiveSource(Source):
    def __init__(self, path: Path):
        path = Path(path)
        if (path / "archive").is_dir():
            self.work_dir, self.archive_dir = path, path / "archive"
        elif path.is_dir() and any(path.glob("*.seg")):
            self.work_dir, self.archive_dir = None, path
        elif path.is_dir() and any(path.glob("master-*/archive")):
            first = min(path.glob("master-*/archive")).parent
            raise SourceUnavailable(f"{path} is a cluster's work dir; name one master's, e.g. {first}")
        else:
            raise SourceUnavailable(f"{path} holds no archive (expected {path}/archive/*.seg)")
        self.description = str(path)
        self._segments = self._list_segments()
        if not self._segments:
            raise SourceUnavailable(f"{self.archive_dir} holds no archive segment")

    def _list_segments(self) -> list[tuple[int, Path]]:
        segments = []
        for path in sorted(self.archive_dir.glob("*.seg")):
            try:
                with open(path, "rb") as f:
                    header = f.read(SEGMENT_HEADER.size)
            except OSError as e:
                raise SourceUnavailable(f"cannot read {path}: {e.strerror}") from None
            if len(header) < SEGMENT_HEADER.size:
                if path == max(self.archive_dir.glob("*.seg")):
                    continue  # being created (or torn by a crash while it was): no record yet
                raise CorruptInput(f"{path.name}: incomplete segment header")
            magic, first, _, _ = SEGMENT_HEADER.unpack(header)
            if magic != SEGMENT_MAGIC or path.name != f"{first:020d}.seg":
                raise CorruptInput(f"{path.name}: not an archive segment")
            segments.append((first, path))
        return segments

    def last_position(self) -> int:
        first, path = self._segments[-1]
        data = path.read_bytes()
        offset, count = SEGMENT_HEADER.size, 0
        size = len(data)
        while offset + RECORD_HEADER.size <= size:
            length = RECORD_HEADER.unpack_from(data, offset)[0]
            offset += RECORD_HEADER.size + length
            if offset > size:
                break
            count += 1
        return first + count - 1

    def snapshot(self, at: int | None) -> tuple[State, bytes] | None:
        if self.work_dir is None:
            return None
        candidates = []
        for path in (self.work_dir / "snapshots").glob("state-*.pb"):
            try:
                position = int(path.stem.split("-", 1)[1])
            except ValueError:
                continue
            if at is None or position <= at:
                candidates.append((position, path))
        for position, path in sorted(candidates, reverse=True):
            try:
                snapshot = state_pb2.StateSnapshot.FromString(path.read_bytes())
            except (OSError, DecodeError):
                continue  # half written, or removed meanwhile: an older one will do
            if snapshot.state.position != position:
                continue
            return canonical.from_proto(snapshot.state), snapshot.chain_hash
        return None

    def batches(self, first: int = 1, last: int | None = None) -> Iterator[list[Record]]:
        segments = self._segments
        index = max((i for i, (start, _) in enumerate(segments) if start <= first), default=None)
        if index is None:
            raise MissingPositions(
                f"the archive in {self.archive_dir} starts at position {segments[0][0]}: positions "
                f"{first}..{segments[0][0] - 1} are missing (this master installed a snapshot and has "
                "not fetched them from a peer yet; replay another master)", first, segments[0][0] - 1)
        expected = first
        for i in range(index, len(segments)):
            start, path = segments[i]
            if start > expected:
                raise MissingPositions(
                    f"the archive is missing positions {expected}..{start - 1} (before {path.name}); "
                    "replay another master", expected, start - 1)
            is_last = i == len(segments) - 1
            for batch in self._read_segment(path, start, expected, last, is_last):
                yield batch
                expected = batch[-1][0] + 1
            if last is not None and expected > last:
                return
            if i + 1 < len(segments) and segments[i + 1][0] < expected:
                raise CorruptInput(f"segments {path.name} and {segments[i + 1][1].name} overlap "
                                   f"(position {segments[i + 1][0]})", segments[i + 1][0])
        if last is not None and expected <= last:
            raise TruncatedInput(f"the archive ends at position {expected - 1}, before position {last}", expected)

    @staticmethod
    def _read_segment(path: Path, start: int, first: int, last: int | None, is_last: bool) -> Iterator[list[Record]]:
        try:
            data = path.read_bytes()
        except OSError as e:
            raise SourceUnavailable(f"cannot read {path}: {e.strerror}") from None
        size = len(data)
        offset, position = SEGMENT_HEADER.size, start
        unpack_record, unpack_body, crc32 = RECORD_HEADER.unpack_from, BODY_HEADER.unpack_from, zlib.crc32
        record_header, body_header = RECORD_HEADER.size, BODY_HEADER.size
        view = memoryview(data)
        batch: list[Record] = []
        while offset < size:
            if last is not None and position > last:
                break
            body = offset + record_header
            if body > size:
                raise TruncatedInput(_torn(path, position, offset, is_last), position)
            length, crc = unpack_record(data, offset)
            end = body + length
            if length < body_header or end > size:
                raise TruncatedInput(_torn(path, position, offset, is_last), position)
            if position < first:  # before the wanted range: skip without checking
                offset, position = end, position + 1
                continue
            if crc32(view[body:end]) != crc:
                raise CorruptInput(f"{path.name}: checksum mismatch in the record at position {position} "
                                   f"(offset {offset})", position)
            record_position, _, stored = unpack_body(data, body)
            if record_position != position:
                raise OutOfOrder(f"{path.name}: the record after position {position - 1} claims position "
                                 f"{record_position} (offset {offset})", position)
            batch.append((position, data[body + body_header:end], stored))
            if len(batch) >= BATCH:
                yield batch
                batch = []
            offset, position = end, position + 1
        if batch:
            yield batch


def _torn(path: Path, position: int, offset: int, is_last: bool) -> str:
    where = f"{path.name} ends inside the record at position {position} (offset {offset})"
    if is_last:
        return (f"{where}: an append cut short by a crash, or one being written now (the master "
                "drops a torn tail when it restarts; replay a live master over HTTP instead)")
    return f"{where}, and a later segment follows: the archive is corrupt"


# -- a live master -------------------------------------------------------------------------------

class HttpSource(Source):
    def __init__(self, url: str):
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme != "http" or not parsed.hostname:
            raise SourceUnavailable(f"bad master URL {url!r}: expected http://HOST:PORT")
        self.host, self.port = parsed.hostname, parsed.port or 80
        self.description = f"http://{self.host}:{self.port}"
        self._conn: http.client.HTTPConnection | None = None

    def _get(self, path: str, params: dict) -> tuple[int, bytes]:
        target = f"{path}?{urllib.parse.urlencode(params)}"
        for attempt in (1, 2):  # one retry on a dropped keep-alive connection
            if self._conn is None:
                self._conn = http.client.HTTPConnection(self.host, self.port, timeout=HTTP_TIMEOUT_S)
            try:
                self._conn.request("GET", target)
                response = self._conn.getresponse()
                return response.status, response.read()
            except (OSError, http.client.HTTPException) as e:
                self.close()
                if attempt == 2:
                    raise SourceUnavailable(f"cannot read {self.description}{path}: {e}") from None
        raise AssertionError("unreachable")

    def last_position(self) -> int:
        status, body = self._get(ARCHIVE_ENTRIES_PATH, {"from": str(2**63 - 1)})
        info = _json(body)
        if status == 416 and isinstance(info.get("last_position"), int):
            return info["last_position"]
        raise SourceUnavailable(f"{self.description} did not say how far its archive reaches "
                                f"({status}: {info.get('error', body[:200])})")

    def batches(self, first: int = 1, last: int | None = None) -> Iterator[list[Record]]:
        end = self.last_position() if last is None else last
        position = first
        while position <= end:
            status, body = self._get(ARCHIVE_ENTRIES_PATH, {"from": str(position), "to": str(end)})
            if status == 416:
                info = _json(body)
                raise TruncatedInput(f"{self.description}'s archive ends at position "
                                     f"{info.get('last_position', position - 1)}, before position {end}", position)
            if status == 404:
                info = _json(body)
                if "missing_from" in info:
                    raise MissingPositions(f"{self.description}'s archive is missing positions "
                                           f"{info['missing_from']}..{info.get('missing_to')}; replay another master",
                                           info["missing_from"], info.get("missing_to"))
                raise SourceUnavailable(f"{self.description}: {info.get('error', 'not found')}")
            if status != 200:
                raise SourceUnavailable(f"{self.description} answered {status}: {_json(body).get('error', body[:200])}")
            try:
                raws = recordio.decode_all(body)
            except recordio.RecordIOError as e:
                raise CorruptInput(f"{self.description} sent a broken stream from position {position}: {e}",
                                   position) from None
            if not raws:
                raise CorruptInput(f"{self.description} sent no record from position {position}", position)
            batch = []
            for raw in raws:
                try:
                    entry = log_pb2.ArchivedEntry.FromString(raw)
                except DecodeError:
                    raise CorruptInput(f"{self.description} sent an undecodable record at position {position}",
                                       position) from None
                if entry.position != position:
                    raise OutOfOrder(f"{self.description} sent position {entry.position} where {position} was due",
                                     position)
                batch.append((position, entry.payload, entry.hash or None))
                position += 1
            yield batch

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _json(body: bytes) -> dict:
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


# -- the Kafka topic -----------------------------------------------------------------------------

def parse_kafka_url(url: str) -> tuple[str, str]:
    """kafka://HOST:PORT[,HOST:PORT...][/TOPIC] -> (bootstrap servers, topic)."""
    rest = url[len("kafka://"):]
    servers, _, topic = rest.partition("/")
    if not servers or any(not s.rpartition(":")[2].isdigit() for s in servers.split(",")):
        raise SourceUnavailable(f"bad Kafka URL {url!r}: expected kafka://HOST:PORT/TOPIC")
    return servers, topic or DEFAULT_TOPIC


class KafkaSource(Source):
    def __init__(self, bootstrap: str, topic: str = DEFAULT_TOPIC, idle_polls: int = KAFKA_IDLE_POLLS):
        self.bootstrap, self.topic, self.idle_polls = bootstrap, topic, idle_polls
        self.description = f"kafka://{bootstrap}/{topic}"
        self.duplicates = 0  # records dropped as repeats of a position already read

    @classmethod
    def from_url(cls, url: str) -> KafkaSource:
        return cls(*parse_kafka_url(url))

    def batches(self, first: int = 1, last: int | None = None) -> Iterator[list[Record]]:
        """Runs the async reader on a private event loop (aiokafka is asyncio only)."""
        loop = asyncio.new_event_loop()
        reader = self._read(first, last)
        try:
            while True:
                try:
                    batch = loop.run_until_complete(reader.__anext__())
                except StopAsyncIteration:
                    return
                yield batch
        finally:
            loop.run_until_complete(reader.aclose())
            loop.close()

    async def _read(self, first: int, last: int | None):
        from aiokafka import AIOKafkaConsumer, TopicPartition
        from aiokafka.errors import KafkaError

        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
            fetch_max_wait_ms=KAFKA_POLL_MS, request_timeout_ms=int(KAFKA_CONNECT_TIMEOUT_S * 1000) + 5000,
            max_partition_fetch_bytes=8 << 20, fetch_max_bytes=16 << 20,
        )
        try:
            try:
                await asyncio.wait_for(consumer.start(), KAFKA_CONNECT_TIMEOUT_S)
                topics = await asyncio.wait_for(consumer.topics(), KAFKA_CONNECT_TIMEOUT_S)
            except (KafkaError, OSError, TimeoutError) as e:
                raise SourceUnavailable(f"cannot reach Kafka at {self.bootstrap}: {e or type(e).__name__}") from None
            if self.topic not in topics:
                raise SourceUnavailable(f"{self.description}: no such topic")
            tp = TopicPartition(self.topic, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            expected, idle = 1, 0
            recent: dict[int, bytes | None] = {}  # position -> hash, to check repeats
            while True:
                try:
                    fetched = await consumer.getmany(tp, timeout_ms=KAFKA_POLL_MS, max_records=BATCH)
                except KafkaError as e:
                    raise SourceUnavailable(f"{self.description}: {e}") from None
                messages = fetched.get(tp, [])
                if not messages:
                    idle += 1
                    if idle >= self.idle_polls:
                        break
                    continue
                idle = 0
                batch = []
                for message in messages:
                    position, _, stored = _kafka_headers(message, self.description)
                    if position < expected:
                        if position in recent and stored is not None and recent[position] not in (None, stored):
                            raise CorruptInput(f"{self.description}: position {position} appears twice with "
                                               f"different contents (again at offset {message.offset})", position)
                        self.duplicates += 1
                        continue
                    if position > expected:
                        raise MissingPositions(f"{self.description}: positions {expected}..{position - 1} are "
                                               f"missing (offset {message.offset} holds position {position})",
                                               expected, position - 1)
                    if message.value is None:
                        raise CorruptInput(f"{self.description}: position {position} has no value", position)
                    recent[position] = stored
                    if len(recent) > 100_000:
                        for old in list(recent)[:50_000]:
                            del recent[old]
                    if position >= first:
                        batch.append((position, message.value, stored))
                    expected += 1
                    if last is not None and position >= last:
                        break
                if batch:
                    yield batch
                if last is not None and expected > last:
                    return
            if last is not None and expected <= last:
                raise TruncatedInput(f"{self.description} ends at position {expected - 1}, before position {last}",
                                     expected)
        finally:
            with contextlib.suppress(Exception):  # closing a consumer that may never have connected
                await asyncio.wait_for(consumer.stop(), 5)


def _kafka_headers(message, description: str) -> tuple[int, str, bytes | None]:
    headers = dict(message.headers or ())
    raw = headers.get("position")
    try:
        position = int(raw)
    except (TypeError, ValueError):
        raise CorruptInput(f"{description}: the message at offset {message.offset} has no valid 'position' "
                           f"header ({raw!r})") from None
    stored = headers.get("hash")
    if stored is not None:
        try:
            stored = bytes.fromhex(stored.decode())
        except ValueError:
            raise CorruptInput(f"{description}: position {position} has a malformed 'hash' header", position) from None
    return position, (headers.get("type") or b"").decode(errors="replace"), stored


__all__ = ["GENESIS_HASH", "ArchiveSource", "HttpSource", "KafkaSource", "ReplayError", "Source", "open_source"]
