"""`mesos-es bench replay --json --quick`: one JSON object with the headline figures."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


@pytest.mark.timeout(180)
def test_bench_replay_json_quick():
    done = subprocess.run(
        [sys.executable, "-m", "mesos_es", "bench", "replay", "--json", "--quick", "--events", "1500"],
        check=False, capture_output=True, text=True, timeout=150, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert done.stdout.strip().count("\n") == 0
    assert report["benchmark"] == "replay" and report["events"] == 1500
    assert set(report["fold_events_per_s"]) == {"cluster", "logs"}
    assert report["export_events_per_s"] > 0
    cases = {(c["source"], c["mix"]): c for c in report["cases"]}
    assert set(cases) == {(s, m) for s in ("archive", "http", "kafka") for m in ("cluster", "logs")}
    for mix in ("cluster", "logs"):
        # every source replays the same history to the same state
        assert len({cases[(s, mix)]["digest"] for s in ("archive", "http", "kafka")}) == 1
    for case in cases.values():
        assert case["events_per_s"] > 0 and case["baseline_events_per_s"] > 0 and case["ratio"] > 0
    assert set(report["targets"].values()) <= {True, False}
