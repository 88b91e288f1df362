"""Synthetic agents: many in one process, the same protocol, tasks on a schedule."""

from __future__ import annotations

import asyncio
import contextlib

from mesos_es.agent.synthetic import serve_synthetic
from tests.agent.conftest import agent_config


def task(task_id: str, **labels) -> dict:
    return {"task_id": {"value": task_id}, "name": task_id, "resources": [], "command": {"value": "ignored"},
            "labels": {"labels": [{"key": f"mesos-es/{k.replace('_', '-')}", "value": v} for k, v in labels.items()]}}


async def test_synthetic_agents_register_and_run_tasks_on_a_schedule(master, tmp_path):
    stop = asyncio.Event()
    config = agent_config(tmp_path, [master.address])
    runner = asyncio.create_task(serve_synthetic(config, 20, task_duration_s=-1, stop=stop))
    try:
        await master.wait_registered(count=20, timeout=20)
        hostnames = {r["agent_info"]["hostname"] for r in master.registrations}
        assert len(hostnames) == 20
        first, second = sorted(master.streams)[:2]
        master.run_task(first, task("quick", duration_seconds="0.2"))
        master.run_task(first, task("bad", duration_seconds="0", exit_code="2"))
        master.run_task(second, task("forever"))
        await master.wait_state("quick", "TASK_FINISHED")
        assert master.states("quick") == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]
        await master.wait_state("bad", "TASK_FAILED")
        await master.wait_state("forever", "TASK_RUNNING")
        master.kill_task(second, "forever")
        await master.wait_state("forever", "TASK_KILLED")
        # Unacknowledged updates are resent; the framework sees each uuid once.
        master.ack_filter = lambda fw, status: False
        master.run_task(second, task("unacked", duration_seconds="0"))
        await master.wait_for(lambda: len([u for u in master.updates if u["status"]["task_id"]["value"] == "unacked"]) > 1,
                              10, "a resend")
        assert master.states("unacked") == ["TASK_STARTING"]
    finally:
        stop.set()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(runner, 10)


async def test_the_command_line_runs_synthetic_agents(master, tmp_path):
    import signal
    import subprocess
    import sys

    process = subprocess.Popen(  # noqa: ASYNC220 - started once
        [sys.executable, "-m", "mesos_es", "agent", "--synthetic", "5", "--master", master.address,
         "--work_dir", str(tmp_path), "--resources", "cpus:8;mem:16384;disk:1000", "--log-format", "json"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await master.wait_registered(count=5, timeout=20)
        assert {r["agent_info"]["resources"][0]["name"] for r in master.registrations} == {"cpus"}
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
