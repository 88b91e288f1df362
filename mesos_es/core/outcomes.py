"""What folding one event did; the proposer of the event gets it back as the result."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Appended:
    log: str
    position: int
    # True when the idempotency key was seen before: nothing was appended and `position`
    # is the first append's.
    duplicate: bool = False


@dataclass(frozen=True)
class Truncated:
    log: str
    beginning: int
    ending: int


@dataclass(frozen=True)
class Rejected:
    """A deterministic refusal: the event is in the log but changed nothing."""

    reason: str


@dataclass(frozen=True)
class Ignored:
    """An event of a kind this replica does not know (written by a newer leader)."""

    kind: str




@dataclass(frozen=True)
class Applied:
    """A master event took effect; `effects` is what the leader must now send."""

    effects: tuple = ()
    # Free-form, deterministic notes for the proposer (e.g. offers dropped as stale).
    note: str = ""


Outcome = Appended | Truncated | Rejected | Ignored | Applied
