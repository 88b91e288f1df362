"""`mesos-es bench master --json --quick`: real masters, synthetic agents, 10 frameworks; one
JSON object with the headline figures, offers that came back, and tasks that reached
TASK_RUNNING."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

REQUIRED = ("masters", "agents", "frameworks", "offer_rtt_p50_ms", "offer_rtt_p99_ms", "tasks_per_s",
            "launch_p50_ms", "launch_p99_ms", "baseline_append_p50_ms", "baseline_appends_per_s",
            "offer_rtt_ratio", "ratio", "targets", "cases")


@pytest.mark.timeout(240)
def test_bench_master_json_quick():
    done = subprocess.run(
        [sys.executable, "-m", "mesos_es", "bench", "master", "--json", "--quick"],
        capture_output=True, text=True, timeout=220, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    # Exactly one JSON object on stdout, on one line.
    report = json.loads(done.stdout)
    assert isinstance(report, dict)
    assert done.stdout.strip().count("\n") == 0

    for key in REQUIRED:
        assert key in report, key
    assert report["benchmark"] == "master"
    assert report["masters"] == 3 and report["agents"] == 20 and report["frameworks"] == 10
    assert list(report["targets"]) == ["tasks_per_s_at_least_4000_at_10000_agents"]
    assert report["targets"]["tasks_per_s_at_least_4000_at_10000_agents"] is False  # no 10,000-agent case

    (case,) = report["cases"]
    assert case["error"] is None
    # Offers came back after DECLINEs (quick: one round over the 10 frameworks, within the
    # phase's time; a decliner's resources may go to another framework first, a miss).
    assert 5 <= case["offer_rtt_samples"] <= 10 and case["offer_rtt_samples"] + case["offer_rtt_misses"] <= 10
    assert 0 < case["offer_rtt_p50_ms"] <= case["offer_rtt_p99_ms"] <= case["offer_rtt_max_ms"]
    assert case["decline_commit_p50_ms"] > 0
    # Tasks were launched and reached TASK_RUNNING, observed at the schedulers.
    assert case["tasks_launched"] == 300  # --quick's budget
    assert case["tasks_running"] == case["tasks_launched"], case
    assert case["tasks_failed"] == 0 and case["tasks_unfinished"] == 0
    assert case["states"].get("TASK_RUNNING", 0) >= 300
    assert case["tasks_per_s"] > 0 and 0 < case["launch_p50_ms"] <= case["launch_p99_ms"]
    assert set(case["launch_stages_p50_ms"]) == {"accept_ms", "accept_to_starting_ms", "starting_to_running_ms"}
    # The baseline was measured in the same run, and the ratios come from it.
    assert case["baseline_append_p50_ms"] > 0 and case["baseline_appends_per_s"] > 0
    assert case["ratio"] == pytest.approx(case["tasks_per_s"] / case["baseline_appends_per_s"], rel=0.01)
    assert set(case["cores"]) == {"leader", "followers", "agents", "schedulers"}
    # Every task took two updates and two ACKNOWLEDGEs, counted on both sides. An agent sends
    # the updates that fall due together in one UPDATES call (tasks of several ACCEPTs may share
    # one), one state after the other: at least two calls, at most one per update.
    updates = case["calls"].get("agent UPDATE", 0) + case["calls"].get("agent UPDATES", 0)
    assert 2 <= updates <= 600 and case["calls"]["scheduler ACKNOWLEDGE"] >= 600
    assert case["calls"]["scheduler ACCEPT"] == 30  # 10 tasks per ACCEPT
    assert case["calls_per_task"]["scheduler ACKNOWLEDGE"] >= 2
    assert case["leader_appends_per_task"] > 0 and case["baseline_leader_cpu_ms_per_append"] > 0
    assert report["tasks_per_s"] == case["tasks_per_s"]


def test_bench_master_bad_arguments():
    for argv, flag in ((["--agents", "x"], "--agents"), (["--masters", "2"], "--masters"),
                       (["--master-flag", "nonsense"], "--master-flag")):
        bad = subprocess.run(
            [sys.executable, "-m", "mesos_es", "bench", "master", *argv],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )
        assert bad.returncode == 2 and flag in bad.stderr, (argv, bad.stderr)
