"""Three masters as processes: 10,000 appends through HTTP while the leader is SIGKILLed."""

import asyncio

import pytest

from tests.integration.appenders import Appenders, read_all

pytestmark = pytest.mark.slow


async def test_appends_survive_a_leader_kill_and_the_killed_master_catches_up(make_cluster):
    # Small compaction thresholds, so the survivors compact past what the killed master
    # has and it must take a snapshot from the leader and fetch the archive gap.
    cluster = await make_cluster(master_flags={
        "compaction_min_entries": 40, "compaction_interval_s": 1, "snapshot_every": 2000,
    }).start()
    leader = await cluster.wait_for_leader()
    appenders = Appenders(cluster.urls(), "chaos", writers=40, per_writer=250)
    tasks = appenders.start()
    while appenders.count < 5_000:
        await asyncio.sleep(0.05)
        assert not any(t.done() and t.exception() for t in tasks)
    cluster.kill_master(leader)
    await asyncio.gather(*tasks)
    assert appenders.count == 10_000

    survivors = [m for m in cluster.masters if m is not leader]
    new_leader = await cluster.wait_for_leader(survivors)
    assert new_leader is not leader
    converged = await cluster.wait_converged(survivors)
    logs = [await read_all(m["http"], "chaos") for m in survivors]
    assert logs[0] == logs[1]
    appenders.check(logs[0])
    assert len(logs[0]) == 10_000

    await cluster.wait_dead(leader)
    cluster.restart_master(leader)
    caught_up = await cluster.wait_converged(cluster.masters, timeout=60)
    assert caught_up["position"] >= converged["position"]
    assert await read_all(leader["http"], "chaos") == logs[0]
    events = cluster.log_events(leader)
    assert "archive_skipped_to" in events and "archive_backfilled" in events, (
        "the restarted master was expected to install a snapshot and fetch the archive gap"
    )
