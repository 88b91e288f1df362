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
    for master in followers:
        os.kill(master["pid"], signal.SIGSTOP)  # alive but silent: a partition
    try:
        async def stepped_down():
            health = await cluster.health(leader)
            return health and health["role"] != "leader"

        await wait_until(stepped_down, 5, what="the isolated leader to step down")
    finally:
        for master in followers:
            os.kill(master["pid"], signal.SIGCONT)
    await cluster.wait_for_leader()
