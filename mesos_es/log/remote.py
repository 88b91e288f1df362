"""Archived history over HTTP: `GET /api/v1/archive/entries?from=A&to=B`.

The answer is a RecordIO stream of `mesos_es.log.ArchivedEntry` protobufs. Replicas use it
to fill gaps in their archive; replay tools use it to read a live master's history.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from mesos_es import recordio
from mesos_es.log.archive import ArchivedRecord
from mesos_es.pb import log_pb2

ARCHIVE_ENTRIES_PATH = "/api/v1/archive/entries"
CONTENT_TYPE = "application/recordio"
MESSAGE_CONTENT_TYPE = "application/x-protobuf"


def encode_archived(records: list[ArchivedRecord]) -> bytes:
    return b"".join(
        recordio.encode(
            log_pb2.ArchivedEntry(
                position=r.position, raft_index=r.raft_index, hash=r.hash, payload=r.payload
            ).SerializeToString()
        )
        for r in records
    )


def decode_archived(data: bytes) -> list[ArchivedRecord]:
    records = []
    for raw in recordio.decode_all(data):
        entry = log_pb2.ArchivedEntry.FromString(raw)
        records.append(ArchivedRecord(entry.position, entry.raft_index, entry.hash, entry.payload))
    return records


async def fetch_archived(session, base_url: str, first: int, last: int) -> list[ArchivedRecord]:
    """Entries first..last (or a prefix, the server pages) from a master's archive.

    Raises ValueError for an answer that is not the asked-for history."""
    url = f"{base_url.rstrip('/')}{ARCHIVE_ENTRIES_PATH}"
    async with session.get(url, params={"from": str(first), "to": str(last)}) as response:
        body = await response.read()
        if response.status != 200:
            raise ValueError(f"{url} answered {response.status}: {body[:200]!r}")
    try:
        records = decode_archived(body)
    except (recordio.RecordIOError, DecodeError) as e:
        raise ValueError(f"{url} sent an undecodable stream: {e}") from e
    if not records or records[0].position != first or records[-1].position > last:
        raise ValueError(f"{url} sent positions other than {first}..{last}")
    return records
