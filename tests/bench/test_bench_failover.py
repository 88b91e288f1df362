"""`mesos-es bench failover --json --quick`: 3 real masters, synthetic agents seeded with
active and completed tasks through the real APIs, the leader SIGKILLed; one JSON object with
the contract's keys, and every agent re-registered with the new leader by its task digest."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

REQUIRED = ("agents", "active_tasks", "completed_tasks", "election_s", "time_to_completion_s", "cold_start_s",
            "master_rss_mb")


@pytest.mark.timeout(150)
def test_bench_failover_json_quick():
    done = subprocess.run(
        [sys.executable, "-m", "mesos_es", "bench", "failover", "--json", "--quick"],
        capture_output=True, text=True, timeout=140, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    report = json.loads(done.stdout)  # exactly one JSON object, on one line
    assert isinstance(report, dict) and done.stdout.strip().count("\n") == 0
    for key in REQUIRED:
        assert key in report, key
    assert report["benchmark"] == "failover"
    assert report["agents"] == 20 and report["active_tasks"] == 200 and report["completed_tasks"] == 200

    (case,) = report["cases"]
    assert case["error"] is None
    # Seeded through the real APIs: one ACCEPT per agent and framework, one update and one
    # ACKNOWLEDGE per task (TASK_RUNNING, or TASK_FINISHED for the completed ones); the agents
    # send the updates of one ACCEPT's tasks together (UPDATES).
    calls = case["seed_calls"]
    assert calls["scheduler ACCEPT"] == 20 * 10 and calls["scheduler ACKNOWLEDGE"] == 400
    assert 200 <= calls.get("agent UPDATE", 0) + calls.get("agent UPDATES", 0) <= 400
    assert case["seed_failed_tasks"] == 0 and case["seed_tasks_per_s"] > 0
    # After the kill, every agent re-registered with the new leader by its task digest.
    assert case["new_leader"] != case["killed"]
    assert case["reregistered_by_digest"] == 20 and case["reregistered_with_tasks"] == 0
    assert case["registered_new"] == 0
    assert case["failover_events"]["agent_reregistered (tasks_unchanged)"] == 20
    assert "agent_marked_unreachable" not in case["failover_events"]
    assert 0 < case["election_s"] <= case["time_to_completion_s"]
    assert case["frameworks_resubscribed_s"] > 0  # the 5 active frameworks came back too
    # The cold start found the whole state, and the agents came back again.
    assert case["cold_start_s"] > 0 and case["cold_start_completion_s"] > 0
    assert case["state"]["tasks"] == 200 and case["state"]["frameworks"] == 5
    assert case["state"]["removed_frameworks"] == 5 and case["completed_tasks_in_state"] == 0
    # Memory of every master, and the baseline measured in the same run.
    assert report["master_rss_mb"] > 0 and set(case["master_memory_mb"]["seeded"]) == {
        "master-1", "master-2", "master-3"}
    assert case["baseline_register_s"] > 0
    assert case["ratio"] == pytest.approx(case["time_to_completion_s"] / case["baseline_register_s"], rel=0.01)


def test_bench_failover_bad_arguments():
    for argv, flag in ((["--agents", "x"], "--agents"), (["--completed-per-agent", "7"], "--completed-per-agent"),
                       (["--master-flag", "nonsense"], "--master-flag")):
        bad = subprocess.run(
            [sys.executable, "-m", "mesos_es", "bench", "failover", *argv],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )
        assert bad.returncode == 2 and flag in bad.stderr, (argv, bad.stderr)
