"""The fold's dispatch: one applier per event kind, unknown kinds skipped, order enforced."""

import pytest

from mesos_es.core.apply import APPLIERS, OutOfOrder, apply, skip_undecodable
from mesos_es.core.outcomes import Appended, Ignored, Rejected
from mesos_es.core.state import State
from mesos_es.pb import events_pb2


def test_every_event_kind_has_exactly_one_applier():
    kinds = {f.name for f in events_pb2.Event.DESCRIPTOR.oneofs_by_name["kind"].fields}
    assert kinds == set(APPLIERS)


def test_apply_advances_the_position_and_routes_by_kind():
    state = State()
    event = events_pb2.Event(log_entry_appended=events_pb2.LogEntryAppended(log="a", data=b"x"))
    assert apply(state, 1, event) == Appended(log="a", position=1)
    assert state.position == 1


def test_an_event_of_unknown_kind_is_ignored_but_takes_its_position():
    state = State()
    assert apply(state, 1, events_pb2.Event(timestamp_ms=5)) == Ignored("unknown")
    assert state.position == 1


def test_an_out_of_order_position_is_refused_before_anything_changes():
    state = State()
    event = events_pb2.Event(log_entry_appended=events_pb2.LogEntryAppended(log="a", data=b"x"))
    with pytest.raises(OutOfOrder):
        apply(state, 2, event)
    assert state.position == 0 and state.logs == {}


def test_undecodable_bytes_are_skipped_deterministically():
    state = State()
    assert skip_undecodable(state, 1) == Rejected("undecodable event")
    assert state.position == 1
