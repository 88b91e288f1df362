"""Synthetic agents: many in one process, the same protocol, tasks on a schedule."""

from __future__ import annotations

import asyncio
import contextlib

import aiohttp

from mesos_es.agent.synthetic import (
    SyntheticAgent,
    _Sessions,
    progress,
    serve_synthetic,
)
from mesos_es.core.agent_digest import tasks_digest
from tests.agent.conftest import agent_config


def task(task_id: str, **labels) -> dict:
    return {"task_id": {"value": task_id}, "name": task_id, "resources": [], "command": {"value": "ignored"},
            "labels": {"labels": [{"key": f"mesos-es/{k.replace('_', '-')}", "value": v} for k, v in labels.items()]}}


async def test_synthetic_agents_register_and_run_tasks_on_a_schedule(master, tmp_path):
    stop = asyncio.Event()
    config = agent_config(tmp_path, [master.address])
    runner = asyncio.create_task(serve_synthetic(config, 20, task_duration_s=-1, stop=stop))
    try:
        await master.wait_registered(count=20, timeout=20)
        hostnames = {r["agent_info"]["hostname"] for r in master.registrations}
        assert len(hostnames) == 20
        first, second = sorted(master.streams)[:2]
        master.run_task(first, task("quick", duration_seconds="0.2"))
        master.run_task(first, task("bad", duration_seconds="0", exit_code="2"))
        master.run_task(second, task("forever"))
        await master.wait_state("quick", "TASK_FINISHED")
        assert master.states("quick") == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]
        await master.wait_state("bad", "TASK_FAILED")
        await master.wait_state("forever", "TASK_RUNNING")
        master.kill_task(second, "forever")
        await master.wait_state("forever", "TASK_KILLED")
        # Unacknowledged updates are resent; the framework sees each uuid once.
        master.ack_filter = lambda fw, status: False
        master.run_task(second, task("unacked", duration_seconds="0"))
        await master.wait_for(lambda: len([u for u in master.updates if u["status"]["task_id"]["value"] == "unacked"]) > 1,
                              10, "a resend")
        assert master.states("unacked") == ["TASK_STARTING"]
    finally:
        stop.set()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(runner, 10)


async def test_the_command_line_runs_synthetic_agents(master, tmp_path):
    import signal
    import subprocess
    import sys

    process = subprocess.Popen(  # noqa: ASYNC220 - started once
        [sys.executable, "-m", "mesos_es", "agent", "--synthetic", "5", "--master", master.address,
         "--work_dir", str(tmp_path), "--resources", "cpus:8;mem:16384;disk:1000", "--log-format", "json"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await master.wait_registered(count=5, timeout=20)
        assert {r["agent_info"]["resources"][0]["name"] for r in master.registrations} == {"cpus"}
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


def test_register_body_sends_the_digest_of_non_terminal_tasks_once_the_agent_has_an_id(tmp_path):
    agent = SyntheticAgent(0, agent_config(tmp_path, ["127.0.0.1:1"]), session=None, task_duration_s=-1)
    first = agent.register_body()["register"]
    assert first["tasks"] == [] and "tasks_digest" not in first and "agent_id" not in first
    assert agent.register_kind == "new"

    agent.agent_id = "agent-1"
    for framework_id, task_id, state in (("fw-1", "a", "TASK_RUNNING"), ("fw-2", "b", "TASK_STAGING"),
                                         ("fw-1", "done", "TASK_FINISHED")):  # its update not acknowledged yet
        agent.tasks[(framework_id, task_id)] = {"info": task(task_id), "state": state, "uuid": "u", "timer": None}
    again = agent.register_body()["register"]
    assert "tasks" not in again and again["agent_id"] == {"value": "agent-1"}
    assert again["tasks_digest"] == tasks_digest([("fw-1", "a"), ("fw-2", "b")])  # as the master computes it
    assert agent.register_kind == "digest"

    full = agent.register_body(full=True)["register"]  # after a 412: every task, terminal ones too
    assert "tasks_digest" not in full
    assert {(t["framework_id"]["value"], t["task_id"]["value"], t["state"]) for t in full["tasks"]} == {
        ("fw-1", "a", "TASK_RUNNING"), ("fw-2", "b", "TASK_STAGING"), ("fw-1", "done", "TASK_FINISHED")}
    assert agent.register_kind == "full"


async def test_synthetic_agents_reregister_by_digest_and_send_their_tasks_on_a_412(master, tmp_path):
    config = agent_config(tmp_path, [master.address])
    async with aiohttp.ClientSession() as streams, aiohttp.ClientSession() as calls:
        sessions = _Sessions(streams, calls)
        agent = SyntheticAgent(0, config, sessions, task_duration_s=-1)
        runner = asyncio.create_task(agent.run())
        try:
            agent_id = await master.wait_registered()
            master.run_task(agent_id, task("forever", synthetic_updates="minimal"))
            master.run_task(agent_id, task("brief", synthetic_updates="minimal", duration_seconds="0"))
            await master.wait_state("forever", "TASK_RUNNING")
            await master.wait_state("brief", "TASK_FINISHED")
            # Only the states the tasks rest in: no TASK_STARTING, no TASK_RUNNING for a task of 0 s.
            assert master.states("forever") == ["TASK_RUNNING"]
            assert master.states("brief") == ["TASK_FINISHED"]
            await master.wait_for(lambda: ("fw-1", "brief") not in agent.tasks, 10, "the acknowledged task forgotten")
            registrations = len(master.registrations)
            master.close_stream(agent_id)
            await master.wait_for(lambda: len(master.registrations) >= registrations + 2 and agent.client.registered.is_set(),
                                  20, "a re-registration")
            digest_only, full = master.registrations[registrations:registrations + 2]
            assert "tasks" not in digest_only and digest_only["agent_id"] == {"value": agent_id}
            assert digest_only["tasks_digest"] == tasks_digest([("fw-1", "forever")])
            # This fake master keeps no view: it answered 412, so the agent sent its tasks.
            assert [(t["task_id"]["value"], t["state"]) for t in full["tasks"]] == [("forever", "TASK_RUNNING")]
            line = progress([agent], sessions.counts)
            assert line["registrations"] == {"full": 1, "new": 1}
            assert line["registered"] == 1 and line["tasks"] == 1 and line["pending_updates"] == 0
            assert line["registered_at_min"] == line["registered_at_max"] == agent.registered_at
        finally:
            runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await runner
