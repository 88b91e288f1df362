"""`mesos-es master`: one master process (a Raft replica and its HTTP server)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
from pathlib import Path

import structlog
from aiohttp import web

from mesos_es import __version__
from mesos_es.log.chain import GENESIS_HASH
from mesos_es.log.interface import SnapshotMismatch
from mesos_es.log.raft import RaftConfig, RaftLog
from mesos_es.master.config import MasterConfig
from mesos_es.master.context import MasterContext
from mesos_es.master.export import KafkaExporter
from mesos_es.master.export import add_routes as add_export_routes
from mesos_es.master.http.app import build_app
from mesos_es.master.leader import Leader
from mesos_es.master.replica import Replica
from mesos_es.master.zk import ZkAdvertiser

log = structlog.get_logger(__name__)


HTTP_SHUTDOWN_TIMEOUT_S = 5.0
LISTEN_BACKLOG = 4096


class MasterStartError(Exception):
    pass


def raft_config(config: MasterConfig) -> RaftConfig:
    return RaftConfig(
        address=config.raft_address,
        peers=tuple(p.raft for p in config.peers),
        work_dir=config.work_dir,
        password=config.raft_secret,
        durable=config.durable,
        election_timeout_min_s=config.election_timeout_min_ms / 1000,
        election_timeout_max_s=config.election_timeout_max_ms / 1000,
        pre_vote=config.raft_pre_vote,
        stall_dump_s=config.raft_stall_dump_s,
        node_process=config.raft_process,
        master_timeout_s=config.raft_master_timeout_s,
        compaction_min_entries=config.compaction_min_entries,
        compaction_min_interval_s=config.compaction_interval_s,
        max_entry_bytes=config.max_entry_bytes,
        max_batch_bytes=max(config.max_entry_bytes, 1 << 20),
        commit_timeout_s=config.commit_timeout_s,
    )


def lock_work_dir(work_dir: Path) -> int:
    """Hold an exclusive lock on the work dir for the life of the process: two masters on
    one journal would corrupt it."""
    work_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(work_dir / "master.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise MasterStartError(f"another master is running on {work_dir}") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


async def serve(config: MasterConfig, stop: asyncio.Event | None = None) -> None:
    """Run one master until `stop` is set (or SIGTERM/SIGINT)."""
    lock_fd = lock_work_dir(config.work_dir)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    replica = Replica(config.work_dir / "snapshots", snapshot_every=config.snapshot_every,
                      snapshot_suffix_ratio=config.snapshot_suffix_ratio)
    raft_log = RaftLog(raft_config(config), archive_peers=[f"http://{p.http}" for p in config.peers])
    position, chain_hash = replica.load_snapshot()
    try:
        await raft_log.start(replica.apply, position, chain_hash)
    except SnapshotMismatch as e:
        log.warning("snapshot_discarded", position=position, reason=str(e))
        replica.reset()
        await raft_log.start(replica.apply, 0, GENESIS_HASH)
    replica.attach_history(raft_log.sync)
    master = MasterContext(config=config, log=raft_log, replica=replica, archive=raft_log.archive)
    master.leader_shell = Leader(master)
    app = build_app(master)
    exporter = (KafkaExporter(master, config.kafka, config.kafka_topic,
                              max_request_bytes=config.max_entry_bytes + (1 << 20)) if config.kafka else None)
    add_export_routes(app, exporter)
    runner = web.AppRunner(app, access_log=None, handle_signals=False,
                           shutdown_timeout=HTTP_SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    host, _, port = config.address.rpartition(":")
    try:
        # A deep backlog: thousands of agents re-register at once after a leader change, and a
        # dropped SYN costs each of them a 1 s retransmit.
        await web.TCPSite(runner, host, int(port), reuse_address=True, backlog=LISTEN_BACKLOG).start()
    except OSError as e:
        await runner.cleanup()
        await raft_log.stop()
        raise MasterStartError(f"cannot listen on {config.address}: {e.strerror}") from None
    if config.zk:
        master.zk = ZkAdvertiser(config.zk)
        master.zk.start()  # connects in the background: ZooKeeper being down blocks nothing
    master.leader_shell.start()
    if exporter is not None:
        exporter.start()  # exports while this master leads; Kafka being down blocks nothing
    log.info(
        "master_started", id=config.id, version=__version__, address=config.address,
        raft_address=config.raft_address, peers=[p.http for p in config.peers],
        work_dir=str(config.work_dir), pid=os.getpid(),
    )
    try:
        await stop.wait()
    finally:
        log.info("master_stopping", id=config.id)
        await master.leader_shell.stop()
        if exporter is not None:
            await exporter.stop()
        if master.zk is not None:
            await master.zk.close()
        # The log first: requests waiting for a commit then fail at once (503) instead of
        # holding the HTTP shutdown until their commit timeout.
        await raft_log.stop()
        await runner.cleanup()
        await replica.close()
        os.close(lock_fd)
        log.info("master_stopped", id=config.id)
