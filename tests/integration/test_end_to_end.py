"""End to end with real processes: `mesos-es cluster up` (three masters, two agents), and
two frameworks, the unmodified pymesos driver and our own client,
each running real command tasks to TASK_FINISHED and acknowledging every update."""

import asyncio
import threading

import pytest
from pymesos import MesosSchedulerDriver, Scheduler

from mesos_es.client.scheduler import SchedulerClient, launch, scalar

pytestmark = pytest.mark.slow

FAST = {"allocation_interval_s": 0.2, "journal_sync": "none"}


@pytest.fixture
async def cluster(make_cluster):
    """`mesos-es cluster up` with three masters and two agents, as `make run` starts it."""
    cluster = await make_cluster(master_flags=FAST, agents=2).start()
    await cluster.wait_for_agents(2)
    return cluster


class Runner(Scheduler):
    """Launches N tasks, one per offer, and records their updates."""

    def __init__(self, tasks: int, command: str):
        self.to_launch = [f"py-{i}" for i in range(tasks)]
        self.total = tasks
        self.command = command
        self.states: dict[str, list[str]] = {}
        self.done = threading.Event()
        self.lock = threading.Lock()

    def resourceOffers(self, driver, offers):
        for offer in offers:
            with self.lock:
                task_id = self.to_launch.pop() if self.to_launch else None
            if task_id is None:
                driver.declineOffer(offer["id"])
                continue
            driver.launchTasks(offer["id"], [{
                "task_id": {"value": task_id}, "agent_id": offer["agent_id"], "name": task_id,
                "command": {"value": self.command},
                "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                              {"name": "mem", "type": "SCALAR", "scalar": {"value": 16}}]}])

    def statusUpdate(self, driver, update):
        with self.lock:
            self.states.setdefault(update["task_id"]["value"], []).append(update["state"])
            finished = [s for s in self.states.values() if s[-1] == "TASK_FINISHED"]
            if len(finished) == self.total:
                self.done.set()


async def test_pymesos_and_our_client_run_real_tasks(cluster):
    runner = Runner(tasks=3, command="echo from-pymesos")
    driver = MesosSchedulerDriver(runner, {"user": "test", "name": "pymesos-e2e"}, cluster.urls()[-1])
    await asyncio.to_thread(driver.start)
    try:
        ours = asyncio.create_task(run_our_client(cluster.urls()))
        assert await asyncio.to_thread(runner.done.wait, 60), runner.states
        assert set(runner.states) == {"py-0", "py-1", "py-2"}
        for states in runner.states.values():
            assert states == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]
        assert await ours == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]
    finally:
        await asyncio.to_thread(driver.stop)
        await asyncio.to_thread(driver.join)
    converged = await cluster.wait_converged(cluster.masters)
    assert converged["position"] > 10


async def run_our_client(masters: list[str]) -> list[str]:
    states = []
    async with SchedulerClient(masters, {"user": "test", "name": "ours", "roles": ["batch"]}) as client:
        launched = False
        async with asyncio.timeout(60):
            async for event in client.events():
                if event["type"] == "OFFERS":
                    offers = event["offers"]["offers"]
                    if launched:
                        await client.decline([o["id"]["value"] for o in offers])
                        continue
                    offer = offers[0]
                    await client.accept([offer["id"]["value"]], [launch(
                        "ours-1", offer["agent_id"]["value"], "test -d \"$MESOS_SANDBOX\" && echo ok",
                        [scalar("cpus", 0.1), scalar("mem", 16)])])
                    launched = True
                elif event["type"] == "UPDATE":
                    status = event["update"]["status"]
                    states.append(status["state"])
                    await client.acknowledge(status)
                    if status["state"] in ("TASK_FINISHED", "TASK_FAILED", "TASK_ERROR", "TASK_LOST"):
                        await client.teardown()
                        return states
    return states
