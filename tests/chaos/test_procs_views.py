"""The masters' view the real-process checkers judge by (chaos/procs/views.py)."""

import base64

from chaos.procs.views import masters_view
from mesos_es.pb import events_pb2, mesos_pb2
from tests.replay.conftest import synthetic, write_archive


def test_an_update_for_a_task_the_master_no_longer_has_is_not_one_it_owes_the_framework(tmp_path):
    # An agent answering a kill for a task it already forgot (its terminal update acknowledged)
    # sends TASK_LOST; the master acknowledges it to the agent and forwards nothing (found by
    # a ten-minute leader-kills run, where the checker took it for a lost update).
    events, position, _ = synthetic(600)
    framework_id = "fw-0"
    late = events_pb2.Event(timestamp_ms=2_000_000_000_000, task_status_updated=events_pb2.TaskStatusUpdated(
        framework_id=framework_id, status=mesos_pb2.TaskStatus(
            task_id="long-gone", state=mesos_pb2.TASK_LOST, uuid=b"u" * 16, agent_id="agent-0000",
            source="SOURCE_AGENT", reason="REASON_TASK_UNKNOWN")))
    view = masters_view(write_archive(tmp_path, [*events, late.SerializeToString()]))
    assert view["position"] == position + 1
    assert view["updates"][framework_id]  # the history's forwarded updates are there
    assert base64.b64encode(b"u" * 16).decode() not in view["updates"][framework_id]
