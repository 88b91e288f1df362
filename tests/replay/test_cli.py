"""`mesos-es replay ...` as an auditor runs it: outputs, exit codes, errors without tracebacks."""

from __future__ import annotations

import json

import pytest

from mesos_es.cli import main
from mesos_es.pb import events_pb2
from mesos_es.replay.fold import format_ms
from tests.replay.conftest import synthetic, write_archive


@pytest.fixture
def work(tmp_path):
    events, _, _ = synthetic(3000)
    return write_archive(tmp_path / "m", events)


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["replay", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_state_json_and_table(work, capsys):
    _, position, digest = synthetic(3000)
    code, out, _ = run(capsys, "state", "--source", str(work), "--json")
    data = json.loads(out)
    assert code == 0 and out.count("\n") == 1
    assert (data["position"], data["digest"]) == (position, digest)
    assert set(data["state"]["cluster"]["frameworks"]) == {"fw-0", "fw-1", "fw-2", "fw-3"}
    code, out, _ = run(capsys, "state", "--source", str(work), "--at", "100")
    assert code == 0 and "position 100 " in out and "digest" in out and "framework" in out
    # by time: the last event stamped at or before it
    stamp = events_pb2.Event.FromString(synthetic(3000)[0][1499]).timestamp_ms
    code, out, _ = run(capsys, "state", "--source", str(work), "--at", format_ms(stamp), "--json")
    assert json.loads(out)["timestamp_ms"] == stamp


def test_timeline_of_a_task(work, capsys):
    code, out, _ = run(capsys, "timeline", "--source", str(work), "--task", "task-00000016", "--json")
    rows = json.loads(out)["events"]
    assert code == 0
    assert rows[0]["event"] == "offers_accepted" and "made at position" in rows[0]["what"]
    assert rows[0]["actor"].startswith("framework ")
    assert any(r["event"] == "task_status_updated" and "TASK_RUNNING" in r["what"] for r in rows)
    assert any(r["event"] == "status_update_acknowledged" for r in rows)
    code, out, _ = run(capsys, "timeline", "--source", str(work), "--agent", "agent-0001", "--at", "400")
    assert code == 0 and "agent_registered" in out and "offers_made" in out
    code, out, _ = run(capsys, "timeline", "--source", str(work), "--framework", "fw-2", "--at", "400")
    assert code == 0 and "framework_subscribed" in out


def test_diff_between_two_positions(work, capsys):
    code, out, _ = run(capsys, "diff", "--source", str(work), "1000", "1100", "--json")
    data = json.loads(out)
    assert code == 0
    assert data["from"]["position"] == 1000 and data["to"]["position"] == 1100
    assert sum(data["events"].values()) == 100
    assert data["changes"] and all(c["op"] in ("added", "removed", "changed") for c in data["changes"])
    code, out, _ = run(capsys, "diff", "--source", str(work), "1000", "1100")
    assert code == 0 and "100 events" in out


def test_verify_exit_codes(work, capsys):
    code, out, _ = run(capsys, "verify", "--source", str(work))
    assert code == 0 and "hash chain unbroken" in out and "DRF" in out
    code, out, _ = run(capsys, "verify", "--source", str(work), "--json")
    data = json.loads(out)
    assert data["ok"] and data["checks"]["hash_chain"]["checked"] == 3000
    # alter one stored hash: verify reports it and exits 1; state refuses with exit 3
    path = min((work / "archive").glob("*.seg"))
    data = bytearray(path.read_bytes())
    data[56 + 8 + 16] ^= 0xFF  # the chain hash of position 1: breaks the crc too
    path.write_bytes(bytes(data))
    code, _, err = run(capsys, "verify", "--source", str(work))
    assert code == 3 and "checksum mismatch in the record at position 1" in err and "Traceback" not in err


def test_bad_input_is_a_sentence_not_a_traceback(tmp_path, work, capsys):
    path = min((work / "archive").glob("*.seg"))
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size - 10)
    code, _, err = run(capsys, "state", "--source", str(work))
    assert code == 3 and "ends inside the record at position 3000" in err
    code, _, err = run(capsys, "state", "--source", str(work), "--at", "5000")
    assert code == 3 and "position" in err
    code, _, err = run(capsys, "state", "--source", str(tmp_path / "none"))
    assert code == 3 and "holds no archive" in err
    code, _, err = run(capsys, "state", "--source", "http://127.0.0.1:1")
    assert code == 3 and "cannot read" in err
    code, _, err = run(capsys, "state", "--source", str(work), "--at", "soon")
    assert code == 3 and "neither a position" in err
    code, _, err = run(capsys, "timeline", "--source", str(work))
    assert code == 2
