"""Revocation for quota and revocable (oversubscribed) offers, through the leader's loops:
in-process masters, our scheduler client, and a scripted agent."""

import asyncio

import aiohttp
import orjson
import pytest

from mesos_es.client.scheduler import SchedulerClient, launch, scalar
from tests.master.test_scheduler_api import Events, next_event
from tests.support.fake_agent import FakeAgent
from tests.support.inprocess import InProcessMasters

FAST = {"allocation_interval_s": 0.05, "heartbeat_interval_s": 1.0, "agent_ping_timeout_s": 0.5}
RESOURCES = [scalar("cpus", 4), scalar("mem", 1024)]


@pytest.fixture
async def masters(tmp_path):
    masters = await InProcessMasters(tmp_path, count=1, revoke_for_quota=True, revocation_grace_period_s=3.0,
                                     **FAST).start()
    masters.elect(0)
    yield masters
    await masters.stop()


def cpus_of(offer: dict, revocable: bool) -> float:
    return sum(r["scalar"]["value"] for r in offer["resources"]
               if r["name"] == "cpus" and ("revocable" in r) == revocable)


async def operator(masters, call: dict) -> int:
    async with aiohttp.ClientSession() as http, http.post(masters.url(0, "/api/v1"), data=orjson.dumps(call)) as r:
        return r.status


async def test_a_role_below_its_guarantee_gets_the_newest_tasks_revoked_with_a_grace_period(masters):
    agent = FakeAgent(masters.addresses[0], RESOURCES)
    agent_id = await agent.register()
    async with SchedulerClient(masters.addresses, {"user": "u", "name": "web", "roles": ["web"]}) as web:
        events = Events(web)
        framework_id = (await next_event(events, "SUBSCRIBED"))["subscribed"]["framework_id"]["value"]
        (offer,) = (await next_event(events, "OFFERS"))["offers"]["offers"]
        for i in range(4):  # one task per ACCEPT, so their launch times differ
            if i:
                (offer,) = (await next_event(events, "OFFERS"))["offers"]["offers"]
            await web.accept([offer["id"]["value"]], [launch(f"t{i}", agent_id, "sleep 60",
                                                              [scalar("cpus", 1), scalar("mem", 64)])],
                             refuse_seconds=0)
            await agent.next("RUN_TASK")
            await agent.update(framework_id, f"t{i}", "TASK_RUNNING")
            await asyncio.sleep(0.01)
        await web.suppress()
        # Nothing is revoked without a guarantee to meet.
        await asyncio.sleep(0.2)
        assert agent.events.empty()

        assert await operator(masters, {"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [
            {"role": "db", "guarantees": {"cpus": {"value": 2}}}]}}) == 200
        async with SchedulerClient(masters.addresses, {"user": "u", "name": "db", "roles": ["db"]}) as db:
            db_events = Events(db)
            await next_event(db_events, "SUBSCRIBED")
            kills = [await agent.next("KILL_TASK"), await agent.next("KILL_TASK")]
            assert sorted(k["kill_task"]["task_id"]["value"] for k in kills) == ["t2", "t3"]  # newest first
            assert all(k["kill_task"]["kill_policy"] == {"grace_period": {"nanoseconds": 3_000_000_000}}
                       for k in kills)
            await asyncio.sleep(0.2)
            assert agent.events.empty(), "a task in its grace period was revoked again"
            state = masters.contexts[0].replica.state.cluster
            revoked = {t for t, task in state.frameworks[framework_id].tasks.items() if task.revoked_at_ms}
            assert revoked == {"t2", "t3"}

            for task_id in ("t2", "t3"):
                await agent.update(framework_id, task_id, "TASK_KILLED")
            # The freed CPUs go to db (one offer per agent at a time: decline until it holds both).
            for _ in range(20):
                offers = (await next_event(db_events, "OFFERS"))["offers"]["offers"]
                if sum(cpus_of(o, revocable=False) for o in offers) == 2:
                    break
                await db.decline([o["id"]["value"] for o in offers], refuse_seconds=0)
            else:
                raise AssertionError("db never got the revoked CPUs")
    await agent.close()


async def test_an_agents_estimate_is_offered_as_revocable_to_capable_frameworks_only(masters):
    agent = FakeAgent(masters.addresses[0], RESOURCES)
    await agent.register()
    revocable = {**scalar("cpus", 1.5), "revocable": {}}
    assert await agent.call("UPDATE_OVERSUBSCRIBED_RESOURCES", update_oversubscribed_resources={
        "oversubscribed_resources": [scalar("cpus", 1)]}) == 400  # not marked revocable
    assert await agent.call("UPDATE_OVERSUBSCRIBED_RESOURCES", update_oversubscribed_resources={
        "oversubscribed_resources": [{**revocable, "scalar": {"value": -1}}]}) == 400
    assert await agent.call("UPDATE_OVERSUBSCRIBED_RESOURCES", update_oversubscribed_resources={
        "oversubscribed_resources": [revocable]}) == 202

    plain = SchedulerClient(masters.addresses, {"user": "u", "name": "plain", "roles": ["web"]})
    capable = SchedulerClient(masters.addresses, {"user": "u", "name": "be", "roles": ["batch"],
                                                  "capabilities": [{"type": "REVOCABLE_RESOURCES"}]})
    async with plain, capable:
        plain_events, capable_events = Events(plain), Events(capable)
        await next_event(plain_events, "SUBSCRIBED")
        await next_event(capable_events, "SUBSCRIBED")
        seen = {"plain": 0.0, "capable": 0.0}
        async with asyncio.timeout(10):
            while not seen["capable"]:
                for name, events in (("plain", plain_events), ("capable", capable_events)):
                    while not events.queue.empty():
                        event = events.queue.get_nowait()
                        if event["type"] == "OFFERS":
                            seen[name] += sum(cpus_of(o, revocable=True) for o in event["offers"]["offers"])
                await asyncio.sleep(0.05)
        assert seen == {"plain": 0.0, "capable": 1.5}
        state = masters.contexts[0].replica.state.cluster
        (offer,) = [o for o in state.offers.values() if any(r.HasField("revocable") for r in o.resources)]

        # A smaller estimate rescinds the revocable offer; none is left to offer as revocable
        # beyond the new estimate.
        assert await agent.call("UPDATE_OVERSUBSCRIBED_RESOURCES", update_oversubscribed_resources={
            "oversubscribed_resources": [{**revocable, "scalar": {"value": 0.5}}]}) == 202
        rescind = await next_event(capable_events, "RESCIND")
        assert rescind["rescind"]["offer_id"]["value"] == offer.id
        agent_state = masters.contexts[0].replica.state.cluster.agents[offer.agent_id]
        assert [r.scalar.value for r in agent_state.oversubscribed] == [0.5]
        assert all(r.HasField("revocable") for r in agent_state.oversubscribed)
    await agent.close()
