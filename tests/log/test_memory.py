"""The in-memory replicated log keeps the ReplicatedLog contract."""

import pytest

from mesos_es.log.chain import GENESIS_HASH
from mesos_es.log.interface import NotLeader, Role, SnapshotMismatch
from mesos_es.log.memory import MemoryCluster


async def started(cluster, replica_id, applied):
    log = cluster.replicas[replica_id]
    await log.start(lambda c: applied.setdefault(replica_id, []).append(c.position) or c.position)
    return log


async def test_a_proposal_returns_its_position_and_the_apply_result():
    cluster = MemoryCluster(["a", "b"])
    cluster.elect("a")
    applied = {}
    leader = await started(cluster, "a", applied)
    follower = await started(cluster, "b", applied)
    first = await leader.propose(b"one")
    second = await leader.propose(b"two")
    assert (first.position, first.result, second.position) == (1, 1, 2)
    assert applied["a"] == [1, 2]
    await leader.barrier()
    assert follower.status().role is Role.FOLLOWER and follower.status().leader == "a"


async def test_a_follower_refuses_proposals_naming_the_leader():
    cluster = MemoryCluster(["a", "b"])
    cluster.elect("a")
    follower = await started(cluster, "b", {})
    with pytest.raises(NotLeader) as e:
        await follower.propose(b"x")
    assert e.value.leader == "a"


async def test_a_restarted_replica_catches_up_from_its_snapshot_position():
    cluster = MemoryCluster(["a", "b"])
    cluster.elect("a")
    leader = await started(cluster, "a", {})
    for i in range(5):
        await leader.propose(b"%d" % i)
    cluster.crash("b")
    applied = []
    await cluster.replicas["b"].start(lambda c: applied.append(c.position), 3, cluster.history[2].chain_hash)
    assert applied == [4, 5]
    with pytest.raises(SnapshotMismatch):
        await cluster.replicas["b"].start(lambda c: None, 3, GENESIS_HASH)
