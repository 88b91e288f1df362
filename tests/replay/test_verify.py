"""`replay verify`: a legal history passes; planted violations are caught at their position."""

from __future__ import annotations

import pytest

from mesos_es.core import apply as apply_module
from mesos_es.core.convert import resources_to_proto
from mesos_es.core.outcomes import Applied
from mesos_es.core.resources import parse_text
from mesos_es.pb import events_pb2, mesos_pb2
from mesos_es.replay.audit import Auditor
from mesos_es.replay.fold import Fold, Target
from mesos_es.replay.sources import ArchiveSource
from mesos_es.replay.synthetic import START_MS
from tests.replay.conftest import synthetic, write_archive

E = events_pb2


def verify(work, **kwargs) -> tuple[Auditor, Fold]:
    auditor = Auditor(deep_every=500, **kwargs)
    fold = Fold(strict_chain=False)
    fold.fold_to(ArchiveSource(work), Target(), observer=auditor.after, before=auditor.before)
    auditor.finish(fold)
    return auditor, fold


def stamped(events: list[E.Event], start_ms: int = START_MS) -> list[bytes]:
    out = []
    for i, e in enumerate(events):
        e.timestamp_ms = start_ms + 10 * i
        out.append(e.SerializeToString())
    return out


def res(text: str):
    return resources_to_proto(parse_text(text))


def small_cluster() -> list[E.Event]:
    """A leader, an 8-cpu agent, a framework in role `batch` limited to 4 cpus."""
    return [
        E.Event(master_elected=E.MasterElected(leader="127.0.0.1:5050", term=1)),
        E.Event(quota_updated=E.QuotaUpdated(configs=[E.QuotaConfig(role="batch", limits=res("cpus:4"))])),
        E.Event(agent_registered=E.AgentRegistered(agent_id="a1", agent_info=mesos_pb2.AgentInfo(
            hostname="a1", resources=res("cpus:8;mem:4096")))),
        E.Event(framework_subscribed=E.FrameworkSubscribed(framework_id="f1", framework_info=mesos_pb2.FrameworkInfo(
            user="u", name="f1", roles=["batch"]))),
    ]


def offer(offer_id: str, text: str, framework: str = "f1", agent: str = "a1", role: str = "batch") -> mesos_pb2.Offer:
    return mesos_pb2.Offer(id=offer_id, framework_id=framework, agent_id=agent, hostname=agent, role=role,
                           resources=res(text))


def test_a_legal_history_passes(tmp_path):
    # few agents, many rounds: leader changes, agents lost and back, quota, filters, timeouts
    events, position, digest = synthetic(8000, seed=3, agents=4)
    auditor, fold = verify(write_archive(tmp_path / "m", events))
    assert auditor.violations == []
    assert (fold.position, fold.digest()) == (position, digest)
    for check in ("hash_chain", "launches", "agent_allocation", "transitions", "quota", "offers",
                  "acknowledgements", "deep"):
        assert auditor.checked[check] > 0, check
    fairness = auditor.fairness()
    assert set(fairness["roles"]) == {"web", "batch", "analytics", "dev"}
    assert 0 < fairness["roles"]["web"]["max"] <= 1


def test_a_forged_offer_that_over_allocates_an_agent_is_caught(tmp_path):
    events, position, _ = synthetic(3000)
    forged = E.Event(offers_made=E.OffersMade(offers=[offer("forged", "cpus:64;mem:100", "fw-0", "agent-0000", "web")]))
    forged.timestamp_ms = E.Event.FromString(events[-1]).timestamp_ms + 1
    auditor, _ = verify(write_archive(tmp_path / "m", [*events, forged.SerializeToString()]))
    assert [(v.position, v.check) for v in auditor.violations] == [(position + 1, "agent_allocation")]
    assert "agent-0000" in auditor.violations[0].message and "over-allocated" in auditor.violations[0].message


def test_an_applier_that_lets_an_over_allocation_through_is_caught(tmp_path, monkeypatch):
    history = [*small_cluster(),
               E.Event(offers_made=E.OffersMade(offers=[offer("o1", "cpus:3;mem:1000")])),
               E.Event(offers_made=E.OffersMade(offers=[offer("o2", "cpus:7;mem:1000", framework="f1")]))]
    work = write_archive(tmp_path / "m", stamped(history))

    def careless(state, position, event):  # records every offer, without looking
        for o in event.offers_made.offers:
            state.cluster.offers[o.id].CopyFrom(o)
            from mesos_es.core.convert import resources_from_proto
            state.index.hold_offer(o, resources_from_proto(o.resources))
        return Applied()

    monkeypatch.setitem(apply_module.APPLIERS, "offers_made", careless)
    auditor, _ = verify(work)
    checks = {(v.position, v.check) for v in auditor.violations}
    assert (6, "agent_allocation") in checks  # the decision, and the fold's result
    assert any("over-allocated (the fold)" in v.message for v in auditor.violations)


def test_a_broken_hash_is_caught(tmp_path):
    events, _, _ = synthetic(2000)
    work = write_archive(tmp_path / "m", events)
    path = min((work / "archive").glob("*.seg"))
    data = bytearray(path.read_bytes())
    # alter the event at position 1000 (its record's crc is fixed up, as a forger would)
    import struct
    import zlib
    offset = 56
    for _ in range(999):
        offset += 8 + struct.unpack_from("<I", data, offset)[0]
    length = struct.unpack_from("<I", data, offset)[0]
    body = bytearray(data[offset + 8: offset + 8 + length])
    body[-1] ^= 0x01
    data[offset: offset + 8 + length] = struct.pack("<II", length, zlib.crc32(bytes(body))) + bytes(body)
    path.write_bytes(bytes(data))
    auditor, _ = verify(work)
    assert [(v.position, v.check) for v in auditor.violations if v.check == "hash_chain"] == [(1000, "hash_chain")]


def test_an_offer_past_a_quota_limit_is_caught(tmp_path):
    # A decision is judged against the state since the previous allocation (the leader may
    # have decided before a QuotaUpdated was applied): so one legal cycle first.
    history = [*small_cluster(), E.Event(offers_made=E.OffersMade(offers=[offer("o0", "cpus:1;mem:100")])),
               E.Event(offers_declined=E.OffersDeclined(framework_id="f1", offer_ids=["o0"], refuse_seconds=0)),
               E.Event(offers_made=E.OffersMade(offers=[offer("o1", "cpus:6;mem:1000")]))]
    auditor, _ = verify(write_archive(tmp_path / "m", stamped(history)))
    assert [(v.position, v.check) for v in auditor.violations] == [(7, "quota")]
    assert "past its quota limit of 4" in auditor.violations[0].message


def test_an_offer_left_unanswered_is_caught(tmp_path):
    history = [*small_cluster(), E.Event(offers_made=E.OffersMade(offers=[offer("o1", "cpus:2;mem:1000")]))]
    later = E.Event(weights_updated=E.WeightsUpdated(weights=[E.WeightInfo(role="batch", weight=2)]))
    events = stamped(history)
    later.timestamp_ms = START_MS + 300_000
    auditor, _ = verify(write_archive(tmp_path / "m", [*events, later.SerializeToString()]), offer_timeout_s=60)
    assert [v.check for v in auditor.violations] == ["offers"]
    assert "still outstanding" in auditor.violations[0].message


def test_a_launch_beyond_the_offer_is_refused_not_a_violation(tmp_path):
    task = mesos_pb2.TaskInfo(task_id="t1", name="t1", agent_id="a1", resources=res("cpus:5;mem:100"))
    fits = mesos_pb2.TaskInfo(task_id="t2", name="t2", agent_id="a1", resources=res("cpus:1;mem:100"))
    history = [*small_cluster(), E.Event(offers_made=E.OffersMade(offers=[offer("o1", "cpus:2;mem:1000")])),
               E.Event(offers_accepted=E.OffersAccepted(framework_id="f1", offer_ids=["o1"], operations=[
                   E.Operation(type="LAUNCH", task_infos=[task]), E.Operation(type="LAUNCH", task_infos=[fits])])),
               E.Event(task_status_updated=E.TaskStatusUpdated(framework_id="f1", status=mesos_pb2.TaskStatus(
                   task_id="t2", state=mesos_pb2.TASK_RUNNING, agent_id="a1", uuid=b"u" * 16))),
               E.Event(status_update_acknowledged=E.StatusUpdateAcknowledged(
                   framework_id="f1", agent_id="a1", task_id="t2", uuid=b"u" * 16)),
               E.Event(task_status_updated=E.TaskStatusUpdated(framework_id="f1", status=mesos_pb2.TaskStatus(
                   task_id="t2", state=mesos_pb2.TASK_STAGING, agent_id="a1", uuid=b"v" * 16)))]
    auditor, fold = verify(write_archive(tmp_path / "m", stamped(history)))
    assert auditor.violations == []
    assert auditor.checked["launches"] == 1 and auditor.checked["acknowledgements"] == 1
    assert set(fold.state.cluster.frameworks["f1"].tasks) == {"t2"}  # t1 got TASK_ERROR
    assert fold.state.cluster.frameworks["f1"].tasks["t2"].state == mesos_pb2.TASK_RUNNING  # RUNNING -> STAGING ignored


@pytest.mark.parametrize("kind", ["task appears", "illegal transition"])
def test_a_state_the_events_do_not_explain_is_caught(tmp_path, monkeypatch, kind):
    task = mesos_pb2.TaskInfo(task_id="t1", name="t1", agent_id="a1", resources=res("cpus:1;mem:100"))
    history = [*small_cluster(), E.Event(offers_made=E.OffersMade(offers=[offer("o1", "cpus:2;mem:1000")])),
               E.Event(offers_accepted=E.OffersAccepted(framework_id="f1", offer_ids=["o1"], operations=[
                   E.Operation(type="LAUNCH", task_infos=[task])])),
               E.Event(task_status_updated=E.TaskStatusUpdated(framework_id="f1", status=mesos_pb2.TaskStatus(
                   task_id="t1", state=mesos_pb2.TASK_FINISHED, agent_id="a1", uuid=b"u" * 16))),
               E.Event(weights_updated=E.WeightsUpdated(weights=[E.WeightInfo(role="batch", weight=2)]))]
    original = apply_module.APPLIERS["weights_updated"]

    def buggy(state, position, event):
        framework = state.cluster.frameworks["f1"]
        if kind == "task appears":
            framework.tasks["ghost"].info.task_id = "ghost"
            framework.tasks["ghost"].state = mesos_pb2.TASK_RUNNING
        else:
            framework.tasks["t1"].state = mesos_pb2.TASK_RUNNING  # back from TASK_FINISHED
        return original(state, position, event)

    monkeypatch.setitem(apply_module.APPLIERS, "weights_updated", buggy)
    auditor, _ = verify(write_archive(tmp_path / "m", stamped(history)))
    assert auditor.violations, kind
    assert {v.check for v in auditor.violations} <= {"launches", "transitions", "deep"}
