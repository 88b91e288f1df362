"""Bad input ends in TASK_ERROR or TASK_FAILED with a clear message; the agent carries on."""

from __future__ import annotations

from tests.agent.conftest import command_task


async def test_bad_tasks_end_with_clear_messages_and_nothing_is_lost(master, make_agent):
    agent = await make_agent([master])
    agent_id = await master.wait_registered()
    (agent.config.work_dir / "sandboxes" / "fw-1").mkdir(parents=True)
    (agent.config.work_dir / "sandboxes" / "fw-1" / "no-sandbox").write_text("a file where a directory should be")
    cases = {
        "greedy": (command_task("greedy", "true", cpus=64), "TASK_ERROR", "asks for cpus:64"),
        "no-command": ({"task_id": {"value": "no-command"}, "name": "x", "resources": []}, "TASK_ERROR",
                       "no command"),
        "unknown-executor": ({"task_id": {"value": "unknown-executor"}, "name": "x", "resources": [],
                              "executor": {"executor_id": {"value": "ghost"}}}, "TASK_ERROR", "unknown executor"),
        "no-sandbox": (command_task("no-sandbox", "true"), "TASK_FAILED", "could not create the sandbox"),
        "no-binary": (command_task("no-binary", {"shell": False, "value": "/nonexistent/binary"}), "TASK_FAILED",
                      "could not start the command: FileNotFoundError"),
        "bad-health": (command_task("bad-health", "true", health_check={"type": "HTTP", "http": {}}), "TASK_ERROR",
                       "bad health check"),
        "bad-qos": (command_task("bad-qos", "true", labels={"labels": [{"key": "mesos-es/qos-class", "value": "vip"}]}),
                    "TASK_ERROR", "unknown mesos-es/qos-class"),
    }
    for task, _, _ in cases.values():
        master.run_task(agent_id, task)
    master.run_task(agent_id, {**command_task("../escape", "true")})
    # Malformed events are ignored.
    master.push(agent_id, {"type": "RUN_TASK", "run_task": {"task": "nonsense"}})
    master.push(agent_id, {"type": "KILL_TASK", "kill_task": {}})
    master.push(agent_id, {"type": "NO_SUCH_EVENT"})
    for task_id, (_, state, words) in cases.items():
        final = await master.wait_state(task_id, state)
        assert words in final["message"], (task_id, final["message"])
    assert "invalid task id" in (await master.wait_state("../escape", "TASK_ERROR"))["message"]
    # Still alive and well; every update was acknowledged and nothing remains pending.
    master.run_task(agent_id, command_task("fine", "true"))
    await master.wait_state("fine", "TASK_FINISHED")
    await master.wait_for(lambda: not agent.agent.updates.all() and not agent.agent.tasks, 5, "queues to drain")


async def test_a_second_launch_of_the_same_task_id_is_ignored(master, make_agent):
    await make_agent([master])
    agent_id = await master.wait_registered()
    master.run_task(agent_id, command_task("once", "sleep 0.5"))
    master.run_task(agent_id, command_task("once", "sleep 0.5"))
    await master.wait_state("once", "TASK_FINISHED")
    assert master.states("once") == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]


async def test_a_failing_checkpoint_delays_updates_but_loses_none(master, make_agent, monkeypatch):
    import errno

    from mesos_es.agent import checkpoint

    await make_agent([master])
    agent_id = await master.wait_registered()
    real, failures = checkpoint.atomic_write, []

    def flaky(path, data):
        if len(failures) < 3:
            failures.append(path)
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, data)

    monkeypatch.setattr(checkpoint, "atomic_write", flaky)
    master.run_task(agent_id, command_task("patient", "true"))
    await master.wait_state("patient", "TASK_FINISHED", timeout=15)
    assert len(failures) == 3 and master.states("patient") == ["TASK_STARTING", "TASK_RUNNING", "TASK_FINISHED"]
