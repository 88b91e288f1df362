"""Task health checks: COMMAND and HTTP, healthy in TASK_RUNNING updates, kill on failures."""

from __future__ import annotations

from tests.agent.conftest import command_task
from tests.support.ports import free_port_block

FAST = {"delay_seconds": 0.2, "interval_seconds": 0.2, "timeout_seconds": 2, "grace_period_seconds": 0}


async def test_a_failing_command_health_check_kills_the_task(master, make_agent):
    await make_agent([master])
    agent_id = await master.wait_registered()
    # Healthy while the file exists; the task removes it after a while.
    master.run_task(agent_id, command_task(
        "h1", "touch ok; sleep 1; rm ok; sleep 60",
        health_check={"type": "COMMAND", "command": {"value": "test -e ok"}, "consecutive_failures": 2, **FAST}))
    final = await master.wait_state("h1", "TASK_KILLED", timeout=15)
    assert final["healthy"] is False
    health = [(s["state"], s.get("healthy")) for s in master.statuses("h1")]
    assert health[:3] == [("TASK_STARTING", None), ("TASK_RUNNING", None), ("TASK_RUNNING", True)]
    assert health[3:] == [("TASK_RUNNING", False), ("TASK_RUNNING", False), ("TASK_KILLED", False)]
    updates = [s for s in master.statuses("h1") if s.get("reason") == "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED"]
    assert len(updates) == 3 and "health check failed" in updates[-1]["message"]


async def test_an_http_health_check_reports_healthy(master, make_agent):
    await make_agent([master])
    agent_id = await master.wait_registered()
    port = free_port_block(1, (0,))
    master.run_task(agent_id, command_task(
        "web", f"exec python3 -m http.server {port} --bind 127.0.0.1",
        health_check={"type": "HTTP", "http": {"port": port, "path": "/"}, **FAST, "grace_period_seconds": 10}))
    healthy = await master.wait_for(
        lambda: [s for s in master.statuses("web") if s.get("healthy") is True], 15, "a healthy update")
    assert healthy[0]["state"] == "TASK_RUNNING"
    # Failures inside the grace period before the first success were ignored: no unhealthy update.
    assert not [s for s in master.statuses("web") if s.get("healthy") is False]
    master.kill_task(agent_id, "web")
    await master.wait_state("web", "TASK_KILLED")
