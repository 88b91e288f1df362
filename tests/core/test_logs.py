"""Named-log rules: appends, idempotency keys, truncation and reads."""

import pytest

from mesos_es.core import logs
from mesos_es.core.apply import apply
from mesos_es.core.outcomes import Appended, Rejected, Truncated
from mesos_es.core.state import State
from mesos_es.pb import events_pb2


def append(state, log, data=b"x", key=""):
    event = events_pb2.Event(log_entry_appended=events_pb2.LogEntryAppended(log=log, data=data, idempotency_key=key))
    return apply(state, state.position + 1, event)


def truncate(state, log, to):
    return apply(state, state.position + 1, events_pb2.Event(log_truncated=events_pb2.LogTruncated(log=log, to=to)))


def test_each_log_numbers_its_entries_from_one_whatever_else_is_in_the_log():
    state = State()
    assert append(state, "a").position == 1
    assert append(state, "b").position == 1
    assert append(state, "a").position == 2
    assert list(state.logs["a"].log_positions) == [1, 3]
    assert state.logs["a"].ending == 2


def test_a_repeated_idempotency_key_appends_nothing_and_answers_the_first_position():
    state = State()
    assert append(state, "a", b"one", key="k") == Appended("a", 1)
    assert append(state, "a", b"two", key="k") == Appended("a", 1, duplicate=True)
    assert state.logs["a"].ending == 1
    # keys belong to a log
    assert append(state, "b", b"three", key="k") == Appended("b", 1)


def test_the_oldest_idempotency_keys_are_forgotten_beyond_the_bound(monkeypatch):
    monkeypatch.setattr(logs, "MAX_RECENT_KEYS", 3)
    state = State()
    for i in range(5):
        append(state, "a", key=f"k{i}")
    assert list(state.logs["a"].recent_keys) == ["k2", "k3", "k4"]
    assert append(state, "a", key="k0") == Appended("a", 6)


@pytest.mark.parametrize("name", ["", "has space", "-leading-dash", "x" * 129, "slash/inside", "ünïcode"])
def test_invalid_log_names_are_rejected_deterministically(name):
    state = State()
    outcome = append(state, name)
    assert isinstance(outcome, Rejected)
    assert state.logs == {} and state.position == 1


def test_an_unprintable_or_long_idempotency_key_is_rejected():
    state = State()
    assert isinstance(append(state, "a", key="\n"), Rejected)
    assert isinstance(append(state, "a", key="k" * 129), Rejected)


def test_truncation_moves_the_beginning_and_is_clamped():
    state = State()
    for _ in range(5):
        append(state, "a")
    assert truncate(state, "a", 3) == Truncated("a", 3, 5)
    assert truncate(state, "a", 2) == Truncated("a", 3, 5)  # never backwards
    assert truncate(state, "a", 99) == Truncated("a", 6, 5)  # at most everything
    assert len(state.logs["a"].log_positions) == 0
    assert append(state, "a").position == 6  # numbering continues


def test_truncating_an_unknown_log_is_rejected():
    assert isinstance(truncate(State(), "nope", 1), Rejected)


def make_log(n):
    state = State()
    for _ in range(n):
        append(state, "a")
    return state


def test_read_range_defaults_to_everything_readable():
    state = make_log(3)
    assert logs.read_range(state, "a", None, None, 100) == [(1, 1), (2, 2), (3, 3)]


def test_read_range_clamps_to_the_end_and_the_limit():
    state = make_log(5)
    assert logs.read_range(state, "a", 2, 99, 2) == [(2, 2), (3, 3)]


def test_reading_from_just_past_the_end_is_empty_and_further_is_an_error():
    state = make_log(2)
    assert logs.read_range(state, "a", 3, None, 10) == []
    with pytest.raises(logs.PositionBeyondEnd) as e:
        logs.read_range(state, "a", 4, None, 10)
    assert e.value.ending == 2


def test_reading_truncated_positions_is_an_error_naming_the_beginning():
    state = make_log(4)
    truncate(state, "a", 3)
    with pytest.raises(logs.PositionTruncated) as e:
        logs.read_range(state, "a", 2, None, 10)
    assert e.value.beginning == 3


@pytest.mark.parametrize("first,last", [(0, 3), (3, 1)])
def test_bad_ranges(first, last):
    with pytest.raises(logs.BadRange):
        logs.read_range(make_log(4), "a", first, last, 10)


def test_reading_an_unknown_log():
    with pytest.raises(logs.UnknownLog):
        logs.read_range(State(), "a", None, None, 10)
