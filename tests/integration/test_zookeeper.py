"""The leader advertised in a real ZooKeeper (Debian's package, started here on a free loopback
port), as Mesos does: the advertiser against the server, real masters, an unmodified pymesos
scheduler that finds the leader through `zk://`, and `cluster up --zk`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from kazoo.client import KazooClient
from pymesos import MesosSchedulerDriver, Scheduler

from mesos_es.cluster import zookeeper
from mesos_es.master.zk import ZkAdvertiser, mesos_master_info
from tests.support.ports import free_port_block
from tests.support.procs import pid_alive, wait_until

pytestmark = pytest.mark.slow

FAST = {"allocation_interval_s": 0.2, "journal_sync": "none"}

if why := zookeeper.available():
    if os.environ.get("CI"):  # CI installs it (`make test` runs scripts/install_zookeeper.sh)
        raise RuntimeError(f"ZooKeeper is not installed: {why}")
    pytest.skip(f"ZooKeeper is not installed: {why}", allow_module_level=True)


class ZooKeeperServer:
    """A standalone server in its own process group, killed at the end whatever happens."""

    def __init__(self, work_dir: Path, port: int | None = None):
        self.port = port or free_port_block(1, (0,))
        self.hosts = f"127.0.0.1:{self.port}"
        config = zookeeper.write_config(work_dir, "127.0.0.1", self.port)
        self.process = subprocess.Popen(zookeeper.command(config), stdin=subprocess.DEVNULL,
                                        stdout=open(work_dir / "zookeeper.log", "ab"), stderr=subprocess.STDOUT,
                                        start_new_session=True)

    def wait(self) -> ZooKeeperServer:
        assert zookeeper.wait_serving(self.hosts, 60, lambda: self.process.poll() is None), "ZooKeeper did not start"
        return self

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def zk_server(tmp_path_factory):
    server = ZooKeeperServer(tmp_path_factory.mktemp("zookeeper")).wait()
    yield server
    server.stop()


@pytest.fixture
def zk(zk_server):
    """A plain kazoo client of the test's own, to look at the nodes."""
    client = KazooClient(hosts=zk_server.hosts, timeout=5)
    client.start(timeout=10)
    yield client
    client.stop()
    client.close()


def nodes(client: KazooClient, path: str) -> dict[str, dict]:
    """The `json.info_*` children of `path`, by name, with their MasterInfo."""
    if not client.exists(path):
        return {}
    return {child: json.loads(client.get(f"{path}/{child}")[0])
            for child in sorted(client.get_children(path)) if child.startswith("json.info_")}


def info(port: int, id_: str = "m") -> dict:
    return {"id": id_, "ip": 0, "port": port, "hostname": "127.0.0.1", "version": "0.1.0",
            "address": {"hostname": "127.0.0.1", "ip": "127.0.0.1", "port": port}}


def test_master_info_is_mesos_json():
    assert mesos_master_info(info(5050, "master-1")) == {
        "id": "master-1", "ip": 16777343, "port": 5050, "pid": "master@127.0.0.1:5050", "hostname": "127.0.0.1",
        "version": "0.1.0", "address": {"hostname": "127.0.0.1", "ip": "127.0.0.1", "port": 5050},
    }


async def test_advertiser_creates_replaces_stale_and_withdraws(zk_server, zk):
    path = "/unit"
    url = f"zk://{zk_server.hosts}{path}"
    first, second = ZkAdvertiser(url), ZkAdvertiser(url)
    first.start()
    second.start()
    try:
        first.advertise(info(5050, "first"))
        found = await wait_until(lambda: nodes(zk, path), 10, what="the first node")
        assert [n["id"] for n in found.values()] == ["first"]
        assert list(found.values())[0]["address"] == {"hostname": "127.0.0.1", "ip": "127.0.0.1", "port": 5050}
        (first_node,) = found

        # A new leader: its node first, then the stale one goes.
        second.advertise(info(5051, "second"))
        found = await wait_until(lambda: (n := nodes(zk, path)) and first_node not in n and n, 10,
                                 what="the stale node to go")
        assert [n["id"] for n in found.values()] == ["second"]
        (second_node,) = found
        assert second_node > first_node

        # The old leader steps down: nothing of the new leader's is touched.
        first.withdraw()
        await asyncio.sleep(0.3)
        assert list(nodes(zk, path)) == [second_node]

        # The session is lost while leading (here: closed from another client): a new node on
        # the next session.
        session_id, password = second.client.client_id
        for _ in range(3):  # the owner may win the session back before the thief closes it
            thief = KazooClient(hosts=zk_server.hosts, client_id=(session_id, password), timeout=5)
            thief.start(timeout=10)
            thief.stop()
            thief.close()
            with contextlib.suppress(AssertionError):
                found = await wait_until(lambda: (n := nodes(zk, path)) and second_node not in n and n,
                                         8, what="the node to be made again on a new session")
                break
        else:
            raise AssertionError("the session could not be expired")
        assert [n["id"] for n in found.values()] == ["second"]
        assert second.client.client_id[0] != session_id

        second.withdraw()
        await wait_until(lambda: not nodes(zk, path), 10, what="the node to be withdrawn")
    finally:
        await first.close()
        await second.close()


async def test_zookeeper_down_at_start_blocks_nothing_and_is_caught_up_with(tmp_path):
    port = free_port_block(1, (0,))
    advertiser = ZkAdvertiser(f"zk://127.0.0.1:{port}/late")
    started = time.monotonic()
    advertiser.start()
    advertiser.advertise(info(5050, "late"))
    # The loop stays free while kazoo retries.
    ticks = 0
    while time.monotonic() - started < 1.0:
        await asyncio.sleep(0.05)
        ticks += 1
    assert ticks >= 10
    server = ZooKeeperServer(tmp_path, port)
    try:
        await asyncio.to_thread(server.wait)
        client = KazooClient(hosts=server.hosts, timeout=5)
        client.start(timeout=10)
        try:
            found = await wait_until(lambda: nodes(client, "/late"), 20, what="the node once ZooKeeper is up")
            assert [n["id"] for n in found.values()] == ["late"]
        finally:
            client.stop()
            client.close()
    finally:
        server.stop()
    # Closing while ZooKeeper is gone is bounded too.
    closing = time.monotonic()
    await advertiser.close()
    assert time.monotonic() - closing < 10


class LongTasks(Scheduler):
    """Launches one `sleep 30` task and records what the driver tells it."""

    def __init__(self):
        self.lock = threading.Lock()
        self.registrations: list[str] = []
        self.reregistrations: list[dict] = []
        self.launched: list[str] = []
        self.updates: list[tuple[str, str, str | None]] = []

    def registered(self, driver, framework_id, master_info):
        with self.lock:
            self.registrations.append(framework_id["value"])

    def reregistered(self, driver, master_info):
        with self.lock:
            self.reregistrations.append(dict(master_info))

    def resourceOffers(self, driver, offers):
        for offer in offers:
            with self.lock:
                launch = not self.launched
                if launch:
                    self.launched.append("sleeper")
            if not launch:
                driver.declineOffer(offer["id"])
                continue
            driver.launchTasks(offer["id"], [{
                "task_id": {"value": "sleeper"}, "agent_id": offer["agent_id"], "name": "sleeper",
                "command": {"value": "sleep 30"},
                "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                              {"name": "mem", "type": "SCALAR", "scalar": {"value": 16}}]}])

    def statusUpdate(self, driver, update):
        with self.lock:
            self.updates.append((update["task_id"]["value"], update["state"], update.get("reason")))

    def states(self) -> list[str]:
        with self.lock:
            return [state for _, state, _ in self.updates]


async def new_leader_among(cluster, survivors: list[dict], old: dict) -> dict:
    """The leader every survivor agrees on, once it is not `old`."""

    async def agreed():
        answers = [await cluster.health(m) for m in survivors]
        leaders = {a["leader"] for a in answers if a}
        if None in answers or len(leaders) != 1 or None in leaders or old["http"] in leaders:
            return None
        return next(m for m in cluster.masters if m["http"] in leaders)

    return await wait_until(agreed, 30, interval=0.2, what="a new leader")


async def test_leader_in_zookeeper_and_pymesos_follows_it_through_a_leader_kill(make_cluster, zk_server, zk):
    path = "/mesos"
    url = f"zk://{zk_server.hosts}{path}"
    cluster = await make_cluster(master_flags={**FAST, "zk": url}, agents=1).start()
    await cluster.wait_for_agents(1)
    leader = await cluster.wait_for_leader()

    # The leader's node, with its MasterInfo.
    found = await wait_until(lambda: nodes(zk, path), 15, what="the leader's node")
    assert len(found) == 1, found
    host, _, port = leader["http"].rpartition(":")
    assert list(found.values())[0] == mesos_master_info({
        "id": leader["id"], "port": int(port), "hostname": host, "version": "0.1.0",
        "address": {"hostname": host, "ip": host, "port": int(port)}})

    # An unmodified pymesos driver, given only the ZooKeeper URL.
    scheduler = LongTasks()
    framework = {"user": "test", "name": "pymesos-zk", "failover_timeout": 300}
    driver = MesosSchedulerDriver(scheduler, framework, url)
    await asyncio.to_thread(driver.start)
    try:
        await wait_until(lambda: "TASK_RUNNING" in scheduler.states(), 30, what="the task to run")
        framework_id = scheduler.registrations[0]

        cluster.kill_master(leader)
        survivors = [m for m in cluster.masters if m is not leader]
        new_leader = await new_leader_among(cluster, survivors, leader)

        # The new leader's node is the lowest live one, and the killed leader's is gone
        # (its session would have lived on for the session timeout).
        old_node = next(iter(found))
        found = await wait_until(lambda: (n := nodes(zk, path)) and old_node not in n and n, 15,
                                 what="the new leader's node to replace the stale one")
        assert len(found) == 1 and min(found) > old_node
        assert list(found.values())[0]["id"] == new_leader["id"]
        assert list(found.values())[0]["address"]["port"] == int(new_leader["http"].rpartition(":")[2])

        # pymesos re-detects the leader through ZooKeeper and re-subscribes with the same id.
        await wait_until(lambda: scheduler.reregistrations, 45, what="pymesos to re-register")
        assert scheduler.registrations == [framework_id]
        assert scheduler.reregistrations[-1]["port"] == int(new_leader["http"].rpartition(":")[2])
        assert driver.framework_id == framework_id
        assert driver.master == new_leader["http"]  # from ZooKeeper: the driver knew only the dead leader

        # The task never stopped: reconciliation says RUNNING, and it was launched once.
        seen = len(scheduler.updates)
        await asyncio.to_thread(driver.reconcileTasks, [])
        await wait_until(lambda: any(t == "sleeper" and s == "TASK_RUNNING" and r == "REASON_RECONCILIATION"
                                     for t, s, r in scheduler.updates[seen:]), 15,
                         what="reconciliation to report the task RUNNING")
        assert scheduler.launched == ["sleeper"]
        assert not [s for s in scheduler.states() if s not in ("TASK_STARTING", "TASK_RUNNING")]
    finally:
        with contextlib.suppress(Exception):
            await asyncio.to_thread(driver.stop)
            await asyncio.to_thread(driver.join)


async def test_cluster_up_zk_starts_zookeeper_advertises_and_stops_it(tmp_path):
    base = free_port_block(1, (0, 1000))
    zk_port = free_port_block(1, (0,))
    work = tmp_path / "cluster"
    config = tmp_path / "cluster.toml"
    config.write_text(f'[cluster]\nagents = 0\nlog_format = "json"\nzk_port = {zk_port}\n'
                      '[master]\njournal_sync = "none"\n')
    output = tmp_path / "supervisor.out"
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "mesos_es", "cluster", "up", "--config", str(config), "--work-dir", str(work),
         "--masters", "1", "--base-port", str(base), "--zk"],
        stdin=subprocess.DEVNULL, stdout=open(output, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        cluster_file = work / "cluster.json"
        await wait_until(lambda: cluster_file.exists() or supervisor.poll() is not None, 60, what="cluster.json")
        assert supervisor.poll() is None, output.read_text()
        described = json.loads(cluster_file.read_text())
        assert described["zk"]["url"] == f"zk://127.0.0.1:{zk_port}/mesos"
        assert f"zk://127.0.0.1:{zk_port}/mesos" in output.read_text()
        zk_pid = described["zk"]["pid"]
        client = KazooClient(hosts=f"127.0.0.1:{zk_port}", timeout=5)
        client.start(timeout=10)
        try:
            found = await wait_until(lambda: nodes(client, "/mesos"), 20, what="the leader's node")
            assert [n["address"]["port"] for n in found.values()] == [base]
        finally:
            client.stop()
            client.close()
        supervisor.send_signal(signal.SIGTERM)
        await asyncio.to_thread(supervisor.wait, 30)
        assert not pid_alive(zk_pid)
    finally:
        if supervisor.poll() is None:
            os.killpg(supervisor.pid, signal.SIGKILL)
            supervisor.wait(timeout=10)
