"""The in-memory log and the pysyncobj log deliver the same committed stream: the same
payloads at the same positions with the same chain hashes, on every replica."""

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesos_es.log.interface import Role
from mesos_es.log.memory import MemoryCluster
from mesos_es.log.raft import RaftConfig, RaftLog
from tests.support.ports import free_port_block

# Rounds of proposals; the proposals of one round are made concurrently, rounds one after
# another. Both logs must commit each round in call order.
rounds = st.lists(st.lists(st.binary(max_size=40), min_size=1, max_size=12), min_size=1, max_size=6)


class Clusters:
    """A 3-replica RaftLog cluster and a 3-replica MemoryCluster fed the same proposals,
    each replica recording what it was delivered."""

    def __init__(self, tmp_path):
        self.loop = asyncio.new_event_loop()
        self.tmp_path = tmp_path
        self.raft_streams = [[], [], []]
        self.memory_streams = [[], [], []]

    def run(self, coroutine):
        return self.loop.run_until_complete(coroutine)

    async def start(self):
        base = free_port_block(3, (0,))
        addresses = [f"127.0.0.1:{base + i}" for i in range(3)]
        self.raft = []
        for i, address in enumerate(addresses):
            log = RaftLog(RaftConfig(address=address, peers=tuple(a for a in addresses if a != address),
                                     work_dir=self.tmp_path / f"r{i}", password="test-secret"))
            await log.start(self.raft_streams[i].append)
            self.raft.append(log)
        self.memory = MemoryCluster(["m0", "m1", "m2"])
        self.memory.elect("m0")
        for i, replica in enumerate(self.memory.replicas.values()):
            await replica.start(self.memory_streams[i].append)
        for _ in range(500):
            if any(log.status().role is Role.LEADER for log in self.raft):
                return
            await asyncio.sleep(0.02)
        raise AssertionError("no Raft leader")

    async def propose_round(self, payloads):
        raft_leader = next(log for log in self.raft if log.status().role is Role.LEADER)
        memory_leader = self.memory.replicas["m0"]
        raft = await asyncio.gather(*(raft_leader.propose(p) for p in payloads))
        memory = await asyncio.gather(*(memory_leader.propose(p) for p in payloads))
        return [r.position for r in raft], [m.position for m in memory]

    async def settle(self):
        end = len(self.memory.history)
        for _ in range(500):
            if all(len(s) == end for s in self.raft_streams + self.memory_streams):
                return
            await asyncio.sleep(0.01)

    async def stop(self):
        for log in self.raft:
            await log.stop()


@pytest.fixture(scope="module")
def clusters(tmp_path_factory):
    clusters = Clusters(tmp_path_factory.mktemp("equivalence"))
    clusters.run(clusters.start())
    yield clusters
    clusters.run(clusters.stop())
    clusters.loop.close()


# pysyncobj's tick thread draws election timeouts from `random` while hypothesis generates
# examples; hypothesis warns about any use of `random`, which here is not the test's.
@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
@settings(max_examples=25)
@given(rounds)
def test_both_logs_deliver_the_same_stream(clusters, proposal_rounds):
    for payloads in proposal_rounds:
        raft_positions, memory_positions = clusters.run(clusters.propose_round(payloads))
        assert raft_positions == memory_positions  # contiguous, in call order
    clusters.run(clusters.settle())
    expected = clusters.memory.history
    for stream in clusters.raft_streams + clusters.memory_streams:
        assert stream == expected
