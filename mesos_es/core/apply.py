"""The fold: `apply` routes each event by its kind to exactly one applier.

Appliers are deterministic and take time only from the event. A stale or invalid event is a
deterministic `Rejected` outcome, never an exception: a replica that raised here would stop
following the log. An unknown kind (from a newer leader) is skipped as `Ignored`.
"""

from __future__ import annotations

from collections.abc import Callable

from mesos_es.core import cluster, digest, logs
from mesos_es.core.outcomes import Ignored, Outcome, Rejected
from mesos_es.core.state import State
from mesos_es.pb import events_pb2


class OutOfOrder(Exception):
    """The fold was handed a position that is not the next one: a bug in the caller."""


Applier = Callable[[State, int, events_pb2.Event], Outcome]

# One applier per kind of the Event oneof; tests/core/test_apply.py fails when one is missing.
APPLIERS: dict[str, Applier] = {
    "log_entry_appended": logs.apply_log_entry_appended,
    "log_truncated": logs.apply_log_truncated,
    **cluster.APPLIERS,
}


def apply(state: State, position: int, event: events_pb2.Event) -> Outcome:
    """Fold the event at `position` into `state` and say what it did."""
    if position != state.position + 1:
        raise OutOfOrder(f"expected position {state.position + 1}, got {position}")
    kind = event.WhichOneof("kind")
    applier = APPLIERS.get(kind) if kind else None
    try:
        outcome = applier(state, position, event) if applier else Ignored(kind or "unknown")
    except Exception as e:  # noqa: BLE001 - a bug in an applier must not stop the fold
        # Every replica runs the same code on the same event and fails the same way, so
        # recording the failure keeps them identical; raising would wedge all of them.
        outcome = Rejected(f"applier for {kind} failed: {type(e).__name__}: {e}")
        # It may have changed parts it had not yet marked: the next digest starts afresh.
        state.digest_tree = None
    state.position = position
    if not position % digest.CHANGES_CHECK_EVERY:
        digest.forget_useless_changes(state)
    return outcome


def skip_undecodable(state: State, position: int) -> Outcome:
    """Advance past an entry that is not an Event at all (every replica sees the same bytes,
    so every replica skips it)."""
    if position != state.position + 1:
        raise OutOfOrder(f"expected position {state.position + 1}, got {position}")
    state.position = position
    return Rejected("undecodable event")
