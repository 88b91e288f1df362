"""End to end: the unmodified pymesos scheduler driver, our masters (in this process, over
the in-memory log), a real agent, a command task and a pymesos executor."""

from __future__ import annotations

import asyncio
import base64
import sys
import threading

import pytest
from pymesos import MesosSchedulerDriver, Scheduler, encode_data

from tests.agent.conftest import RunningAgent, agent_config
from tests.agent.test_executor_api import EXECUTOR
from tests.support.inprocess import InProcessMasters

FAST = {"allocation_interval_s": 0.05, "heartbeat_interval_s": 1.0, "agent_ping_timeout_s": 1.0}


def scalar(name: str, value: float) -> dict:
    return {"name": name, "type": "SCALAR", "scalar": {"value": value}}


class Framework(Scheduler):
    def __init__(self):
        self.launched = threading.Event()
        self.states: dict[str, list[str]] = {}
        self.messages: list[bytes] = []
        self.lock = threading.Lock()

    def resourceOffers(self, driver, offers):
        if self.launched.is_set():
            driver.declineOffer([o["id"] for o in offers])
            return
        offer = offers[0]
        command = {"task_id": {"value": "cmd"}, "agent_id": offer["agent_id"], "name": "cmd",
                   "command": {"value": "echo hello from $MESOS_TASK_ID"},
                   "resources": [scalar("cpus", 0.5), scalar("mem", 64)]}
        executor = {"task_id": {"value": "exec"}, "agent_id": offer["agent_id"], "name": "exec",
                    "resources": [scalar("cpus", 0.5), scalar("mem", 64)],
                    "executor": {"executor_id": {"value": "echo"}, "name": "echo",
                                 "command": {"value": f"{sys.executable} {EXECUTOR}"},
                                 "resources": [scalar("cpus", 0.1), scalar("mem", 512)]}}
        driver.launchTasks(offer["id"], [command, executor])
        self.launched.set()

    def statusUpdate(self, driver, update):
        with self.lock:
            self.states.setdefault(update["task_id"]["value"], []).append(update["state"])
        if update["task_id"]["value"] == "exec" and update["state"] == "TASK_RUNNING":
            driver.sendFrameworkMessage({"value": "echo"}, update["agent_id"], encode_data(b"finish"))

    def frameworkMessage(self, driver, executor_id, agent_id, message):
        with self.lock:
            self.messages.append(base64.b64decode(message))


async def wait_for(predicate, timeout=20):
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_pymesos_scheduler_master_agent_and_pymesos_executor(tmp_path):
    masters = await InProcessMasters(tmp_path, count=1, **FAST).start()
    masters.elect(0)
    agent = await RunningAgent(agent_config(tmp_path / "agent", masters.addresses)).start()
    framework = Framework()
    driver = MesosSchedulerDriver(framework, {"user": "test", "name": "e2e", "roles": ["*"], "checkpoint": True},
                                  masters.addresses[0])
    await asyncio.to_thread(driver.start)
    try:
        await wait_for(lambda: framework.states.get("cmd", [])[-1:] == ["TASK_FINISHED"]
                       and framework.states.get("exec", [])[-1:] == ["TASK_FINISHED"])
        assert framework.states["cmd"] == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]
        assert framework.states["exec"] == ["TASK_RUNNING", "TASK_FINISHED"]
        assert framework.messages == [b"echo:finish"]
        # Acknowledged end to end: the agent holds no pending update and forgets finished tasks.
        await wait_for(lambda: not agent.agent.updates.all() and not agent.agent.tasks)
    finally:
        await asyncio.to_thread(driver.stop)
        await agent.stop()
        await masters.stop()
