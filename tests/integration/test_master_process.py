"""A master process under stress: stopping without quorum, killed mid-request."""

import asyncio
import os
import signal
import time

import aiohttp
import pytest

from tests.support.procs import pid_alive, wait_until

pytestmark = pytest.mark.slow


async def test_a_leader_without_quorum_stops_promptly_and_fails_waiting_writes(make_cluster):
    cluster = await make_cluster().start()
    leader = await cluster.wait_for_leader()
    for master in cluster.masters:
        if master is not leader:
            cluster.kill_master(master)
    async with aiohttp.ClientSession() as http:
        # The leader cannot commit any more: this append waits.
        pending = asyncio.create_task(http.post(f"http://{leader['http']}/api/v1/logs/x/entries", data=b"x"))
        await asyncio.sleep(0.5)
        assert not pending.done()
        started = time.monotonic()
        os.kill(leader["pid"], signal.SIGTERM)
        response = await pending
        assert response.status == 503
        assert "retry with the same Idempotency-Key" in (await response.json())["error"]
    await wait_until(lambda: not pid_alive(leader["pid"]), 15, what="the leader to exit")
    assert time.monotonic() - started < 8


async def test_a_leader_cut_off_from_its_majority_steps_down(make_cluster):
    cluster = await make_cluster().start()
    leader = await cluster.wait_for_leader()
    followers = [m for m in cluster.masters if m is not leader]
    paused = [pid for master in followers for pid in cluster.pause_master(master)]  # alive but silent: a partition
    try:
        async def stepped_down():
            health = await cluster.health(leader)
            return health and health["role"] != "leader"

        await wait_until(stepped_down, 5, what="the isolated leader to step down")
    finally:
        cluster.resume(paused)
    await cluster.wait_for_leader()


async def test_the_raft_process_lives_and_dies_with_its_master(make_cluster):
    """A killed master must not go on voting through its Raft process; a master whose Raft
    process died stops (exit 70, fail-stop) rather than run without a log."""
    cluster = await make_cluster().start()
    leader = await cluster.wait_for_leader()
    follower = next(m for m in cluster.masters if m is not leader)
    master_pid, raft_pid = cluster.master_processes(follower)
    health = await cluster.health(follower)
    assert (health["pid"], health["raft_pid"]) == (master_pid, raft_pid)
    os.kill(raft_pid, signal.SIGKILL)
    await wait_until(lambda: not pid_alive(master_pid), 15, what="the master to stop")
    assert "raft_process_exited" in cluster.log_events(follower)

    master_pid, raft_pid = cluster.master_processes(leader)
    os.kill(master_pid, signal.SIGKILL)  # the master alone
    await wait_until(lambda: not pid_alive(raft_pid), 10, what="its Raft process to die with it")
