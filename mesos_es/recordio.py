"""RecordIO, Mesos' framing for streams: `<length in decimal>\\n<bytes>` per record."""

from __future__ import annotations


class RecordIOError(ValueError):
    pass


def encode(record: bytes) -> bytes:
    return b"%d\n" % len(record) + record


class Decoder:
    """Incremental decoder: feed it chunks as they arrive, get whole records back."""

    MAX_HEADER = 20

    def __init__(self, max_record_bytes: int = 64 << 20):
        self._buffer = bytearray()
        self._max = max_record_bytes

    def feed(self, chunk: bytes) -> list[bytes]:
        self._buffer += chunk
        records = []
        while True:
            newline = self._buffer.find(b"\n", 0, self.MAX_HEADER + 1)
            if newline < 0:
                if len(self._buffer) > self.MAX_HEADER:
                    raise RecordIOError("record length header too long")
                return records
            header = bytes(self._buffer[:newline])
            if not header.isdigit():
                raise RecordIOError(f"bad record length {header[:20]!r}")
            length = int(header)
            if length > self._max:
                raise RecordIOError(f"record of {length} bytes exceeds {self._max}")
            end = newline + 1 + length
            if len(self._buffer) < end:
                return records
            records.append(bytes(self._buffer[newline + 1 : end]))
            del self._buffer[:end]

    def finish(self) -> None:
        if self._buffer:
            raise RecordIOError(f"stream ended inside a record ({len(self._buffer)} bytes left)")


def decode_all(data: bytes) -> list[bytes]:
    decoder = Decoder()
    records = decoder.feed(data)
    decoder.finish()
    return records
