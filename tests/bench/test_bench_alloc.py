"""`mesos-es bench alloc --json --quick`: one JSON object with the headline figures."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

REQUIRED = ("agents", "frameworks", "cycle_ms", "baseline_ms", "ratio", "targets", "cases")


@pytest.mark.timeout(120)
def test_bench_alloc_json_quick():
    done = subprocess.run(
        [sys.executable, "-m", "mesos_es", "bench", "alloc", "--json", "--quick"],
        capture_output=True, text=True, timeout=100, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # Exactly one JSON object on stdout, nothing else.
    report = json.loads(done.stdout)
    assert isinstance(report, dict)
    assert done.stdout.strip().count("\n") == 0

    for key in REQUIRED:
        assert key in report, key
    assert report["benchmark"] == "alloc"
    assert report["agents"] == 10_000 and report["frameworks"] == 10
    assert report["cycle_ms"] > 0 and report["baseline_ms"] > 0 and report["ratio"] > 0
    assert list(report["targets"]) == ["cycle_under_100ms_at_10000_agents"]
    assert set(report["targets"].values()) <= {True, False}

    cases = {c["agents"]: c for c in report["cases"]}
    assert set(cases) == {1_000, 10_000}
    for n, case in cases.items():
        assert case["runs"] == 2
        assert case["frameworks"] == 10
        # Most agents have something free and every one of those gets an offer.
        assert n // 2 < case["offered_agents"] <= n
        assert case["offers"] >= case["offered_agents"]
        assert set(case["offers_by_role"]) <= {"web", "batch", "analytics", "dev"}
        assert sum(case["offers_by_role"].values()) == case["offers"]
        for key in ("cycle_ms", "cycle_best_ms", "baseline_ms", "baseline_best_ms", "ratio"):
            assert isinstance(case[key], (int, float)) and case[key] > 0, (key, case)
        assert case["cycle_best_ms"] <= case["cycle_ms"]
    assert report["cycle_ms"] == cases[10_000]["cycle_ms"]


def test_bench_alloc_table_and_bad_arguments():
    done = subprocess.run(
        [sys.executable, "-m", "mesos_es", "bench", "alloc", "--agents", "200", "--repeat", "1"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "agents" in done.stdout and "vs scan" in done.stdout and "not measured" in done.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "mesos_es", "bench", "alloc", "--agents", "x"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert bad.returncode == 2 and "--agents" in bad.stderr
