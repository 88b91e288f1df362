"""Oversubscription end to end with real processes: an agent with the slack estimator lends
the CPU an idle task leaves unused; a framework with REVOCABLE_RESOURCES runs a best-effort
task on it; when the idle task gets busy the estimate shrinks and the agent preempts the
best-effort task."""

import asyncio

import pytest

from mesos_es.client.scheduler import SchedulerClient, launch, scalar

pytestmark = pytest.mark.slow


def revocable_cpus(offer: dict) -> float:
    return sum(r["scalar"]["value"] for r in offer["resources"] if r["name"] == "cpus" and "revocable" in r)


async def test_a_best_effort_task_runs_on_revocable_cpus_until_the_estimate_shrinks(make_cluster, tmp_path):
    cluster = await make_cluster(
        masters=1, agents=1, master_flags={"allocation_interval_s": 0.2, "journal_sync": "none"},
        agent_flags={"resource_estimator": "slack", "oversubscribed_resources_interval": 0.5}).start()
    await cluster.wait_for_agents(1)
    go = tmp_path / "go"
    # Idle until the test says go, then burn one CPU (bounded: it is killed at the end).
    steady_command = f"while [ ! -e {go} ]; do sleep 0.1; done; timeout 60 sh -c 'while :; do :; done'"
    states: dict[str, list[dict]] = {"steady": [], "best-effort": []}
    info = {"user": "test", "name": "revocable", "roles": ["batch"],
            "capabilities": [{"type": "REVOCABLE_RESOURCES"}]}
    async with SchedulerClient(cluster.urls(), info) as client:
        async with asyncio.timeout(90):
            async for event in client.events():
                if event["type"] == "OFFERS":
                    for offer in event["offers"]["offers"]:
                        offer_id, agent_id = offer["id"]["value"], offer["agent_id"]["value"]
                        if not states["steady"] and not any(revocable_cpus(o) for o in [offer]):
                            await client.accept([offer_id], [launch("steady", agent_id, steady_command,
                                                                    [scalar("cpus", 1), scalar("mem", 16)])])
                            states["steady"].append({"state": "LAUNCHED"})
                        elif revocable_cpus(offer) >= 0.5 and not states["best-effort"]:
                            cpus = {**scalar("cpus", 0.5), "revocable": {}}
                            await client.accept([offer_id], [launch("best-effort", agent_id, "sleep 60",
                                                                    [cpus, scalar("mem", 16)])])
                            states["best-effort"].append({"state": "LAUNCHED"})
                        else:
                            await client.decline([offer_id], refuse_seconds=0.5)
                elif event["type"] == "UPDATE":
                    status = event["update"]["status"]
                    await client.acknowledge(status)
                    states[status["task_id"]["value"]].append(status)
                    if status["task_id"]["value"] == "best-effort" and status["state"] == "TASK_RUNNING":
                        go.touch()  # the steady task gets busy: the estimate falls to nothing
                    if status["task_id"]["value"] == "best-effort" and status["state"] in (
                            "TASK_KILLED", "TASK_FAILED", "TASK_LOST", "TASK_ERROR"):
                        # While subscribed: once the loop is left, the stream may close
                        # first, and the master refuses a disconnected framework's calls.
                        await client.kill("steady")
                        await client.teardown()
                        break
    best_effort = [s for s in states["best-effort"] if "task_id" in s]
    assert [s["state"] for s in best_effort][-2:] == ["TASK_RUNNING", "TASK_KILLED"], best_effort
    assert best_effort[-1].get("reason") == "REASON_CONTAINER_PREEMPTED", best_effort[-1]
    assert [s["state"] for s in states["steady"] if "task_id" in s][-1] == "TASK_RUNNING"
