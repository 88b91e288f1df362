"""The unmodified pymesos scheduler driver against our masters (in this process, over the
in-memory log) and a scripted agent: subscribe through a redirect, offers, launch, updates
with implicit acknowledgements, framework messages both ways, teardown."""

import asyncio
import base64
import threading

import pytest
from pymesos import MesosSchedulerDriver, Scheduler

from tests.support.fake_agent import FakeAgent
from tests.support.inprocess import InProcessMasters

FAST = {"allocation_interval_s": 0.05, "heartbeat_interval_s": 1.0, "agent_ping_timeout_s": 0.5}


class Recorder(Scheduler):
    def __init__(self):
        self.subscribed = threading.Event()
        self.launched = threading.Event()
        self.framework_id = None
        self.updates: list[dict] = []
        self.messages: list[bytes] = []
        self.lock = threading.Lock()

    def registered(self, driver, framework_id, master_info):
        self.framework_id = framework_id["value"]
        self.subscribed.set()

    def resourceOffers(self, driver, offers):
        if self.launched.is_set():
            driver.declineOffer([o["id"] for o in offers])
            return
        offer = offers[0]
        task = {"task_id": {"value": "pymesos-1"}, "agent_id": offer["agent_id"], "name": "hello",
                "command": {"value": "echo hello"},
                "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.5}},
                              {"name": "mem", "type": "SCALAR", "scalar": {"value": 32}}]}
        driver.launchTasks(offer["id"], [task])
        self.launched.set()

    def statusUpdate(self, driver, update):
        with self.lock:
            self.updates.append(update)

    def frameworkMessage(self, driver, executor_id, agent_id, message):
        with self.lock:
            self.messages.append(base64.b64decode(message))


async def wait_for(predicate, timeout=15):
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


@pytest.fixture
async def masters(tmp_path):
    masters = await InProcessMasters(tmp_path, count=3, **FAST).start()
    masters.elect(0)
    yield masters
    await masters.stop()


async def test_pymesos_runs_a_task_and_acknowledges_its_updates(masters):
    agent = FakeAgent(masters.addresses[0], [
        {"name": "cpus", "type": "SCALAR", "scalar": {"value": 2}},
        {"name": "mem", "type": "SCALAR", "scalar": {"value": 256}}])
    agent_id = await agent.register()
    recorder = Recorder()
    # Pointed at a master that does not lead: pymesos follows the 307.
    driver = MesosSchedulerDriver(recorder, {"user": "test", "name": "pymesos-e2e", "roles": ["*"]},
                                  masters.addresses[2])
    # pymesos blocks on HTTP in the calling thread; our masters serve on this event loop.
    await asyncio.to_thread(driver.start)
    try:
        await wait_for(recorder.subscribed.is_set)
        run = await agent.next("RUN_TASK")
        task = run["run_task"]["task"]
        assert task["task_id"]["value"] == "pymesos-1" and task["command"]["value"] == "echo hello"
        framework_id = recorder.framework_id
        uuids = []
        for state in ("TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"):
            uuids.append(await agent.update(framework_id, "pymesos-1", state))
            ack = await agent.next("ACKNOWLEDGE")
            assert base64.b64decode(ack["acknowledge"]["uuid"]) == uuids[-1]
        assert [u["state"] for u in recorder.updates] == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]

        # Framework messages, both ways.
        await asyncio.to_thread(driver.sendFrameworkMessage, {"value": "default"}, {"value": agent_id},
                                base64.b64encode(b"ping").decode())
        message = await agent.next("MESSAGE")
        assert base64.b64decode(message["message"]["data"]) == b"ping"
        code = await agent.call("MESSAGE", message={"framework_id": {"value": framework_id},
                                                    "executor_id": {"value": "default"},
                                                    "data": base64.b64encode(b"pong").decode()})
        assert code == 202
        await wait_for(lambda: recorder.messages == [b"pong"])
    finally:
        await asyncio.to_thread(driver.stop)
        await asyncio.to_thread(driver.join)
    # stop() without failover tears the framework down.
    state = masters.contexts[0].replica.state.cluster
    await wait_for(lambda: framework_id in state.removed_frameworks)
    await agent.close()
