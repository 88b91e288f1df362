"""Every source gives the same history and the same digest; bad input is a ReplayError
naming the position."""

from __future__ import annotations

import asyncio
import struct
import zlib
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiohttp import web

from mesos_es.core import digest as canonical
from mesos_es.log.archive import Archive
from mesos_es.master.export import headers
from mesos_es.master.http import archive as archive_http
from mesos_es.master.http.common import MASTER
from mesos_es.pb import events_pb2, state_pb2
from mesos_es.replay.errors import (
    ChainBroken,
    CorruptInput,
    MissingPositions,
    OutOfOrder,
    TruncatedInput,
)
from mesos_es.replay.fold import Fold, Target, start
from mesos_es.replay.sources import ArchiveSource, HttpSource, KafkaSource, open_source
from tests.replay.conftest import synthetic, write_archive
from tests.support.ports import free_port_block

COUNT = 3000


def fold_all(source, target=None, fold=None) -> Fold:
    fold = fold or Fold()
    fold.fold_to(source, target or Target())
    return fold


def test_archive_replay_gives_the_masters_digest(tmp_path):
    events, position, digest = synthetic(COUNT)
    work = write_archive(tmp_path / "m", events, segment_bytes=64 << 10)  # several segments
    assert len(list((work / "archive").glob("*.seg"))) > 3
    source = ArchiveSource(work)
    assert source.last_position() == position
    fold = fold_all(source)
    assert (fold.position, fold.digest()) == (position, digest)
    # a position in the middle, by position and by time
    middle = fold_all(ArchiveSource(work), Target(position=1234))
    stamp = events_pb2.Event.FromString(events[1233]).timestamp_ms
    by_time = fold_all(ArchiveSource(work), Target(time_ms=stamp))
    assert by_time.position >= 1234 and by_time.last_timestamp_ms == stamp
    assert canonical.digest(middle.state) == fold_all(ArchiveSource(work), Target(position=1234)).digest()


def test_an_observer_sees_the_fold_as_of_its_event(tmp_path):
    """The fold keeps its counters in locals while it runs (for speed): an observer still sees
    the event count, chain hash and last timestamp of the event it is called for."""
    from mesos_es.log.chain import GENESIS_HASH, chain_hash

    events, _, _ = synthetic(COUNT)
    work = write_archive(tmp_path / "m", events[:500])
    fold, seen = Fold(), []
    fold.fold_to(ArchiveSource(work), Target(position=400),
                 observer=lambda position, event, outcome, state: seen.append(
                     (position, fold.events, fold.chain_hash, fold.last_timestamp_ms)))
    expected, h, stamp = [], GENESIS_HASH, 0
    for position, payload in enumerate(events[:400], start=1):
        h = chain_hash(h, position, payload)
        stamp = events_pb2.Event.FromString(payload).timestamp_ms or stamp
        expected.append((position, position, h, stamp))
    assert seen == expected
    assert (fold.events, fold.chain_hash, fold.last_timestamp_ms) == expected[-1][1:]
    fold.fold_to(ArchiveSource(work))  # and on from there
    assert fold.events == 500 and fold.position == 500


def test_a_snapshot_is_a_starting_point(tmp_path):
    events, _, _ = synthetic(COUNT)
    work = write_archive(tmp_path / "m", events)
    at_1500 = fold_all(ArchiveSource(work), Target(position=1500))
    (work / "snapshots").mkdir()
    (work / "snapshots" / f"state-{1500:020d}.pb").write_bytes(state_pb2.StateSnapshot(
        state=canonical.to_proto(at_1500.state), chain_hash=at_1500.chain_hash).SerializeToString())
    source = ArchiveSource(work)
    fold = start(source, Target(position=2500))
    assert fold.position == 1500
    fold_all(source, Target(position=2500), fold)
    assert fold.digest() == fold_all(ArchiveSource(work), Target(position=2500)).digest()
    assert start(source, Target(position=1000)).position == 0  # no snapshot below 1000


def test_target_parsing():
    assert Target.parse("42") == Target(position=42)
    assert Target.parse("2026-11-23T12:00:00Z").time_ms == Target.parse("2026-11-23T12:00:00").time_ms
    with pytest.raises(Exception, match="neither a position"):
        Target.parse("yesterday")


def _records(path: Path):
    """(offset, length) of each record in a segment file."""
    data = path.read_bytes()
    offset, out = 8 + 8 + 32 + 8, []
    while offset < len(data):
        length = struct.unpack_from("<I", data, offset)[0]
        out.append((offset, length))
        offset += 8 + length
    return out


def _rewrite(path: Path, index: int, change) -> None:
    """Replace record `index`'s body by change(body) with a valid crc."""
    data = bytearray(path.read_bytes())
    offset, length = _records(path)[index]
    body = change(bytes(data[offset + 8: offset + 8 + length]))
    assert len(body) == length
    data[offset: offset + 8 + length] = struct.pack("<II", length, zlib.crc32(body)) + body
    path.write_bytes(bytes(data))


@pytest.fixture
def small(tmp_path) -> Path:
    events, _, _ = synthetic(COUNT)
    return write_archive(tmp_path / "m", events[:300])


def _segment(work: Path) -> Path:
    return min((work / "archive").glob("*.seg"))


def test_a_checksum_mismatch_names_the_position(small):
    path = _segment(small)
    data = bytearray(path.read_bytes())
    offset, length = _records(path)[99]
    data[offset + 8 + length - 1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptInput, match="checksum mismatch in the record at position 100") as e:
        fold_all(ArchiveSource(small))
    assert e.value.position == 100
    assert fold_all(ArchiveSource(small), Target(position=99)).position == 99  # before it: fine


def test_a_torn_tail_names_the_position(small):
    path = _segment(small)
    offset, _ = _records(path)[-1]
    path.write_bytes(path.read_bytes()[: offset + 20])
    with pytest.raises(TruncatedInput, match="inside the record at position 300") as e:
        fold_all(ArchiveSource(small))
    assert e.value.position == 300


def test_a_record_out_of_order_names_the_position(small):
    _rewrite(_segment(small), 49, lambda body: struct.pack(">Q", 77) + body[8:])
    with pytest.raises(OutOfOrder, match="after position 49 claims position 77") as e:
        fold_all(ArchiveSource(small))
    assert e.value.position == 50


def test_a_broken_chain_names_the_position(small):
    _rewrite(_segment(small), 199, lambda body: body[:16] + bytes(32) + body[48:])
    with pytest.raises(ChainBroken, match="hash chain broken at position 200") as e:
        fold_all(ArchiveSource(small))
    assert e.value.position == 200
    lenient = Fold(strict_chain=False)
    fold_all(ArchiveSource(small), fold=lenient)
    assert [b.position for b in lenient.breaks] == [200]  # one break, not one per later record


def test_a_gap_in_the_archive_names_the_positions(tmp_path):
    events, _, _ = synthetic(COUNT)
    work = write_archive(tmp_path / "m", events, segment_bytes=64 << 10)
    segments = sorted((work / "archive").glob("*.seg"))
    segments[1].unlink()
    first_missing = int(segments[1].stem)
    with pytest.raises(MissingPositions, match=f"missing positions {first_missing}\\.\\.") as e:
        fold_all(ArchiveSource(work))
    assert e.value.position == first_missing


def test_a_cluster_dir_or_nothing_is_refused_clearly(tmp_path):
    (tmp_path / "c" / "master-1" / "archive").mkdir(parents=True)
    with pytest.raises(Exception, match="cluster's work dir"):
        open_source(str(tmp_path / "c"))
    with pytest.raises(Exception, match="holds no archive"):
        open_source(str(tmp_path / "nothing"))


async def test_a_live_master_over_http_gives_the_same_digest(tmp_path):
    events, position, digest = synthetic(COUNT)
    work = write_archive(tmp_path / "m", events)
    archive = Archive(work / "archive", durable=False)
    app = web.Application()
    app[MASTER] = SimpleNamespace(archive=archive)
    archive_http.add_routes(app)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port_block(1, (0,))
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        source = HttpSource(f"http://127.0.0.1:{port}")
        fold = await asyncio.to_thread(fold_all, source)
        assert (fold.position, fold.digest()) == (position, digest)
        middle = await asyncio.to_thread(fold_all, HttpSource(f"http://127.0.0.1:{port}"), Target(position=777))
        assert middle.position == 777
        with pytest.raises(TruncatedInput, match="ends at position"):
            await asyncio.to_thread(fold_all, HttpSource(f"http://127.0.0.1:{port}"), Target(position=position + 5))
    finally:
        await runner.cleanup()
        archive.close()


async def _produce(address: str, topic: str, records) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=address, acks="all")
    await producer.start()
    try:
        futures = [await producer.send(topic, value=payload, partition=0, headers=headers(position, payload, hash_))
                   for position, payload, hash_ in records]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def _chained(events):
    from mesos_es.log.chain import GENESIS_HASH, chain_hash

    out, h = [], GENESIS_HASH
    for position, payload in enumerate(events, start=1):
        h = chain_hash(h, position, payload)
        out.append((position, payload, h))
    return out


async def test_the_kafka_topic_gives_the_same_digest_and_drops_repeats(broker):
    events, position, digest = synthetic(COUNT)
    records = _chained(events)
    # a producer retry and a leader change both repeat positions: readers drop them
    await _produce(broker.address, "t1", records[:1000] + records[990:1500] + records[1500:])
    source = KafkaSource(broker.address, "t1")
    fold = await asyncio.to_thread(fold_all, source)
    assert (fold.position, fold.digest()) == (position, digest)
    assert source.duplicates == 10
    # a gap, and a repeat that differs, are errors naming the position
    await _produce(broker.address, "t2", records[:100] + records[105:200])
    with pytest.raises(MissingPositions, match="positions 101..105 are missing"):
        await asyncio.to_thread(fold_all, KafkaSource(broker.address, "t2"))
    forged = (100, records[100][1], records[100][2])
    await _produce(broker.address, "t3", records[:150] + [forged])
    with pytest.raises(CorruptInput, match="position 100 appears twice with different contents"):
        await asyncio.to_thread(fold_all, KafkaSource(broker.address, "t3"))


def test_a_snapshot_that_disagrees_with_the_archive_is_named(tmp_path):
    events, _, _ = synthetic(COUNT)
    work = write_archive(tmp_path / "m", events)
    at_500 = fold_all(ArchiveSource(work), Target(position=500))
    (work / "snapshots").mkdir()
    (work / "snapshots" / f"state-{500:020d}.pb").write_bytes(state_pb2.StateSnapshot(
        state=canonical.to_proto(at_500.state), chain_hash=bytes(32)).SerializeToString())
    source = ArchiveSource(work)
    with pytest.raises(ChainBroken, match="snapshot at position 500 does not chain onto"):
        fold_all(source, Target(position=600), start(source, Target(position=600)))
