"""The v1 scheduler API in protobuf (`application/x-protobuf`), as Mesos' C++, Go and Java
clients speak it: calls as serialized `mesos.v1.scheduler.Call`, the stream as RecordIO of
`mesos.v1.scheduler.Event`; and the conversions under it (mesos_es/master/http/protobuf.py)."""

import asyncio
import base64
import hashlib

import aiohttp
import orjson
import pytest
import structlog.testing
from google.protobuf import descriptor_pb2, json_format

from mesos_es.client.scheduler import SchedulerClient, launch, scalar
from mesos_es.core.convert import offer_to_json, resources_json_to_proto, task_status_to_json
from mesos_es.master.http import protobuf
from mesos_es.master.http.scheduler import accepts
from mesos_es.master.streams import EventStream
from mesos_es.pb import mesos_pb2
from mesos_es.pb import mesos_v1_pb2 as v1
from mesos_es.pb import scheduler_v1_pb2 as sched
from mesos_es.recordio import Decoder
from tests.support.fake_agent import FakeAgent
from tests.support.inprocess import InProcessMasters

FAST = {"allocation_interval_s": 0.05, "heartbeat_interval_s": 1.0, "agent_ping_timeout_s": 0.5}
RESOURCES = [scalar("cpus", 4), scalar("mem", 1024),
             {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 31000, "end": 31009}]}}]
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
Call, Event = sched.Call, sched.Event


@pytest.fixture
async def masters(tmp_path):
    masters = await InProcessMasters(tmp_path, count=3, **FAST).start()
    masters.elect(0)
    yield masters
    await masters.stop()


class ProtobufScheduler:
    """A framework speaking protobuf over plain HTTP, as a Mesos client library does: every
    call is a serialized Call; the stream is read as the master chose from `accept`."""

    def __init__(self, url: str, accept: str = PROTOBUF):
        self.url = url
        self.accept = accept
        self.http = aiohttp.ClientSession()
        self.events: asyncio.Queue = asyncio.Queue()
        self.framework_id: str | None = None
        self.stream_id: str | None = None
        self.content_type: str | None = None
        self._reader: asyncio.Task | None = None

    async def subscribe(self, info: v1.FrameworkInfo) -> Event:
        call = Call(type=Call.SUBSCRIBE, subscribe=Call.Subscribe(framework_info=info))
        async with asyncio.timeout(10):
            while True:  # a master that has just been elected answers 503 until it leads
                response = await self.http.post(self.url, data=call.SerializeToString(),
                                                headers={"Content-Type": PROTOBUF, "Accept": self.accept})
                if response.status != 503:
                    break
                response.release()
                await asyncio.sleep(0.05)
        assert response.status == 200, await response.text()
        self.stream_id = response.headers["Mesos-Stream-Id"]
        self.content_type = response.headers["Content-Type"]
        self._reader = asyncio.get_running_loop().create_task(self._read(response))
        subscribed = await self.next(Event.SUBSCRIBED)
        self.framework_id = subscribed.subscribed.framework_id.value
        return subscribed

    async def _read(self, response) -> None:
        decoder = Decoder()
        try:
            async for chunk in response.content.iter_any():
                for record in decoder.feed(chunk):
                    if self.content_type == PROTOBUF:
                        await self.events.put(Event.FromString(record))
                    else:  # a JSON stream, read into the same Event for the assertions
                        await self.events.put(json_format.ParseDict(orjson.loads(record), Event()))
        except (aiohttp.ClientError, asyncio.CancelledError):
            pass
        finally:
            response.release()

    async def next(self, kind: int, timeout: float = 10) -> Event:
        async with asyncio.timeout(timeout):
            while True:
                event = await self.events.get()
                if event.type == kind:
                    return event

    async def post(self, call: Call, stream_id: str | None = "mine") -> tuple[int, str]:
        headers = {"Content-Type": PROTOBUF}
        if stream_id:
            headers["Mesos-Stream-Id"] = self.stream_id if stream_id == "mine" else stream_id
        async with self.http.post(self.url, data=call if isinstance(call, bytes) else call.SerializeToString(),
                                  headers=headers) as response:
            return response.status, await response.text()

    async def call(self, kind: int, **body) -> None:
        call = Call(type=kind, framework_id=v1.FrameworkID(value=self.framework_id), **body)
        status, text = await self.post(call)
        assert status == 202, (Call.Type.Name(kind), status, text)

    async def close(self) -> None:
        if self._reader:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        await self.http.close()


def framework_info(**extra) -> v1.FrameworkInfo:
    info = v1.FrameworkInfo(user="u", name="protobuf", roles=["web"], **extra)
    info.capabilities.add(type=v1.FrameworkInfo.Capability.MULTI_ROLE)
    return info


def scalar_pb(name: str, value: float) -> v1.Resource:
    return v1.Resource(name=name, type=v1.Value.SCALAR, scalar=v1.Value.Scalar(value=value))


def task_pb(task_id: str, agent_id: str, command: str = "sleep 100") -> v1.TaskInfo:
    task = v1.TaskInfo(name=task_id, task_id=v1.TaskID(value=task_id), agent_id=v1.AgentID(value=agent_id),
                       resources=[scalar_pb("cpus", 1), scalar_pb("mem", 128)],
                       command=v1.CommandInfo(value=command), data=b"\x00\xffpayload")
    port = task.resources.add(name="ports", type=v1.Value.RANGES)
    port.ranges.range.add(begin=31000, end=31000)
    task.kill_policy.grace_period.nanoseconds = 3_000_000_000
    task.labels.labels.add(key="tier", value="gold")
    return task


# -- end to end ---------------------------------------------------------------------------------

async def test_a_protobuf_framework_subscribes_launches_acknowledges_and_kills(masters):
    agent = FakeAgent(masters.addresses[0], RESOURCES)
    scheduler = ProtobufScheduler(masters.url(0, "/api/v1/scheduler"))
    try:
        subscribed = await scheduler.subscribe(framework_info(failover_timeout=60))
        assert scheduler.content_type == PROTOBUF
        assert subscribed.subscribed.heartbeat_interval_seconds == FAST["heartbeat_interval_s"]
        assert subscribed.subscribed.master_info.id == "master-1"
        assert subscribed.subscribed.master_info.address.port == int(masters.addresses[0].rsplit(":", 1)[1])
        framework = masters.contexts[0].replica.state.cluster.frameworks[scheduler.framework_id]
        assert framework.info.name == "protobuf" and list(framework.info.roles) == ["web"]
        assert list(framework.info.capabilities) == ["MULTI_ROLE"] and framework.info.failover_timeout == 60

        agent_id = await agent.register()
        offers = (await scheduler.next(Event.OFFERS)).offers.offers
        assert [o.agent_id.value for o in offers] == [agent_id]
        offer = offers[0]
        assert offer.framework_id.value == scheduler.framework_id and offer.hostname == "agent.test"
        assert offer.allocation_info.role == "web" and offer.url.address.port == 5051
        by_name = {r.name: r for r in offer.resources}
        assert by_name["cpus"].type == v1.Value.SCALAR and by_name["cpus"].scalar.value == 4
        assert [(r.begin, r.end) for r in by_name["ports"].ranges.range] == [(31000, 31009)]
        assert all(r.allocation_info.role == "web" for r in offer.resources)

        await scheduler.call(Call.ACCEPT, accept=Call.Accept(
            offer_ids=[offer.id], filters=v1.Filters(refuse_seconds=1),
            operations=[v1.Offer.Operation(type=v1.Offer.Operation.LAUNCH, launch=v1.Offer.Operation.Launch(
                task_infos=[task_pb("t1", agent_id)]))]))
        run = (await agent.next("RUN_TASK"))["run_task"]
        task = run["task"]
        assert task["task_id"] == {"value": "t1"} and task["command"] == {"value": "sleep 100"}
        assert base64.b64decode(task["data"]) == b"\x00\xffpayload"
        assert task["kill_policy"] == {"grace_period": {"nanoseconds": 3_000_000_000}}  # int64 as a number
        assert task["labels"] == {"labels": [{"key": "tier", "value": "gold"}]}
        ports = next(r for r in task["resources"] if r["name"] == "ports")
        assert ports["ranges"] == {"range": [{"begin": 31000, "end": 31000}]}
        assert run["framework_info"]["capabilities"] == [{"type": "MULTI_ROLE"}]

        uuid = await agent.update(scheduler.framework_id, "t1", "TASK_RUNNING", healthy=True,
                                  data=base64.b64encode(b"\x01\x02").decode())
        status = (await scheduler.next(Event.UPDATE)).update.status
        assert (status.task_id.value, status.state, status.uuid) == ("t1", v1.TASK_RUNNING, uuid)
        assert status.agent_id.value == agent_id and status.source == v1.TaskStatus.SOURCE_EXECUTOR
        assert status.healthy and status.data == b"\x01\x02" and status.timestamp == 1.0
        await scheduler.call(Call.ACKNOWLEDGE, acknowledge=Call.Acknowledge(
            agent_id=status.agent_id, task_id=status.task_id, uuid=status.uuid))
        ack = (await agent.next("ACKNOWLEDGE"))["acknowledge"]
        assert base64.b64decode(ack["uuid"]) == uuid and ack["task_id"] == {"value": "t1"}

        # Messages both ways carry raw bytes.
        await scheduler.call(Call.MESSAGE, message=Call.Message(
            agent_id=v1.AgentID(value=agent_id), executor_id=v1.ExecutorID(value="t1"), data=b"\xfe\x00hi"))
        relayed = (await agent.next("MESSAGE"))["message"]
        assert base64.b64decode(relayed["data"]) == b"\xfe\x00hi"
        assert await agent.call("MESSAGE", message={
            "framework_id": {"value": scheduler.framework_id}, "executor_id": {"value": "t1"},
            "data": base64.b64encode(b"\x00back").decode()}) == 202
        message = (await scheduler.next(Event.MESSAGE)).message
        assert (message.agent_id.value, message.executor_id.value, message.data) == (agent_id, "t1", b"\x00back")

        # Reconciliation answers carry Mesos' reason enum and no uuid.
        await scheduler.call(Call.RECONCILE, reconcile=Call.Reconcile(tasks=[
            Call.Reconcile.Task(task_id=v1.TaskID(value="t1")), Call.Reconcile.Task(task_id=v1.TaskID(value="nope"))]))
        answers = {}
        for _ in range(2):
            s = (await scheduler.next(Event.UPDATE)).update.status
            answers[s.task_id.value] = s
        assert answers["t1"].state == v1.TASK_RUNNING and not answers["t1"].HasField("uuid")
        assert answers["t1"].reason == v1.TaskStatus.REASON_RECONCILIATION
        assert answers["nope"].state == v1.TASK_LOST and answers["nope"].source == v1.TaskStatus.SOURCE_MASTER

        policy = v1.KillPolicy(grace_period=v1.DurationInfo(nanoseconds=1_500_000_000))
        await scheduler.call(Call.KILL, kill=Call.Kill(task_id=v1.TaskID(value="t1"),
                                                       agent_id=v1.AgentID(value=agent_id), kill_policy=policy))
        kill = (await agent.next("KILL_TASK"))["kill_task"]
        assert kill["task_id"] == {"value": "t1"} and kill["framework_id"] == {"value": scheduler.framework_id}
        assert kill["kill_policy"] == {"grace_period": {"nanoseconds": 1_500_000_000}}
        uuid = await agent.update(scheduler.framework_id, "t1", "TASK_KILLED")
        status = (await scheduler.next(Event.UPDATE)).update.status
        assert (status.state, status.uuid) == (v1.TASK_KILLED, uuid)
        await scheduler.call(Call.ACKNOWLEDGE, acknowledge=Call.Acknowledge(
            agent_id=status.agent_id, task_id=status.task_id, uuid=status.uuid))
        await agent.next("ACKNOWLEDGE")

        framework = masters.contexts[0].replica.state.cluster.frameworks[scheduler.framework_id]
        assert "t1" not in framework.tasks and framework.completed_tasks[-1].info.task_id == "t1"
        await scheduler.call(Call.TEARDOWN)
        assert scheduler.framework_id in masters.contexts[0].replica.state.cluster.removed_frameworks
        await asyncio.sleep(0.1)
        assert len({c.replica.digest() for c in masters.contexts}) == 1
    finally:
        await scheduler.close()
        await agent.close()


async def test_protobuf_calls_with_a_json_stream_and_json_calls_with_a_protobuf_stream(masters):
    agent = FakeAgent(masters.addresses[0], RESOURCES)
    url = masters.url(0, "/api/v1/scheduler")
    # Protobuf calls, JSON events: Accept allows JSON (as with no Accept at all, JSON wins).
    mixed = ProtobufScheduler(url, accept=f"{PROTOBUF}, {JSON}")
    try:
        await mixed.subscribe(framework_info())
        assert mixed.content_type == JSON
        agent_id = await agent.register()
        offer = (await mixed.next(Event.OFFERS)).offers.offers[0]
        await mixed.call(Call.DECLINE, decline=Call.Decline(offer_ids=[offer.id], filters=v1.Filters(refuse_seconds=3600)))
        with pytest.raises(TimeoutError):
            await mixed.next(Event.OFFERS, timeout=0.5)
        await mixed.call(Call.REVIVE, revive=Call.Revive(roles=["web"]))
        offer = (await mixed.next(Event.OFFERS)).offers.offers[0]
        await mixed.call(Call.ACCEPT, accept=Call.Accept(offer_ids=[offer.id], operations=[v1.Offer.Operation(
            type=v1.Offer.Operation.LAUNCH, launch=v1.Offer.Operation.Launch(task_infos=[task_pb("m1", agent_id)]))]))
        assert (await agent.next("RUN_TASK"))["run_task"]["task"]["task_id"] == {"value": "m1"}
        uuid = await agent.update(mixed.framework_id, "m1", "TASK_RUNNING")
        status = (await mixed.next(Event.UPDATE)).update.status
        assert status.uuid == uuid  # base64 in the JSON stream
        await mixed.call(Call.ACKNOWLEDGE, acknowledge=Call.Acknowledge(
            agent_id=status.agent_id, task_id=status.task_id, uuid=status.uuid))
        assert base64.b64decode((await agent.next("ACKNOWLEDGE"))["acknowledge"]["uuid"]) == uuid
    finally:
        await mixed.close()

    # JSON calls (our client), protobuf events.
    async with aiohttp.ClientSession() as http:
        call = {"type": "SUBSCRIBE", "subscribe": {"framework_info": {"user": "u", "name": "json"}}}
        async with http.post(url, data=orjson.dumps(call), headers={"Content-Type": JSON, "Accept": PROTOBUF}) as r:
            assert r.status == 200 and r.headers["Content-Type"] == PROTOBUF
            decoder = Decoder()
            records = []
            async with asyncio.timeout(10):
                async for chunk in r.content.iter_any():
                    records += decoder.feed(chunk)
                    if len(records) >= 2:
                        break
        first, second = (Event.FromString(x) for x in records[:2])
        assert first.type == Event.SUBSCRIBED and first.subscribed.framework_id.value
        # The other framework's task left room for this offer; it arrives as protobuf too.
        assert second.type == Event.OFFERS and second.offers.offers[0].agent_id.value == agent_id
    await agent.close()


async def test_a_json_framework_fails_over_to_a_protobuf_stream(masters):
    agent = FakeAgent(masters.addresses[0], RESOURCES)
    url = masters.url(0, "/api/v1/scheduler")
    old, new = ProtobufScheduler(url, accept=JSON), ProtobufScheduler(url)
    try:
        await old.subscribe(framework_info(failover_timeout=60))
        agent_id = await agent.register()
        offer = (await old.next(Event.OFFERS)).offers.offers[0]
        await old.call(Call.ACCEPT, accept=Call.Accept(offer_ids=[offer.id], operations=[v1.Offer.Operation(
            type=v1.Offer.Operation.LAUNCH, launch=v1.Offer.Operation.Launch(task_infos=[task_pb("t1", agent_id)]))]))
        await agent.next("RUN_TASK")
        uuid = await agent.update(old.framework_id, "t1", "TASK_RUNNING")
        assert (await old.next(Event.UPDATE)).update.status.uuid == uuid  # not acknowledged

        again = await new.subscribe(framework_info(id=v1.FrameworkID(value=old.framework_id)))
        assert again.subscribed.framework_id.value == old.framework_id and new.content_type == PROTOBUF
        assert (await old.next(Event.ERROR)).error.message == "framework failed over"
        resent = (await new.next(Event.UPDATE)).update.status
        assert (resent.task_id.value, resent.state, resent.uuid) == ("t1", v1.TASK_RUNNING, uuid)
        await new.call(Call.ACKNOWLEDGE, acknowledge=Call.Acknowledge(
            agent_id=resent.agent_id, task_id=resent.task_id, uuid=resent.uuid))
        assert base64.b64decode((await agent.next("ACKNOWLEDGE"))["acknowledge"]["uuid"]) == uuid
        # The old stream id is no longer the framework's.
        status, _ = await old.post(Call(type=Call.REVIVE, framework_id=v1.FrameworkID(value=old.framework_id)))
        assert status == 403
    finally:
        await old.close()
        await new.close()
        await agent.close()


async def test_malformed_protobuf_and_unsupported_types_change_nothing(masters):
    url = masters.url(0, "/api/v1/scheduler")
    scheduler = ProtobufScheduler(url)
    try:
        await scheduler.subscribe(framework_info())
        state = masters.contexts[0].replica.state
        position = state.position
        me = v1.FrameworkID(value=scheduler.framework_id)
        no_uuid = Call(type=Call.ACKNOWLEDGE, framework_id=me)
        no_uuid.acknowledge.agent_id.value, no_uuid.acknowledge.task_id.value = "a", "t"
        cases = [
            (b"\x0a\xff\xff", "failed to parse"),                        # a length running past the end
            (b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", "failed to parse"),  # a broken varint tag
            (no_uuid.SerializePartialToString(), "acknowledge.uuid"),      # a required field missing
            (Call(framework_id=me).SerializeToString(), "no type"),
            (b"\x0a\x03\x0a\x01\xff\x10\x02", "framework_id.value is not valid UTF-8"),  # a TEARDOWN
            (Call(type=Call.ACCEPT_INVERSE_OFFERS, framework_id=me).SerializeToString(), "ACCEPT_INVERSE_OFFERS"),
            (Call(type=Call.DECLINE, framework_id=me).SerializeToString(), "decline"),
        ]
        for body, expected in cases:
            status, text = await scheduler.post(body)
            assert status == 400 and expected in orjson.loads(text)["error"], (body, status, text)
        # A LAUNCH whose task lacks its required agent_id is refused whole, as by Mesos' parser.
        accept = Call(type=Call.ACCEPT, framework_id=me)
        op = accept.accept.operations.add(type=v1.Offer.Operation.LAUNCH)
        op.launch.task_infos.add(name="x", task_id=v1.TaskID(value="x"), command=v1.CommandInfo(value="true"))
        status, text = await scheduler.post(accept.SerializePartialToString())
        assert status == 400 and "agent_id" in text

        # SUBSCRIBE: a malformed body, and an Accept that allows neither JSON nor protobuf (406).
        async with aiohttp.ClientSession() as http:
            async with http.post(url, data=b"\x0a\x05ab", headers={"Content-Type": PROTOBUF}) as r:
                assert r.status == 400
            subscribe = Call(type=Call.SUBSCRIBE, subscribe=Call.Subscribe(framework_info=framework_info()))
            async with http.post(url, data=subscribe.SerializeToString(),
                                 headers={"Content-Type": PROTOBUF, "Accept": "text/html"}) as r:
                assert r.status == 406 and PROTOBUF in (await r.json())["error"]
            async with http.post(url, data=subscribe.SerializeToString(),
                                 headers={"Content-Type": "application/protobuf"}) as r:
                assert r.status == 415
        after = masters.contexts[0].replica.state
        assert after.position == position and len(after.cluster.frameworks) == 1
        # The subscription is still good.
        await scheduler.call(Call.SUPPRESS, suppress=Call.Suppress(roles=["web"]))
    finally:
        await scheduler.close()


async def test_a_wrong_stream_id_or_framework_in_protobuf(masters):
    scheduler = ProtobufScheduler(masters.url(0, "/api/v1/scheduler"))
    try:
        await scheduler.subscribe(framework_info())
        position = masters.contexts[0].replica.state.position
        revive = Call(type=Call.REVIVE, framework_id=v1.FrameworkID(value=scheduler.framework_id),
                      revive=Call.Revive())
        assert (await scheduler.post(revive, stream_id="not-the-stream"))[0] == 403
        assert (await scheduler.post(revive, stream_id=None))[0] == 403
        decline = Call(type=Call.DECLINE, framework_id=v1.FrameworkID(value=scheduler.framework_id),
                       decline=Call.Decline())
        assert (await scheduler.post(decline, stream_id=None))[0] == 403
        decline.framework_id.value = "nope"
        assert (await scheduler.post(decline))[0] == 404
        assert masters.contexts[0].replica.state.position == position
    finally:
        await scheduler.close()


async def test_a_standby_redirects_protobuf_calls(masters):
    call = Call(type=Call.SUBSCRIBE, subscribe=Call.Subscribe(framework_info=framework_info()))
    async with aiohttp.ClientSession() as http, http.post(
            masters.url(1, "/api/v1/scheduler"), data=call.SerializeToString(),
            headers={"Content-Type": PROTOBUF, "Accept": PROTOBUF}, allow_redirects=False) as r:
        assert r.status == 307 and r.headers["Location"] == f"//{masters.addresses[0]}/api/v1/scheduler"


async def test_json_frameworks_are_untouched_by_a_protobuf_one(masters):
    """One master, two frameworks, two encodings: each stream stays in its own."""
    agent = FakeAgent(masters.addresses[0], RESOURCES)
    pb = ProtobufScheduler(masters.url(0, "/api/v1/scheduler"))
    try:
        await pb.subscribe(framework_info())
        agent_id = await agent.register()
        offer = (await pb.next(Event.OFFERS)).offers.offers[0]
        await pb.call(Call.ACCEPT, accept=Call.Accept(offer_ids=[offer.id], operations=[
            v1.Offer.Operation(type=v1.Offer.Operation.LAUNCH, launch=v1.Offer.Operation.Launch(
                task_infos=[task_pb("p1", agent_id)]))]))  # the rest is filtered for pb (5 s)
        await agent.next("RUN_TASK")
        async with SchedulerClient(masters.addresses, {"user": "u", "name": "json", "roles": ["web"]}) as client:
            events = client.events()
            assert (await anext(events))["type"] == "SUBSCRIBED"
            async with asyncio.timeout(10):
                while (event := await anext(events))["type"] != "OFFERS":
                    pass
            offer = event["offers"]["offers"][0]
            assert offer["agent_id"] == {"value": agent_id}
            assert {r["name"]: r["scalar"]["value"] for r in offer["resources"] if r["type"] == "SCALAR"} == {
                "cpus": 3, "mem": 896}
            await client.accept([offer["id"]["value"]], [launch("j1", agent_id, "true", [scalar("cpus", 1)])])
            assert (await agent.next("RUN_TASK"))["run_task"]["task"]["task_id"] == {"value": "j1"}
            uuid = await agent.update(pb.framework_id, "p1", "TASK_RUNNING")
            assert (await pb.next(Event.UPDATE)).update.status.uuid == uuid
    finally:
        await pb.close()
        await agent.close()


# -- the conversions ----------------------------------------------------------------------------

def test_a_protobuf_call_becomes_the_dict_its_json_gives():
    """What pymesos would send for an ACCEPT, and the same call built in protobuf, reach the
    handlers as the same dict: enums by name, bytes in base64, 64-bit integers as numbers."""
    as_json = {
        "type": "ACCEPT", "framework_id": {"value": "f1"},
        "accept": {
            "offer_ids": [{"value": "o1"}, {"value": "o2"}],
            "filters": {"refuse_seconds": 30.0},
            "operations": [
                {"type": "LAUNCH", "launch": {"task_infos": [{
                    "name": "web", "task_id": {"value": "t1"}, "agent_id": {"value": "a1"},
                    "resources": [
                        {"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.5}},
                        {"name": "ports", "type": "RANGES",
                         "ranges": {"range": [{"begin": 31000, "end": 2**63 + 5}]}},
                        {"name": "disks", "type": "SET", "set": {"item": ["a", "b"]}, "revocable": {}},
                        {"name": "mem", "type": "SCALAR", "scalar": {"value": 64.0},
                         "reservations": [{"type": "DYNAMIC", "role": "web", "principal": "p",
                                           "labels": {"labels": [{"key": "k", "value": "v"}]}}]},
                    ],
                    "command": {"value": "./run", "shell": False, "arguments": ["run", "-v"],
                                "environment": {"variables": [{"name": "A", "value": "1"}]},
                                "uris": [{"value": "http://x/y.tgz", "extract": True}]},
                    "health_check": {"type": "HTTP", "http": {"port": 8080, "path": "/health", "statuses": [200]},
                                     "consecutive_failures": 2, "grace_period_seconds": 1.5},
                    "kill_policy": {"grace_period": {"nanoseconds": 9_000_000_000}},
                    "data": base64.b64encode(b"\x00\x01\xff").decode(),
                    "labels": {"labels": [{"key": "tier", "value": "gold"}]},
                    "discovery": {"visibility": "CLUSTER", "name": "web",
                                  "ports": {"ports": [{"number": 80, "protocol": "tcp"}]}},
                    "limits": {"cpus": {"value": 2.0}},
                }]}},
                {"type": "LAUNCH_GROUP", "launch_group": {
                    "executor": {"executor_id": {"value": "e1"}, "type": "DEFAULT",
                                 "shutdown_grace_period": {"nanoseconds": 1}},
                    "task_group": {"tasks": [{"name": "g", "task_id": {"value": "g1"}, "agent_id": {"value": "a1"},
                                              "command": {"value": "true"}}]}}},
                {"type": "RESERVE", "reserve": {"resources": [
                    {"name": "cpus", "type": "SCALAR", "scalar": {"value": 1.0},
                     "reservations": [{"type": "DYNAMIC", "role": "web"}]}]}},
            ],
        },
    }
    message = json_format.ParseDict(as_json, Call())
    assert protobuf.call_from_protobuf(message.SerializeToString()) == as_json


def test_every_call_we_handle_converts():
    calls = [
        {"type": "SUBSCRIBE", "framework_id": {"value": "f"}, "subscribe": {
            "framework_info": {"user": "u", "name": "n", "id": {"value": "f"}, "roles": ["a", "b"],
                               "failover_timeout": 7.5, "checkpoint": True,
                               "capabilities": [{"type": "PARTITION_AWARE"}, {"type": "MULTI_ROLE"}],
                               "offer_filters": {"a": {"min_allocatable_resources": {"quantities": [
                                   {"quantities": {"cpus": {"value": 1.0}}}]}}}},
            "suppressed_roles": ["b"]}},
        {"type": "TEARDOWN", "framework_id": {"value": "f"}},
        {"type": "DECLINE", "framework_id": {"value": "f"}, "decline": {"offer_ids": [{"value": "o"}]}},
        {"type": "REVIVE", "framework_id": {"value": "f"}, "revive": {"roles": ["a"]}},
        {"type": "SUPPRESS", "framework_id": {"value": "f"}},
        {"type": "KILL", "framework_id": {"value": "f"}, "kill": {"task_id": {"value": "t"}}},
        {"type": "SHUTDOWN", "framework_id": {"value": "f"},
         "shutdown": {"executor_id": {"value": "e"}, "agent_id": {"value": "a"}}},
        {"type": "ACKNOWLEDGE", "framework_id": {"value": "f"}, "acknowledge": {
            "agent_id": {"value": "a"}, "task_id": {"value": "t"}, "uuid": base64.b64encode(bytes(range(16))).decode()}},
        {"type": "RECONCILE", "framework_id": {"value": "f"}, "reconcile": {"tasks": [
            {"task_id": {"value": "t"}, "agent_id": {"value": "a"}}]}},
        {"type": "MESSAGE", "framework_id": {"value": "f"}, "message": {
            "agent_id": {"value": "a"}, "executor_id": {"value": "e"}, "data": base64.b64encode(b"\xff").decode()}},
        {"type": "REQUEST", "framework_id": {"value": "f"}, "request": {"requests": [
            {"agent_id": {"value": "a"}, "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 1.0}}]}]}},
        {"type": "UPDATE_FRAMEWORK", "framework_id": {"value": "f"}, "update_framework": {
            "framework_info": {"user": "u", "name": "n", "role": "r", "labels": {"labels": [{"key": "k"}]}}}},
    ]
    for call in calls:
        assert protobuf.call_from_protobuf(json_format.ParseDict(call, Call()).SerializeToString()) == call


def test_fields_outside_the_subset_are_dropped_and_logged_once():
    call = Call(type=Call.KILL, framework_id=v1.FrameworkID(value="f"), kill=Call.Kill(task_id=v1.TaskID(value="t")))
    # Field 99 of the Call and field 9 (container) of a task: unknown here, kept by the parser.
    body = call.SerializeToString() + b"\x98\x06\x01"
    accept = Call(type=Call.ACCEPT, framework_id=v1.FrameworkID(value="f"))
    task = accept.accept.operations.add(type=v1.Offer.Operation.LAUNCH).launch.task_infos.add(
        name="t", task_id=v1.TaskID(value="t"), agent_id=v1.AgentID(value="a"))
    task.MergeFromString(b"\x4a\x02\x08\x01")  # TaskInfo.container = {type: MESOS}
    protobuf._reported.clear()
    with structlog.testing.capture_logs() as logs:
        assert protobuf.call_from_protobuf(body) == {
            "type": "KILL", "framework_id": {"value": "f"}, "kill": {"task_id": {"value": "t"}}}
        converted = protobuf.call_from_protobuf(accept.SerializeToString())
        protobuf.call_from_protobuf(accept.SerializeToString())  # logged once
    assert "container" not in converted["accept"]["operations"][0]["launch"]["task_infos"][0]
    dropped = [e["field"] for e in logs if e["event"] == "scheduler_call_field_dropped"]
    assert dropped == ["call#99", "accept.operations.launch.task_infos#9"]


def every_event() -> list[dict]:
    """One of each event the leader sends a framework, built as the leader builds them."""
    agent = mesos_pb2.AgentInfo(hostname="h1", port=5051)
    agent.attributes.add(name="rack", type=mesos_pb2.Value.TEXT, text=mesos_pb2.Value.Text(value="r1"))
    offer = mesos_pb2.Offer(id="o1", framework_id="f1", agent_id="a1", hostname="h1", role="web",
                            resources=resources_json_to_proto([
                                {"name": "cpus", "type": "SCALAR", "scalar": {"value": 1.5}},
                                {"name": "cpus", "type": "SCALAR", "scalar": {"value": 2}, "revocable": {}},
                                {"name": "mem", "type": "SCALAR", "scalar": {"value": 64},
                                 "reservations": [{"type": "DYNAMIC", "role": "web", "principal": "p"}]},
                                {"name": "ports", "type": "RANGES", "ranges": {"range": [{"begin": 1, "end": 9}]}},
                                {"name": "gpus_ids", "type": "SET", "set": {"item": ["0", "1"]}},
                            ]))
    status = mesos_pb2.TaskStatus(task_id="t1", state=mesos_pb2.TASK_FAILED, message="m", source="SOURCE_AGENT",
                                  reason="REASON_COMMAND_EXECUTOR_FAILED", uuid=bytes(range(16)), timestamp=2.5,
                                  agent_id="a1", executor_id="e1", data=b"\x00\xff", healthy=False)
    return [
        {"type": "SUBSCRIBED", "subscribed": {"framework_id": {"value": "f1"}, "heartbeat_interval_seconds": 15,
                                              "master_info": {"id": "m1", "ip": 0, "port": 5050, "hostname": "h",
                                                              "version": "0.1.0", "address": {
                                                                  "hostname": "h", "ip": "127.0.0.1", "port": 5050}}}},
        {"type": "OFFERS", "offers": {"offers": [offer_to_json(offer, agent)]}},
        {"type": "RESCIND", "rescind": {"offer_id": {"value": "o1"}}},
        {"type": "UPDATE", "update": {"status": task_status_to_json(status)}},
        {"type": "MESSAGE", "message": {"agent_id": {"value": "a1"}, "executor_id": {"value": "e1"},
                                        "data": base64.b64encode(b"\x00hi").decode()}},
        {"type": "ERROR", "error": {"message": "framework failed over"}},
        {"type": "HEARTBEAT"},
    ]


def test_every_event_we_send_encodes_as_mesos_reads_it():
    events = {e["type"]: e for e in every_event()}
    decoded = {}
    for kind, event in events.items():
        message = Event.FromString(protobuf.event_to_protobuf(event))
        assert message.IsInitialized() and Event.Type.Name(message.type) == kind
        decoded[kind] = message
    offer = decoded["OFFERS"].offers.offers[0]
    assert (offer.id.value, offer.framework_id.value, offer.agent_id.value, offer.hostname) == ("o1", "f1", "a1", "h1")
    assert offer.allocation_info.role == "web" and offer.url.address.hostname == "h1"
    assert [(a.name, a.text.value) for a in offer.attributes] == [("rack", "r1")]
    resources = {(r.name, r.HasField("revocable")): r for r in offer.resources}
    assert resources[("cpus", False)].scalar.value == 1.5 and resources[("cpus", True)].scalar.value == 2
    mem = resources[("mem", False)]
    assert [(x.type, x.role, x.principal) for x in mem.reservations] == [
        (v1.Resource.ReservationInfo.DYNAMIC, "web", "p")]
    assert [(r.begin, r.end) for r in resources[("ports", False)].ranges.range] == [(1, 9)]
    assert list(resources[("gpus_ids", False)].set.item) == ["0", "1"]
    status = decoded["UPDATE"].update.status
    assert (status.state, status.reason, status.source) == (
        v1.TASK_FAILED, v1.TaskStatus.REASON_COMMAND_EXECUTOR_FAILED, v1.TaskStatus.SOURCE_AGENT)
    assert status.uuid == bytes(range(16)) and status.data == b"\x00\xff" and status.HasField("healthy")
    assert (status.agent_id.value, status.executor_id.value, status.timestamp) == ("a1", "e1", 2.5)
    assert decoded["MESSAGE"].message.data == b"\x00hi"
    assert decoded["SUBSCRIBED"].subscribed.master_info.address.ip == "127.0.0.1"
    assert decoded["ERROR"].error.message == "framework failed over"


def test_events_are_built_as_protobufs_parse_dict_builds_them():
    """dict_to_message is a faster ParseDict(ignore_unknown_fields=True): the same bytes."""
    extra = {"type": "UPDATE", "unknown": 1, "update": {"status": {
        "task_id": {"value": "t"}, "state": "TASK_RUNNING", "reason": "REASON_OF_OUR_OWN", "uuid": "AAE=",
        "labels": {"labels": [{"key": "k", "value": "v"}]}, "not_in_mesos": {"x": 1}}}}
    for event in [*every_event(), extra]:
        expected = json_format.ParseDict(event, Event(), ignore_unknown_fields=True).SerializeToString()
        assert protobuf.event_to_protobuf(event) == expected, event["type"]
    limits = {"limits": {"cpus": {"value": 2.0}}, "max_completion_time": {"nanoseconds": "7"},
              "name": "t", "task_id": {"value": "t"}, "agent_id": {"value": "a"}}
    task = protobuf.dict_to_message(limits, v1.TaskInfo())
    assert task.limits["cpus"].value == 2 and task.max_completion_time.nanoseconds == 7


def test_a_reason_mesos_does_not_define_is_left_out_and_a_broken_event_refused():
    status = {"task_id": {"value": "t"}, "state": "TASK_LOST", "reason": "REASON_NOT_IN_MESOS", "timestamp": 1.0}
    message = Event.FromString(protobuf.event_to_protobuf({"type": "UPDATE", "update": {"status": status}}))
    assert message.update.status.state == v1.TASK_LOST and not message.update.status.HasField("reason")
    with pytest.raises(protobuf.ProtobufError, match="rescind.offer_id"):
        protobuf.event_to_protobuf({"type": "RESCIND", "rescind": {}})
    for broken in ({"task_id": "not an object", "state": "TASK_LOST"},
                   {"task_id": {"value": 7}, "state": "TASK_LOST"},
                   {"task_id": {"value": "t"}, "state": "TASK_LOST", "uuid": "not base64!"}):
        with pytest.raises(protobuf.ProtobufError):
            protobuf.event_to_protobuf({"type": "UPDATE", "update": {"status": broken}})


async def test_a_stream_leaves_out_an_event_it_cannot_encode():
    stream = EventStream(None, "framework", "f1", PROTOBUF, protobuf.event_to_protobuf)
    stream.send({"type": "RESCIND", "rescind": {}})  # no offer id: not a valid Event
    stream.send({"type": "HEARTBEAT"})
    assert len(stream._queue) == 1
    assert Decoder().feed(stream._queue[0]) == [Event(type=Event.HEARTBEAT).SerializeToString()]


@pytest.mark.parametrize(("header", "json_ok", "protobuf_ok"), [
    (None, True, True),
    ("*/*", True, True),
    ("application/*", True, True),
    (PROTOBUF, False, True),
    (JSON, True, False),
    (f"{PROTOBUF}, {JSON};q=0", False, True),
    (f"{JSON};q=0.1, {PROTOBUF}", True, True),  # q does not rank (libprocess); JSON wins
    ("application/*;q=0", False, False),
    ("text/html", False, False),
    ("Application/X-Protobuf", False, True),
])
def test_accept_headers_are_read_as_libprocess_reads_them(header, json_ok, protobuf_ok):
    assert (accepts(header, JSON), accepts(header, PROTOBUF)) == (json_ok, protobuf_ok)


# -- the schema ---------------------------------------------------------------------------------

def schema_lines() -> list[str]:
    """Every field (name, number, label, type, default) and enum value of our mesos.v1 subset."""
    lines = []

    def message(prefix, m):
        name = f"{prefix}.{m.name}"
        for f in m.field:
            lines.append(f"{name}.{f.name}={f.number} {descriptor_pb2.FieldDescriptorProto.Label.Name(f.label)} "
                         f"{descriptor_pb2.FieldDescriptorProto.Type.Name(f.type)} {f.type_name} "
                         f"{f.default_value}".rstrip())
        for e in m.enum_type:
            enum(name, e)
        for nested in m.nested_type:
            message(name, nested)

    def enum(prefix, e):
        lines.extend(f"{prefix}.{e.name}.{v.name}={v.number}" for v in e.value)

    for module in (v1, sched):
        file = descriptor_pb2.FileDescriptorProto()
        module.DESCRIPTOR.CopyToProto(file)
        assert file.syntax in ("", "proto2")  # proto2: Mesos' presence rules and required fields
        for m in file.message_type:
            message(file.package, m)
        for e in file.enum_type:
            enum(file.package, e)
    return sorted(lines)


def test_the_schema_is_the_one_checked_against_mesos():
    """Every line of schema_lines() was compared with Apache Mesos' include/mesos/v1/mesos.proto
    and scheduler/scheduler.proto (at c1b42f79d): same names, numbers, labels, types, defaults
    and enum values. A change to mesos_v1.proto or scheduler_v1.proto must be compared again
    (with Mesos' own file beside it, never from memory), and then this fingerprint updated."""
    lines = schema_lines()
    assert len(lines) == 385
    assert "mesos.v1.scheduler.Call.acknowledge=8 LABEL_OPTIONAL TYPE_MESSAGE .mesos.v1.scheduler.Call.Acknowledge" in lines
    assert "mesos.v1.TaskStatus.uuid=11 LABEL_OPTIONAL TYPE_BYTES" in lines
    assert hashlib.sha256("\n".join(lines).encode()).hexdigest() == \
        "4e498dc5a2018990ad65326cadedaa2e9cd8da29c274d52611b1b266f0d4be91"
