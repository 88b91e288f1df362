"""Real processes: `mesos-es cluster up` with `kafka = true` (it starts tansu), three
masters, one agent; frameworks run tasks and append to named logs; the leader is killed and
the work goes on. Then the topic holds every position exactly once (read by confluent-kafka,
a third-party client), and a replay from each source gives the live masters' digest."""

from __future__ import annotations

import asyncio
import collections
import json
import subprocess
import sys
import time

import aiohttp
import pytest

from mesos_es.client.scheduler import SchedulerClient, launch, scalar
from mesos_es.replay.fold import Fold, Target
from mesos_es.replay.sources import open_source
from tests.support.ports import free_port_block
from tests.support.procs import ProcessCluster, wait_until

pytestmark = pytest.mark.slow

FAST = {"allocation_interval_s": 0.2, "journal_sync": "none", "offer_timeout_s": 5}
TOPIC = "mesos-es.events"


class KafkaCluster(ProcessCluster):
    """`cluster up` that starts its own broker on `kafka_port` (as `cluster up --kafka` does)."""

    def __init__(self, *args, kafka_port: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.kafka_port = kafka_port

    def write_config(self) -> None:
        super().write_config()
        text = self.config_file.read_text().replace(
            "[cluster]\n", f"[cluster]\nkafka = true\nkafka_port = {self.kafka_port}\n", 1)
        self.config_file.write_text(text)


@pytest.fixture
async def cluster(tmp_path):
    cluster = KafkaCluster(tmp_path / "cluster", master_flags=FAST, agents=1,
                           kafka_port=free_port_block(1, (0,)))
    try:
        await cluster.start()
        await cluster.wait_for_agents(1)
        yield cluster
    finally:
        cluster.stop()


async def run_tasks(masters: list[str], name: str, count: int) -> None:
    """A framework that runs `count` short command tasks to TASK_FINISHED, then tears down."""
    finished = 0
    async with SchedulerClient(masters, {"user": "test", "name": name, "roles": ["batch"]}) as client:
        launched = 0
        async with asyncio.timeout(60):
            async for event in client.events():
                if event["type"] == "OFFERS":
                    offers = event["offers"]["offers"]
                    if launched >= count:
                        await client.decline([o["id"]["value"] for o in offers])
                        continue
                    offer = offers[0]
                    tasks = [launch(f"{name}-{launched + i}", offer["agent_id"]["value"], "true",
                                    [scalar("cpus", 0.05), scalar("mem", 8)]) for i in range(count - launched)]
                    launched = count
                    await client.accept([offer["id"]["value"]], tasks)
                elif event["type"] == "UPDATE":
                    status = event["update"]["status"]
                    await client.acknowledge(status)
                    if status["state"] == "TASK_FINISHED":
                        finished += 1
                        if finished == count:
                            await client.teardown()
                            return


async def append(master: str, log: str, count: int) -> None:
    async with aiohttp.ClientSession() as session:
        for i in range(count):
            for _ in range(50):
                async with session.post(f"http://{master}/api/v1/logs/{log}/entries", data=f"{log}-{i}".encode(),
                                        headers={"Idempotency-Key": f"{log}-{i}"}, allow_redirects=True) as r:
                    if r.status == 200:
                        break
                await asyncio.sleep(0.1)


async def export_status(master: dict) -> dict:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session, \
            session.get(f"http://{master['http']}/api/v1/export") as response:
        return await response.json()


def read_topic(address: str, timeout: float = 30.0) -> list[tuple[int, str, int]]:
    """(position, type, value length) of every message, with confluent-kafka (librdkafka)."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": address, "group.id": "test-reader", "enable.auto.commit": False})
    consumer.assign([TopicPartition(TOPIC, 0, OFFSET_BEGINNING)])
    out, idle, deadline = [], 0, time.monotonic() + timeout
    try:
        while idle < 4 and time.monotonic() < deadline:
            messages = consumer.consume(1000, timeout=0.5)
            if not messages:
                idle += 1 if out else 0
                continue
            idle = 0
            for message in messages:
                assert message.error() is None, message.error()
                found = dict(message.headers())
                out.append((int(found["position"]), found["type"].decode(), len(message.value())))
    finally:
        consumer.close()
    return out


def replay_digest(source: str, position: int) -> tuple[int, str]:
    fold = Fold()
    with open_source(source) as opened:
        fold.fold_to(opened, Target(position=position))
    return fold.position, fold.digest()


async def test_export_across_a_leader_kill_and_replay_from_every_source(cluster):
    kafka = f"127.0.0.1:{cluster.kafka_port}"
    urls = cluster.urls()
    leader = await cluster.wait_for_leader()
    await asyncio.gather(run_tasks(urls, "before", 2), append(leader["http"], "before", 20))
    await wait_until(lambda: export_status(leader), 10, what="the export to start")

    cluster.kill_master(leader)
    await cluster.wait_dead(leader)
    survivors = [m for m in cluster.masters if m is not leader]

    new_leader = await cluster.wait_for_leader(survivors, timeout=30, other_than=leader)
    await asyncio.gather(run_tasks([m["http"] for m in survivors], "after", 2),
                         append(new_leader["http"], "after", 20))
    live = await cluster.wait_converged(survivors)
    position = live["position"]

    async def exported():
        status = await export_status(new_leader)
        return status["state"] == "exporting" and status["exported_position"] >= position and status
    status = await wait_until(exported, 30, interval=0.2, what="the new leader to export everything")
    assert status["export_lag_events"] is not None

    # every position exactly once, in order, with its type
    messages = await asyncio.to_thread(read_topic, kafka)
    positions = [p for p, _, _ in messages]
    repeated = [p for p, n in collections.Counter(positions).items() if n > 1]
    assert repeated == [], repeated
    assert positions == list(range(1, len(positions) + 1)) and len(positions) >= position
    kinds = {t for _, t, _ in messages}
    assert {"MasterElected", "OffersMade", "OffersAccepted", "TaskStatusUpdated", "LogEntryAppended"} <= kinds

    # the same digest from each source, equal to the live masters'
    sources = [m["work_dir"] for m in survivors] + [f"http://{new_leader['http']}", f"kafka://{kafka}/{TOPIC}"]
    for source in sources:
        assert await asyncio.to_thread(replay_digest, source, position) == (position, live["digest"]), source

    # and the history is legal
    verify = await asyncio.to_thread(subprocess.run, [
        sys.executable, "-m", "mesos_es", "replay", "verify", "--source", survivors[0]["work_dir"], "--json",
        "--at", str(position), "--offer-timeout-s", "5"], capture_output=True, text=True, timeout=120)
    report = json.loads(verify.stdout)
    assert verify.returncode == 0 and report["ok"], report["violations"]
    assert report["checks"]["launches"]["checked"] >= 2


async def test_kafka_down_blocks_nothing_and_the_export_catches_up(tmp_path):
    """One master exporting to a broker that is not there yet: appends answer as fast as
    ever, the lag grows; once the broker starts, everything is exported, once."""
    from mesos_es.cluster.kafka import Broker

    http, kafka_port = free_port_block(1, (0, 1000)), free_port_block(1, (0,))
    with open(tmp_path / "master.log", "wb") as output:  # noqa: ASYNC230 - once, at the start
        master = subprocess.Popen(  # noqa: ASYNC220 - started once; the test waits on HTTP
            [sys.executable, "-m", "mesos_es", "master", "--address", f"127.0.0.1:{http}", "--work-dir",
             str(tmp_path / "m"), "--journal-sync", "none", "--kafka", f"127.0.0.1:{kafka_port}", "--log-format",
             "json"], stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    node = {"http": f"127.0.0.1:{http}"}
    try:
        await wait_until(lambda: _answers(node), 30, what="the master")
        started = time.monotonic()
        await append(node["http"], "offline", 30)
        assert time.monotonic() - started < 10
        status = await export_status(node)
        assert status["exported_position"] == 0 and status["export_lag_events"] in (None, status["archive_position"])
        with Broker(kafka_port, log_file=tmp_path / "tansu.log") as broker:
            async def caught_up():
                status = await export_status(node)
                return status["export_lag_events"] == 0 and status["exported_position"] >= 31 and status
            await wait_until(caught_up, 60, interval=0.2, what="the export to catch up")
            positions = [p for p, _, _ in await asyncio.to_thread(read_topic, broker.address)]
            assert positions == list(range(1, len(positions) + 1)) and len(positions) >= 31
    finally:
        master.terminate()
        master.wait(timeout=20)


async def _answers(node: dict) -> bool:
    try:
        status = await export_status(node)
    except (TimeoutError, aiohttp.ClientError, OSError):
        return False
    return status.get("enabled") is True and status["archive_position"] >= 1
