"""Hot standbys in one process: reads with their freshness, strong reads forwarded to the
leader, and the scheduler API proxied through a standby across a leader change."""

import asyncio

import aiohttp
import orjson
import pytest

from mesos_es.client.scheduler import SchedulerClient, launch, scalar
from mesos_es.core.agent_digest import tasks_digest
from mesos_es.pb import events_pb2, mesos_pb2
from tests.master.test_scheduler_api import Events, next_event
from tests.support.fake_agent import FakeAgent, RegisterRefused
from tests.support.inprocess import InProcessMasters

FAST = {"allocation_interval_s": 0.05, "heartbeat_interval_s": 1.0, "agent_ping_timeout_s": 0.5}
RESOURCES = [scalar("cpus", 4), scalar("mem", 1024)]


@pytest.fixture
async def masters(tmp_path):
    masters = await InProcessMasters(tmp_path, count=3, scheduler_api="proxy", **FAST).start()
    masters.elect(0)
    yield masters
    await masters.stop()


async def operator(url: str, call: dict, query: str = ""):
    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            async with http.post(f"{url}/api/v1{query}", data=orjson.dumps(call), allow_redirects=False,
                                 headers={"Content-Type": "application/json"}) as r:
                body = await r.read()
                if r.status != 503:
                    return r.status, r.headers, orjson.loads(body) if body else None
            await asyncio.sleep(0.05)
    raise AssertionError("no leader")


async def test_standby_reads_say_how_fresh_they_are_and_strong_reads_see_the_last_write(masters):
    leader, standby = masters.url(0), masters.url(2)
    weights = {"type": "UPDATE_WEIGHTS", "update_weights": {"weight_infos": [{"role": "ops", "weight": 4}]}}
    assert (await operator(leader, weights))[0] == 200
    # A strong read on a standby is forwarded: it sees the write at once.
    status, headers, body = await operator(standby, {"type": "GET_ROLES"}, "?consistency=strong")
    assert status == 200
    assert any(r["name"] == "ops" and r["weight"] == 4 for r in body["get_roles"]["roles"])
    assert headers["Mesos-ES-Last-Contact-Ms"] == "0"  # the leader answered

    await asyncio.sleep(0.1)  # the standby catches up
    status, headers, body = await operator(standby, {"type": "GET_MASTER"})
    position = int(headers["Mesos-ES-Position"])
    assert position == masters.contexts[0].replica.state.position
    assert headers["Mesos-ES-Digest"] == masters.contexts[0].replica.digest()[1]
    assert headers["Mesos-ES-Leader"] == masters.addresses[0]
    assert headers["Mesos-ES-Last-Contact-Ms"].isdigit()

    status, _, body = await operator(standby, {"type": "GET_METRICS"})
    metrics = {m["name"]: m["value"] for m in body["get_metrics"]["metrics"]}
    assert metrics["master/elected"] == 0 and metrics["mesos-es/log/applied_position"] == position
    status, _, body = await operator(leader, {"type": "GET_METRICS"})
    assert {m["name"]: m["value"] for m in body["get_metrics"]["metrics"]}["master/elected"] == 1

    status, _, body = await operator(standby, {"type": "GET_ROLES"}, "?consistency=linear")
    assert status == 400 and "consistency" in body["error"]


async def test_a_framework_keeps_working_through_a_standby_across_a_leader_change(masters):
    agent = FakeAgent(masters.addresses[0], RESOURCES)
    agent_id = await agent.register()
    standby = masters.addresses[2]
    async with SchedulerClient([standby], {"user": "u", "name": "proxied", "roles": ["web"],
                                           "failover_timeout": 60}) as client:
        events = Events(client)
        subscribed = await next_event(events, "SUBSCRIBED")
        framework_id = subscribed["subscribed"]["framework_id"]["value"]
        assert client.leader == standby  # never redirected
        (offer,) = (await next_event(events, "OFFERS"))["offers"]["offers"]
        await client.accept([offer["id"]["value"]], [launch("t1", agent_id, "sleep 60", [scalar("cpus", 1)])])
        await agent.next("RUN_TASK")
        await agent.update(framework_id, "t1", "TASK_RUNNING")
        update = await next_event(events, "UPDATE")
        await client.acknowledge(update["update"]["status"])

        masters.elect(1)  # the old leader steps down and closes its streams
        agent.master = masters.addresses[1]
        await agent.register(tasks=[{"framework_id": {"value": framework_id}, "task_id": {"value": "t1"},
                                     "state": "TASK_RUNNING"}])
        again = await next_event(events, "SUBSCRIBED", timeout=15)
        assert again["subscribed"]["framework_id"]["value"] == framework_id
        assert client.leader == standby
        await client.reconcile([])
        update = await next_event(events, "UPDATE")
        assert update["update"]["status"]["task_id"]["value"] == "t1"
        assert update["update"]["status"]["state"] == "TASK_RUNNING"
        new_leader = masters.contexts[1].replica.state.cluster
        assert new_leader.frameworks[framework_id].connected and len(new_leader.frameworks[framework_id].tasks) == 1
    await agent.close()


async def test_in_redirect_mode_a_standby_redirects_the_scheduler_api(tmp_path):
    masters = await InProcessMasters(tmp_path, count=2, **FAST).start()
    masters.elect(0)
    try:
        async with aiohttp.ClientSession() as http, http.post(
                masters.url(1, "/api/v1/scheduler"), allow_redirects=False,
                data=orjson.dumps({"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "u", "name": "r"}}}),
                headers={"Content-Type": "application/json"}) as r:
            assert r.status == 307 and r.headers["Location"] == f"//{masters.addresses[0]}/api/v1/scheduler"
    finally:
        await masters.stop()


def reregistrations(master) -> list:
    """The AgentReregistered events this master folded, in order."""
    out = []
    for entry in master.log.read(1, master.replica.state.position):
        event = events_pb2.Event.FromString(entry.payload)
        if event.HasField("agent_reregistered"):
            out.append(event.agent_reregistered)
    return out


async def test_after_a_leader_change_an_agent_re_registers_with_its_digest_or_its_tasks(masters):
    agent = FakeAgent(masters.addresses[0], RESOURCES)
    agent_id = await agent.register()
    async with SchedulerClient(masters.addresses, {"user": "u", "name": "f", "roles": ["web"]}) as client:
        events = Events(client)
        framework_id = (await next_event(events, "SUBSCRIBED"))["subscribed"]["framework_id"]["value"]
        (offer,) = (await next_event(events, "OFFERS"))["offers"]["offers"]
        await client.accept([offer["id"]["value"]], [
            launch(t, agent_id, "sleep 60", [scalar("cpus", 1)]) for t in ("t1", "t2")])
        for _ in range(2):
            await agent.next("RUN_TASK")
        for task_id in ("t1", "t2"):
            await agent.update(framework_id, task_id, "TASK_RUNNING")
        await asyncio.sleep(0.1)

        masters.elect(1)
        await next_event(events, "SUBSCRIBED", timeout=15)  # the framework is back first
        agent.master = masters.addresses[1]
        # The agent lost t2 while the master changed: its digest differs, the master asks for
        # the tasks (412) and, given them, reports t2 lost.
        with pytest.raises(RegisterRefused) as refused:
            await agent.register(tasks_digest=tasks_digest([(framework_id, "t1")]))
        assert refused.value.status == 412
        await agent.register(tasks=[{"framework_id": {"value": framework_id}, "task_id": {"value": "t1"},
                                     "state": "TASK_RUNNING"}])
        for _ in range(10):  # the RUNNING updates, never acknowledged, come again first
            lost = (await next_event(events, "UPDATE", timeout=15))["update"]["status"]
            if lost["task_id"]["value"] == "t2" and lost["state"] != "TASK_RUNNING":
                break
        assert lost["state"] == "TASK_LOST" and lost["reason"] == "REASON_RECONCILIATION"

        # Another leader change: now the digest matches, and no task list is sent or needed.
        masters.elect(2)
        agent.master = masters.addresses[2]
        await agent.register(tasks_digest=tasks_digest([(framework_id, "t1")]))
        last = reregistrations(masters.contexts[2])[-1]
        assert last.tasks_unchanged and not last.tasks
        state = masters.contexts[2].replica.state.cluster
        assert state.agents[agent_id].reachable
        assert state.frameworks[framework_id].tasks["t1"].state == mesos_pb2.TASK_RUNNING
    await agent.close()


@pytest.mark.parametrize("hold_s", [5.0, 0.0])
async def test_calls_that_arrive_during_an_election_wait_for_the_new_leader(tmp_path, hold_s):
    """Held (Nomad's rpc_hold_timeout), an agent's REGISTER and a scheduler's SUBSCRIBE made
    while no leader is known are redirected the moment one is; with the hold off they get
    503 at once (and their clients back off)."""
    masters = await InProcessMasters(tmp_path, count=3, leader_hold_timeout_s=hold_s, **FAST).start()
    try:
        register = {"type": "REGISTER", "register": {"agent_info": {"hostname": "a1", "resources": RESOURCES}}}
        subscribe = {"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "u", "name": "held"}}}
        loop = asyncio.get_running_loop()
        async with aiohttp.ClientSession() as http:
            async def call(path: str, body: dict):
                async with http.post(masters.url(1, path), data=orjson.dumps(body), allow_redirects=False,
                                     headers={"Content-Type": "application/json"}) as r:
                    return r.status, r.headers.get("Location"), loop.time()

            calls = [asyncio.ensure_future(call("/api/v1/agent", register)),
                     asyncio.ensure_future(call("/api/v1/scheduler", subscribe))]
            await asyncio.sleep(0.5)  # no leader yet: the calls wait (or were answered)
            elected_at = loop.time()
            masters.elect(0)
            answers = await asyncio.gather(*calls)
        for status, location, answered_at in answers:
            if hold_s:  # a 307 to the leader can only come once there is one
                assert (status, location) in ((307, f"//{masters.addresses[0]}/api/v1/agent"),
                                              (307, f"//{masters.addresses[0]}/api/v1/scheduler"))
                assert elected_at <= answered_at < elected_at + 3.0
            else:
                assert status == 503 and answered_at < elected_at
    finally:
        await masters.stop()


@pytest.mark.parametrize("successor", [1, 2])
async def test_a_standby_holds_a_proxied_call_while_its_leader_is_unreachable(masters, successor):
    """The leader's process died; the standby still names it until the election ends. A call
    proxied through the standby is held and sent to the successor (or served by the standby
    itself when it is elected) instead of failing with 503, which pymesos raises on."""
    await masters.runners[0].cleanup()  # the leader's HTTP server is gone, its log still leads
    subscribe = {"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "u", "name": "held"}}}
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as http:
        async def call():
            async with http.post(masters.url(2, "/api/v1/scheduler"), data=orjson.dumps(subscribe),
                                 headers={"Content-Type": "application/json"}) as r:
                first = await r.content.readuntil(b"\n") if r.status == 200 else await r.read()
                return r.status, first, loop.time()

        answer = asyncio.ensure_future(call())
        await asyncio.sleep(0.5)  # refused by the dead leader, again and again
        assert not answer.done()
        elected_at = loop.time()
        masters.elect(successor)
        status, first, answered_at = await asyncio.wait_for(answer, 5)
    assert status == 200, first
    assert answered_at >= elected_at
    state = masters.contexts[successor].replica.state.cluster
    assert [f.info.name for f in state.frameworks.values()] == ["held"]


async def test_a_strong_read_waiting_on_a_standby_that_gets_elected_is_served_there(masters):
    """A strong read is forwarded to the leader; when the leader dies and this standby is
    elected while the read waits, the standby answers it itself (after its own Raft round)
    rather than 503."""
    await masters.runners[0].cleanup()  # the leader's HTTP server is gone, its log still leads
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession() as http:
        async def read():
            async with http.post(masters.url(2, "/api/v1?consistency=strong"), data=orjson.dumps({"type": "GET_MASTER"}),
                                 headers={"Content-Type": "application/json"}) as r:
                return r.status, r.headers.get("Mesos-ES-Leader"), loop.time()

        answer = asyncio.ensure_future(read())
        await asyncio.sleep(0.5)
        assert not answer.done()
        elected_at = loop.time()
        masters.elect(2)
        status, leader, answered_at = await asyncio.wait_for(answer, 5)
    assert status == 200 and leader == masters.addresses[2]
    assert answered_at >= elected_at


async def test_a_proxied_call_is_held_once_for_the_leader_not_twice(tmp_path):
    """The scheduler API through a standby while no leader is known: held for
    --leader-hold-timeout-s in all (waiting for a leader to be named, then for one to answer),
    then 503."""
    masters = await InProcessMasters(tmp_path, count=3, scheduler_api="proxy", leader_hold_timeout_s=1.0,
                                     **FAST).start()
    try:
        subscribe = {"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "u", "name": "held"}}}
        loop = asyncio.get_running_loop()
        async with aiohttp.ClientSession() as http:
            started = loop.time()
            async with http.post(masters.url(1, "/api/v1/scheduler"), data=orjson.dumps(subscribe),
                                 headers={"Content-Type": "application/json"}) as r:
                status = r.status
            held = loop.time() - started
        assert status == 503
        assert 0.9 < held < 1.6, held
    finally:
        await masters.stop()


async def test_after_a_leader_change_only_re_registered_agents_are_offered(masters):
    """An offer of an agent that has not re-registered with the new leader is void the moment
    it does (its re-registration rescinds its offers), and tasks launched on it are dropped:
    the new leader offers only the agents registered with it, as Mesos does."""
    agent = FakeAgent(masters.addresses[0], RESOURCES)
    agent_id = await agent.register()
    masters.elect(1)
    async with SchedulerClient([masters.addresses[1]], {"user": "u", "name": "f", "roles": ["web"]}) as client:
        events = Events(client)
        await next_event(events, "SUBSCRIBED", timeout=15)
        with pytest.raises(TimeoutError):  # many allocation cycles (every 0.05 s), no offer
            await next_event(events, "OFFERS", timeout=1.0)
        assert masters.contexts[1].replica.state.cluster.agents[agent_id].reachable
        agent.master = masters.addresses[1]
        await agent.register(tasks=[])
        (offer,) = (await next_event(events, "OFFERS", timeout=5))["offers"]["offers"]
        assert offer["agent_id"]["value"] == agent_id
    await agent.close()
