"""What folding one event did; the proposer of the event gets it back as the result.

Outcomes are values: nobody changes one after its applier returns it. They are not declared
`frozen` because a frozen dataclass sets each field through `object.__setattr__`, which made
building one cost about 1.3 us, against 0.4 us here: a fifth of a log entry's fold, since
every event builds one (issue #7). They still compare and hash by their fields.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, unsafe_hash=True)
class Appended:
    log: str
    position: int
    # True when the idempotency key was seen before: nothing was appended and `position`
    # is the first append's.
    duplicate: bool = False


@dataclass(slots=True, unsafe_hash=True)
class Truncated:
    log: str
    beginning: int
    ending: int


@dataclass(slots=True, unsafe_hash=True)
class Rejected:
    """A deterministic refusal: the event is in the log but changed nothing."""

    reason: str


@dataclass(slots=True, unsafe_hash=True)
class Ignored:
    """An event of a kind this replica does not know (written by a newer leader)."""

    kind: str




@dataclass(slots=True, unsafe_hash=True)
class Applied:
    """A master event took effect; `effects` is what the leader must now send."""

    effects: tuple = ()
    # Free-form, deterministic notes for the proposer (e.g. offers dropped as stale).
    note: str = ""


Outcome = Appended | Truncated | Rejected | Ignored | Applied
