"""The state digest: the hash tree of core/digest.py, kept up to date from `state.changes`.

The incremental digest must equal the definition computed from scratch after any sequence of
events, whether or not a digest was taken in between; `reference_digest` computes the
definition as the module docstring states it, the plainest way, so the two are checked
against each other as well. Every applier family is covered here or in test_cluster.py
(whose `World.apply` compares the incremental digest with a full one after every event) and
test_cluster_machine.py (after every event and through a snapshot).
"""

from __future__ import annotations

import hashlib
import random
from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from mesos_es.core import digest, logs
from mesos_es.core.apply import apply
from mesos_es.core.state import State
from mesos_es.pb import events_pb2, state_pb2
from mesos_es.replay.synthetic import SyntheticCluster


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        out.append(low | (0x80 if n else 0))
        if not n:
            return bytes(out)


def reference_digest(state: State) -> str:
    """The digest as core/digest.py's docstring defines it, with nothing kept or skipped."""
    leaves = []

    def leaf(tag: bytes, key: tuple, message) -> None:
        encoded = b"".join(_varint(len(part.encode())) + part.encode() for part in key)
        leaves.append(hashlib.sha256(tag + encoded + message.SerializeToString(deterministic=True)).digest())

    cluster = state.cluster
    other = state_pb2.Cluster()
    other.CopyFrom(cluster)
    for name in ("frameworks", "agents", "offers", "roles", "filters"):
        other.ClearField(name)
    leaf(b"C", (), other)
    for framework_id, framework in cluster.frameworks.items():
        alone = state_pb2.Framework()
        alone.CopyFrom(framework)
        alone.ClearField("tasks")
        leaf(b"F", (framework_id,), alone)
        for task_id, task in framework.tasks.items():
            leaf(b"T", (framework_id, task_id), task)
    for tag, entities in ((b"A", cluster.agents), (b"O", cluster.offers), (b"R", cluster.roles)):
        for key, entity in entities.items():
            leaf(tag, (key,), entity)
    for pair in {(f.framework_id, f.agent_id) for f in cluster.filters}:
        leaf(b"I", pair, state_pb2.Cluster(filters=[f for f in cluster.filters if (f.framework_id, f.agent_id) == pair]))
    for name, log in state.logs.items():
        leaf(b"L", (name,), state_pb2.NamedLog(name=name, beginning=log.beginning, ending=log.ending))
        positions: dict[int, list[int]] = {}
        for i, position in enumerate(log.log_positions):
            positions.setdefault((log.beginning + i - 1) // 64, []).append(position)
        for block, values in positions.items():
            leaf(b"P", (name, str(block)), state_pb2.NamedLog(log_positions=values))
        keys: dict[int, list] = {}
        for key, position in log.recent_keys.items():
            keys.setdefault((position - 1) // 64, []).append(state_pb2.IdempotencyKey(key=key, position=position))
        for block, entries in keys.items():
            leaf(b"K", (name, str(block)), state_pb2.NamedLog(recent_keys=entries))
    groups: list[list[bytes]] = [[] for _ in range(1024)]
    for value in leaves:
        groups[int.from_bytes(value[:2], "big") >> 6].append(value)
    hashes = b"".join(hashlib.sha256(b"".join(sorted(g))).digest() if g else bytes(32) for g in groups)
    return hashlib.sha256(state.position.to_bytes(8, "big") + hashes).hexdigest()


def check(state: State) -> str:
    """The incremental digest, checked against the definition and a snapshot round trip."""
    value = digest.digest(state)
    assert value == digest.full_digest(state), "a part changed without being named in state.changes"
    assert digest.digest(digest.from_proto(digest.to_proto(state))) == value
    return value


def test_the_empty_state_has_the_defined_digest():
    state = State()
    assert check(state) == reference_digest(state)


def test_a_scheduling_history_keeps_the_incremental_digest_equal_to_the_definition():
    """Synthetic: the real allocator's offers, launches, declines, updates, acknowledgements,
    kills, leader changes, lost agents coming back, and keyed log entries."""
    state = State()
    for position, data in enumerate(SyntheticCluster(7, agents=6, frameworks=4, log_share=0.3).events(3000), 1):
        apply(state, position, events_pb2.Event.FromString(data))
        if position % 7 == 0 or position > 2900:  # changes also pile up between digests
            assert digest.digest(state) == digest.full_digest(state), f"after position {position}"
    assert sum(len(log.log_positions) for log in state.logs.values()) > 3 * 64  # more than a block each
    assert check(state) == reference_digest(state)


def test_the_digest_depends_on_the_state_not_on_the_events_that_built_it():
    """Two histories with the same outcome, in different orders, and a change undone."""
    def subscribe(framework_id: str) -> events_pb2.Event:
        return events_pb2.Event(timestamp_ms=5, framework_subscribed=events_pb2.FrameworkSubscribed(
            framework_id=framework_id, framework_info={"user": "u", "roles": ["r"]}))

    def weight(value: float) -> events_pb2.Event:
        return events_pb2.Event(weights_updated=events_pb2.WeightsUpdated(
            weights=[events_pb2.WeightInfo(role="r", weight=value)]))

    one, other = State(), State()
    for position, event in enumerate([subscribe("a"), subscribe("b"), weight(2.0), weight(1.0)], 1):
        apply(one, position, event)
        digest.digest(one)
    for position, event in enumerate([weight(1.0), subscribe("b"), subscribe("a"), events_pb2.Event()], 1):
        apply(other, position, event)
    assert digest.digest(one) == digest.digest(other) == reference_digest(one)


def test_any_field_of_any_part_changes_the_digest():
    state = State()
    before = check(state)
    state.cluster.leader = "m:5050"
    state.changes.cluster = True
    assert check(state) != before
    state.cluster.frameworks["f"].tasks["t"].role = "r"
    state.changes.tasks.add(("f", "t"))
    state.changes.frameworks.add("f")
    with_task = check(state)
    state.cluster.frameworks["f"].tasks["t"].launched_at_ms = 1
    state.changes.tasks.add(("f", "t"))
    assert check(state) != with_task
    state.position = 1
    assert check(state) == reference_digest(state)


# -- named logs: blocks at both ends ---------------------------------------------------------------------

def append(log: str, key: str = "") -> events_pb2.Event:
    return events_pb2.Event(log_entry_appended=events_pb2.LogEntryAppended(log=log, data=b"x", idempotency_key=key))


def truncate(log: str, to: int) -> events_pb2.Event:
    return events_pb2.Event(log_truncated=events_pb2.LogTruncated(log=log, to=to))


steps = st.lists(st.tuples(
    st.one_of(
        st.builds(append, st.sampled_from(["a", "b"]), st.sampled_from(["", "k"]) | st.integers(0, 400).map(str)),
        st.builds(truncate, st.sampled_from(["a", "b"]), st.integers(0, 500)),
    ),
    st.sampled_from([True, False, False]),  # take a digest after this event or not
), max_size=400)


@settings(max_examples=60)
@given(steps)
def test_log_appends_truncations_and_key_evictions_across_blocks(history):
    with mock.patch.object(logs, "MAX_RECENT_KEYS", 40):  # keys are evicted from the front
        state = State()
        for position, (event, take) in enumerate(history, 1):
            apply(state, position, event)
            if take:
                assert digest.digest(state) == digest.full_digest(state), f"after position {position}"
        assert check(state) == reference_digest(state)


def test_a_long_log_hashes_its_last_blocks_only():
    """A random walk over thousands of entries: appends with keys, evictions, truncations
    that jump many blocks; the tree keeps one P and one K leaf per block."""
    rng = random.Random(3)
    with mock.patch.object(logs, "MAX_RECENT_KEYS", 500):
        state = State()
        for position in range(1, 6001):
            roll = rng.random()
            if roll < 0.01:
                event = truncate("a", state.logs["a"].beginning + rng.randint(0, 300) if "a" in state.logs else 0)
            else:
                event = append("a", f"k{position}" if roll < 0.7 else "")
            apply(state, position, event)
            if rng.random() < 0.2:
                assert digest.digest(state) == digest.full_digest(state), f"after position {position}"
        log = state.logs["a"]
        assert log.beginning > 1000 and len(log.recent_keys) == 500
        assert check(state) == reference_digest(state)
        leaves = state.digest_tree.leaves
        blocks = {(p - 1) // 64 for p in range(log.beginning, log.ending + 1)}
        assert sum(key.startswith(b"P\x01a") for key in leaves) == len(blocks)
        assert sum(key.startswith(b"K\x01a") for key in leaves) == len({(p - 1) // 64 for p in log.recent_keys.values()})


# -- what the fold keeps for the digest ---------------------------------------------------------------------

def test_changes_are_dropped_while_no_digest_uses_them():
    state = State()
    for position in range(1, digest.CHANGES_CHECK_EVERY + 1):
        apply(state, position, append(f"log{position % 3}"))
    assert state.digest_tree is None and state.changes.count() == 0
    assert check(state) == reference_digest(state)


def test_the_tree_is_dropped_when_more_changed_than_it_holds():
    state = State()
    digest.digest(state)  # a tree of one leaf
    with mock.patch.object(digest, "CHANGES_CHECK_EVERY", 64):
        for position in range(1, 2 * 64 + 1):
            apply(state, position, append(f"log{position}"))
    assert state.digest_tree is None and state.changes.count() == 0
    assert check(state) == reference_digest(state)


def test_an_applier_that_fails_leaves_the_next_digest_to_start_afresh():
    state = State()
    digest.digest(state)

    def half_done(state, position, event):
        state.cluster.leader = "changed without being named"
        raise RuntimeError("a bug")

    with mock.patch.dict("mesos_es.core.apply.APPLIERS", {"master_elected": half_done}):
        apply(state, 1, events_pb2.Event(master_elected=events_pb2.MasterElected(leader="m", term=1)))
    assert check(state) == reference_digest(state)
