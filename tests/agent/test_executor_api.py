"""The v1 executor API with an unmodified pymesos MesosExecutorDriver."""

from __future__ import annotations

import base64
import sys
from pathlib import Path

from tests.agent.conftest import command_task
from tests.support.procs import pid_alive

EXECUTOR = Path(__file__).with_name("pymesos_executor.py")


def executor_task(task_id: str, executor_id: str = "echo") -> dict:
    task = command_task(task_id, "unused")
    del task["command"]
    task["executor"] = {
        "executor_id": {"value": executor_id}, "name": "echo executor",
        "command": {"value": f"{sys.executable} {EXECUTOR}"},
        "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                      {"name": "mem", "type": "SCALAR", "scalar": {"value": 512}}],
    }
    return task


async def test_a_pymesos_executor_runs_a_task_exchanges_messages_and_shuts_down(master, make_agent):
    agent = await make_agent([master])
    agent_id = await master.wait_registered()
    master.run_task(agent_id, executor_task("e1"), checkpoint=True)
    running = await master.wait_state("e1", "TASK_RUNNING", timeout=20)
    assert running["executor_id"] == {"value": "echo"} and running["agent_id"] == {"value": agent_id}
    assert running["message"] == "running"
    executor = agent.agent.executors[("fw-1", "echo")]
    # The agent relays the framework's acknowledgement to the executor.
    master.message(agent_id, "echo", b"hello")
    await master.wait_for(lambda: master.messages, 10, "the executor's reply")
    assert master.messages[0]["executor_id"] == {"value": "echo"}
    assert base64.b64decode(master.messages[0]["data"]) == b"echo:hello"
    # A second task goes to the same executor.
    master.run_task(agent_id, executor_task("e2"), checkpoint=True)
    await master.wait_state("e2", "TASK_RUNNING")
    master.kill_task(agent_id, "e2")
    await master.wait_state("e2", "TASK_KILLED")
    master.message(agent_id, "echo", b"finish")
    await master.wait_state("e1", "TASK_FINISHED")
    assert master.states("e1") == ["TASK_RUNNING", "TASK_FINISHED"]
    # Shutting the framework down shuts the executor down: it exits.
    pid = executor.pid
    master.shutdown_framework(agent_id)
    await master.wait_for(lambda: not pid_alive(pid), 10, "the executor to exit")
    assert (Path(executor.sandbox) / "shutdown").read_text() == "yes\n"
    assert not agent.agent.executors and not agent.agent.tasks


async def test_an_executor_that_dies_fails_its_tasks(master, make_agent):
    await make_agent([master])
    agent_id = await master.wait_registered()
    task = executor_task("doomed", executor_id="crasher")
    task["executor"]["command"] = {"value": "exit 7"}
    master.run_task(agent_id, task)
    final = await master.wait_state("doomed", "TASK_FAILED")
    assert final["reason"] == "REASON_EXECUTOR_TERMINATED" and final["source"] == "SOURCE_AGENT"
    assert final["message"] == "Executor exited with status 7"


async def test_the_executor_api_rejects_unknown_executors(master, make_agent):
    import aiohttp

    agent = await make_agent([master])
    await master.wait_registered()
    async with aiohttp.ClientSession() as session:
        url = f"http://127.0.0.1:{agent.config.port}/api/v1/executor"
        async with session.post(url, json={"type": "SUBSCRIBE", "framework_id": {"value": "x"},
                                           "executor_id": {"value": "y"}, "subscribe": {}}) as response:
            assert response.status == 400 and "unknown executor" in await response.text()
        async with session.post(url, data=b"{nope") as response:
            assert response.status == 400


async def test_a_task_group_goes_to_its_executor_with_launch_group(master, make_agent):
    await make_agent([master])
    agent_id = await master.wait_registered()
    executor = executor_task("unused")["executor"]
    group = [command_task(f"g{i}", "unused") for i in range(2)]
    for task in group:
        del task["command"]
        task["agent_id"] = {"value": agent_id}
    master.push(agent_id, {"type": "RUN_TASK_GROUP", "run_task_group": {
        "framework_info": {"id": {"value": "fw-1"}, "name": "test", "user": "root"},
        "executor": executor, "task_group": {"tasks": group}}})
    for task_id in ("g0", "g1"):
        await master.wait_state(task_id, "TASK_RUNNING", timeout=20)
    master.message(agent_id, "echo", b"finish")
    for task_id in ("g0", "g1"):
        await master.wait_state(task_id, "TASK_FINISHED")
    master.shutdown_framework(agent_id)
