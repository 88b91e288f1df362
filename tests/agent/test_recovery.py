"""An agent killed with SIGKILL and restarted: tasks recovered, updates delivered once, same id."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from mesos_es.processes import die_with_parent
from tests.agent.conftest import RESOURCES, command_task
from tests.support.ports import free_port_block
from tests.support.procs import pid_alive, wait_until

pytestmark = pytest.mark.slow


class AgentProcess:
    def __init__(self, work_dir: Path, master: str, *extra: str):
        self.work_dir = work_dir
        self.port = free_port_block(1, (0,))
        self.argv = [sys.executable, "-m", "mesos_es", "agent", "--master", master, "--work_dir", str(work_dir),
                     "--port", str(self.port), "--hostname", "127.0.0.1", "--resources", RESOURCES,
                     "--log-format", "json", *extra]
        self.process: subprocess.Popen | None = None

    def start(self, *extra: str) -> AgentProcess:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.work_dir / "agent.log", "ab")  # noqa: SIM115 - handed to the child
        self.process = subprocess.Popen([*self.argv, *extra], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                        start_new_session=True,
                                        preexec_fn=die_with_parent(signal.SIGKILL))  # noqa: PLW1509
        return self

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)

    def state(self) -> dict:
        return json.loads((self.work_dir / "meta" / "state.json").read_text())

    def cleanup(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        with contextlib.suppress(FileNotFoundError, ValueError):
            state = self.state()
            for task in state["tasks"] + state["executors"]:
                if task.get("pid"):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(task["pid"], signal.SIGKILL)


async def test_a_killed_agent_recovers_its_tasks_and_delivers_pending_updates_once(master, tmp_path):
    held = {"r1"}
    master.ack_filter = lambda fw, status: not (status["task_id"]["value"] in held and status["state"] == "TASK_RUNNING")
    agent = AgentProcess(tmp_path / "agent", master.address).start()
    try:
        agent_id = await master.wait_registered(timeout=20)
        master.run_task(agent_id, command_task("r1", "sleep 60"))          # RUNNING stays unacknowledged
        master.run_task(agent_id, command_task("r2", "sleep 60"))          # all acknowledged
        master.run_task(agent_id, command_task("r3", "sleep 1"))           # dies while the agent is down
        for task_id in ("r1", "r2", "r3"):
            await master.wait_state(task_id, "TASK_RUNNING", timeout=20)
        pending = master.statuses("r1")[-1]
        assert pending["state"] == "TASK_RUNNING" and pending["uuid"] not in master.acked

        agent.kill()
        pids = {t["task_id"]: t["pid"] for t in agent.state()["tasks"]}
        assert pid_alive(pids["r1"]) and pid_alive(pids["r2"])
        await master.wait_for(lambda: not pid_alive(pids["r3"]), 10, "r3 to exit")
        master.streams.clear()
        held.clear()

        agent.start()
        assert await master.wait_registered(timeout=20) == agent_id
        reregistration = master.registrations[-1]
        assert reregistration["agent_id"] == {"value": agent_id}
        # It tried its task digest first; this master keeps no view (412), so it sent the tasks.
        digest_only = master.registrations[-2]
        assert "tasks" not in digest_only and len(digest_only["tasks_digest"]) == 64
        reported = {t["task_id"]["value"]: t["state"] for t in reregistration["tasks"]}
        assert reported["r1"] == "TASK_RUNNING" and reported["r2"] == "TASK_RUNNING"

        # The pending update arrives again with its uuid, and the framework sees it once.
        await master.wait_for(lambda: pending["uuid"] in master.acked, 10, "the pending update to be acknowledged")
        assert [s["uuid"] for s in master.statuses("r1") if s["state"] == "TASK_RUNNING"] == [pending["uuid"]]
        assert all(u["status"]["uuid"] == pending["uuid"] for u in master.updates
                   if u["status"]["task_id"]["value"] == "r1" and u["status"]["state"] == "TASK_RUNNING")
        # The task that died meanwhile is reported failed, its exit status lost.
        failed = await master.wait_state("r3", "TASK_FAILED", timeout=10)
        assert "exit status is lost" in failed["message"]
        assert master.states("r2") == ["TASK_STARTING", "TASK_RUNNING"]

        # Recovered tasks are still under control: a kill reaches the adopted process.
        master.kill_task(agent_id, "r1", grace_s=1.0)
        await master.wait_state("r1", "TASK_KILLED", timeout=10)
        assert not pid_alive(pids["r1"]) and pid_alive(pids["r2"])
    finally:
        agent.cleanup()


async def test_a_restart_with_changed_resources_follows_the_reconfiguration_policy(master, tmp_path):
    agent = AgentProcess(tmp_path / "agent", master.address).start()
    try:
        agent_id = await master.wait_registered(timeout=20)
        agent_file = agent.work_dir / "meta" / "agent.json"
        await master.wait_for(agent_file.exists, 10, "the agent id to be checkpointed")
        agent.process.send_signal(signal.SIGTERM)
        assert agent.process.wait(timeout=10) == 0
        grown = ["--resources", RESOURCES.replace("cpus:2", "cpus:3")]

        refused = await asyncio.to_thread(subprocess.run, [*agent.argv, *grown], check=False, capture_output=True,
                                          text=True, timeout=30)
        assert refused.returncode == 1
        assert "'equal' policy: resources changed" in refused.stderr and "agent.json" in refused.stderr

        master.streams.clear()
        agent.start(*grown, "--reconfiguration_policy", "additive")
        assert await master.wait_registered(timeout=20) == agent_id
        agent.process.send_signal(signal.SIGTERM)
        assert agent.process.wait(timeout=10) == 0

        shrunk = ["--resources", RESOURCES.replace("cpus:2", "cpus:1")]
        refused = await asyncio.to_thread(subprocess.run, [*agent.argv, *shrunk, "--reconfiguration_policy", "additive"],
                                          check=False, capture_output=True, text=True, timeout=30)
        assert refused.returncode == 1 and "not contained" in refused.stderr

        # The operator removes the checkpointed id: a new agent.
        agent_file.unlink()
        master.streams.clear()
        agent.start(*shrunk)
        assert await master.wait_registered(timeout=20) != agent_id
    finally:
        agent.cleanup()


async def test_a_pymesos_executor_reconnects_to_a_restarted_agent(master, tmp_path):
    import aiohttp

    from tests.agent.test_executor_api import executor_task

    agent = AgentProcess(tmp_path / "agent", master.address).start("--executor_reregistration_timeout", "30secs")
    try:
        agent_id = await master.wait_registered(timeout=20)
        master.run_task(agent_id, executor_task("x1"), checkpoint=True)
        await master.wait_state("x1", "TASK_RUNNING", timeout=20)
        executor_pid = agent.state()["executors"][0]["pid"]
        agent.kill()
        master.streams.clear()
        agent.start("--executor_reregistration_timeout", "30secs")
        assert await master.wait_registered(timeout=20) == agent_id
        assert pid_alive(executor_pid)

        async def resubscribed():
            try:
                async with aiohttp.ClientSession() as session, \
                        session.get(f"http://127.0.0.1:{agent.port}/state") as response:
                    executors = (await response.json())["executors"]
                    return executors and executors[0]["subscribed"]
            except aiohttp.ClientError:
                return False

        await wait_until(resubscribed, 30, interval=0.2, what="the executor to re-subscribe")
        master.message(agent_id, "echo", b"finish")
        await master.wait_state("x1", "TASK_FINISHED", timeout=10)
        assert master.states("x1") == ["TASK_RUNNING", "TASK_FINISHED"]
        master.shutdown_framework(agent_id)
        await master.wait_for(lambda: not pid_alive(executor_pid), 15, "the executor to exit")
    finally:
        agent.cleanup()
