"""The archive: every committed entry of the replicated log, kept forever, hash-chained.

pysyncobj compacts its journal; the archive is where the full history lives, for the fold
after a restart, for peers that missed entries, and for auditors (replay). It is a folder of
segment files, each a contiguous run of positions:

    segment  = header record*
    header   = "MESARCH1" | first position (u64 BE) | previous hash (32 B) | previous raft index (u64 BE)
    record   = body length (u32 LE) | crc32(body) (u32 LE) | body
    body     = position (u64 BE) | raft index (u64 BE) | chain hash (32 B) | payload

named `<first position, 20 digits>.seg`. Segments are normally back to back; a replica that
installed a Raft snapshot from its leader has a gap until it fetched the missing entries
from a peer (`fill`), checked against the chain on both sides.

Appends come from pysyncobj's tick thread, reads and fills from the event loop's worker
threads: every method takes the one lock.
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from array import array
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path

import structlog

from mesos_es.log.chain import GENESIS_HASH, chain_hash

log = structlog.get_logger(__name__)

SEGMENT_MAGIC = b"MESARCH1"
SEGMENT_HEADER = struct.Struct(">8sQ32sQ")
RECORD_HEADER = struct.Struct("<II")
BODY_HEADER = struct.Struct(">QQ32s")
DEFAULT_SEGMENT_BYTES = 64 << 20


@dataclass(frozen=True)
class ArchivedRecord:
    position: int
    raft_index: int
    hash: bytes
    payload: bytes


class ArchiveError(Exception):
    pass


class ArchiveCorrupt(ArchiveError):
    """The files contradict themselves (bad checksum, broken chain, overlapping segments)."""


class ArchiveGap(ArchiveError):
    """Positions first..last are missing here (to be fetched from a peer)."""

    def __init__(self, first: int, last: int):
        super().__init__(f"archive is missing positions {first}..{last}")
        self.first = first
        self.last = last


class ChainMismatch(ArchiveError):
    """Records offered to fill a gap do not chain to the entries around it."""


def encode_record(position: int, raft_index: int, hash_: bytes, payload: bytes) -> bytes:
    body = BODY_HEADER.pack(position, raft_index, hash_) + payload
    return RECORD_HEADER.pack(len(body), zlib.crc32(body)) + body


def fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _Segment:
    def __init__(self, path: Path, first: int, prev_hash: bytes, prev_raft_index: int, fd: int):
        self.path = path
        self.first = first
        self.prev_hash = prev_hash
        self.prev_raft_index = prev_raft_index
        self.fd = fd
        self.offsets = array("Q")  # file offset of each record
        self.size = SEGMENT_HEADER.size
        self.last_hash = prev_hash
        self.last_raft_index = prev_raft_index

    @property
    def last(self) -> int:
        return self.first + len(self.offsets) - 1

    def end_offset(self, position: int) -> int:
        index = position - self.first + 1
        return self.offsets[index] if index < len(self.offsets) else self.size


class Archive:
    def __init__(self, directory: Path, durable: bool = True, segment_bytes: int = DEFAULT_SEGMENT_BYTES):
        self.directory = Path(directory)
        self.durable = durable
        self.segment_bytes = segment_bytes
        self._lock = threading.RLock()
        self._segments: list[_Segment] = []
        self._firsts: list[int] = []
        self._dirty = False
        self.directory.mkdir(parents=True, exist_ok=True)
        self._load()

    # -- reading the files ------------------------------------------------------------

    def _load(self) -> None:
        paths = sorted(self.directory.glob("*.seg"))
        for i, path in enumerate(paths):
            segment = self._scan(path, is_last=(i == len(paths) - 1))
            if segment is not None:
                self._insert(segment)
        for before, after in zip(self._segments, self._segments[1:]):
            if after.first <= before.last:
                raise ArchiveCorrupt(f"segments {before.path.name} and {after.path.name} overlap")
            if after.first == before.last + 1 and after.prev_hash != before.last_hash:
                raise ArchiveCorrupt(f"hash chain broken between {before.path.name} and {after.path.name}")
        for first, last in self.gaps():
            log.warning("archive_gap_found", first=first, last=last)

    def _scan(self, path: Path, is_last: bool) -> _Segment | None:
        data = path.read_bytes()
        if len(data) < SEGMENT_HEADER.size:
            if is_last:  # crashed while creating it
                log.warning("archive_segment_removed", file=path.name, reason="incomplete header")
                path.unlink()
                return None
            raise ArchiveCorrupt(f"{path.name}: incomplete header")
        magic, first, prev_hash, prev_raft_index = SEGMENT_HEADER.unpack_from(data)
        if magic != SEGMENT_MAGIC or path.name != f"{first:020d}.seg":
            raise ArchiveCorrupt(f"{path.name}: not an archive segment")
        segment = _Segment(path, first, prev_hash, prev_raft_index, -1)
        offset, position, hash_ = SEGMENT_HEADER.size, first, prev_hash
        problem = None
        while offset < len(data):
            problem = self._check_record(data, offset, position, hash_)
            if problem:
                break
            length = RECORD_HEADER.unpack_from(data, offset)[0]
            _, raft_index, hash_ = BODY_HEADER.unpack_from(data, offset + RECORD_HEADER.size)
            segment.offsets.append(offset)
            segment.last_raft_index = raft_index
            offset += RECORD_HEADER.size + length
            position += 1
        if problem:
            if not is_last:
                raise ArchiveCorrupt(f"{path.name}: {problem} at position {position} (offset {offset})")
            # An append that was not yet synced when the process died; its entry is still
            # in the Raft journal (or on the peers) and comes back when re-applied.
            log.warning(
                "archive_tail_truncated", file=path.name, position=position,
                dropped_bytes=len(data) - offset, reason=problem,
            )
            with open(path, "r+b") as f:
                f.truncate(offset)
                os.fsync(f.fileno())
        segment.size = offset
        segment.last_hash = hash_
        segment.fd = os.open(path, os.O_RDWR if is_last else os.O_RDONLY)
        return segment

    @staticmethod
    def _check_record(data: bytes, offset: int, position: int, prev_hash: bytes) -> str | None:
        if offset + RECORD_HEADER.size > len(data):
            return "incomplete record header"
        length, crc = RECORD_HEADER.unpack_from(data, offset)
        start = offset + RECORD_HEADER.size
        if length < BODY_HEADER.size or start + length > len(data):
            return "incomplete record"
        body = data[start : start + length]
        if zlib.crc32(body) != crc:
            return "checksum mismatch"
        record_position, _, hash_ = BODY_HEADER.unpack_from(body)
        if record_position != position:
            return f"record claims position {record_position}"
        if chain_hash(prev_hash, position, body[BODY_HEADER.size :]) != hash_:
            return "hash chain broken"
        return None

    def _insert(self, segment: _Segment) -> None:
        i = bisect_right(self._firsts, segment.first)
        self._segments.insert(i, segment)
        self._firsts.insert(i, segment.first)

    # -- state of the history -----------------------------------------------------------

    @property
    def _head(self) -> _Segment | None:
        return self._segments[-1] if self._segments else None

    @property
    def last_position(self) -> int:
        with self._lock:
            head = self._head
            return head.last if head else 0

    @property
    def last_hash(self) -> bytes:
        with self._lock:
            head = self._head
            return head.last_hash if head else GENESIS_HASH

    @property
    def last_raft_index(self) -> int:
        """Raft index of the last archived entry: entries up to it are never archived again."""
        with self._lock:
            head = self._head
            return head.last_raft_index if head else 0

    def gaps(self) -> list[tuple[int, int]]:
        """Missing position ranges below the last position, oldest first."""
        with self._lock:
            gaps, expected = [], 1
            for segment in self._segments:
                if segment.first > expected:
                    gaps.append((expected, segment.first - 1))
                expected = max(expected, segment.last + 1)
            return gaps

    def hash_at(self, position: int) -> bytes:
        """The chain hash at `position` (GENESIS_HASH at 0), also known just before a segment."""
        with self._lock:
            if position == 0:
                return GENESIS_HASH
            for segment in self._segments:
                if segment.first == position + 1:
                    return segment.prev_hash
            return self.read(position, position)[0].hash

    # -- writing ------------------------------------------------------------------------

    def append(self, raft_index: int, payloads: list[bytes]) -> list[ArchivedRecord]:
        """Archive the events of one Raft entry at the next positions."""
        with self._lock:
            head = self._head
            if head is None:
                head = self._new_segment(1, GENESIS_HASH, 0)
            elif head.size >= self.segment_bytes and payloads:
                self._sync_locked()
                head = self._new_segment(head.last + 1, head.last_hash, head.last_raft_index)
            if not payloads:
                return []
            records, chunks, offset, hash_ = [], [], head.size, head.last_hash
            for position, payload in enumerate(payloads, start=head.last + 1):
                hash_ = chain_hash(hash_, position, payload)
                chunk = encode_record(position, raft_index, hash_, payload)
                head.offsets.append(offset)
                chunks.append(chunk)
                records.append(ArchivedRecord(position, raft_index, hash_, payload))
                offset += len(chunk)
            data = b"".join(chunks)
            written = 0
            while written < len(data):
                written += os.pwrite(head.fd, data[written:], head.size + written)
            head.size = offset
            head.last_hash = hash_
            head.last_raft_index = raft_index
            self._dirty = True
            return records

    def skip_to(self, position: int, hash_: bytes, raft_index: int) -> None:
        """Record that the history reaches `position` with chain hash `hash_`, and that Raft
        entries up to `raft_index` are accounted for (a snapshot installed from the leader).
        Entries this archive lacks up to `position` become a gap to fill from a peer."""
        with self._lock:
            head = self._head
            if head is not None and head.last >= position:
                if self.hash_at(position) != hash_:
                    raise ArchiveCorrupt(f"archive disagrees with the leader's snapshot at position {position}")
                head.last_raft_index = max(head.last_raft_index, raft_index)
                return
            self._sync_locked()
            self._new_segment(position + 1, hash_, raft_index)
            log.info("archive_skipped_to", position=position, raft_index=raft_index, gaps=self.gaps())

    def fill(self, records: list[ArchivedRecord]) -> None:
        """Write records fetched from a peer into a gap, after checking they chain on."""
        if not records:
            return
        with self._lock:
            first, last = records[0].position, records[-1].position
            gap = next(((a, b) for a, b in self.gaps() if a <= first <= b), None)
            if gap is None or last > gap[1] or first != gap[0]:
                raise ChainMismatch(f"positions {first}..{last} do not start a gap ({self.gaps()})")
            i = bisect_right(self._firsts, first)
            before = self._segments[i - 1] if i > 0 else None
            after = self._segments[i]
            hash_ = before.last_hash if before else GENESIS_HASH
            prev_hash = hash_
            for expected, record in enumerate(records, start=first):
                hash_ = chain_hash(hash_, expected, record.payload)
                if record.position != expected or record.hash != hash_:
                    raise ChainMismatch(f"record at position {expected} does not chain on")
            if last == after.first - 1 and hash_ != after.prev_hash:
                raise ChainMismatch(f"records end at {last} with a hash the next segment does not continue")
            prev_raft_index = before.last_raft_index if before else 0
            segment = self._write_segment(first, prev_hash, prev_raft_index, records)
            self._insert(segment)
            log.info("archive_gap_filled", first=first, last=last, gaps=self.gaps())

    def _new_segment(self, first: int, prev_hash: bytes, prev_raft_index: int) -> _Segment:
        path = self.directory / f"{first:020d}.seg"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        os.pwrite(fd, SEGMENT_HEADER.pack(SEGMENT_MAGIC, first, prev_hash, prev_raft_index), 0)
        if self.durable:
            os.fsync(fd)
            fsync_directory(self.directory)
        if self._head is not None:  # the old head is sealed: reopen it read-only
            old = self._head
            os.close(old.fd)
            old.fd = os.open(old.path, os.O_RDONLY)
        segment = _Segment(path, first, prev_hash, prev_raft_index, fd)
        self._insert(segment)
        return segment

    def _write_segment(self, first, prev_hash, prev_raft_index, records) -> _Segment:
        path = self.directory / f"{first:020d}.seg"
        tmp = path.with_suffix(".seg.tmp")
        segment = _Segment(path, first, prev_hash, prev_raft_index, -1)
        chunks = [SEGMENT_HEADER.pack(SEGMENT_MAGIC, first, prev_hash, prev_raft_index)]
        for record in records:
            segment.offsets.append(segment.size)
            chunk = encode_record(record.position, record.raft_index, record.hash, record.payload)
            chunks.append(chunk)
            segment.size += len(chunk)
            segment.last_raft_index = record.raft_index
        segment.last_hash = records[-1].hash
        with open(tmp, "wb") as f:
            f.write(b"".join(chunks))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_directory(self.directory)
        segment.fd = os.open(path, os.O_RDONLY)
        return segment

    def sync(self) -> None:
        with self._lock:
            self._sync_locked()

    def _sync_locked(self) -> None:
        if self._dirty and self._head is not None:
            if self.durable:
                os.fdatasync(self._head.fd)
            self._dirty = False

    def close(self) -> None:
        with self._lock:
            self._sync_locked()
            for segment in self._segments:
                if segment.fd >= 0:
                    os.close(segment.fd)
                    segment.fd = -1

    # -- reading ------------------------------------------------------------------------

    def read(self, first: int, last: int, max_bytes: int = 16 << 20) -> list[ArchivedRecord]:
        """Records first..last, stopping before max_bytes of records (the first record is
        returned whatever its size).

        Raises ArchiveGap for missing positions and ValueError outside 1..last_position."""
        with self._lock:
            if first < 1 or last < first or last > self.last_position:
                raise ValueError(f"positions {first}..{last} outside 1..{self.last_position}")
            records: list[ArchivedRecord] = []
            position, budget = first, max_bytes
            while position <= last:
                i = bisect_right(self._firsts, position) - 1
                segment = self._segments[i] if i >= 0 else None
                if segment is None or position > segment.last:
                    next_first = self._firsts[i + 1] if i + 1 < len(self._firsts) else last + 1
                    raise ArchiveGap(position, next_first - 1)
                end = min(last, segment.last)
                start_offset = segment.offsets[position - segment.first]
                if segment.end_offset(end) - start_offset > budget:
                    # the last record that ends within the budget
                    j = bisect_right(segment.offsets, start_offset + budget,
                                     position - segment.first + 1, end - segment.first + 1)
                    end = segment.first + j - 2
                    if end < position:
                        if records:
                            break
                        end = position
                data = os.pread(segment.fd, segment.end_offset(end) - start_offset, start_offset)
                records.extend(self._parse(data, segment.path.name, position, end))
                budget -= len(data)
                position = end + 1
                if budget <= 0:
                    break
            return records

    @staticmethod
    def _parse(data: bytes, name: str, first: int, last: int) -> list[ArchivedRecord]:
        records, offset = [], 0
        for position in range(first, last + 1):
            length, crc = RECORD_HEADER.unpack_from(data, offset)
            start = offset + RECORD_HEADER.size
            body = data[start : start + length]
            if zlib.crc32(body) != crc:
                raise ArchiveCorrupt(f"{name}: checksum mismatch at position {position}")
            record_position, raft_index, hash_ = BODY_HEADER.unpack_from(body)
            if record_position != position:
                raise ArchiveCorrupt(f"{name}: expected position {position}, found {record_position}")
            records.append(ArchivedRecord(position, raft_index, hash_, body[BODY_HEADER.size :]))
            offset = start + length
        return records
