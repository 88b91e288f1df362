"""Real clusters for integration tests: `mesos-es cluster up` in its own process group.

Every wait is bounded; everything started is killed at the end, whatever happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

from mesos_es.processes import children
from tests.support.ports import free_port_block


async def wait_until(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    """Await `predicate()` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)


def pid_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


class ProcessCluster:
    def __init__(self, work_dir: Path, masters: int = 3, master_flags: dict | None = None, env: dict | None = None,
                 agents: int = 0, agent_flags: dict | None = None):
        self.work_dir = Path(work_dir)
        self.count = masters
        self.agents = agents  # `cluster up` puts agent i on base port + 100 + i
        self.master_flags = master_flags or {}
        self.agent_flags = agent_flags or {}
        self.env = {**os.environ, **(env or {})}
        self.base_port = free_port_block(max(masters, agents), (0, 100, 1000) if agents else (0, 1000))
        self.supervisor: subprocess.Popen | None = None
        self.extra: list[subprocess.Popen] = []  # masters restarted by the test
        self.masters: list[dict] = []

    @property
    def config_file(self) -> Path:
        return self.work_dir.parent / f"{self.work_dir.name}.toml"

    def write_config(self) -> None:
        lines = ["[cluster]", 'log_format = "json"', f"agents = {self.agents}", "[master]"]
        lines += [f"{k} = {json.dumps(v)}" for k, v in self.master_flags.items()]
        lines += ["[agent]"] + [f"{k} = {json.dumps(v)}" for k, v in self.agent_flags.items()]
        self.config_file.write_text("\n".join(lines) + "\n")

    async def start(self) -> ProcessCluster:
        """`cluster up` (again, if it ran before on this work dir) and wait for a leader."""
        self.write_config()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        (self.work_dir / "cluster.json").unlink(missing_ok=True)
        output = open(self.work_dir.parent / f"{self.work_dir.name}-supervisor.out", "ab")
        self.supervisor = subprocess.Popen(
            [sys.executable, "-m", "mesos_es", "cluster", "up", "--config", str(self.config_file),
             "--work-dir", str(self.work_dir), "--masters", str(self.count), "--base-port", str(self.base_port)],
            stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, env=self.env, start_new_session=True,
        )
        cluster_file = self.work_dir / "cluster.json"
        await wait_until(lambda: cluster_file.exists() or self.supervisor.poll() is not None, 30, what="cluster.json")
        assert self.supervisor.poll() is None, f"cluster up exited with {self.supervisor.returncode}"
        self.masters = json.loads(cluster_file.read_text())["masters"]
        await self.wait_for_leader()
        return self

    def urls(self, masters: list[dict] | None = None) -> list[str]:
        return [m["http"] for m in (masters or self.masters)]

    async def health(self, master: dict) -> dict | None:
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
                async with session.get(f"http://{master['http']}/health") as response:
                    return await response.json() if response.status == 200 else None
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            return None

    async def wait_for_leader(self, among: list[dict] | None = None, timeout: float = 30,
                              other_than: dict | None = None, interval: float = 0.2) -> dict:
        """The master that leads, once every live master in `among` agrees on it (and it is not
        `other_than`: right after a kill, the survivors still name the old leader)."""
        among = among or self.masters

        async def agreed():
            answers = [await self.health(m) for m in among]
            leaders = {a["leader"] for a in answers if a}
            if None in answers or len(leaders) != 1 or None in leaders:
                return None
            if other_than is not None and other_than["http"] in leaders:
                return None
            return next(m for m in self.masters if m["http"] in leaders)

        return await wait_until(agreed, timeout, interval=interval, what="an agreed leader")

    async def digest(self, master: dict) -> dict | None:
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
                async with session.get(f"http://{master['http']}/api/v1/digest") as response:
                    return await response.json()
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            return None

    async def wait_converged(self, masters: list[dict], timeout: float = 60) -> dict:
        """Wait until the masters report the same position and digest; return it."""

        async def same():
            digests = [await self.digest(m) for m in masters]
            if None in digests or len({(d["position"], d["digest"]) for d in digests}) != 1:
                return None
            return digests[0]

        return await wait_until(same, timeout, interval=0.2, what="replicas to converge")

    def master_processes(self, master: dict) -> list[int]:
        """The master's process and its Raft process (`--raft-process on`, the default)."""
        return [master["pid"], *children(master["pid"])]

    def pause_master(self, master: dict) -> list[int]:
        """SIGSTOP the whole master, Raft process included (a frozen machine); returns the
        pids to `resume`."""
        pids = self.master_processes(master)
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        return pids

    @staticmethod
    def resume(pids: list[int]) -> None:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)

    def kill_master(self, master: dict) -> None:
        """SIGKILL the master and its Raft process at once (its machine died). Its Raft process
        would die with it anyway, a few milliseconds later, long enough to acknowledge an
        entry the test then expects to wait."""
        for pid in self.master_processes(master):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    async def wait_dead(self, master: dict) -> None:
        await wait_until(lambda: not pid_alive(master["pid"]), 10, what=f"{master['id']} to die")

    def restart_master(self, master: dict) -> dict:
        """Start a killed master again from its work dir, with the same command line."""
        output = open(master["log"], "ab")
        process = subprocess.Popen(master["argv"], stdin=subprocess.DEVNULL, stdout=output,
                                   stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
        self.extra.append(process)
        master["pid"] = process.pid
        return master

    def kill_all(self) -> None:
        """SIGKILL the supervisor and every master at the same instant (a power cut)."""
        if self.supervisor is not None and self.supervisor.poll() is None:
            os.killpg(self.supervisor.pid, signal.SIGKILL)
            self.supervisor.wait(timeout=10)
        for process in self.extra:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)

    def stop(self) -> None:
        if self.supervisor is not None and self.supervisor.poll() is None:
            self.supervisor.send_signal(signal.SIGTERM)
            try:
                self.supervisor.wait(timeout=20)
            except subprocess.TimeoutExpired:
                pass
        self.kill_all()

    def log_events(self, master: dict) -> list[str]:
        events = []
        for line in Path(master["log"]).read_text(errors="replace").splitlines():
            try:
                events.append(json.loads(line).get("event"))
            except ValueError:
                continue
        return events

    async def wait_for_agents(self, count: int, timeout: float = 30) -> None:
        """Until the leader knows `count` reachable agents."""

        async def registered():
            leader = await self.wait_for_leader()
            try:
                async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session, \
                        session.post(f"http://{leader['http']}/api/v1", json={"type": "GET_AGENTS"}) as response:
                    agents = (await response.json())["get_agents"]["agents"] if response.status == 200 else []
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
                return False
            return len([a for a in agents if a["active"]]) >= count

        await wait_until(registered, timeout, interval=0.2, what=f"{count} agents to register")
