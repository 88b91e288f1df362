"""Exclusive cores, QoS classes, memory limits, and the oversubscription estimator."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.agent.conftest import command_task

PROBE = ('python3 -c "import os; print(sorted(os.sched_getaffinity(0)), os.getpriority(os.PRIO_PROCESS, 0))"'
         "; sleep 30")


def labels(**pairs) -> dict:
    return {"labels": [{"key": f"mesos-es/{k.replace('_', '-')}", "value": v} for k, v in pairs.items()]}


def probe_output(agent, task_id: str) -> tuple[list[int], int]:
    sandbox = Path(agent.agent.tasks[("fw-1", task_id)].sandbox)
    cores, nice = (sandbox / "stdout").read_text().rsplit(" ", 1)
    return eval(cores), int(nice)


async def wait_probe(master, agent, task_id):
    await master.wait_state(task_id, "TASK_RUNNING")
    return await master.wait_for(
        lambda: (Path(agent.agent.tasks[("fw-1", task_id)].sandbox) / "stdout").stat().st_size > 0 and
        probe_output(agent, task_id), 10, f"{task_id}'s probe")


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
async def test_exclusive_cores_and_qos_classes(master, make_agent):
    agent = await make_agent([master])
    agent_id = await master.wait_registered()
    cores = sorted(os.sched_getaffinity(0))
    master.run_task(agent_id, command_task("exclusive", PROBE, cpus=1,
                                           labels=labels(exclusive_cpus="true", qos_class="latency-critical")))
    exclusive_cores, nice = await wait_probe(master, agent, "exclusive")
    assert len(exclusive_cores) == 1 and exclusive_cores[0] in cores
    assert nice == (-10 if os.geteuid() == 0 else 0)
    master.run_task(agent_id, command_task("shared", PROBE, labels=labels(qos_class="best-effort")))
    shared_cores, nice = await wait_probe(master, agent, "shared")
    assert shared_cores == [c for c in cores if c not in exclusive_cores] and nice == 19
    # Released when the task ends.
    master.kill_task(agent_id, "exclusive")
    await master.wait_state("exclusive", "TASK_KILLED")
    assert not agent.agent.cores.owners


async def test_a_task_over_its_memory_fails(master, make_agent):
    await make_agent([master])
    agent_id = await master.wait_registered()
    master.run_task(agent_id, command_task("hog", 'python3 -c "x = bytearray(600 << 20)"', mem=128))
    final = await master.wait_state("hog", "TASK_FAILED")
    assert final["message"] == "Command exited with status 1"
    master.run_task(agent_id, command_task("modest", 'python3 -c "x = bytearray(8 << 20)"', mem=128))
    await master.wait_state("modest", "TASK_FINISHED")


def revocable(cpus: float) -> list[dict]:
    return [{"name": "cpus", "type": "SCALAR", "scalar": {"value": cpus}, "revocable": {}},
            {"name": "mem", "type": "SCALAR", "scalar": {"value": 64}}]


async def test_the_estimator_lends_idle_cpus_and_preempts_best_effort_tasks_when_they_are_used(master, make_agent):
    agent = await make_agent([master], resource_estimator="slack", oversubscription_interval_s=0.25)
    agent_id = await master.wait_registered()

    def estimates():
        return [c["update_oversubscribed_resources"]["oversubscribed_resources"] for c in master.calls
                if c["type"] == "UPDATE_OVERSUBSCRIBED_RESOURCES"]

    # Idle for a while, then busy: its allocated CPU is first lent, then taken back.
    master.run_task(agent_id, command_task("regular", "sleep 2.5; while :; do :; done", cpus=1))
    await master.wait_for(lambda: estimates() and estimates()[-1], 10, "an estimate")
    lent = estimates()[-1]
    assert lent[0]["name"] == "cpus" and "revocable" in lent[0] and 0.5 <= lent[0]["scalar"]["value"] <= 0.8
    task = command_task("best-effort", PROBE)
    task["resources"] = revocable(0.5)
    master.run_task(agent_id, task)
    _, nice = await wait_probe(master, agent, "best-effort")
    assert nice == 19
    killed = await master.wait_state("best-effort", "TASK_KILLED", timeout=15)
    assert killed["reason"] == "REASON_CONTAINER_PREEMPTED"
    assert estimates()[-1] == [] or estimates()[-1][0]["scalar"]["value"] < 0.5
    master.kill_task(agent_id, "regular", grace_s=0)
    await master.wait_state("regular", "TASK_KILLED")
