"""The real-process checkers pass on consistent evidence and FAIL on planted bad evidence:
the harness proves it can fail (chaos/procs/checkers.py)."""

import copy

import pytest

from chaos.procs import checkers

FW = "fw-1"


def good() -> dict:
    """A small, consistent run: two writers' appends, one framework's two tasks, three masters."""
    appends = [
        {"writer": 0, "seq": 0, "data": "0:0", "invoked_s": 0.0, "completed_s": 0.1, "position": 1, "error": None},
        {"writer": 1, "seq": 0, "data": "1:0", "invoked_s": 0.05, "completed_s": 0.2, "position": 2, "error": None},
        {"writer": 0, "seq": 1, "data": "0:1", "invoked_s": 0.2, "completed_s": 0.3, "position": 3, "error": None},
        {"writer": 1, "seq": 1, "data": "1:1", "invoked_s": 0.3, "completed_s": 9.0, "position": None,
         "error": "503: gave up retrying"},
    ]
    log = [[1, "0:0"], [2, "1:0"], [3, "0:1"], [4, "1:1"]]
    final_reads = [{"master": m, "entries": copy.deepcopy(log), "error": None} for m in ("m1", "m2", "m3")]
    reads = [{"t": 0.5, "master": "m2", "entries": [[1, "0:0"], [2, "1:0"]], "error": None}]
    framework = {
        "name": "ours", "framework_id": FW, "subscriptions": [0.0, 5.0], "errors": [],
        "tasks": [
            {"id": "t1", "agent_id": "a1", "accept": "accepted", "states": ["TASK_STARTING", "TASK_RUNNING",
                                                                             "TASK_FINISHED"],
             "terminal": "TASK_FINISHED", "reconciled": None},
            {"id": "t2", "agent_id": "a1", "accept": "unknown", "states": [], "terminal": "TASK_LOST",
             "reconciled": "TASK_LOST"},
        ],
        "deliveries": [
            {"t": 1.0, "uuid": "u1", "task": "t1", "state": "TASK_STARTING", "reason": None, "stream": 1},
            {"t": 1.5, "uuid": "u2", "task": "t1", "state": "TASK_RUNNING", "reason": None, "stream": 1},
            {"t": 6.0, "uuid": "u2", "task": "t1", "state": "TASK_RUNNING", "reason": None, "stream": 2},
            {"t": 6.5, "uuid": "u3", "task": "t1", "state": "TASK_FINISHED", "reason": None, "stream": 2},
            {"t": 7.0, "uuid": None, "task": "t2", "state": "TASK_LOST", "reason": "REASON_RECONCILIATION",
             "stream": 2},
        ],
        "acks": [
            {"uuid": "u1", "task": "t1", "state": "TASK_STARTING", "sent_s": 1.0, "done_s": 1.1, "ok": True,
             "error": None, "stream": 1},
            # the first ack of u2 was cut by the failover: u2 came again on the next subscription (allowed)
            {"uuid": "u2", "task": "t1", "state": "TASK_RUNNING", "sent_s": 1.5, "done_s": 4.0, "ok": False,
             "error": "TimeoutError", "stream": 1},
            {"uuid": "u2", "task": "t1", "state": "TASK_RUNNING", "sent_s": 6.0, "done_s": 6.1, "ok": True,
             "error": None, "stream": 2},
            {"uuid": "u3", "task": "t1", "state": "TASK_FINISHED", "sent_s": 6.5, "done_s": 6.6, "ok": True,
             "error": None, "stream": 2},
        ],
    }
    return {
        "appends": appends, "final_reads": final_reads, "reads": reads, "frameworks": [framework],
        "agent_runs": {f"{FW}/t1": 1}, "master_launches": {f"{FW}/t1": 1},
        "master_updates": {FW: ["u1", "u2", "u3"]}, "master_acks": {FW: ["u1", "u2", "u3"]},
        "digests": {m: {"position": 40, "digest": "ab" * 32, "leader": "m1"} for m in ("m1", "m2", "m3")},
        "verifies": {m: {"ok": True, "exit": 0, "position": 40, "digest": "ab" * 32, "error": None}
                     for m in ("m1", "m2", "m3")},
        "faults": [
            {"index": 1, "kind": "kill-leader", "target": "leader", "resolved": "m1", "started_s": 5.0,
             "expects_failover": True, "new_leader_s": 2.1, "agents_s": 3.5, "recovered": True, "error": None},
            {"index": 2, "kind": "kill-agent", "target": "agent-1", "resolved": "agent-1", "started_s": 9.0,
             "expects_failover": False, "agent_back_s": 4.2, "recovered": True, "error": None},
        ],
    }


def verdicts(e: dict) -> dict[str, checkers.Verdict]:
    return {
        "log": checkers.check_log(e["appends"], e["final_reads"], e["reads"]),
        "tasks": checkers.check_tasks(e["frameworks"], e["agent_runs"], e["master_launches"]),
        "updates": checkers.check_updates(e["frameworks"], e["master_updates"], e["master_acks"]),
        "convergence": checkers.check_convergence(e["digests"], e["verifies"]),
        "failover": checkers.check_failover(e["faults"], leader_limit_s=30, agents_limit_s=60),
    }


def failing(e: dict, checker: str) -> checkers.Verdict:
    """Only `checker` fails; it names a problem."""
    results = verdicts(e)
    assert not results[checker].ok, results[checker]
    assert results[checker].evidence["problems"], results[checker]
    assert [name for name, v in results.items() if not v.ok] == [checker]
    return results[checker]


def test_consistent_evidence_passes_every_checker():
    results = verdicts(good())
    assert all(v.ok for v in results.values()), {k: v.seen for k, v in results.items() if not v.ok}
    assert "1 redeliveries before an acknowledgement" in results["updates"].seen
    assert checkers.check_processes([]).ok


# -- the framework log ----------------------------------------------------------------------------

def test_an_acknowledged_append_missing_from_the_final_read_fails():
    e = good()
    for read in e["final_reads"]:
        read["entries"] = [x for x in read["entries"] if x[1] != "1:0"]
        read["entries"] = [[i + 1, d] for i, (_, d) in enumerate(read["entries"])]
    e["reads"] = []
    v = failing(e, "log")
    assert "acknowledged append missing from the final log" in v.evidence["problems"]
    assert "1:0 answered 200 at position 2" in v.evidence["problems"]["acknowledged append missing from the final log"][
        "examples"][0]


def test_an_entry_present_twice_fails():
    e = good()
    for read in e["final_reads"]:
        read["entries"].append([5, "0:1"])
    assert "entry present more than once" in failing(e, "log").evidence["problems"]


def test_masters_whose_final_logs_differ_fail():
    e = good()
    e["final_reads"][2]["entries"] = e["final_reads"][2]["entries"][:3]
    assert "masters' final logs differ" in failing(e, "log").evidence["problems"]


def test_an_append_answered_at_another_position_fails():
    e = good()
    e["appends"][2]["position"] = 4
    assert "acknowledged append elsewhere or more than once" in failing(e, "log").evidence["problems"]


def test_real_time_order_violated_fails():
    e = good()
    # 1:0 began after 0:0 was answered, yet sits before it
    for read in e["final_reads"]:
        read["entries"] = [[1, "1:0"], [2, "0:0"], [3, "0:1"], [4, "1:1"]]
    e["appends"][0]["position"], e["appends"][1]["position"] = 2, 1
    e["appends"][1]["invoked_s"] = 0.15
    e["reads"] = []
    assert "real-time order violated" in failing(e, "log").evidence["problems"]


def test_a_read_during_the_run_that_disagrees_with_the_final_log_fails():
    e = good()
    e["reads"].append({"t": 1.0, "master": "m3", "entries": [[2, "0:1"]], "error": None})
    assert "a read during the run disagrees with the final log" in failing(e, "log").evidence["problems"]


def test_an_entry_no_one_appended_fails():
    e = good()
    for read in e["final_reads"]:
        read["entries"].append([5, "7:0"])
    assert "entry no one appended" in failing(e, "log").evidence["problems"]


# -- tasks ----------------------------------------------------------------------------------------

def test_a_task_launched_twice_on_the_agents_fails():
    e = good()
    e["agent_runs"][f"{FW}/t1"] = 2
    assert "launched twice (agents' sandboxes)" in failing(e, "tasks").evidence["problems"]


def test_a_task_launched_twice_by_the_masters_fails():
    e = good()
    e["master_launches"][f"{FW}/t1"] = 2
    assert "launched twice (masters' archive)" in failing(e, "tasks").evidence["problems"]


def test_a_task_whose_fate_the_framework_never_learned_fails():
    e = good()
    t2 = e["frameworks"][0]["tasks"][1]
    t2["terminal"] = t2["reconciled"] = None
    assert "lost: neither a terminal state nor running per reconciliation" in failing(e, "tasks").evidence["problems"]


def test_a_task_still_running_per_reconciliation_passes():
    e = good()
    t2 = e["frameworks"][0]["tasks"][1]
    t2["terminal"], t2["reconciled"] = None, "TASK_RUNNING"
    e["agent_runs"][f"{FW}/t2"] = 1
    e["master_launches"][f"{FW}/t2"] = 1
    assert verdicts(e)["tasks"].ok


def test_a_task_that_ran_but_was_reported_lost_fails():
    e = good()
    e["agent_runs"][f"{FW}/t2"] = 1
    assert "ran on an agent but the framework was told it was lost" in failing(e, "tasks").evidence["problems"]


def test_a_task_told_finished_that_no_agent_ran_fails():
    e = good()
    del e["agent_runs"][f"{FW}/t1"]
    assert "the framework was told it ran, but no agent ran it" in failing(e, "tasks").evidence["problems"]


def test_an_agent_running_a_task_its_framework_never_launched_fails():
    e = good()
    e["agent_runs"][f"{FW}/t9"] = 1
    assert "an agent ran a task its framework never launched" in failing(e, "tasks").evidence["problems"]


# -- status updates -------------------------------------------------------------------------------

def test_an_acknowledged_update_delivered_again_on_a_later_subscription_fails():
    e = good()
    e["frameworks"][0]["deliveries"].append(
        {"t": 8.0, "uuid": "u1", "task": "t1", "state": "TASK_STARTING", "reason": None, "stream": 2})
    v = failing(e, "updates")
    assert "delivered again on a later subscription after its ack was answered 202" in v.evidence["problems"]


def test_an_ack_from_an_old_subscription_answered_after_the_new_ones_resend_passes():
    e = good()  # u1 acknowledged on subscription 1, answered at 1.1 s
    e["frameworks"][0]["deliveries"].append(
        {"t": 1.05, "uuid": "u1", "task": "t1", "state": "TASK_STARTING", "reason": None, "stream": 2})
    assert checkers.check_updates(e["frameworks"], e["master_updates"], e["master_acks"]).ok


def test_an_ack_answered_202_missing_from_the_masters_history_fails():
    e = good()
    e["master_acks"][FW].remove("u3")
    assert "an ack answered 202 is missing from the masters' history" in failing(e, "updates").evidence["problems"]


def test_an_update_the_masters_applied_that_never_reached_the_framework_fails():
    e = good()
    e["master_updates"][FW].append("u9")
    v = failing(e, "updates")
    assert "an update the masters forwarded never reached the framework" in v.evidence["problems"]


def test_an_ack_of_an_update_never_delivered_fails():
    e = good()
    e["frameworks"][0]["acks"].append({"uuid": "u7", "task": "t1", "state": "TASK_RUNNING", "sent_s": 7.0,
                                       "done_s": 7.1, "ok": True, "error": None, "stream": 2})
    e["master_acks"][FW].append("u7")
    assert "acknowledged an update never delivered" in failing(e, "updates").evidence["problems"]


# -- replicas -------------------------------------------------------------------------------------

def test_a_digest_that_differs_fails():
    e = good()
    e["digests"]["m2"] = {"position": 40, "digest": "cd" * 32, "leader": "m1"}
    v = failing(e, "convergence")
    assert "masters differ" in v.evidence["problems"]


def test_masters_at_different_positions_fail():
    e = good()
    e["digests"]["m3"] = {"position": 39, "digest": "ab" * 32, "leader": "m1"}
    assert "masters differ" in failing(e, "convergence").evidence["problems"]


def test_a_failed_replay_verify_fails():
    e = good()
    e["verifies"]["m1"] = {"ok": False, "exit": 1, "position": 40, "digest": "ab" * 32, "error": None,
                           "violations": ["position 12 [launches] task t1 ..."]}
    assert "replay verify failed" in failing(e, "convergence").evidence["problems"]


def test_a_replay_fold_that_differs_from_the_live_digest_fails():
    e = good()
    e["verifies"]["m2"]["digest"] = "ef" * 32
    assert "replay verify's fold differs from the live digest" in failing(e, "convergence").evidence["problems"]


# -- failover and processes -----------------------------------------------------------------------

def test_a_failover_past_the_limit_fails():
    e = good()
    e["faults"][0]["new_leader_s"] = 31.0
    assert "no new leader within 30 s" in failing(e, "failover").evidence["problems"]


def test_a_cluster_that_did_not_recover_fails():
    e = good()
    e["faults"][1]["recovered"] = False
    v = failing(e, "failover")
    assert "the cluster did not agree on a leader after the recovery" in v.evidence["problems"]


def test_an_unexpected_exit_fails():
    v = checkers.check_processes([{"node": "master-2", "pid": 1, "status": 70, "t": 12.0, "log": "x",
                                   "log_tail": []}])
    assert not v.ok
    assert "master-2 exited with status 70" in v.seen


@pytest.mark.parametrize("values, expected", [
    ([], {"count": 0, "min": None, "p50": None, "p90": None, "max": None}),
    ([3.0], {"count": 1, "min": 3.0, "p50": 3.0, "p90": 3.0, "max": 3.0}),
    ([float(v) for v in range(1, 11)], {"count": 10, "min": 1.0, "p50": 5.0, "p90": 9.0, "max": 10.0}),
    ([2.0, 1.0, 4.0, 3.0], {"count": 4, "min": 1.0, "p50": 2.0, "p90": 4.0, "max": 4.0}),
])
def test_distribution_uses_nearest_rank(values, expected):
    assert checkers.distribution(values) == expected
