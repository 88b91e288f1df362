"""`mesos-es agent`: recover, serve the executor API, register, run until SIGTERM/SIGINT.

On SIGTERM the agent exits and leaves its tasks running (as a Mesos agent does); started
again on the same work dir it re-attaches to them. On SIGUSR1 it kills its tasks,
unregisters from the master, forgets its id and exits (a decommission).
"""

from __future__ import annotations

import asyncio
import signal

import structlog
from aiohttp import web

from mesos_es.agent.agent import Agent, AgentStartError
from mesos_es.agent.config import AgentConfig
from mesos_es.agent.executor_api import build_app

__all__ = ["AgentStartError", "serve", "start"]


async def start(config: AgentConfig) -> tuple[Agent, web.AppRunner]:
    """Recover and bind the HTTP port; raises AgentStartError or OSError."""
    config.work_dir.mkdir(parents=True, exist_ok=True)
    agent = Agent(config)
    agent.recover()
    runner = web.AppRunner(build_app(agent), access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, config.ip, config.port)
    try:
        await site.start()
    except OSError:
        await runner.cleanup()
        raise
    return agent, runner


async def serve(config: AgentConfig) -> None:
    log = structlog.get_logger("mesos_es.agent")
    agent, runner = await start(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def decommission() -> None:
        await agent.unregister()
        stop.set()

    loop.add_signal_handler(signal.SIGUSR1, lambda: agent.spawn(decommission()))
    log.info("agent_started", port=config.port, work_dir=str(config.work_dir), masters=list(config.masters),
             resources=agent.agent_info["resources"], agent_id=agent.agent_id)
    try:
        await agent.run(stop)
    finally:
        await runner.cleanup()
    log.info("agent_stopped")
