"""`mesos-es bench log --json --quick`: one JSON object with the headline figures."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

REQUIRED = ("replicas", "appends_per_s", "p50_ms", "p99_ms", "baseline_appends_per_s")


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_bench_log_json_quick():
    done = subprocess.run(
        [sys.executable, "-m", "mesos_es", "bench", "log", "--json", "--quick"],
        capture_output=True, text=True, timeout=150, stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    # Exactly one JSON object on stdout, nothing else.
    report = json.loads(done.stdout)
    assert isinstance(report, dict)
    assert done.stdout.strip().count("\n") == 0

    for key in REQUIRED:
        assert key in report, key
    assert report["replicas"] == 3
    for key in REQUIRED[1:]:
        assert isinstance(report[key], (int, float)) and report[key] > 0, (key, report[key])
    assert report["p50_ms"] <= report["p99_ms"]
    assert report["ratio"] > 0
    assert set(report["targets"].values()) <= {True, False} and len(report["targets"]) == 2

    cases = {(c["path"], c["replicas"], c["durable"]): c for c in report["cases"]}
    expected = {("pysyncobj", n, False) for n in (1, 3)}
    expected |= {(path, n, durable) for path in ("interface", "http") for n in (1, 3) for durable in (True, False)}
    assert set(cases) == expected
    for case in cases.values():
        assert case["error"] is None, case
        assert case["appends_per_s"] > 0 and case["p99_ms"] > 0, case
    headline = cases[("interface", 3, True)]
    assert report["appends_per_s"] == headline["appends_per_s"]
    assert report["baseline_appends_per_s"] == cases[("pysyncobj", 3, False)]["appends_per_s"]
