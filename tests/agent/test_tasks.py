"""Command tasks: launch, finish, fail with an exit code, kill with a grace period."""

from __future__ import annotations

import time

from tests.agent.conftest import command_task


async def test_a_command_task_runs_in_its_sandbox_and_finishes(master, make_agent):
    agent = await make_agent([master])
    agent_id = await master.wait_registered()
    master.run_task(agent_id, command_task("t1", 'echo "hello $MESOS_TASK_ID" ; echo oops >&2'))
    final = await master.wait_state("t1", "TASK_FINISHED")
    assert master.states("t1") == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]
    assert final["message"] == "Command exited with status 0"
    assert final["agent_id"] == {"value": agent_id} and final["source"] == "SOURCE_EXECUTOR"
    sandboxes = list((agent.config.work_dir / "sandboxes" / "fw-1" / "t1").iterdir())
    assert len(sandboxes) == 1
    assert (sandboxes[0] / "stdout").read_text() == "hello t1\n"
    assert (sandboxes[0] / "stderr").read_text() == "oops\n"
    # Acknowledged and terminal: the agent forgets the task.
    await master.wait_for(lambda: not agent.agent.tasks and not agent.agent.updates.all(), 5, "the task to be forgotten")


async def test_a_failing_command_reports_its_exit_code(master, make_agent):
    await make_agent([master])
    agent_id = await master.wait_registered()
    master.run_task(agent_id, command_task("t2", "exit 3"))
    final = await master.wait_state("t2", "TASK_FAILED")
    assert final["message"] == "Command exited with status 3"


async def test_arguments_without_a_shell_and_the_mesos_environment(master, make_agent):
    agent = await make_agent([master])
    agent_id = await master.wait_registered()
    script = 'import os; print(" ".join(os.environ[k] for k in ("MESOS_FRAMEWORK_ID", "MESOS_EXECUTOR_ID", "MESOS_AGENT_ID", "FOO")))'
    master.run_task(agent_id, command_task("t3", {
        "shell": False, "value": "/usr/bin/env", "arguments": ["env", "python3", "-c", script],
        "environment": {"variables": [{"name": "FOO", "value": "bar"}]}}))
    await master.wait_state("t3", "TASK_FINISHED")
    sandbox = next((agent.config.work_dir / "sandboxes" / "fw-1" / "t3").iterdir())
    assert (sandbox / "stdout").read_text().split() == ["fw-1", "t3", agent_id, "bar"]


async def test_kill_sends_sigterm_then_sigkill_after_the_grace_period(master, make_agent):
    await make_agent([master])
    agent_id = await master.wait_registered()
    # Ignores SIGTERM: only SIGKILL ends it, after the grace period.
    master.run_task(agent_id, command_task("stubborn", "trap '' TERM; while true; do sleep 0.05; done"))
    await master.wait_state("stubborn", "TASK_RUNNING")
    started = time.monotonic()
    master.kill_task(agent_id, "stubborn", grace_s=1.0)
    final = await master.wait_state("stubborn", "TASK_KILLED")
    assert 0.9 <= time.monotonic() - started < 5
    assert final["message"] == "Command terminated with signal Killed"
    # A polite one ends on SIGTERM at once.
    master.run_task(agent_id, command_task("polite", "sleep 30"))
    await master.wait_state("polite", "TASK_RUNNING")
    started = time.monotonic()
    master.kill_task(agent_id, "polite", grace_s=10.0)
    final = await master.wait_state("polite", "TASK_KILLED")
    assert time.monotonic() - started < 3
    assert final["message"] == "Command terminated with signal Terminated"


async def test_kill_of_an_unknown_task_reports_it_lost(master, make_agent):
    await make_agent([master])
    agent_id = await master.wait_registered()
    master.kill_task(agent_id, "never-launched")
    final = await master.wait_state("never-launched", "TASK_LOST")
    assert final["reason"] == "REASON_TASK_UNKNOWN" and final["source"] == "SOURCE_AGENT"
