"""The archive: hash-chained history that survives restarts, torn writes and gaps."""

import os

import pytest

from mesos_es.log.archive import (
    Archive,
    ArchiveCorrupt,
    ArchivedRecord,
    ArchiveGap,
    ChainMismatch,
)
from mesos_es.log.chain import GENESIS_HASH, chain_hash


def payloads(n, start=0):
    return [f"event-{i}".encode() for i in range(start, start + n)]


def test_positions_are_contiguous_across_raft_entries_and_hashes_chain(tmp_path):
    archive = Archive(tmp_path)
    first = archive.append(2, payloads(3))
    second = archive.append(5, payloads(2, 3))
    records = first + second
    assert [r.position for r in records] == [1, 2, 3, 4, 5]
    assert [r.raft_index for r in records] == [2, 2, 2, 5, 5]
    expected = GENESIS_HASH
    for r in records:
        expected = chain_hash(expected, r.position, r.payload)
        assert r.hash == expected
    assert archive.last_hash == expected and archive.last_raft_index == 5


def test_an_empty_raft_entry_takes_no_position(tmp_path):
    archive = Archive(tmp_path)
    archive.append(2, payloads(1))
    assert archive.append(3, []) == []
    assert archive.last_position == 1 and archive.last_raft_index == 2


def test_reopening_gives_back_the_same_history(tmp_path):
    archive = Archive(tmp_path)
    written = archive.append(2, payloads(10))
    archive.close()
    reopened = Archive(tmp_path)
    assert reopened.read(1, 10) == written
    assert reopened.last_raft_index == 2
    assert reopened.append(3, [b"more"])[0].position == 11


def test_segments_roll_over_and_reads_cross_them(tmp_path):
    archive = Archive(tmp_path, segment_bytes=200)
    for i in range(20):
        archive.append(i + 2, payloads(3, i * 3))
    assert len(list(tmp_path.glob("*.seg"))) > 3
    archive.close()
    reopened = Archive(tmp_path, segment_bytes=200)
    assert [r.payload for r in reopened.read(1, 60)] == payloads(60)


def test_reads_respect_the_byte_budget_but_return_at_least_one_record(tmp_path):
    archive = Archive(tmp_path)
    archive.append(2, [b"x" * 100] * 10)
    assert len(archive.read(1, 10, max_bytes=350)) == 2
    assert len(archive.read(1, 10, max_bytes=1)) == 1


def test_a_torn_tail_is_cut_off_on_open(tmp_path):
    archive = Archive(tmp_path)
    archive.append(2, payloads(5))
    archive.close()
    (segment,) = tmp_path.glob("*.seg")
    with open(segment, "r+b") as f:
        f.truncate(segment.stat().st_size - 3)  # the last record lost its end
    reopened = Archive(tmp_path)
    assert reopened.last_position == 4
    assert reopened.append(3, [b"again"])[0].position == 5


def test_garbage_after_the_last_record_is_cut_off(tmp_path):
    archive = Archive(tmp_path)
    archive.append(2, payloads(2))
    archive.close()
    (segment,) = tmp_path.glob("*.seg")
    with open(segment, "ab") as f:
        f.write(b"\0" * 64)  # what a power cut can leave behind
    assert Archive(tmp_path).last_position == 2


def test_a_damaged_record_in_a_sealed_segment_is_corruption_not_a_tail(tmp_path):
    archive = Archive(tmp_path, segment_bytes=100)
    for i in range(6):
        archive.append(i + 2, payloads(2, 2 * i))
    archive.close()
    first_segment = sorted(tmp_path.glob("*.seg"))[0]
    data = bytearray(first_segment.read_bytes())
    data[-1] ^= 0xFF
    first_segment.write_bytes(bytes(data))
    with pytest.raises(ArchiveCorrupt, match="checksum"):
        Archive(tmp_path, segment_bytes=100)


def test_a_record_whose_payload_was_altered_breaks_the_chain(tmp_path):
    archive = Archive(tmp_path)
    archive.append(2, [b"original", b"next"])
    archive.close()
    (segment,) = tmp_path.glob("*.seg")
    data = segment.read_bytes().replace(b"original", b"forgery!")
    segment.write_bytes(data)
    # The checksum is recomputable by a forger; the chain is what gives it away. The
    # damage is in the last segment, so it is treated as a torn tail and cut off.
    assert Archive(tmp_path).last_position == 0


def skipped_archive(tmp_path, source):
    """An archive that learned from a snapshot that history reaches position 6."""
    target = Archive(tmp_path / "target")
    target.append(2, [r.payload for r in source.read(1, 2)])
    target.skip_to(6, source.hash_at(6), raft_index=9)
    return target


def test_skipping_ahead_leaves_a_gap_that_reads_report(tmp_path):
    source = Archive(tmp_path / "source")
    source.append(2, payloads(8))
    target = skipped_archive(tmp_path, source)
    assert target.gaps() == [(3, 6)]
    assert target.last_raft_index == 9
    assert target.append(10, [source.read(7, 7)[0].payload])[0].hash == source.hash_at(7)
    with pytest.raises(ArchiveGap) as gap:
        target.read(1, 7)
    assert (gap.value.first, gap.value.last) == (3, 6)


def test_a_gap_is_filled_only_by_records_that_chain_on_both_sides(tmp_path):
    source = Archive(tmp_path / "source")
    source.append(2, payloads(8))
    target = skipped_archive(tmp_path, source)
    genuine = source.read(3, 6)
    forged = [ArchivedRecord(r.position, r.raft_index, r.hash, b"forged") for r in genuine]
    with pytest.raises(ChainMismatch):
        target.fill(forged)
    with pytest.raises(ChainMismatch):
        target.fill(genuine[1:])  # must start the gap
    target.fill(genuine[:2])  # a partial fill is fine
    target.fill(genuine[2:])
    assert target.gaps() == []
    assert target.read(1, 6) == source.read(1, 6)
    target.close()
    assert Archive(tmp_path / "target").gaps() == []


def test_skipping_to_a_position_already_held_checks_the_hash(tmp_path):
    archive = Archive(tmp_path)
    archive.append(2, payloads(3))
    archive.skip_to(2, archive.hash_at(2), raft_index=7)
    assert archive.last_raft_index == 7 and archive.gaps() == []
    with pytest.raises(ArchiveCorrupt):
        archive.skip_to(2, b"\1" * 32, raft_index=7)


def test_segments_that_overlap_are_corruption(tmp_path):
    archive = Archive(tmp_path)
    archive.append(2, payloads(3))
    archive.close()
    (segment,) = tmp_path.glob("*.seg")
    os.link(segment, tmp_path / f"{2:020d}.seg.bak")
    data = segment.read_bytes()
    # A copy named as if it started at position 2 is not a segment.
    (tmp_path / f"{2:020d}.seg").write_bytes(data)
    with pytest.raises(ArchiveCorrupt):
        Archive(tmp_path)
