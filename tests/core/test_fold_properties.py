"""Property tests of the fold: deterministic, snapshot-transparent, and equal to a model."""

from hypothesis import given
from hypothesis import strategies as st

from mesos_es.core import digest
from mesos_es.core.apply import apply
from mesos_es.core.state import State
from mesos_es.pb import events_pb2

LOGS = st.sampled_from(["a", "b", "c"])
appends = st.builds(
    lambda log, data, key: events_pb2.Event(
        log_entry_appended=events_pb2.LogEntryAppended(log=log, data=data, idempotency_key=key)
    ),
    LOGS, st.binary(max_size=8), st.sampled_from(["", "", "k1", "k2", "k3"]),
)
truncations = st.builds(
    lambda log, to: events_pb2.Event(log_truncated=events_pb2.LogTruncated(log=log, to=to)),
    LOGS, st.integers(min_value=0, max_value=12),
)
histories = st.lists(st.one_of(appends, appends, truncations), max_size=60)


def fold(events, state=None, start=0):
    state = state or State()
    for position, event in enumerate(events[start:], start=start + 1):
        apply(state, position, event)
    return state


class Model:
    """Named logs as plain lists, to check the fold against."""

    def __init__(self):
        self.logs = {}  # name -> [beginning, [data...], {key: position}]

    def run(self, event):
        kind = event.WhichOneof("kind")
        if kind == "log_entry_appended":
            e = event.log_entry_appended
            beginning, entries, keys = self.logs.setdefault(e.log, [1, [], {}])
            if e.idempotency_key and e.idempotency_key in keys:
                return
            entries.append(e.data)
            if e.idempotency_key:
                keys[e.idempotency_key] = beginning + len(entries) - 1
        elif event.log_truncated.log in self.logs:
            t = event.log_truncated
            log = self.logs[t.log]
            to = min(max(t.to, log[0]), log[0] + len(log[1]))
            log[1] = log[1][to - log[0]:]
            log[0] = to


@given(histories)
def test_folding_the_same_history_twice_gives_the_same_digest(events):
    assert digest.digest(fold(events)) == digest.digest(fold(events))


@given(histories, st.data())
def test_a_snapshot_at_any_position_resumes_to_the_same_state(events, data):
    cut = data.draw(st.integers(min_value=0, max_value=len(events)))
    restored = digest.from_proto(digest.to_proto(fold(events[:cut])))
    assert digest.digest(fold(events, restored, start=cut)) == digest.digest(fold(events))


@given(histories)
def test_the_fold_agrees_with_the_model(events):
    state, model = fold(events), Model()
    for event in events:
        model.run(event)
    assert set(state.logs) == set(model.logs)
    for name, (beginning, entries, keys) in model.logs.items():
        log = state.logs[name]
        assert log.beginning == beginning
        assert log.ending == beginning + len(entries) - 1
        assert [events[p - 1].log_entry_appended.data for p in log.log_positions] == entries
        assert log.recent_keys == keys
