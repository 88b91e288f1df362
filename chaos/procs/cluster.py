"""The real processes of a chaos run: masters, agents and the Raft proxy, on 127.0.0.1.

Each process has its own work dir and log file, gets SIGKILL if the harness dies (so none
outlives a run), and can be killed, paused, resumed, stopped and started again with the
same command line: a master from its work dir, an agent from its checkpoint. Every exit the
harness did not cause is recorded in `unexpected_exits`: a crash is evidence, not noise.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from chaos.procs.proxy import Link, ProxyProcess, peer_addresses, plan_links
from mesos_es.processes import children, die_with_parent

HOST = "127.0.0.1"
RAFT_OFFSET = 1000  # master i: HTTP base + i, Raft base + 1000 + i
AGENT_OFFSET = 100  # agent i: base + 100 + i
MASTER_PORTS = (20_000, 28_000)  # Raft ports then sort above the proxy ports below (as strings too)
PROXY_PORTS = (12_000, 19_000)
STOP_GRACE_S = 10.0
POLL_TIMEOUT_S = 1.0

# Flags of every master, unless the run overrides them: proxy mode (frameworks keep the master
# they know), heartbeats often enough for the frameworks' stall watchdog, small compaction and
# snapshot thresholds so restarted masters exercise snapshot installs and archive gap fetches.
MASTER_FLAGS = {
    "scheduler_api": "proxy",
    "journal_sync": "fsync",
    "allocation_interval_s": "0.5",
    "heartbeat_interval_s": "2",
    "snapshot_every": "2000",
    "compaction_min_entries": "500",
    "compaction_interval_s": "10",
}


def free_base(count: int, offsets: tuple[int, ...], low: int, high: int) -> int:
    """A base port such that base + offset + i is free on HOST for every i < count and offset."""
    rng = random.Random()
    for _ in range(500):
        base = rng.randrange(low, high)
        if all(_is_free(base + o + i) for i in range(count) for o in offsets):
            return base
    raise RuntimeError(f"no free block of {count} ports in [{low}, {high})")


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


@dataclass
class Node:
    """One master or agent process, and how to start it again."""

    name: str
    kind: str  # "master" or "agent"
    http: str
    work_dir: Path
    argv: list[str]
    raft: str = ""
    process: asyncio.subprocess.Process | None = None
    paused: bool = False
    paused_pids: list[int] = field(default_factory=list)  # what `pause` stopped
    expect_exit: bool = True  # set False while it runs; an exit then is unexpected
    starts: int = 0
    watcher: asyncio.Task | None = None

    @property
    def log(self) -> Path:
        return self.work_dir / f"{self.kind}.log"

    @property
    def up(self) -> bool:
        return self.process is not None and self.process.returncode is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None


@dataclass
class Cluster:
    work_dir: Path
    masters: int
    agents: int
    proxied: bool = False  # Raft through the proxy (partitions)
    master_flags: dict[str, str] = field(default_factory=dict)
    agent_resources: str = "cpus:2;mem:2048;disk:4096"
    clock: object = time.monotonic  # the run's clock, for exit times
    nodes: dict[str, Node] = field(default_factory=dict)
    proxy: ProxyProcess | None = None
    links: list[Link] = field(default_factory=list)
    unexpected_exits: list[dict] = field(default_factory=list)
    _session: aiohttp.ClientSession | None = None

    @property
    def master_nodes(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.kind == "master"]

    @property
    def agent_nodes(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.kind == "agent"]

    def master_addresses(self) -> list[str]:
        return [m.http for m in self.master_nodes]

    # -- start and stop -----------------------------------------------------------------------
    def layout(self) -> None:
        """Ports, work dirs and command lines of every process (nothing started)."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        base = free_base(max(self.masters, self.agents), (0, AGENT_OFFSET, RAFT_OFFSET), *MASTER_PORTS)
        secret = self.work_dir / "raft.secret"
        if not secret.exists():
            secret.write_text(os.urandom(24).hex() + "\n")
            secret.chmod(0o600)
        names = [f"master-{i + 1}" for i in range(self.masters)]
        http = {n: f"{HOST}:{base + i}" for i, n in enumerate(names)}
        raft = {n: f"{HOST}:{base + RAFT_OFFSET + i}" for i, n in enumerate(names)}
        if self.proxied:
            pairs = self.masters * (self.masters - 1) // 2
            proxy_base = free_base(pairs, (0,), *PROXY_PORTS)
            self.links = plan_links(raft, [proxy_base + i for i in range(pairs)])
        flags = {**MASTER_FLAGS, **self.master_flags}
        for name in names:
            seen = peer_addresses(name, raft, self.links) if self.proxied else dict(raft)
            peers = ",".join(f"{http[other]}={seen[other]}" for other in names if other != name)
            work = self.work_dir / name
            argv = [sys.executable, "-m", "mesos_es", "master", "--id", name, "--address", http[name],
                    "--raft-address", raft[name], "--peers", peers, "--work-dir", str(work),
                    "--raft-secret-file", str(secret), "--log-format", "json"]
            for key, value in flags.items():
                argv += [f"--{key.replace('_', '-')}", str(value)]
            self.nodes[name] = Node(name, "master", http[name], work, argv, raft=raft[name])
        masters = ",".join(http[n] for n in names)
        for i in range(self.agents):
            name = f"agent-{i + 1}"
            address = f"{HOST}:{base + AGENT_OFFSET + i}"
            first = 31000 + 1000 * i
            work = self.work_dir / name
            argv = [sys.executable, "-m", "mesos_es", "agent", "--master", masters, "--work_dir", str(work),
                    "--ip", HOST, "--port", address.rpartition(":")[2], "--hostname", HOST,
                    "--resources", f"{self.agent_resources};ports:[{first}-{first + 999}]",
                    "--attributes", f"agent:{name}", "--log-format", "json"]
            self.nodes[name] = Node(name, "agent", address, work, argv)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=POLL_TIMEOUT_S))
        if not self.nodes:
            self.layout()
        if self.proxied:
            self.proxy = ProxyProcess(self.links, self.work_dir / "raft-proxy.log")
            await self.proxy.start()
        for node in self.master_nodes + self.agent_nodes:
            await self.spawn(node)

    async def spawn(self, node: Node) -> None:
        node.work_dir.mkdir(parents=True, exist_ok=True)
        with open(node.log, "ab") as log:  # noqa: ASYNC230 - a local file, at (re)start
            node.process = await asyncio.create_subprocess_exec(
                *node.argv, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log,
                preexec_fn=die_with_parent(signal.SIGKILL))
        node.paused = False
        node.expect_exit = False
        node.starts += 1
        node.watcher = asyncio.get_running_loop().create_task(self._watch(node, node.process))

    async def _watch(self, node: Node, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        if not node.expect_exit and node.process is process:
            self.unexpected_exits.append({"node": node.name, "pid": process.pid, "status": code,
                                          "t": round(self.clock(), 3), "log": str(node.log),
                                          "log_tail": tail(node.log, 12)})

    async def stop(self) -> None:
        """Stop everything: agents and their tasks, masters, the proxy (each at most STOP_GRACE_S)."""
        await asyncio.gather(*(self.terminate(n) for n in self.agent_nodes))
        for node in self.agent_nodes:
            kill_tasks(node.work_dir)
        await self.stop_masters()
        if self.proxy is not None:
            await self.proxy.stop()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def stop_masters(self) -> None:
        """SIGTERM every master at the same moment (one by one, a survivor could elect itself)."""
        await asyncio.gather(*(self.terminate(m) for m in self.master_nodes))

    # -- faults ---------------------------------------------------------------------------------
    def kill(self, node: Node) -> None:
        if node.up:
            node.expect_exit = True
            with contextlib.suppress(ProcessLookupError):
                node.process.kill()

    async def wait_dead(self, node: Node, timeout_s: float = 10.0) -> None:
        if node.process is not None:
            await asyncio.wait_for(node.process.wait(), timeout_s)

    def pause(self, node: Node) -> None:
        """SIGSTOP the node; a master whole, its Raft process too (a frozen machine)."""
        if node.up:
            node.paused = True
            node.paused_pids = [node.process.pid, *(children(node.process.pid) if node.kind == "master" else ())]
            for pid in node.paused_pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)

    def resume(self, node: Node) -> None:
        if node.up and node.paused:
            for pid in node.paused_pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
        node.paused = False

    async def terminate(self, node: Node) -> None:
        """SIGTERM (after SIGCONT if paused), then SIGKILL after STOP_GRACE_S."""
        if not node.up:
            return
        node.expect_exit = True
        self.resume(node)
        with contextlib.suppress(ProcessLookupError):
            node.process.terminate()
        try:
            await asyncio.wait_for(node.process.wait(), STOP_GRACE_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                node.process.kill()
            await node.process.wait()

    async def restart(self, node: Node) -> None:
        if node.up:
            raise RuntimeError(f"{node.name} is still running")
        await self.spawn(node)

    # -- reads ----------------------------------------------------------------------------------
    async def get_json(self, url: str, timeout_s: float = POLL_TIMEOUT_S) -> dict | None:
        try:
            async with self._session.get(url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
                return await response.json() if response.status == 200 else None
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
            return None

    async def health(self, node: Node, timeout_s: float = POLL_TIMEOUT_S) -> dict | None:
        if not node.up or node.paused:
            return None
        return await self.get_json(f"http://{node.http}/health", timeout_s)

    async def digest(self, node: Node) -> dict | None:
        if not node.up or node.paused:
            return None
        return await self.get_json(f"http://{node.http}/api/v1/digest")

    async def agent_state(self, node: Node, timeout_s: float = POLL_TIMEOUT_S) -> dict | None:
        if not node.up or node.paused:
            return None
        return await self.get_json(f"http://{node.http}/state", timeout_s)

    async def healths(self, nodes: list[Node] | None = None) -> dict[str, dict | None]:
        nodes = self.master_nodes if nodes is None else nodes
        answers = await asyncio.gather(*(self.health(n) for n in nodes))
        return {n.name: a for n, a in zip(nodes, answers)}

    def by_http(self, address: str | None) -> Node | None:
        return next((m for m in self.master_nodes if m.http == address), None)

    async def agreed_leader(self) -> tuple[Node, dict] | None:
        """The leader, once every running master answers and names it, and it says it leads."""
        running = [m for m in self.master_nodes if m.up and not m.paused]
        answers = await self.healths(running)
        if not running or any(a is None for a in answers.values()):
            return None
        named = {a["leader"] for a in answers.values()}
        if len(named) != 1:
            return None
        leader = self.by_http(named.pop())
        if leader is None or leader.name not in answers or answers[leader.name]["role"] != "leader":
            return None
        return leader, answers[leader.name]

    async def wait_for_leader(self, timeout_s: float) -> tuple[Node, dict] | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = await self.agreed_leader()
            if found:
                return found
            await asyncio.sleep(0.1)
        return None

    async def agents_registered(self, with_leader: str | None = None) -> bool:
        """Every running agent is registered (with `with_leader`, when given)."""
        running = [a for a in self.agent_nodes if a.up and not a.paused]
        states = await asyncio.gather(*(self.agent_state(a) for a in running))
        return all(s and s.get("registered") and (with_leader is None or s.get("leader") == with_leader)
                   for s in states)

    async def wait_agents_registered(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if await self.agents_registered():
                return True
            await asyncio.sleep(0.2)
        return False


def kill_tasks(agent_work_dir: Path) -> None:
    """SIGKILL the process groups of the tasks an agent checkpointed (after it stopped)."""
    from mesos_es.cluster.up import AgentSpec, kill_agent_tasks

    kill_agent_tasks(AgentSpec(id="", http="", work_dir=agent_work_dir, resources=""))


def tail(path: Path, lines: int) -> list[str]:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            return f.read().decode(errors="replace").splitlines()[-lines:]
    except OSError:
        return []
