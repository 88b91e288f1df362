"""The named-log clients: redirects, failover between masters, safe retries, errors."""

import asyncio

import pytest
from aiohttp import web

from mesos_es.log.client import AsyncLogClient, LogClient, LogClientError, LogUnavailable, _Route
from tests.support.inprocess import InProcessMasters
from tests.support.ports import free_port_block


@pytest.fixture
async def masters(tmp_path):
    masters = InProcessMasters(tmp_path)
    yield masters
    await masters.stop()


def test_route_follows_absolute_and_scheme_relative_redirects():
    route = _Route(["a:1", "b:2"], None, retry_timeout_s=5)
    assert route.answered(307, {"Location": "http://c:3/api/v1/logs/x/entries"}, b"{}")[0] == "retry"
    assert route.address == "c:3"
    route.answered(307, {"Location": "//d:4/api/v1/logs/x/entries"}, b"{}")
    assert route.address == "d:4"


def test_route_moves_to_the_named_leader_on_503_and_raises_on_4xx():
    route = _Route(["a:1", "b:2"], None, retry_timeout_s=5)
    route.answered(503, {}, b'{"error": "x", "leader": "b:2"}')
    assert route.address == "b:2"
    with pytest.raises(LogClientError) as e:
        route.answered(404, {}, b'{"error": "unknown log \'x\'"}')
    assert e.value.status == 404 and "unknown log" in e.value.message


async def test_sync_client_appends_through_a_standby_and_reads_everything(masters):
    await masters.start()
    masters.elect(0)
    client = LogClient([masters.addresses[2]])  # knows only a standby
    positions = [await asyncio.to_thread(client.append, "fw", b"entry %d" % i) for i in range(5)]
    assert positions == [1, 2, 3, 4, 5]
    assert client.leader == masters.addresses[0]
    entries = await asyncio.to_thread(client.read, "fw", 2)
    assert [(e.position, e.data) for e in entries] == [(i, b"entry %d" % (i - 1)) for i in range(2, 6)]
    info = await asyncio.to_thread(client.truncate, "fw", 3)
    assert (info.beginning, info.ending) == (3, 5)
    assert [l.name for l in await asyncio.to_thread(client.logs)] == ["fw"]
    client.close()


async def test_sync_client_pages_through_large_reads(masters, monkeypatch):
    from mesos_es.master.http import logs as logs_api

    monkeypatch.setattr(logs_api, "DEFAULT_READ_LIMIT", 3)
    await masters.start()
    masters.elect(0)
    client = LogClient(masters.addresses)
    for i in range(10):
        await asyncio.to_thread(client.append, "fw", b"%d" % i)
    entries = await asyncio.to_thread(client.read, "fw")
    assert [e.data for e in entries] == [b"%d" % i for i in range(10)]
    assert len(await asyncio.to_thread(client.read, "fw", 4, 6)) == 3


async def test_client_waits_for_an_election_and_skips_dead_masters(masters):
    await masters.start()
    dead = f"127.0.0.1:{free_port_block(1, (0,))}"
    client = AsyncLogClient([dead, *masters.addresses], retry_timeout_s=10)
    try:
        append = asyncio.create_task(client.append("fw", b"x"))
        await asyncio.sleep(0.3)  # no leader yet: every master answers 503
        assert not append.done()
        masters.elect(1)
        assert await append == 1
    finally:
        await client.close()


async def test_client_gives_up_after_its_retry_timeout(masters):
    await masters.start()  # never elected
    client = LogClient(masters.addresses, retry_timeout_s=0.5)
    with pytest.raises(LogUnavailable, match="no leading master"):
        await asyncio.to_thread(client.append, "fw", b"x")


async def test_client_errors_carry_the_masters_explanation(masters):
    await masters.start()
    masters.elect(0)
    client = AsyncLogClient(masters.addresses)
    try:
        with pytest.raises(LogClientError) as e:
            await client.read("missing")
        assert e.value.status == 404 and "unknown log" in e.value.message
    finally:
        await client.close()


async def test_a_retry_after_a_lost_answer_does_not_append_twice(masters):
    """The leader commits the append but the answer is lost (here: replaced by a 503);
    the client retries with the same Idempotency-Key and gets the original position."""
    lost = []

    @web.middleware
    async def lose_first_answer(request, handler):
        response = await handler(request)
        if request.method == "POST" and not lost:
            lost.append(request.headers["Idempotency-Key"])
            raise web.HTTPServiceUnavailable(text='{"error": "lost"}', content_type="application/json")
        return response

    masters.extra_middlewares[0] = [lose_first_answer]
    await masters.start()
    masters.elect(0)
    client = AsyncLogClient(masters.addresses)
    try:
        assert await client.append("fw", b"once") == 1
        assert lost  # the first answer really was lost
        assert [e.data for e in await client.read("fw")] == [b"once"]
    finally:
        await client.close()
