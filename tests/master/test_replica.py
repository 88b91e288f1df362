"""The replica's fold and its state snapshots."""

import asyncio

from mesos_es.core import digest
from mesos_es.log.interface import Committed
from mesos_es.log.memory import MemoryCluster
from mesos_es.master.replica import Replica, snapshot_bytes
from mesos_es.pb import events_pb2, state_pb2
from mesos_es.replay.synthetic import history


def appended(log, data):
    return events_pb2.Event(log_entry_appended=events_pb2.LogEntryAppended(log=log, data=data)).SerializeToString()


async def fold_history(replica, count):
    cluster = MemoryCluster(["a"])
    cluster.elect("a")
    await cluster.replicas["a"].start(replica.apply)
    for i in range(count):
        await cluster.replicas["a"].propose(appended("fw", b"%d" % i))
        if replica._snapshot_task is not None:  # one snapshot write at a time: let it finish
            await replica._snapshot_task
    return cluster


async def test_snapshots_are_written_periodically_and_only_the_newest_kept(tmp_path):
    replica = Replica(tmp_path, snapshot_every=5, snapshot_suffix_ratio=0)
    await fold_history(replica, 23)
    await replica.close()
    await asyncio.sleep(0)
    names = sorted(p.name for p in tmp_path.glob("state-*.pb"))
    assert len(names) == 2 and names[-1] == f"state-{20:020d}.pb"


async def test_a_loaded_snapshot_resumes_the_fold_to_the_same_digest(tmp_path):
    replica = Replica(tmp_path, snapshot_every=5, snapshot_suffix_ratio=0)
    cluster = await fold_history(replica, 12)
    await replica.close()
    restored = Replica(tmp_path, snapshot_every=5, snapshot_suffix_ratio=0)
    position, chain_hash = restored.load_snapshot()
    assert position == 10 and chain_hash == cluster.history[9].chain_hash
    for committed in cluster.history[position:]:
        restored.apply(committed)
    assert restored.digest() == replica.digest()


async def test_an_unreadable_newest_snapshot_falls_back_to_the_older_one(tmp_path):
    replica = Replica(tmp_path, snapshot_every=5, snapshot_suffix_ratio=0)
    await fold_history(replica, 12)
    await replica.close()
    newest = sorted(tmp_path.glob("state-*.pb"))[-1]
    newest.write_bytes(b"\xff" * 10)
    assert Replica(tmp_path).load_snapshot()[0] == 5


def test_undecodable_entries_are_skipped_and_counted(tmp_path):
    replica = Replica()
    outcome = replica.apply(Committed(1, b"\xff\xff\xff", b"h" * 32))
    assert replica.state.position == 1 and "undecodable" in outcome.reason
    assert replica.digest() == (1, digest.digest(replica.state))


def test_snapshot_bytes_are_the_snapshot_message():
    replica = Replica()
    for position, payload in enumerate(history(300), start=1):
        replica.apply(Committed(position, payload, b"\0" * 32))
    chain_hash = bytes(range(32))
    expected = state_pb2.StateSnapshot(state=digest.to_proto(replica.state), chain_hash=chain_hash)
    data = snapshot_bytes(replica.state, chain_hash)
    assert state_pb2.StateSnapshot.FromString(data) == expected
    assert digest.canonical_bytes(replica.state) in data  # the canonical serialization, in pieces
    assert len(replica.state.cluster.agents) > 0


async def test_a_big_state_is_not_rewritten_for_a_few_events(tmp_path):
    # Every 5 positions at most, and only once the events since the last snapshot add up to
    # 10 times its size in bytes.
    replica = Replica(tmp_path, snapshot_every=5, snapshot_suffix_ratio=10)
    starts = []  # (position, size) of each snapshot
    for position in range(1, 3000):
        before = replica._snapshot_position
        replica.apply(Committed(position, appended("fw", b"%04d" % position), b"\0" * 32))
        if replica._snapshot_position != before:
            starts.append((position, replica._snapshot_size))
            await replica._snapshot_task
    event = len(appended("fw", b"0000"))
    assert starts[0][0] == 5 and len(starts) >= 3
    for (previous, size), (at, _) in zip(starts, starts[1:]):
        assert (at - previous) * event >= 10 * size > (at - previous - 1) * event  # at the first event that pays
