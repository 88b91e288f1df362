"""The operator API: quota, weights and reservations are events; reads come from any master."""

import asyncio

import aiohttp
import orjson
import pytest

from mesos_es.client.scheduler import scalar
from tests.support.fake_agent import FakeAgent
from tests.support.inprocess import InProcessMasters

FAST = {"allocation_interval_s": 0.05, "heartbeat_interval_s": 1.0, "agent_ping_timeout_s": 0.5}


@pytest.fixture
async def masters(tmp_path):
    masters = await InProcessMasters(tmp_path, count=3, **FAST).start()
    masters.elect(0)
    yield masters
    await masters.stop()


async def post(url, call):
    async with aiohttp.ClientSession() as http:
        for _ in range(100):
            async with http.post(url, data=orjson.dumps(call), allow_redirects=False) as r:
                body = await r.read()
                if r.status != 503:
                    return r.status, r.headers, (orjson.loads(body) if body else None)
            await asyncio.sleep(0.05)
    raise AssertionError("no leader")


async def test_quota_weights_and_reservations(masters):
    leader = masters.url(0, "/api/v1")
    status, _, _ = await post(leader, {"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [
        {"role": "dev", "guarantees": {"cpus": {"value": 2}}, "limits": {"cpus": {"value": 4}}}]}})
    assert status == 200
    status, _, _ = await post(leader, {"type": "UPDATE_WEIGHTS", "update_weights": {"weight_infos": [
        {"role": "dev", "weight": 3}]}})
    assert status == 200
    agent = FakeAgent(masters.addresses[0], [scalar("cpus", 4), scalar("mem", 1024)])
    agent_id = await agent.register()
    reserved = [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 1},
                 "reservations": [{"type": "DYNAMIC", "role": "dev", "principal": "ops"}]}]
    status, _, _ = await post(leader, {"type": "RESERVE_RESOURCES", "reserve_resources": {
        "agent_id": {"value": agent_id}, "resources": reserved}})
    assert status == 200
    # More than the agent has: refused, nothing changes.
    too_much = [{**reserved[0], "scalar": {"value": 10}}]
    status, _, body = await post(leader, {"type": "RESERVE_RESOURCES", "reserve_resources": {
        "agent_id": {"value": agent_id}, "resources": too_much}})
    assert status == 400 and "not have these resources" in body["error"]

    await asyncio.sleep(0.1)  # standbys catch up
    status, headers, body = await post(masters.url(2, "/api/v1"), {"type": "GET_ROLES"})
    assert status == 200 and headers["Mesos-ES-Leader"] == masters.addresses[0]
    dev = next(r for r in body["get_roles"]["roles"] if r["name"] == "dev")
    assert dev["weight"] == 3 and dev["quota"]["guarantees"] == {"cpus": {"value": 2.0}}
    status, _, body = await post(masters.url(1, "/api/v1"), {"type": "GET_AGENTS"})
    resources = body["get_agents"]["agents"][0]["total_resources"]
    assert {(r["name"], r["role"], r["scalar"]["value"]) for r in resources} == {
        ("cpus", "*", 3.0), ("cpus", "dev", 1.0), ("mem", "*", 1024.0)}

    status, _, _ = await post(leader, {"type": "UNRESERVE_RESOURCES", "unreserve_resources": {
        "agent_id": {"value": agent_id}, "resources": reserved}})
    assert status == 200
    await agent.close()


async def test_writes_on_a_standby_redirect_and_bad_calls_are_400(masters):
    call = {"type": "UPDATE_WEIGHTS", "update_weights": {"weight_infos": [{"role": "a", "weight": 2}]}}
    status, headers, _ = await post(masters.url(1, "/api/v1"), call)
    assert status == 307 and headers["Location"] == f"//{masters.addresses[0]}/api/v1"
    for bad in ({"type": "UPDATE_WEIGHTS", "update_weights": {"weight_infos": [{"role": "a", "weight": -1}]}},
                {"type": "UPDATE_QUOTA", "update_quota": {"quota_configs": [{"role": "a", "guarantees": 3}]}},
                {"type": "NO_SUCH_CALL"}, {"nope": 1}):
        status, _, body = await post(masters.url(0, "/api/v1"), bad)
        assert status == 400 and body["error"]
    status, _, body = await post(masters.url(2, "/api/v1"), {"type": "GET_VERSION"})
    assert body["get_version"]["version_info"]["version"]
