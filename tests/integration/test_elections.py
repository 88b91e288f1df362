"""Three masters as processes: when elections happen, and how fast (Raft pre-vote, and a
follower noticing that its leader's connection closed)."""

import asyncio
import os
import signal
import time

import pytest

pytestmark = pytest.mark.slow


async def terms(cluster, masters) -> list[int]:
    answers = [await cluster.health(m) for m in masters]
    assert None not in answers, answers
    return [a["term"] for a in answers]


async def test_a_killed_leader_is_replaced_before_the_election_timeout(make_cluster):
    # Long election timeouts: waiting them out would take at least 3 s after the kill.
    cluster = await make_cluster(master_flags={"election_timeout_min_ms": 3000,
                                               "election_timeout_max_ms": 6000}).start()
    leader = await cluster.wait_for_leader()
    survivors = [m for m in cluster.masters if m is not leader]
    await cluster.wait_converged(cluster.masters)
    before = max(await terms(cluster, survivors))
    killed_at = time.monotonic()
    cluster.kill_master(leader)
    await cluster.wait_for_leader(survivors, timeout=20, other_than=leader, interval=0.05)
    elected_after = time.monotonic() - killed_at
    # The survivors saw the leader's connections close and asked each other at once.
    assert elected_after < 2.5, f"a new leader only {elected_after:.2f} s after the kill"
    after = await terms(cluster, survivors)
    assert after[0] == after[1] and before < after[0] <= before + 2  # one election, maybe a split vote
    events = [cluster.log_events(m) for m in survivors]
    assert any("raft_leader_connection_lost" in e for e in events)
    assert any("raft_pre_vote_passed" in e for e in events)


async def test_a_follower_paused_past_the_election_timeout_does_not_depose_the_leader(make_cluster):
    cluster = await make_cluster(master_flags={"election_timeout_min_ms": 500,
                                               "election_timeout_max_ms": 1000}).start()
    leader = await cluster.wait_for_leader()
    await cluster.wait_converged(cluster.masters)
    follower = next(m for m in cluster.masters if m is not leader)
    before = await terms(cluster, cluster.masters)
    paused = cluster.pause_master(follower)
    assert len(paused) == 2  # and its Raft process
    try:
        await asyncio.sleep(3.0)  # three times the longest election timeout
    finally:
        cluster.resume(paused)
    # Back, its deadline long past, it asks for pre-votes: the others still hear from the
    # leader and say no, so it neither raises the term nor starts an election.
    await asyncio.sleep(3.0)
    assert await cluster.wait_for_leader() is leader
    assert await terms(cluster, cluster.masters) == before
    await cluster.wait_converged(cluster.masters)


async def test_a_leader_whose_master_froze_hands_over_the_lead(make_cluster):
    """Raft runs in a process of its own (--raft-process): when only the master's process is
    frozen, its Raft process would go on leading for a master that serves nothing. It hears
    no ping for --raft-master-timeout-s and steps down; the others elect a leader."""
    cluster = await make_cluster(master_flags={"raft_master_timeout_s": 1.0}).start()
    leader = await cluster.wait_for_leader()
    others = [m for m in cluster.masters if m is not leader]
    await cluster.wait_converged(cluster.masters)
    assert len(cluster.master_processes(leader)) == 2
    os.kill(leader["pid"], signal.SIGSTOP)  # the master only: its Raft process runs on
    try:
        frozen_at = time.monotonic()
        await cluster.wait_for_leader(others, timeout=15, other_than=leader, interval=0.1)
        assert time.monotonic() - frozen_at < 8  # 1 s of silence, then one election (1-2 s)
    finally:
        os.kill(leader["pid"], signal.SIGCONT)
    # Back, it follows the new leader: it does not take the lead back by itself.
    new_leader = await cluster.wait_for_leader(cluster.masters, timeout=15, other_than=leader)
    await cluster.wait_converged(cluster.masters)
    assert await cluster.wait_for_leader() is new_leader
    events = cluster.log_events(leader)
    assert "raft_master_not_answering" in events and "raft_master_answering_again" in events
