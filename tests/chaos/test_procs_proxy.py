"""The Raft proxy of `chaos run` (chaos/procs/proxy.py): addresses that keep pysyncobj dialing
the same way, and a real proxy process that carries, black-holes and heals a link."""

import asyncio

import pytest

from chaos.procs.cluster import PROXY_PORTS, free_base
from chaos.procs.proxy import Link, ProxyProcess, peer_addresses, plan_links

RAFT = {"master-1": "127.0.0.1:21050", "master-2": "127.0.0.1:21051", "master-3": "127.0.0.1:21052"}


def test_each_pair_has_one_link_dialed_by_the_greater_address_through_a_smaller_one():
    links = plan_links(RAFT, [12000, 12001, 12002])
    assert {(link.dialer, link.listener) for link in links} == {("master-2", "master-1"), ("master-3", "master-1"),
                                                       ("master-3", "master-2")}
    for link in links:
        assert link.target == RAFT[link.listener]
        assert link.address < RAFT[link.dialer]  # pysyncobj still dials: self.address > node.address
    # The dialer is told the proxy; the listener keeps the dialer's real address (it is introduced by it).
    assert peer_addresses("master-3", RAFT, links) == {"master-1": "127.0.0.1:12001", "master-2": "127.0.0.1:12002"}
    assert peer_addresses("master-1", RAFT, links) == {"master-2": RAFT["master-2"], "master-3": RAFT["master-3"]}


def test_a_proxy_address_that_would_stop_pysyncobj_dialing_is_refused():
    with pytest.raises(ValueError, match="does not sort below"):
        plan_links(RAFT, [30000, 30001, 30002])


async def _echo_server():
    async def echo(reader, writer):
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
        writer.close()

    return await asyncio.start_server(echo, "127.0.0.1", 0)


async def _round_trip(port: int, payload: bytes, timeout: float = 2.0) -> bytes | None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.readexactly(len(payload)), timeout)
    except (TimeoutError, asyncio.IncompleteReadError):
        return None
    finally:
        writer.close()


async def test_a_cut_link_carries_nothing_and_a_healed_link_closes_the_silent_connections(tmp_path):
    server = await _echo_server()
    target = server.sockets[0].getsockname()[1]
    port = free_base(1, (0,), *PROXY_PORTS)
    # one link, "master-2" dialing "master-1" (the echo server stands in for master-1's Raft port)
    link = Link(dialer="master-2", listener="master-1", port=port, target=f"127.0.0.1:{target}")
    proxy = ProxyProcess([link], tmp_path / "proxy.log")
    await proxy.start()
    try:
        assert await _round_trip(port, b"before") == b"before"
        reader, writer = await asyncio.open_connection("127.0.0.1", port)  # open across the cut
        writer.write(b"x")
        assert await reader.readexactly(1) == b"x"

        status = await proxy.command("cut master-1 master-2")
        assert status["links"][0]["cut"] is True
        writer.write(b"silent")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.readexactly(1), 0.5)  # open connection: nothing comes back
        assert await _round_trip(port, b"during", timeout=0.5) is None  # new connection: accepted, silent

        await proxy.heal()
        assert await asyncio.wait_for(reader.read(), 2.0) == b""  # the black-holed connection is closed
        writer.close()
        assert await _round_trip(port, b"after") == b"after"
        status = await proxy.command("status")
        assert status["links"][0]["cut"] is False and status["links"][0]["holed"] == 0
        with pytest.raises(RuntimeError, match="no link between"):
            await proxy.command("cut master-1 master-9")
    finally:
        await proxy.stop()
        server.close()
    assert proxy.process.returncode == 0
