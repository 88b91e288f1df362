"""All three masters SIGKILLed at the same instant, then `cluster up` on the same work dir."""

import asyncio
from pathlib import Path

import pytest

from tests.integration.appenders import Appenders, read_all
from tests.support.procs import wait_until

pytestmark = pytest.mark.slow

SCENARIOS = {
    # name: (environment of the masters, the files whose presence means "mid-write")
    "at_once": ({}, None),
    "during_state_snapshot": ({"MESOS_ES_TEST_SNAPSHOT_DELAY_S": "1.0"}, "snapshots/*.tmp"),
    "during_raft_dump": ({"MESOS_ES_TEST_RAFT_DUMP_DELAY_S": "0.2"}, "raft/dump.tmp"),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_every_acknowledged_entry_survives_a_whole_cluster_kill(make_cluster, scenario):
    env, mid_write = SCENARIOS[scenario]
    cluster = make_cluster(env=env, master_flags={
        "compaction_min_entries": 30, "compaction_interval_s": 1, "snapshot_every": 200,
    })
    await cluster.start()
    appenders = Appenders(cluster.urls(), "durable", writers=20, per_writer=100_000)
    tasks = appenders.start()
    await wait_until(lambda: appenders.count >= 1_000, 60, what="1,000 acknowledged appends")
    if mid_write:
        await wait_until(lambda: list(Path(cluster.work_dir).glob(f"*/{mid_write}")), 30, interval=0.005,
                         what=f"a file matching {mid_write}")
    cluster.kill_all()  # masters and supervisor, while appends are in flight
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    acknowledged = appenders.count

    await cluster.start()  # `cluster up` again on the same work dir
    leader = await cluster.wait_for_leader()
    entries = await read_all(leader["http"], "durable", consistency="strong")
    appenders.check(entries)
    assert len(entries) >= acknowledged

    more = Appenders(cluster.urls(), "durable", writers=1, per_writer=10)
    await asyncio.gather(*more.start(start=10**6))
    assert [p for _, p in more.acked[0]] == list(range(len(entries) + 1, len(entries) + 11))
    await cluster.wait_converged(cluster.masters)
