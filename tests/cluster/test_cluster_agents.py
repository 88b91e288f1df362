"""`cluster up` starts agents next to the masters; they register; Ctrl-C stops everything."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys

import aiohttp
import pytest

from tests.support.ports import free_port_block
from tests.support.procs import pid_alive, wait_until

pytestmark = pytest.mark.slow


async def health(address: str) -> dict | None:
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session, \
                session.get(f"http://{address}/health") as response:
            return await response.json() if response.status == 200 else None
    except (aiohttp.ClientError, OSError, TimeoutError):
        return None


async def test_cluster_up_starts_agents_that_register(tmp_path):
    base = free_port_block(1, (0, 100, 101, 1000))
    work_dir = tmp_path / "cluster"
    config = tmp_path / "c.toml"
    config.write_text('[master]\njournal_sync = "none"\n')
    supervisor = subprocess.Popen(  # noqa: ASYNC220 - started once, not awaited
        [sys.executable, "-m", "mesos_es", "cluster", "up", "--masters", "1", "--agents", "2", "--config", str(config),
         "--base-port", str(base), "--work-dir", str(work_dir)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        cluster_file = work_dir / "cluster.json"
        await wait_until(lambda: cluster_file.exists() or supervisor.poll() is not None, 30, what="cluster.json")
        cluster = json.loads(cluster_file.read_text())
        assert [a["id"] for a in cluster["agents"]] == ["agent-1", "agent-2"]
        assert [a["http"] for a in cluster["agents"]] == [f"127.0.0.1:{base + 100}", f"127.0.0.1:{base + 101}"]

        async def registered():
            answers = [await health(a["http"]) for a in cluster["agents"]]
            return all(a and a["registered"] for a in answers) and answers

        answers = await wait_until(registered, 30, interval=0.2, what="both agents to register")
        assert len({a["agent_id"] for a in answers}) == 2
        supervisor.send_signal(signal.SIGINT)
        output, _ = await asyncio.to_thread(supervisor.communicate, timeout=30)
        assert b"2 agent(s)" in output and b"cluster stopped" in output
        assert not any(pid_alive(p["pid"]) for p in cluster["agents"] + cluster["masters"])
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait(timeout=10)
