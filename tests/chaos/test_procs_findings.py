"""Bugs that `chaos run` found, each as the smallest test that failed before its fix (marked
`xfail(strict=True)` while one is open; docs/chaos.md, "What the runs found")."""

import asyncio
import subprocess
import sys
import time

import pytest

from chaos.procs.cluster import AGENT_OFFSET, MASTER_PORTS, free_base
from tests.support.fake_master import FakeMaster

pytestmark = pytest.mark.slow

PROMPT_S = 1.5  # the agent's backoff starts at 0.2 s (with jitter): a lost stream costs far less


async def test_an_agent_re_registers_promptly_after_each_of_many_lost_streams(tmp_path):
    master = await FakeMaster().start()
    port = free_base(1, (AGENT_OFFSET,), *MASTER_PORTS) + AGENT_OFFSET
    with open(tmp_path / "agent.log", "wb") as log:
        agent = subprocess.Popen(
            [sys.executable, "-m", "mesos_es", "agent", "--master", master.address, "--work_dir",
             str(tmp_path / "agent"), "--ip", "127.0.0.1", "--port", str(port), "--hostname", "127.0.0.1",
             "--resources", "cpus:1;mem:256;disk:100;ports:[31000-31009]", "--log-format", "json"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    try:
        agent_id = await master.wait_registered(timeout=30)
        gaps = []
        for _ in range(8):  # a leader change each: the stream ends, the agent registers again
            before = master.streams[agent_id].stream_id
            lost = time.monotonic()
            master.close_stream(agent_id)
            await master.wait_for(lambda: agent_id in master.streams and master.streams[agent_id].stream_id != before,
                                  15, "the agent to register again")
            gaps.append(round(time.monotonic() - lost, 2))
            if gaps[-1] > PROMPT_S:
                break
            await asyncio.sleep(0.5)  # the stream worked for a while, as between two leader changes
        assert max(gaps) <= PROMPT_S, f"seconds from each lost stream to the next registration: {gaps}"
    finally:
        agent.terminate()
        agent.wait(timeout=15)
        await master.stop()
