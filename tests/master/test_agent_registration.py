"""An agent's first REGISTER sent again (its REGISTERED was lost) finds the agent it made,
by the registration key the agent keeps until it learns its id."""

import uuid

import aiohttp
import orjson
import pytest

from mesos_es.client.scheduler import SchedulerClient, launch, scalar
from mesos_es.pb import events_pb2
from tests.master.test_scheduler_api import Events, next_event
from tests.support.fake_agent import FakeAgent, RegisterRefused
from tests.support.inprocess import InProcessMasters

FAST = {"allocation_interval_s": 0.05, "heartbeat_interval_s": 1.0, "agent_ping_timeout_s": 0.5}
RESOURCES = [scalar("cpus", 4), scalar("mem", 1024)]


@pytest.fixture
async def masters(tmp_path):
    masters = await InProcessMasters(tmp_path, count=1, **FAST).start()
    masters.elect(0)
    yield masters
    await masters.stop()


def committed(masters, kind: str) -> list:
    context = masters.contexts[0]
    entries = context.log.read(1, context.replica.state.position)
    events = [events_pb2.Event.FromString(e.payload) for e in entries]
    return [getattr(e, kind) for e in events if e.WhichOneof("kind") == kind]


async def test_a_registration_sent_again_with_its_key_is_the_same_agent_and_gets_its_launches(masters):
    key = str(uuid.uuid4())
    first = FakeAgent(masters.addresses[0], RESOURCES, registration_key=key)
    agent_id = await first.register()
    async with SchedulerClient(masters.addresses, {"user": "u", "name": "f"}) as client:
        events = Events(client)
        await next_event(events, "SUBSCRIBED")
        (offer,) = (await next_event(events, "OFFERS"))["offers"]["offers"]
        await client.accept([offer["id"]["value"]], [launch("t1", agent_id, "sleep 60", [scalar("cpus", 1)])])
        await first.next("RUN_TASK")
        await first.close()  # say neither REGISTERED nor the launch ever reached the agent

        again = FakeAgent(masters.addresses[0], RESOURCES, registration_key=key)
        assert await again.register() == agent_id
        run = await again.next("RUN_TASK")  # the launch still STAGING is sent again
        assert run["run_task"]["task"]["task_id"]["value"] == "t1"
        cluster = masters.contexts[0].replica.state.cluster
        assert sorted(cluster.agents) == [agent_id] and cluster.agents[agent_id].reachable
        assert [e.agent_id for e in committed(masters, "agent_registered")] == [agent_id]
        assert [e.agent_id for e in committed(masters, "agent_reregistered")] == [agent_id]
        await again.close()

    other = FakeAgent(masters.addresses[0], RESOURCES, registration_key=str(uuid.uuid4()))
    assert await other.register() != agent_id  # another key: another agent
    await other.close()


@pytest.mark.parametrize("key", ["not-a-uuid", 42, ""])
async def test_a_registration_key_that_is_not_a_uuid_is_refused(masters, key):
    body = {"type": "REGISTER", "register": {"agent_info": {"hostname": "a", "resources": RESOURCES},
                                             "registration_key": key}}
    async with aiohttp.ClientSession() as http:
        async with http.post(masters.url(0, "/api/v1/agent"), data=orjson.dumps(body),
                             headers={"Content-Type": "application/json"}) as r:
            assert r.status == 400
            assert "registration_key" in (await r.json())["error"]
    assert not masters.contexts[0].replica.state.cluster.agents


async def test_a_removed_agents_key_is_refused_as_its_id_is(masters):
    key = str(uuid.uuid4())
    agent = FakeAgent(masters.addresses[0], RESOURCES, registration_key=key)
    agent_id = await agent.register()
    assert await agent.call("UNREGISTER", unregister={}) == 202
    await agent.close()
    again = FakeAgent(masters.addresses[0], RESOURCES, registration_key=key)
    with pytest.raises(RegisterRefused) as refused:
        await again.register()
    await again.close()
    assert refused.value.status == 409 and agent_id in refused.value.args[0]
