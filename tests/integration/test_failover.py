"""Leader failover with real processes: `cluster up` (three masters in proxy mode, two
agents) and an unmodified pymesos scheduler connected to a standby. The leader is killed
with SIGKILL while long tasks run: the framework re-registers with the same id through the
same standby, its tasks keep running (reconciliation says so), none is lost or launched
twice, the agents re-register by digest, and the new leader's history up to the old
leader's last answer folds to the digest the old leader gave."""

import asyncio
import json
import threading
from pathlib import Path

import aiohttp
import pytest
from pymesos import MesosSchedulerDriver, Scheduler

from mesos_es.core import digest
from mesos_es.core.apply import apply
from mesos_es.core.state import State
from mesos_es.log.remote import fetch_archived
from mesos_es.pb import events_pb2
from tests.support.procs import wait_until

pytestmark = pytest.mark.slow

FAST = {"allocation_interval_s": 0.2, "journal_sync": "none"}
TASKS = ("long-0", "long-1")


class LongTasks(Scheduler):
    """Launches TASKS (one per offer), then declines; records every update and callback."""

    def __init__(self):
        self.to_launch = list(TASKS)
        self.launched: list[str] = []
        self.states: dict[str, list[str]] = {}
        self.back = threading.Event()
        self.framework_ids: list[str] = []
        self.lock = threading.Lock()

    def registered(self, driver, framework_id, master_info):
        self.framework_ids.append(framework_id["value"])

    def reregistered(self, driver, master_info):
        self.back.set()

    def resourceOffers(self, driver, offers):
        for offer in offers:
            with self.lock:
                task_id = self.to_launch.pop() if self.to_launch else None
            if task_id is None:
                driver.declineOffer(offer["id"], {"refuse_seconds": 1})
                continue
            self.launched.append(task_id)
            driver.launchTasks(offer["id"], [{
                "task_id": {"value": task_id}, "agent_id": offer["agent_id"], "name": task_id,
                "command": {"value": "sleep 120"},
                "resources": [{"name": "cpus", "type": "SCALAR", "scalar": {"value": 0.1}},
                              {"name": "mem", "type": "SCALAR", "scalar": {"value": 16}}]}])

    def statusUpdate(self, driver, update):
        with self.lock:
            self.states.setdefault(update["task_id"]["value"], []).append(update["state"])

    def running(self) -> set[str]:
        with self.lock:
            return {t for t, s in self.states.items() if s[-1] == "TASK_RUNNING"}


async def fold_history(url: str, last: int) -> str:
    """The digest of the state folded from a master's archive, positions 1..last."""
    state = State()
    async with aiohttp.ClientSession() as session:
        while state.position < last:
            for record in await fetch_archived(session, url, state.position + 1, last):
                apply(state, record.position, events_pb2.Event.FromString(record.payload))
    return digest.digest(state)


def reregistrations(log_file: str) -> list[dict]:
    lines = []
    for line in Path(log_file).read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == "agent_registered" and entry.get("reregistered"):
            lines.append(entry)
    return lines


async def test_killing_the_leader_under_a_pymesos_framework_loses_nothing(make_cluster):
    cluster = await make_cluster(master_flags=FAST, agents=2).start()
    await cluster.wait_for_agents(2)
    leader = await cluster.wait_for_leader()
    standby = next(m for m in cluster.masters if m is not leader)
    scheduler = LongTasks()
    driver = MesosSchedulerDriver(scheduler, {"user": "test", "name": "failover", "failover_timeout": 300},
                                  standby["http"])
    await asyncio.to_thread(driver.start)
    try:
        await wait_until(lambda: scheduler.running() == set(TASKS), 60, what="both tasks running")
        before = await cluster.digest(leader)

        cluster.kill_master(leader)
        await cluster.wait_dead(leader)
        survivors = [m for m in cluster.masters if m is not leader]

        # the survivors may still name the dead one for a moment
        new_leader = await cluster.wait_for_leader(among=survivors, timeout=30, other_than=leader)
        assert await asyncio.to_thread(scheduler.back.wait, 60), "pymesos did not re-register"
        assert scheduler.framework_ids and len(set(scheduler.framework_ids)) == 1

        # The new leader's history up to the old leader's last answer is the same state.
        assert await fold_history(f"http://{new_leader['http']}", before["position"]) == before["digest"]

        # Both agents came back by digest: nothing to reconcile, no task list sent.
        await wait_until(lambda: len(reregistrations(new_leader["log"])) >= 2, 60, what="agents re-registered")
        assert all(r["tasks_unchanged"] for r in reregistrations(new_leader["log"])), reregistrations(
            new_leader["log"])

        with scheduler.lock:
            scheduler.states = {}
        driver.reconcileTasks([])
        await wait_until(lambda: scheduler.running() == set(TASKS), 30, what="reconciliation")
    finally:
        await asyncio.to_thread(driver.stop)
        await asyncio.to_thread(driver.join)
    assert sorted(scheduler.launched) == sorted(TASKS), "a task was launched twice"
    assert all(s == ["TASK_RUNNING"] for s in scheduler.states.values()), scheduler.states
