"""Named logs: the rules for frameworks' logs (appliers, validation and reads).

A named log is a sequence of entries with contiguous positions from 1, stored as events in
the one replicated log. Appliers never raise on bad input: they reject deterministically,
because the same event must have the same effect on every replica.
"""

from __future__ import annotations

import re

from mesos_es.core.outcomes import Appended, Outcome, Rejected, Truncated
from mesos_es.core.state import NamedLog, State
from mesos_es.pb import events_pb2

LOG_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")
MAX_IDEMPOTENCY_KEY_LENGTH = 128
# How many idempotency keys each log remembers; a retry older than this many appends to
# the same log is no longer recognised as a duplicate.
MAX_RECENT_KEYS = 100_000


class LogReadError(Exception):
    """A read that cannot be answered; the message is meant for the client."""


class UnknownLog(LogReadError):
    pass


class PositionTruncated(LogReadError):
    def __init__(self, message: str, beginning: int):
        super().__init__(message)
        self.beginning = beginning


class PositionBeyondEnd(LogReadError):
    def __init__(self, message: str, ending: int):
        super().__init__(message)
        self.ending = ending


class BadRange(LogReadError):
    pass


def log_name_problem(name: str) -> str | None:
    if LOG_NAME_PATTERN.match(name):
        return None
    return (
        f"invalid log name {name!r}: use 1-128 characters from [A-Za-z0-9._-], "
        "starting with a letter or digit"
    )


def idempotency_key_problem(key: str) -> str | None:
    if len(key) > MAX_IDEMPOTENCY_KEY_LENGTH or not key.isprintable():
        return f"invalid idempotency key: at most {MAX_IDEMPOTENCY_KEY_LENGTH} printable characters"
    return None


def apply_log_entry_appended(state: State, position: int, envelope: events_pb2.Event) -> Outcome:
    """Append the entry at the log's ending + 1 (creating the log), or answer the first
    position of an earlier append with the same idempotency key. Rejected: a bad log name or key."""
    event = envelope.log_entry_appended
    name, key = event.log, event.idempotency_key
    log = state.logs.get(name)
    if log is None:
        problem = log_name_problem(name) or (key and idempotency_key_problem(key))
        if problem:
            return Rejected(problem)
        log = state.logs[name] = NamedLog(name=name)
    # An existing log's name passed the check when the log was created; the key's check is
    # idempotency_key_problem's, inline (the fold's hot path).
    elif key and (len(key) > MAX_IDEMPOTENCY_KEY_LENGTH or not key.isprintable()):
        return Rejected(idempotency_key_problem(key))
    recent_keys = log.recent_keys
    if key and key in recent_keys:
        return Appended(name, recent_keys[key], True)
    positions = log.log_positions
    positions.append(position)
    ending = log.beginning + len(positions) - 1  # log.ending
    state.changes.logs.add(name)
    if key:
        recent_keys[key] = ending
        if len(recent_keys) > MAX_RECENT_KEYS:
            del recent_keys[next(iter(recent_keys))]
    return Appended(name, ending)


def apply_log_truncated(state: State, position: int, envelope: events_pb2.Event) -> Outcome:
    """Move the log's beginning to `to`, clamped to [beginning, ending + 1].
    Rejected: unknown log."""
    event = envelope.log_truncated
    log = state.logs.get(event.log)
    if log is None:
        return Rejected(f"unknown log {event.log!r}")
    to = min(max(event.to, log.beginning), log.ending + 1)
    del log.log_positions[: to - log.beginning]
    log.beginning = to
    state.changes.logs.add(log.name)
    return Truncated(log=log.name, beginning=log.beginning, ending=log.ending)


def find_log(state: State, name: str) -> NamedLog:
    log = state.logs.get(name)
    if log is None:
        raise UnknownLog(f"unknown log {name!r}")
    return log


def read_range(
    state: State, name: str, first: int | None, last: int | None, limit: int
) -> list[tuple[int, int]]:
    """(named-log position, replicated-log position) of entries first..last, at most limit.

    `first` defaults to the beginning and `last` to the ending; `last` beyond the ending is
    clamped, so a reader can ask for more than exists. Reading from ending + 1 answers no
    entries (a reader polling for new ones); from further on is an error.
    """
    log = find_log(state, name)
    first = log.beginning if first is None else first
    if first < 1:
        raise BadRange("positions start at 1")
    if first < log.beginning:
        raise PositionTruncated(
            f"position {first} of log {name!r} was truncated; the log begins at {log.beginning}",
            beginning=log.beginning,
        )
    if first > log.ending + 1:
        raise PositionBeyondEnd(
            f"position {first} is beyond the end of log {name!r} (ending {log.ending})",
            ending=log.ending,
        )
    last = log.ending if last is None else last
    if last < first - 1:
        raise BadRange(f"'to' ({last}) is before 'from' ({first})")
    last = min(last, log.ending, first + limit - 1)
    offset = first - log.beginning
    return [(first + i, log.log_positions[offset + i]) for i in range(last - first + 1)]
