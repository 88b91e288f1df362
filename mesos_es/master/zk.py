"""Advertise the leading master in ZooKeeper, as Mesos does, for clients that detect the
leader there (`zk://host:2181/mesos` in pymesos, Marathon, Spark).

Our leader is elected by Raft, not by ZooKeeper: this only publishes the outcome. The leading
master keeps one ephemeral sequential node `<path>/json.info_NNNNNNNNNN` holding its MasterInfo
as JSON (Mesos' format); clients take the child with the lowest sequence as the leader. A new
leader creates its node first and then deletes every other `json.info_*` node (those of
previous leaders, whose sessions may live on for a session timeout after a SIGKILL), so at no
moment is there no node, and the lowest one is its own once the stale ones are gone. On
stepping down it deletes its node.

ZooKeeper being away never blocks or stops the master: `advertise()` and `withdraw()` only
record what is wanted; one background task makes ZooKeeper match, retrying every second, and
kazoo reconnects by itself. When a session is lost (its ephemeral node with it), the node is
made again on the next session while this master still leads. A node deleted by someone else
under a live session is not made again: a newer leader did that (Mesos' master would abort).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ipaddress
import logging
import threading

import orjson
import structlog
from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import NoNodeError
from kazoo.retry import KazooRetry

from mesos_es.master.config import ConfigError

log = structlog.get_logger(__name__)

NODE_PREFIX = "json.info_"
SESSION_TIMEOUT_S = 10.0
OP_TIMEOUT_S = 5.0
RETRY_INTERVAL_S = 1.0
CLOSE_TIMEOUT_S = 5.0


def parse_zk_url(url: str) -> tuple[str, str]:
    """`zk://host:port[,host:port...]/path` -> ("host:port,...", "/path")."""
    if not url.startswith("zk://"):
        raise ConfigError(f"bad ZooKeeper URL {url!r}: expected zk://HOST:PORT[,HOST:PORT...]/PATH")
    hosts, slash, path = url[len("zk://"):].partition("/")
    path = "/" + path.strip("/")
    if not slash or path == "/" or "@" in hosts or "//" in path:
        raise ConfigError(f"bad ZooKeeper URL {url!r}: expected zk://HOST:PORT[,HOST:PORT...]/PATH "
                          "(no credentials)")
    for host in hosts.split(","):
        name, sep, port = host.rpartition(":")
        if not sep or not name or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"bad ZooKeeper URL {url!r}: {host!r} is not HOST:PORT")
    return hosts, path


def mesos_master_info(info: dict) -> dict:
    """Mesos' MasterInfo JSON from the leader's `master_info()`: `id`, `ip` (the IPv4 address
    as Mesos stores it, network byte order read as a little-endian uint32), `port`, `pid`,
    `hostname`, `version`, and `address` {hostname, ip, port}. pymesos reads `address.ip` and
    `address.port`; Mesos' own detectors parse it as the MasterInfo protobuf, whose `id`,
    `ip` and `port` are required."""
    address = dict(info.get("address") or {})
    port = int(address.get("port") or info["port"])
    ip = str(address.get("ip") or info.get("hostname") or "")
    try:
        packed = ipaddress.IPv4Address(ip).packed
    except ValueError:
        packed = None
    result = {
        "id": str(info["id"]),
        "ip": int.from_bytes(packed, "little") if packed else 0,
        "port": port,
        "pid": f"master@{ip}:{port}",
        "hostname": info.get("hostname") or address.get("hostname") or ip,
        "address": {"hostname": address.get("hostname") or ip, "ip": ip, "port": port},
    }
    if info.get("version"):
        result["version"] = str(info["version"])
    return result


class ZkAdvertiser:
    """Keeps `<path>/json.info_*` in step with this master's leadership (see the module doc)."""

    def __init__(self, url: str, session_timeout_s: float = SESSION_TIMEOUT_S,
                 retry_interval_s: float = RETRY_INTERVAL_S, op_timeout_s: float = OP_TIMEOUT_S):
        self.url = url
        self.hosts, self.path = parse_zk_url(url)
        self.retry_interval_s = retry_interval_s
        self.op_timeout_s = op_timeout_s
        self.client = KazooClient(
            hosts=self.hosts, timeout=session_timeout_s,
            # Reconnect forever, at most a second apart: ZooKeeper may come back at any time.
            connection_retry=KazooRetry(max_tries=-1, delay=0.1, backoff=2, max_delay=1.0),
        )
        self.node: str | None = None  # our node, while it exists
        self._node_session: int | None = None  # the session that made it (it dies with it)
        self._wanted: bytes | None = None  # MasterInfo JSON while we lead
        self._generation = 0  # bumped by every advertise()/withdraw()
        self._done = 0  # the generation ZooKeeper matches
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._closing = False
        self._context: contextvars.Context | None = None

    # -- what the leader shell calls (never blocks) ------------------------------------------
    def advertise(self, info: dict) -> None:
        """We lead: publish `info` (the leader's master_info()) as a new node."""
        self._wanted = orjson.dumps(mesos_master_info(info))
        self._generation += 1
        self._wake.set()

    def withdraw(self) -> None:
        """We no longer lead: delete our node."""
        if self._wanted is None and self.node is None:
            return
        self._wanted = None
        self._generation += 1
        self._wake.set()

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Connect in the background (returns at once, whether ZooKeeper is up or not)."""
        for name in ("kazoo.client", "kazoo.protocol.connection"):
            # kazoo logs every failed reconnect (once a second while ZooKeeper is down); we log
            # the state changes instead.
            logging.getLogger(name).setLevel(logging.ERROR)
        self._loop = asyncio.get_running_loop()
        self._context = contextvars.copy_context()
        self.client.add_listener(self._on_state)
        self.client.start_async()
        self._task = self._loop.create_task(self._run())
        log.info("zk_started", url=self.url)

    async def close(self) -> None:
        """Stop: delete our node if ZooKeeper answers soon, then close the session (which
        deletes our ephemeral node anyway)."""
        self.withdraw()
        self._closing = True
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle(), timeout=min(2.0, self.op_timeout_s))
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        # kazoo's stop() joins its connection thread; a daemon thread keeps a ZooKeeper that
        # does not answer from holding up the master's exit.
        await _in_daemon_thread(self.client.stop, CLOSE_TIMEOUT_S)
        with contextlib.suppress(Exception):
            self.client.close()
        log.info("zk_stopped", url=self.url)

    async def _idle(self) -> None:
        while self._pending():
            await asyncio.sleep(0.05)

    # -- the background task -------------------------------------------------------------------
    def _on_state(self, state: str) -> None:
        """kazoo's listener (its own thread): note the change on the loop and wake the task."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: we are stopping
            # In the context start() ran in, so the log lines carry the master's bound fields.
            self._loop.call_soon_threadsafe(self._state_changed, state, context=self._context)

    def _state_changed(self, state: str) -> None:
        if state == KazooState.CONNECTED:
            log.info("zk_connected", url=self.url, session=self._session())
        elif state == KazooState.SUSPENDED:
            log.warning("zk_disconnected", url=self.url)
        elif state == KazooState.LOST and not self._closing:
            log.warning("zk_session_lost", url=self.url, node=self.node)
        self._wake.set()

    def _session(self) -> int | None:
        client_id = self.client.client_id
        return client_id[0] if client_id else None

    def _pending(self) -> bool:
        if self._done != self._generation:
            return True
        # Leading, but the session that held our node is gone (and the node with it).
        return self._wanted is not None and self.client.connected and self._node_session != self._session()

    async def _run(self) -> None:
        failures = 0
        while True:
            if not self._pending() or not self.client.connected:
                # Woken by advertise()/withdraw() or a connection state change.
                self._wake.clear()
                if not self._pending() or not self.client.connected:
                    await self._wake.wait()
                    continue
            try:
                await self._reconcile()
                failures = 0
            except Exception as e:  # noqa: BLE001 - ZooKeeper trouble of any kind: retry
                failures += 1
                if failures == 1 or failures % 30 == 0:
                    log.warning("zk_update_failed", url=self.url, error=f"{type(e).__name__}: {e}",
                                failures=failures)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):  # asyncio.timeout: wait_for can swallow a cancel
                    async with asyncio.timeout(self.retry_interval_s):
                        await self._wake.wait()

    async def _reconcile(self) -> None:
        generation, wanted, session = self._generation, self._wanted, self._session()
        if session is None:
            return
        if self.node is not None and self._node_session != session:
            log.info("zk_node_expired", node=self.node)  # gone with its session
            self.node = None
        if self.node is not None and (wanted is None or self._done != generation):
            # Stepping down, or a new term: our old node goes.
            await self._delete(self.node)
            log.info("zk_withdrawn", node=self.node)
            self.node = None
        if wanted is not None:
            created = await self._op(self.client.create_async, f"{self.path}/{NODE_PREFIX}", wanted,
                                     ephemeral=True, sequence=True, makepath=True)
            self.node, self._node_session = created, session
            log.info("zk_advertised", node=created, session=session)
            stale = [f"{self.path}/{child}" for child in await self._op(self.client.get_children_async, self.path)
                     if child.startswith(NODE_PREFIX) and f"{self.path}/{child}" != created]
            for node in stale:
                await self._delete(node)
            if stale:
                log.info("zk_stale_removed", nodes=sorted(stale))
        self._done = generation

    async def _delete(self, node: str) -> None:
        with contextlib.suppress(NoNodeError):
            await self._op(self.client.delete_async, node)

    async def _op(self, method, *args, **kwargs):
        """Run one of kazoo's *_async calls without blocking the loop, for at most op_timeout_s."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()

        def settle(result) -> None:
            if future.done():
                return
            if result.successful():
                future.set_result(result.value)
            else:
                future.set_exception(result.exception)

        def done(result) -> None:  # kazoo's callback thread
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, result)

        method(*args, **kwargs).rawlink(done)
        return await asyncio.wait_for(future, timeout=self.op_timeout_s)


async def _in_daemon_thread(fn, timeout_s: float) -> None:
    done = asyncio.Event()
    loop = asyncio.get_running_loop()

    def target() -> None:
        try:
            fn()
        except Exception:  # noqa: BLE001, S110 - best effort at shutdown
            pass
        finally:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(done.set)

    threading.Thread(target=target, name="zk-stop", daemon=True).start()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), timeout=timeout_s)

