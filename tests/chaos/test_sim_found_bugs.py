"""Bugs the simulator (`mesos-es chaos sim`) found in the real code, each as the smallest
test against the real code that failed before its fix (marked xfail(strict=True) while one
is open: when a fix lands the test passes, strict makes that a failure, and the marker comes
off).

Fixed: a first REGISTER sent again after its REGISTERED was lost made a second, ghost agent
(e82d57a, tests/master/test_agent_registration.py); a second copy of an ACCEPT reported the
tasks the first had launched as TASK_DROPPED (dab1d4a, tests/core/test_accept_retry.py); a
late copy of an agent's first REGISTER reported its running tasks lost, and an agent
restarted before its first REGISTERED registered as a second agent (both below).
tests/chaos/test_sim.py provokes them in the simulator."""

import asyncio
import uuid

import pytest

from mesos_es.agent.agent import Agent
from mesos_es.client.scheduler import SchedulerClient, launch, scalar
from mesos_es.pb import mesos_pb2
from tests.agent.conftest import agent_config
from tests.master.test_scheduler_api import Events, next_event
from tests.support.fake_agent import FakeAgent
from tests.support.inprocess import InProcessMasters

FAST = {"allocation_interval_s": 0.05, "heartbeat_interval_s": 1.0, "agent_ping_timeout_s": 0.5}
RESOURCES = [scalar("cpus", 4), scalar("mem", 1024)]


async def test_a_late_copy_of_an_agents_first_register_does_not_lose_its_running_tasks(tmp_path):
    masters = await InProcessMasters(tmp_path, count=1, **FAST).start()
    masters.elect(0)
    key = str(uuid.uuid4())
    agent = FakeAgent(masters.addresses[0], RESOURCES, registration_key=key)
    late_copy = FakeAgent(masters.addresses[0], RESOURCES, registration_key=key)
    try:
        agent_id = await agent.register()
        async with SchedulerClient(masters.addresses, {"user": "u", "name": "f"}) as client:
            events = Events(client)
            framework_id = (await next_event(events, "SUBSCRIBED"))["subscribed"]["framework_id"]["value"]
            (offer,) = (await next_event(events, "OFFERS"))["offers"]["offers"]
            await client.accept([offer["id"]["value"]], [launch("t1", agent_id, "sleep 60", [scalar("cpus", 1)])])
            await agent.next("RUN_TASK")
            await agent.update(framework_id, "t1", "TASK_RUNNING")
            await asyncio.sleep(0.1)
            assert await late_copy.register() == agent_id  # the first REGISTER, arriving again, late
            task = masters.contexts[0].replica.state.cluster.frameworks[framework_id].tasks["t1"]
            assert mesos_pb2.TaskState.Name(task.state) == "TASK_RUNNING"
    finally:
        await agent.close()
        await late_copy.close()
        await masters.stop()


def test_an_agent_restarted_before_its_first_registered_registers_with_the_same_key(tmp_path):
    config = agent_config(tmp_path / "agent", ["127.0.0.1:1"])
    first = Agent(config)
    first.recover()
    sent = first.register_body()["register"]["registration_key"]
    # The master commits the agent <sent>-S0; the agent crashes before REGISTERED reaches it.
    restarted = Agent(config)
    restarted.recover()
    assert restarted.register_body()["register"].get("registration_key") == sent
