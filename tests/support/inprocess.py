"""Masters in this process: real HTTP servers over an in-memory replicated log.

For fast tests of the HTTP APIs and clients; replica ids are the masters' Raft addresses,
so leader redirects resolve exactly as with pysyncobj.
"""

from __future__ import annotations

from aiohttp import web

from mesos_es.log.memory import MemoryCluster
from mesos_es.master.config import MasterConfig, Peer
from mesos_es.master.context import MasterContext
from mesos_es.master.http.app import build_app
from mesos_es.master.leader import Leader
from mesos_es.master.replica import Replica
from tests.support.ports import free_port_block


class InProcessMasters:
    def __init__(self, tmp_path, count: int = 3, **config):
        base = free_port_block(count, (0,))
        self.addresses = [f"127.0.0.1:{base + i}" for i in range(count)]
        self.peers = [Peer(http=a, raft=f"raft-{a}") for a in self.addresses]
        self.cluster = MemoryCluster([p.raft for p in self.peers])
        self.tmp_path = tmp_path
        self.config = config
        self.contexts: list[MasterContext] = []
        self.runners: list[web.AppRunner] = []
        self.extra_middlewares: dict[int, list] = {}

    async def start(self) -> InProcessMasters:
        for i, peer in enumerate(self.peers):
            config = MasterConfig(
                id=f"master-{i + 1}", address=peer.http, raft_address=peer.raft,
                peers=tuple(p for p in self.peers if p != peer), work_dir=self.tmp_path / f"m{i}",
                raft_secret="unused", **self.config,
            )
            replica = Replica()
            log = self.cluster.replicas[peer.raft]
            await log.start(replica.apply)
            context = MasterContext(config=config, log=log, replica=replica)
            context.leader_shell = Leader(context)
            context.leader_shell.start()
            app = build_app(context)
            for middleware in self.extra_middlewares.get(i, []):
                app.middlewares.append(middleware)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            host, _, port = peer.http.rpartition(":")
            await web.TCPSite(runner, host, int(port)).start()
            self.contexts.append(context)
            self.runners.append(runner)
        return self

    def elect(self, index: int) -> None:
        self.cluster.elect(self.peers[index].raft)

    def url(self, index: int, path: str = "") -> str:
        return f"http://{self.addresses[index]}{path}"

    async def stop(self) -> None:
        for context in self.contexts:
            await context.leader_shell.stop()
        for runner in self.runners:
            await runner.cleanup()
