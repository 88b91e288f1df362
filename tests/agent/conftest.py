"""Agents in this process against a fake master, with real task processes on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from pathlib import Path

import pytest

from mesos_es.agent.config import AgentConfig
from mesos_es.agent.main import start
from mesos_es.core import resources as res
from tests.support.fake_master import FakeMaster
from tests.support.ports import free_port_block

RESOURCES = "cpus:2;mem:1024;disk:1000;ports:[31000-31100]"


def agent_config(work_dir: Path, masters, **overrides) -> AgentConfig:
    config = AgentConfig(
        masters=tuple(masters), work_dir=work_dir, resources=res.parse_text(RESOURCES),
        hostname="127.0.0.1", ip="127.0.0.1", port=free_port_block(1, (0,)),
        registration_backoff_max_s=0.5, update_backoff_s=(0.5, 2.0),
    )
    return dataclasses.replace(config, **overrides)


class RunningAgent:
    def __init__(self, config: AgentConfig):
        self.config = config
        self.agent = None
        self.runner = None
        self.stop_event = asyncio.Event()
        self.task: asyncio.Task | None = None

    async def start(self) -> RunningAgent:
        self.agent, self.runner = await start(self.config)
        self.task = asyncio.create_task(self.agent.run(self.stop_event))
        await asyncio.wait_for(self.agent.started.wait(), 10)
        return self

    async def stop(self, kill_tasks: bool = True) -> None:
        if self.task is None:
            return
        if kill_tasks:
            self.agent.kill_everything()
        self.stop_event.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.task, 10)
        await self.runner.cleanup()
        self.task = None


@pytest.fixture
async def master():
    fake = await FakeMaster().start()
    yield fake
    await fake.stop()


@pytest.fixture
async def make_agent(tmp_path):
    agents: list[RunningAgent] = []

    async def make(masters, work_dir: Path | None = None, **overrides) -> RunningAgent:
        config = agent_config(work_dir or tmp_path / f"agent-{len(agents)}", [m.address for m in masters], **overrides)
        agent = await RunningAgent(config).start()
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        await agent.stop()


def command_task(task_id: str, command: str | dict, cpus: float = 0.1, mem: float = 64, **extra) -> dict:
    return {"task_id": {"value": task_id}, "name": task_id,
            "resources": res.to_json(res.parse_text(f"cpus:{cpus};mem:{mem}")),
            "command": command if isinstance(command, dict) else {"value": command}, **extra}
