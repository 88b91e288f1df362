"""`GET /api/v1/archive/entries?from=A&to=B`: this master's archived history as a RecordIO
stream of ArchivedEntry protobufs (for peers filling a gap, and for replay tools)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from mesos_es.log.archive import ArchiveGap
from mesos_es.log.remote import ARCHIVE_ENTRIES_PATH, CONTENT_TYPE, MESSAGE_CONTENT_TYPE, encode_archived
from mesos_es.master.http.common import MASTER, http_error, position_param

MAX_RECORDS = 10_000
MAX_BYTES = 8 << 20


async def archive_entries(request: web.Request) -> web.Response:
    archive = request.app[MASTER].archive
    if archive is None:
        raise http_error(web.HTTPNotFound, "this master keeps no archive")
    end = archive.last_position
    first = position_param(request, "from") or 1
    last = position_param(request, "to")
    last = end if last is None else min(last, end)
    if first > end:
        raise http_error(web.HTTPRequestRangeNotSatisfiable, f"position {first} is beyond the archive ({end})", last_position=end)
    if last < first:
        raise http_error(web.HTTPBadRequest, f"'to' ({last}) is before 'from' ({first})")
    try:
        records = await asyncio.to_thread(archive.read, first, min(last, first + MAX_RECORDS - 1), MAX_BYTES)
    except ArchiveGap as gap:
        raise http_error(web.HTTPNotFound, str(gap), missing_from=gap.first, missing_to=gap.last) from None
    return web.Response(
        body=encode_archived(records),
        headers={"Content-Type": CONTENT_TYPE, "Message-Content-Type": MESSAGE_CONTENT_TYPE},
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get(ARCHIVE_ENTRIES_PATH, archive_entries)
