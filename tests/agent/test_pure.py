"""The agent's pure parts: update queues, task states, reconfiguration policy, estimator,
core allocation, health policy."""

from __future__ import annotations

import base64
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesos_es.agent import estimator, health, isolation, reconfig
from mesos_es.agent import tasks as T
from mesos_es.agent.config import ConfigError, parse_attributes, parse_masters
from mesos_es.agent.updates import UpdateQueues
from mesos_es.core import resources as res


def status(task_id: str, state: str, n: int) -> dict:
    return T.make_status(task_id, state, uuid=n.to_bytes(16, "big"), timestamp=1.0, agent_id="a")


def test_only_the_head_of_each_task_queue_is_sent_until_acknowledged():
    q = UpdateQueues(initial_backoff_s=1, max_backoff_s=10)
    a1, a2, b1 = q.add("f", status("a", "TASK_RUNNING", 1)), q.add("f", status("a", "TASK_FINISHED", 2)), \
        q.add("f", status("b", "TASK_RUNNING", 3))
    assert q.due(0) == []  # nothing is sent before it is checkpointed
    for u in (a1, a2, b1):
        u.saved = True
    assert q.due(0) == [a1, b1]
    q.sent(a1, 0)
    q.sent(b1, 0)
    assert q.due(0.5) == [] and q.next_deadline() == 1
    # Resends back off: 1, 2, 4, 8, 10, 10 s.
    backoffs, now = [], 0.0
    for _ in range(6):
        backoffs.append(a1.backoff_s)
        now = a1.next_send_at
        q.sent(a1, now)
    assert backoffs == [1, 2, 4, 8, 10, 10]
    assert q.acknowledge("f", "a", a2.uuid) is None  # not the head
    assert q.acknowledge("f", "a", a1.uuid) is a1
    assert q.head(a1.key) is a2 and q.due(now)[0] is a2  # the next one is due at once
    q.resend_all_now()
    assert set(map(id, q.due(0))) == {id(a2), id(b1)}
    assert q.add("f", status("a", "TASK_FINISHED", 2)) is None  # a duplicate uuid


@given(st.lists(st.tuples(st.sampled_from("abc"), st.booleans()), max_size=40))
def test_queues_round_trip_and_keep_per_task_order(ops):
    q = UpdateQueues()
    n = 0
    for task_id, ack in ops:
        if ack and q.head(("f", task_id)) is not None:
            q.acknowledge("f", task_id, q.head(("f", task_id)).uuid)
        else:
            n += 1
            q.add("f", status(task_id, "TASK_RUNNING", n))
    restored = UpdateQueues.from_json(q.to_json())
    assert [u.uuid for u in restored.all()] == [u.uuid for u in q.all()]
    assert all(u.saved for u in restored.all())
    for task_id in "abc":
        numbers = [int.from_bytes(base64.b64decode(u.uuid), "big") for u in q.pending(("f", task_id))]
        assert numbers == sorted(numbers)


def test_task_states_and_exit_messages():
    assert T.transition_allowed("TASK_RUNNING", "TASK_FINISHED")
    assert not T.transition_allowed("TASK_FINISHED", "TASK_RUNNING")
    assert not T.transition_allowed("TASK_RUNNING", "TASK_BOGUS")
    assert T.describe_exit(3) == "exited with status 3"
    assert T.describe_exit(-9) == "terminated with signal Killed"
    assert T.exit_state(0, False) == "TASK_FINISHED" and T.exit_state(1, False) == "TASK_FAILED"
    assert T.exit_state(0, True) == "TASK_KILLED"
    assert not T.valid_id("a/b") and not T.valid_id("..") and not T.valid_id("a b") and T.valid_id("web.1")
    s = T.make_status("t", "TASK_RUNNING", uuid=os.urandom(16), timestamp=2.5, agent_id="a", healthy=True)
    assert len(base64.b64decode(s["uuid"])) == 16 and s["healthy"] is True


def info(resources="cpus:2;mem:100", attributes="rack:r1;level:2", hostname="h", port=5051):
    return {"hostname": hostname, "port": port, "resources": res.to_json(res.parse_text(resources)),
            "attributes": list(parse_attributes(attributes))}


@pytest.mark.parametrize(("policy", "new", "ok"), [
    ("equal", info(), True),
    ("equal", info(resources="cpus:3;mem:100"), False),
    ("equal", info(attributes="rack:r1;level:2;zone:z"), False),
    ("additive", info(resources="cpus:3;mem:100;disk:5"), True),
    ("additive", info(attributes="rack:r1;level:2;zone:z"), True),
    ("additive", info(resources="cpus:1;mem:100"), False),
    ("additive", info(resources="mem:100"), False),
    ("additive", info(attributes="rack:r2;level:2"), False),
    ("additive", info(attributes="level:2"), False),
    ("additive", info(attributes="rack:1;level:2"), False),   # TEXT became SCALAR
    ("additive", info(hostname="other"), False),
    ("additive", info(port=5052), False),
])
def test_reconfiguration_policies(policy, new, ok):
    assert (reconfig.check(policy, info(), new) is None) == ok


def test_additive_allows_ranges_to_grow_only():
    old = info(resources="ports:[1-10]", attributes="slots:[1-4]")
    assert reconfig.check("additive", old, info(resources="ports:[1-20]", attributes="slots:[0-8]")) is None
    assert "not contained" in reconfig.check("additive", old, info(resources="ports:[2-20]", attributes="slots:[1-4]"))
    assert "slots" in reconfig.check("additive", old, info(resources="ports:[1-10]", attributes="slots:[2-4]"))


def test_the_estimator_and_its_victims():
    est = estimator.SlackEstimator(margin=0.2, step=0.1)
    assert est.estimate(allocated_cpus=2, used_cpus=0.5) == 1.2
    assert est.estimate(allocated_cpus=1, used_cpus=1.5) == 0
    tasks = [estimator.RevocableTask(("f", "old"), 0.5, 1), estimator.RevocableTask(("f", "new"), 0.5, 2)]
    assert estimator.victims(tasks, 1.0) == []
    assert estimator.victims(tasks, 0.6) == [("f", "new")]
    assert estimator.victims(tasks, 0) == [("f", "new"), ("f", "old")]
    assert estimator.cpu_usage({1: 100}, {1: 150, 2: 7}, 0.5, 100) == 1.0


def test_core_allocation_keeps_one_core_shared():
    cores = isolation.CoreAllocator([0, 1, 2, 3])
    assert cores.allocate("a", 2) == (0, 1)
    assert cores.shared() == (2, 3)
    with pytest.raises(isolation.IsolationError, match="1 can be given"):
        cores.allocate("b", 2)
    cores.release("a")
    assert cores.shared() == (0, 1, 2, 3)
    assert isolation.exclusive_core_count(1.5) == 2 and isolation.exclusive_core_count(0.1) == 1
    assert isolation.qos_class({}, revocable=True) == "best-effort"
    assert isolation.qos_class({}, revocable=False) == "normal"


def test_the_health_policy_matches_mesos():
    tracker = health.HealthTracker(grace_period_s=10, consecutive_failures=3, started_at=0)
    assert tracker.record(False, 5) is None              # in the grace period, before a success
    assert tracker.record(True, 6) == health.HealthChange(True)
    assert tracker.record(True, 7) is None               # no news
    assert tracker.record(False, 8) == health.HealthChange(False, False, 1)  # grace is over after a success
    assert tracker.record(False, 9) == health.HealthChange(False, False, 2)
    assert tracker.record(False, 10) == health.HealthChange(False, True, 3)
    assert health.validate({"type": "HTTP", "http": {"port": 80}}) is None
    assert "unknown" in health.validate({"type": "UDP"})


def test_flags():
    assert parse_masters("a:1, http://b:2/") == ("a:1", "b:2")
    with pytest.raises(ConfigError):
        parse_masters("nope")
    assert parse_attributes("rack:r1;n:2;p:[1-3]") == (
        {"name": "rack", "type": "TEXT", "text": {"value": "r1"}},
        {"name": "n", "type": "SCALAR", "scalar": {"value": 2.0}},
        {"name": "p", "type": "RANGES", "ranges": {"range": [{"begin": 1, "end": 3}]}})
