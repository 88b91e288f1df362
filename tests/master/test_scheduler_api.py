"""The v1 scheduler API end to end in one process: masters over the in-memory log, our
scheduler client, and a scripted agent."""

import asyncio
import base64

import aiohttp
import orjson
import pytest

from mesos_es.client.scheduler import SchedulerClient, launch, scalar
from mesos_es.pb import mesos_pb2
from tests.support.fake_agent import FakeAgent
from tests.support.inprocess import InProcessMasters

FAST = {"allocation_interval_s": 0.05, "heartbeat_interval_s": 1.0, "agent_ping_timeout_s": 0.5}
RESOURCES = [scalar("cpus", 4), scalar("mem", 1024)]


@pytest.fixture
async def masters(tmp_path):
    masters = await InProcessMasters(tmp_path, count=3, **FAST).start()
    masters.elect(0)
    yield masters
    await masters.stop()


class Events:
    """The client's events, pumped into a queue so a test can wait with a timeout."""

    def __init__(self, scheduler: SchedulerClient):
        self.queue: asyncio.Queue = asyncio.Queue()
        self.task = asyncio.get_running_loop().create_task(self._pump(scheduler))

    async def _pump(self, scheduler):
        async for event in scheduler.events():
            await self.queue.put(event)


async def next_event(events: Events, kind, timeout=10):
    async with asyncio.timeout(timeout):
        while True:
            event = await events.queue.get()
            if event["type"] == kind:
                return event


async def running_task(scheduler, events, agent, command) -> tuple[str, dict]:
    """Subscribe, register the agent, launch t1 on its offer and see TASK_RUNNING: the agent's
    id and the UPDATE's status."""
    await next_event(events, "SUBSCRIBED")
    agent_id = await agent.register()
    offer = (await next_event(events, "OFFERS"))["offers"]["offers"][0]
    await scheduler.accept([offer["id"]["value"]], [launch("t1", agent_id, command, [scalar("cpus", 1)])])
    await agent.next("RUN_TASK")
    await agent.update(scheduler.framework_id, "t1", "TASK_RUNNING")
    return agent_id, (await next_event(events, "UPDATE"))["update"]["status"]


async def test_a_task_runs_from_offer_to_acknowledged_finish(masters):
    agent = FakeAgent(masters.addresses[0], RESOURCES)
    async with SchedulerClient(masters.addresses[1:] + masters.addresses[:1],
                               {"user": "u", "name": "test", "roles": ["web"]}) as scheduler:
        events = Events(scheduler)
        subscribed = await next_event(events, "SUBSCRIBED")
        assert subscribed["subscribed"]["framework_id"]["value"] == scheduler.framework_id
        assert scheduler.leader == masters.addresses[0]  # followed the redirect
        agent_id = await agent.register()
        offers = (await next_event(events, "OFFERS"))["offers"]["offers"]
        assert [o["agent_id"]["value"] for o in offers] == [agent_id]
        assert offers[0]["allocation_info"] == {"role": "web"}
        await scheduler.accept([offers[0]["id"]["value"]],
                               [launch("t1", agent_id, "true", [scalar("cpus", 1), scalar("mem", 128)])])
        run = await agent.next("RUN_TASK")
        assert run["run_task"]["task"]["task_id"] == {"value": "t1"}
        assert run["run_task"]["framework_info"]["id"] == {"value": scheduler.framework_id}

        for state in ("TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"):
            uuid = await agent.update(scheduler.framework_id, "t1", state)
            update = (await next_event(events, "UPDATE"))["update"]["status"]
            assert update["state"] == state and base64.b64decode(update["uuid"]) == uuid
            assert update["agent_id"] == {"value": agent_id}
            await scheduler.acknowledge(update)
            ack = await agent.next("ACKNOWLEDGE")
            assert base64.b64decode(ack["acknowledge"]["uuid"]) == uuid
        state = masters.contexts[0].replica.state
        framework = state.cluster.frameworks[scheduler.framework_id]
        assert "t1" not in framework.tasks and framework.completed_tasks[-1].info.task_id == "t1"
        # Every replica folded the same history.
        await asyncio.sleep(0.1)
        assert len({c.replica.digest() for c in masters.contexts}) == 1
    await agent.close()


async def test_calls_without_the_stream_id_or_with_bad_json_change_nothing(masters):
    url = masters.url(0, "/api/v1/scheduler")
    json_ = {"Content-Type": "application/json"}
    async with SchedulerClient(masters.addresses, {"user": "u", "name": "t"}) as scheduler:
        events = Events(scheduler)
        await next_event(events, "SUBSCRIBED")
        position = masters.contexts[0].replica.state.position
        stream = {**json_, "Mesos-Stream-Id": scheduler.stream_id}
        async with aiohttp.ClientSession() as http:
            call = {"type": "DECLINE", "framework_id": {"value": scheduler.framework_id},
                    "decline": {"offer_ids": []}}
            async with http.post(url, data=orjson.dumps(call), headers=json_) as r:
                assert r.status == 403
            async with http.post(url, data=b"{not json", headers=stream) as r:
                assert r.status == 400 and "malformed JSON" in (await r.json())["error"]
            call = {"type": "DECLINE", "framework_id": {"value": "nope"}, "decline": {"offer_ids": []}}
            async with http.post(url, data=orjson.dumps(call), headers=json_) as r:
                assert r.status == 404
            call = {"type": "ACCEPT", "framework_id": {"value": scheduler.framework_id}, "accept": {"offer_ids": 7}}
            async with http.post(url, data=orjson.dumps(call), headers=stream) as r:
                assert r.status == 400
            # Content types as Mesos takes them: JSON or protobuf, and the header is required.
            call = {"type": "DECLINE", "framework_id": {"value": scheduler.framework_id},
                    "decline": {"offer_ids": []}}
            for content_type, status in (("text/plain", 415), ("application/octet-stream", 415), (None, 400)):
                headers = {"Mesos-Stream-Id": scheduler.stream_id}
                if content_type:
                    headers["Content-Type"] = content_type
                async with http.post(url, data=orjson.dumps(call), headers=headers,
                                     skip_auto_headers=["Content-Type"]) as r:
                    assert r.status == status, (content_type, r.status)
                    assert "application/x-protobuf" in (await r.json())["error"]
        assert masters.contexts[0].replica.state.position == position


async def test_an_acknowledgement_from_an_old_subscription_is_taken_not_refused(masters):
    """pymesos acknowledges an update that reached it on the old leader's stream through
    whichever master answers next; refused, the driver's event thread stops."""
    agent = FakeAgent(masters.addresses[0], RESOURCES)
    url = masters.url(0, "/api/v1/scheduler")
    async with SchedulerClient(masters.addresses, {"user": "u", "name": "t"}) as scheduler:
        _, update = await running_task(scheduler, Events(scheduler), agent, "sleep 9")
        position = masters.contexts[0].replica.state.position
        old_stream = {"Content-Type": "application/json", "Mesos-Stream-Id": "an-old-subscription"}
        ack = {"type": "ACKNOWLEDGE", "framework_id": {"value": scheduler.framework_id},
               "acknowledge": {"agent_id": update["agent_id"], "task_id": update["task_id"], "uuid": update["uuid"]}}
        kill = {"type": "KILL", "framework_id": {"value": scheduler.framework_id}, "kill": {"task_id": {"value": "t1"}}}
        async with aiohttp.ClientSession() as http:
            async with http.post(url, data=orjson.dumps(ack), headers=old_stream) as r:
                assert r.status == 202
            async with http.post(url, data=orjson.dumps(kill), headers=old_stream) as r:
                assert r.status == 403  # anything that acts still needs the current stream
        await agent.next("ACKNOWLEDGE")  # the acknowledgement counted
        framework = masters.contexts[0].replica.state.cluster.frameworks[scheduler.framework_id]
        assert not framework.tasks["t1"].unacknowledged
        assert masters.contexts[0].replica.state.position == position + 1  # and nothing else happened
    await agent.close()


async def test_an_unknown_offer_drops_the_launch_with_a_clear_update(masters):
    async with SchedulerClient(masters.addresses, {"user": "u", "name": "t"}) as scheduler:
        events = Events(scheduler)
        await next_event(events, "SUBSCRIBED")
        await scheduler.accept(["no-such-offer"], [launch("t1", "a1", "true", [scalar("cpus", 1)])])
        status = (await next_event(events, "UPDATE"))["update"]["status"]
        assert status["state"] == "TASK_DROPPED" and status["reason"] == "REASON_INVALID_OFFERS"
        assert "uuid" not in status


async def test_a_task_larger_than_its_offer_fails_alone(masters):
    agent = FakeAgent(masters.addresses[0], RESOURCES)
    async with SchedulerClient(masters.addresses, {"user": "u", "name": "t"}) as scheduler:
        events = Events(scheduler)
        await next_event(events, "SUBSCRIBED")
        agent_id = await agent.register()
        offer = (await next_event(events, "OFFERS"))["offers"]["offers"][0]
        await scheduler.accept([offer["id"]["value"]], [
            launch("big", agent_id, "true", [scalar("cpus", 64)]),
            launch("ok", agent_id, "true", [scalar("cpus", 1)]),
            launch("ok", agent_id, "true", [scalar("cpus", 1)]),
        ])
        errors = [(await next_event(events, "UPDATE"))["update"]["status"] for _ in range(2)]
        assert {(s["task_id"]["value"], s["state"]) for s in errors} == {("big", "TASK_ERROR"), ("ok", "TASK_ERROR")}
        assert "not in the offers" in next(s for s in errors if s["task_id"]["value"] == "big")["message"]
        run = await agent.next("RUN_TASK")
        assert run["run_task"]["task"]["task_id"]["value"] == "ok"
    await agent.close()


async def test_decline_filters_the_agent_and_revive_clears_it(masters):
    agent = FakeAgent(masters.addresses[0], RESOURCES)
    async with SchedulerClient(masters.addresses, {"user": "u", "name": "t"}) as scheduler:
        events = Events(scheduler)
        await next_event(events, "SUBSCRIBED")
        await agent.register()
        offer = (await next_event(events, "OFFERS"))["offers"]["offers"][0]
        await scheduler.decline([offer["id"]["value"]], refuse_seconds=3600)
        with pytest.raises(TimeoutError):
            await next_event(events, "OFFERS", timeout=0.5)
        await scheduler.revive()
        assert (await next_event(events, "OFFERS"))["offers"]["offers"]
    await agent.close()


async def test_offers_time_out_and_are_rescinded(tmp_path):
    masters = await InProcessMasters(tmp_path, count=1, offer_timeout_s=0.3, **FAST).start()
    masters.elect(0)
    agent = FakeAgent(masters.addresses[0], RESOURCES)
    try:
        async with SchedulerClient(masters.addresses, {"user": "u", "name": "t"}) as scheduler:
            events = Events(scheduler)
            await next_event(events, "SUBSCRIBED")
            await agent.register()
            offer = (await next_event(events, "OFFERS"))["offers"]["offers"][0]
            rescind = await next_event(events, "RESCIND")
            assert rescind["rescind"]["offer_id"] == offer["id"]
    finally:
        await agent.close()
        await masters.stop()


async def test_a_silent_agent_is_marked_unreachable_and_its_tasks_lost(masters):
    agent = FakeAgent(masters.addresses[0], RESOURCES)
    async with SchedulerClient(masters.addresses, {"user": "u", "name": "t"}) as scheduler:
        events = Events(scheduler)
        agent_id, running = await running_task(scheduler, events, agent, "sleep 100")
        assert running["state"] == "TASK_RUNNING" and running["uuid"]
        await agent.close()  # no more PONGs
        status = (await next_event(events, "UPDATE"))["update"]["status"]
        assert status["state"] == "TASK_LOST" and status["reason"] == "REASON_AGENT_REMOVED"
        assert masters.contexts[0].replica.state.cluster.agents[agent_id].reachable is False


async def test_an_agent_sends_many_tasks_updates_in_one_call(masters):
    agent = FakeAgent(masters.addresses[0], RESOURCES)
    agent_id = await agent.register()
    async with SchedulerClient(masters.addresses, {"user": "u", "name": "t"}) as scheduler:
        events = Events(scheduler)
        framework_id = (await next_event(events, "SUBSCRIBED"))["subscribed"]["framework_id"]["value"]
        (offer,) = (await next_event(events, "OFFERS"))["offers"]["offers"]
        await scheduler.accept([offer["id"]["value"]], [
            launch(t, agent_id, "sleep 9", [scalar("cpus", 0.5)]) for t in ("a", "b", "c")])
        for _ in range(3):
            await agent.next("RUN_TASK")

        def item(task_id, uuid=b"\x01" * 16, state="TASK_RUNNING"):
            return {"framework_id": {"value": framework_id}, "status": {
                "task_id": {"value": task_id}, "state": state, "source": "SOURCE_EXECUTOR",
                "uuid": base64.b64encode(uuid).decode(), "timestamp": 1.0}}

        position = masters.contexts[0].replica.state.position
        # Refused whole, nothing taken: a malformed item, two of one task, none at all.
        for bad in ([item("a"), item("b", uuid=b"short")], [item("a"), item("a", uuid=b"\x02" * 16)], []):
            assert await agent.call("UPDATES", updates={"updates": bad}) == 400
        assert masters.contexts[0].replica.state.position == position
        assert await agent.call("UPDATES", updates={"updates": [item(t, bytes([i + 1]) * 16)
                                                                for i, t in enumerate("abc")]}) == 202
        seen = {(await next_event(events, "UPDATE"))["update"]["status"]["task_id"]["value"] for _ in range(3)}
        assert seen == {"a", "b", "c"}
        tasks = masters.contexts[0].replica.state.cluster.frameworks[framework_id].tasks
        assert all(tasks[t].state == mesos_pb2.TASK_RUNNING for t in "abc")
    await agent.close()
