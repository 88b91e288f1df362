"""A durable Raft journal for pysyncobj.

pysyncobj 0.3.17's FileJournal writes through an mmap that is never fsynced, so a replica
can acknowledge an entry it then loses. This journal keeps pysyncobj's interface but:

* appends are buffered and written + fdatasync'ed by `sync()`, which the node calls at the
  start of every tick and before every message it sends (so before a follower acknowledges
  entries and before the leader counts itself toward a commit);
* the term and vote are written with fsync before pysyncobj sends the vote (Raft §5.1);
* compaction rewrites the file atomically (temp file, fsync, rename, fsync directory);
* a torn tail (a write cut by a crash) is detected by checksum and cut off on open; only
  unsynced, hence unacknowledged, entries can be in it.

File format: "MESJRNL1", then records `len (u32 LE) | crc32 (u32 LE) | index (u64 LE) |
term (u64 LE) | command`. The meta file beside it is JSON: term, voted_for, commit_index.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import orjson
import structlog
from pysyncobj.journal import Journal

from mesos_es.log.archive import fsync_directory

log = structlog.get_logger(__name__)

MAGIC = b"MESJRNL1"
RECORD_HEADER = struct.Struct("<II")
ENTRY_HEADER = struct.Struct("<QQ")

Entry = tuple[bytes, int, int]  # (command, raft index, term), as pysyncobj stores them


class JournalCorrupt(Exception):
    pass


def _encode(command: bytes, index: int, term: int) -> bytes:
    body = ENTRY_HEADER.pack(index, term) + command
    return RECORD_HEADER.pack(len(body), zlib.crc32(body)) + body


class DurableJournal(Journal):
    def __init__(self, path: Path, durable: bool = True):
        self.path = Path(path)
        self.meta_path = self.path.with_name(self.path.name + ".meta")
        self.durable = durable
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._entries: list[Entry] = []
        self._offsets: list[int] = []
        self._pending = bytearray()  # encoded records not yet written
        self._written = len(MAGIC)  # bytes of the file that hold data
        self._unsynced = False
        self._meta = self._load_meta()
        self._meta_dirty = False
        self._fd = self._open()

    # -- opening ------------------------------------------------------------------------

    def _load_meta(self) -> dict:
        if not self.meta_path.exists():
            return {"term": 0, "voted_for": None, "commit_index": 1}
        try:
            return orjson.loads(self.meta_path.read_bytes())
        except orjson.JSONDecodeError as e:
            # The term and vote must never be forgotten: refuse to guess.
            raise JournalCorrupt(f"{self.meta_path}: unreadable Raft term/vote ({e})") from e

    def _open(self) -> int:
        if not self.path.exists() or self.path.stat().st_size < len(MAGIC):
            self._write_file(self.path, [])
        data = self.path.read_bytes()
        if data[: len(MAGIC)] != MAGIC:
            raise JournalCorrupt(f"{self.path}: not a mesos-es Raft journal")
        offset = len(MAGIC)
        while offset + RECORD_HEADER.size <= len(data):
            length, crc = RECORD_HEADER.unpack_from(data, offset)
            start = offset + RECORD_HEADER.size
            body = data[start : start + length]
            if len(body) < length or length < ENTRY_HEADER.size or zlib.crc32(body) != crc:
                break
            index, term = ENTRY_HEADER.unpack_from(body)
            self._entries.append((bytes(body[ENTRY_HEADER.size :]), index, term))
            self._offsets.append(offset)
            offset = start + length
        fd = os.open(self.path, os.O_RDWR)
        if offset < len(data):
            log.warning("journal_tail_truncated", file=str(self.path), dropped_bytes=len(data) - offset)
            os.ftruncate(fd, offset)
            os.fsync(fd)
        self._written = offset
        return fd

    def _write_file(self, path: Path, entries: list[Entry]) -> list[int]:
        """Write a whole journal atomically; returns the record offsets."""
        offsets, chunks, offset = [], [MAGIC], len(MAGIC)
        for command, index, term in entries:
            record = _encode(command, index, term)
            offsets.append(offset)
            chunks.append(record)
            offset += len(record)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(b"".join(chunks))
            f.flush()
            if self.durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if self.durable:
            fsync_directory(path.parent)
        return offsets

    @property
    def size_bytes(self) -> int:
        return self._written + len(self._pending)

    # -- durability ---------------------------------------------------------------------

    def sync(self) -> None:
        """Write buffered entries and make everything written durable."""
        if self._pending:
            data = bytes(self._pending)
            written = 0
            while written < len(data):
                written += os.pwrite(self._fd, data[written:], self._written + written)
            self._written += len(data)
            self._pending.clear()
            self._unsynced = True
        if self._unsynced:
            if self.durable:
                os.fdatasync(self._fd)
            self._unsynced = False

    def _store_meta(self) -> None:
        tmp = self.meta_path.with_name(self.meta_path.name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(orjson.dumps(self._meta))
            f.flush()
            if self.durable:
                os.fsync(f.fileno())
        os.replace(tmp, self.meta_path)
        if self.durable:
            fsync_directory(self.meta_path.parent)
        self._meta_dirty = False

    # -- pysyncobj's Journal interface ----------------------------------------------------

    def add(self, command, idx, term) -> None:
        command = command if isinstance(command, bytes) else bytes(command)
        self._offsets.append(self._written + len(self._pending))
        self._pending += _encode(command, idx, term)
        self._entries.append((command, idx, term))

    def clear(self) -> None:
        self._entries, self._offsets = [], []
        self._pending.clear()
        os.ftruncate(self._fd, len(MAGIC))
        self._written = len(MAGIC)
        self._unsynced = True
        self.sync()

    def deleteEntriesFrom(self, entryFrom: int) -> None:
        """Drop entries[entryFrom:] (a new leader overwrote them)."""
        if entryFrom >= len(self._entries):
            return
        cut = self._offsets[entryFrom]
        del self._entries[entryFrom:], self._offsets[entryFrom:]
        if cut >= self._written:
            del self._pending[cut - self._written :]
        else:
            self._pending.clear()
            os.ftruncate(self._fd, cut)
            self._written = cut
            self._unsynced = True

    def deleteEntriesTo(self, entryTo: int) -> None:
        """Drop entries[:entryTo] (compaction after a dump)."""
        # The dump pysyncobj just renamed into place must be durable before the entries
        # it replaces disappear.
        if self.durable:
            fsync_directory(self.path.parent)
        self.sync()
        keep = self._entries[entryTo:]
        os.close(self._fd)
        self._offsets = self._write_file(self.path, keep)
        self._entries = keep
        self._fd = os.open(self.path, os.O_RDWR)
        self._written = os.fstat(self._fd).st_size

    def complete_compaction(self, previous: Entry, last: Entry) -> bool:
        """Drop entries before `previous` if `previous, last` are in the journal back to back.

        Called when a dump is loaded on restart: a crash between writing the dump and
        compacting the journal leaves older entries in front, and pysyncobj would discard
        the whole journal (acknowledged entries included) if we did not finish the job."""
        for i in range(len(self._entries) - 1):
            if self._entries[i] == previous and self._entries[i + 1] == last:
                if i > 0:
                    log.info("journal_compaction_completed", dropped_entries=i)
                    self.deleteEntriesTo(i)
                return True
        return False

    def __getitem__(self, item):
        return self._entries[item]

    def __len__(self) -> int:
        return len(self._entries)

    def _destroy(self) -> None:
        if self._fd >= 0:
            self.sync()
            if self._meta_dirty:
                self._store_meta()
            os.close(self._fd)
            self._fd = -1

    def setRaftCommitIndex(self, raftCommitIndex: int) -> None:
        if self._meta.get("commit_index") != raftCommitIndex:
            self._meta["commit_index"] = raftCommitIndex
            self._meta_dirty = True

    def getRaftCommitIndex(self) -> int:
        return self._meta.get("commit_index", 1)

    def setCurrentTerm(self, term: int, votedForNodeId) -> None:
        self._meta["term"] = term
        self._meta["voted_for"] = votedForNodeId
        self._store_meta()

    def getCurrentTerm(self) -> int:
        return self._meta.get("term", 0)

    def getVotedForNodeId(self):
        return self._meta.get("voted_for")

    def onOneSecondTimer(self) -> None:
        # The commit index is only a hint on restart (the leader re-sends it), so it is
        # stored lazily; term and vote are stored at once in setCurrentTerm.
        if self._meta_dirty:
            self._store_meta()
