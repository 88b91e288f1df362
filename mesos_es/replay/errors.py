"""Errors of replay: always a sentence naming the position, never a traceback."""

from __future__ import annotations


class ReplayError(Exception):
    """The history cannot be read or folded as asked; `position` is where, when known."""

    def __init__(self, message: str, position: int | None = None):
        super().__init__(message)
        self.position = position


class SourceUnavailable(ReplayError):
    """The source cannot be reached or opened at all."""


class CorruptInput(ReplayError):
    """Bytes that are not what they claim (checksum, framing, undecodable record)."""


class TruncatedInput(ReplayError):
    """The history stops in the middle of a record, or before the asked-for position."""


class MissingPositions(ReplayError):
    """Positions first..last are not in the source (a gap)."""

    def __init__(self, message: str, first: int, last: int | None):
        super().__init__(message, first)
        self.first = first
        self.last = last


class OutOfOrder(ReplayError):
    """A record whose position is not the next one."""


class ChainBroken(ReplayError):
    """A record whose stored chain hash is not sha256(previous || position || event)."""
