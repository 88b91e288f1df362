"""The checkers of a chaos run: pure functions from recorded evidence to a verdict.

Each takes the plain records the run collected (the frameworks' histories, every master's
final answers, the agents' sandboxes, the masters' archive) and returns a `Verdict`: pass
or fail, what it proves, what was expected, what was seen, and the evidence (bounded
lists of the offending items). They read no clock and do no I/O, so tests feed them planted
bad evidence and watch them fail.
"""

from __future__ import annotations

import bisect
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field

EXAMPLES = 10  # offending items listed per problem
RUNNING = {"TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_KILLING"}
# What a framework may be told about a task that never ran on an agent.
NEVER_RAN = {"TASK_DROPPED", "TASK_LOST", "TASK_ERROR", "TASK_UNKNOWN", "TASK_GONE", "TASK_FAILED",
             "TASK_KILLED", "TASK_UNREACHABLE"}
# What a framework must not be told about a task that did run: the system lost track of it.
LOST = {"TASK_LOST", "TASK_UNKNOWN", "TASK_GONE", "TASK_DROPPED", "TASK_UNREACHABLE"}


@dataclass
class Verdict:
    name: str
    ok: bool
    proves: str
    expected: str
    seen: str
    evidence: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)


def _problems(problems: dict[str, list]) -> dict:
    return {k: {"count": len(v), "examples": v[:EXAMPLES]} for k, v in problems.items() if v}


# -- the framework log ---------------------------------------------------------------------------

def check_log(appends: list[dict], final_reads: list[dict], reads: list[dict]) -> Verdict:
    """Every append answered 200 is in the final log once, at the position it was answered with;
    each writer's entries are in the order it wrote them; an append that completed before another
    began has the lower position (real-time order: the log is linearizable); nothing is in the log
    that no one appended; every master's final read is the same log; every read made during the run
    agrees with the final log at the positions it returned."""
    problems: dict[str, list] = defaultdict(list)
    good = [r for r in final_reads if r.get("error") is None]
    for r in final_reads:
        if r.get("error") is not None:
            problems["a master could not be read at the end"].append(f"{r['master']}: {r['error']}")
    log = good[0]["entries"] if good else []
    for r in good[1:]:
        if r["entries"] != log:
            problems["masters' final logs differ"].append(
                f"{r['master']} has {len(r['entries'])} entries, {good[0]['master']} {len(log)}; first difference at "
                f"index {_first_difference(r['entries'], log)}")
    at = {}
    where = defaultdict(list)
    for position, data in log:
        at[position] = data
        where[data].append(position)
    positions = [p for p, _ in log]
    if positions != list(range(1, len(positions) + 1)) and positions:
        problems["positions are not contiguous from 1"].append(f"first positions {positions[:5]}, count {len(positions)}")
    attempted = {a["data"] for a in appends}
    acked = [a for a in appends if a.get("position") is not None]
    for a in acked:
        found = where.get(a["data"], [])
        if not found:
            problems["acknowledged append missing from the final log"].append(
                f"{a['data']} answered 200 at position {a['position']} (t={a['completed_s']}s), absent")
        elif found != [a["position"]]:
            problems["acknowledged append elsewhere or more than once"].append(
                f"{a['data']} answered position {a['position']}, final log has it at {found}")
    for data, found in where.items():
        if data not in attempted:
            problems["entry no one appended"].append(f"{data!r} at {found}")
        elif len(found) > 1:
            problems["entry present more than once"].append(f"{data!r} at {found}")
    by_writer = defaultdict(list)
    for position, data in log:
        writer, _, seq = data.partition(":")
        if seq.isdigit():
            by_writer[writer].append((position, int(seq)))
    for writer, entries in by_writer.items():
        seqs = [s for _, s in entries]
        if seqs != sorted(seqs):
            problems["a writer's entries out of order"].append(
                f"writer {writer}: sequence {_first_unsorted(seqs)} in log order")
    problems.update(_real_time_order(acked))
    stale_reads = 0
    for r in reads:
        for position, data in r.get("entries", []):
            if at.get(position) != data:
                problems["a read during the run disagrees with the final log"].append(
                    f"t={r['t']}s {r['master']} returned {data!r} at {position}; final log has {at.get(position)!r}")
        stale_reads += r.get("error") is not None
    failed = [a for a in appends if a.get("position") is None]
    failed_present = sum(1 for a in failed if a["data"] in where)
    ok = not problems
    return Verdict(
        name="log appends durable and linearizable",
        ok=ok,
        proves="a 200 to a named-log append means the entry is committed: it survives every fault, exactly "
               "once, where the answer said, in the order of real time",
        expected=f"all {len(acked)} acknowledged appends in the final log once at their positions; "
                 f"{len(good)} masters' logs identical; reads during the run agree with the final log",
        seen=("as expected" if ok else "; ".join(f"{k}: {len(v)}" for k, v in problems.items()))
        + f" ({len(log)} entries; {len(failed)} appends without an answer, {failed_present} of them in the log)",
        evidence={"appends": len(appends), "acknowledged": len(acked), "unanswered": len(failed),
                  "unanswered_in_log": failed_present, "final_entries": len(log),
                  "masters_read": [r["master"] for r in good], "reads_during_run": len(reads),
                  "reads_failed": stale_reads, "problems": _problems(problems)})


def _real_time_order(acked: list[dict]) -> dict[str, list]:
    """If append A was answered before append B was invoked, A's position is below B's."""
    by_completion = sorted(acked, key=lambda a: a["completed_s"])
    completed = [a["completed_s"] for a in by_completion]
    highest = []  # running max of positions over appends completed so far
    best = None
    for a in by_completion:
        best = a if best is None or a["position"] > best["position"] else best
        highest.append(best)
    problems = []
    for b in acked:
        k = bisect.bisect_left(completed, b["invoked_s"])  # appends completed strictly before b began
        if k and highest[k - 1]["position"] > b["position"]:
            a = highest[k - 1]
            problems.append(f"{a['data']} answered {a['position']} at t={a['completed_s']}s, before {b['data']} "
                            f"began at t={b['invoked_s']}s, which got the lower position {b['position']}")
    return {"real-time order violated": problems} if problems else {}


def _first_difference(a: list, b: list) -> int:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return i
    return min(len(a), len(b))


def _first_unsorted(seqs: list[int]) -> str:
    for i in range(1, len(seqs)):
        if seqs[i] < seqs[i - 1]:
            return f"{seqs[i - 1]} then {seqs[i]}"
    return ""


# -- tasks ---------------------------------------------------------------------------------------

def check_tasks(frameworks: list[dict], agent_runs: dict[str, int], master_launches: dict[str, int]) -> Verdict:
    """Every task a framework launched ends in a terminal state it was told, or is still running
    per reconciliation; no task ran twice on the agents (sandboxes) or was launched twice by the
    masters (archive); a task that ran was not reported lost; a task the framework believes ran
    did run. `agent_runs` and `master_launches` are keyed "framework_id/task_id"."""
    problems: dict[str, list] = defaultdict(list)
    states: Counter = Counter()
    unknown_accepts = 0
    total = 0
    ids = {fw["framework_id"] for fw in frameworks}
    for fw in frameworks:
        for task in fw["tasks"]:
            total += 1
            key = f"{fw['framework_id']}/{task['id']}"
            told = task.get("terminal")
            reconciled = task.get("reconciled")
            runs = agent_runs.get(key, 0)
            launches = master_launches.get(key, 0)
            unknown_accepts += task.get("accept") != "accepted"
            if told:
                states[told] += 1
            else:
                states[f"running ({reconciled})" if reconciled in RUNNING else "no answer"] += 1
            what = f"{fw['name']} {task['id']} (accept {task.get('accept')}, told {told}, reconciled {reconciled}, " \
                   f"ran {runs}x on agents, launched {launches}x by the masters)"
            if told is None and reconciled not in RUNNING:
                problems["lost: neither a terminal state nor running per reconciliation"].append(what)
            if runs > 1:
                problems["launched twice (agents' sandboxes)"].append(what)
            if launches > 1:
                problems["launched twice (masters' archive)"].append(what)
            if runs and told in LOST:
                problems["ran on an agent but the framework was told it was lost"].append(what)
            if not runs and (told in {"TASK_FINISHED"} or reconciled in RUNNING - {"TASK_STAGING"}):
                problems["the framework was told it ran, but no agent ran it"].append(what)
            if task.get("accept") == "accepted" and not launches and not runs and told not in NEVER_RAN:
                problems["a launch answered 202 that the masters never recorded"].append(what)
    known = {f"{fw['framework_id']}/{t['id']}" for fw in frameworks for t in fw["tasks"]}
    for key, runs in sorted(agent_runs.items()):
        if key.split("/", 1)[0] in ids and key not in known:
            problems["an agent ran a task its framework never launched"].append(f"{key} ran {runs}x")
    ok = not problems
    return Verdict(
        name="no task lost or launched twice",
        ok=ok,
        proves="every task's fate reaches its framework (a terminal update, or reconciliation says it still "
               "runs), no task runs twice, and the masters, the agents and the frameworks agree on which ran",
        expected=f"all {total} tasks terminal (told) or running (reconciled); each ran at most once on the "
                 "agents and was launched at most once by the masters",
        seen=("as expected" if ok else "; ".join(f"{k}: {len(v)}" for k, v in problems.items()))
        + f" (final states: {dict(sorted(states.items()))}; {unknown_accepts} launches without a 202)",
        evidence={"tasks": total, "final_states": dict(sorted(states.items())), "launches_without_202": unknown_accepts,
                  "agent_sandboxes": sum(agent_runs.values()), "problems": _problems(problems)})


# -- status updates ------------------------------------------------------------------------------

def check_updates(frameworks: list[dict], master_updates: dict[str, list[str]],
                  master_acks: dict[str, list[str]]) -> Verdict:
    """Every status update a framework acknowledged (answered 202) was delivered to it first, and
    never again on a later subscription once answered (the masters hold the acknowledgement:
    resending it after a failover is a lost acknowledgement); every acknowledgement answered
    202 is in the masters' history; every update the masters forwarded to the framework (a
    `ForwardUpdate` effect) reached it. `master_updates` and `master_acks`: framework id ->
    uuids (base64) from the archive."""
    problems: dict[str, list] = defaultdict(list)
    duplicates = 0
    acked_total = 0
    for fw in frameworks:
        name, fid = fw["name"], fw["framework_id"]
        delivered: dict[str, list[dict]] = defaultdict(list)
        for d in fw["deliveries"]:
            if d.get("uuid"):
                delivered[d["uuid"]].append(d)
        duplicates += sum(len(v) - 1 for v in delivered.values())
        ok_acks = [a for a in fw["acks"] if a["ok"]]
        acked_total += len(ok_acks)
        history_acks = set(master_acks.get(fid, []))
        for ack in ok_acks:
            uuid = ack["uuid"]
            before = [d for d in delivered.get(uuid, []) if d["t"] <= ack["sent_s"]]
            if not before:
                problems["acknowledged an update never delivered"].append(f"{name} {ack['task']} {ack['state']} {uuid}")
            # Received after the 202 (an acknowledgement from an ended subscription is taken,
            # so one answered after the new subscription's resend is not a lost one).
            later = [d for d in delivered.get(uuid, []) if d["stream"] > ack["stream"] and d["t"] > ack["done_s"]]
            if later:
                problems["delivered again on a later subscription after its ack was answered 202"].append(
                    f"{name} {ack['task']} {ack['state']} uuid {uuid}: ack 202 at t={ack['done_s']}s on subscription "
                    f"{ack['stream']}, delivered again at t={later[0]['t']}s on subscription {later[0]['stream']}")
            if uuid not in history_acks:
                problems["an ack answered 202 is missing from the masters' history"].append(
                    f"{name} {ack['task']} {ack['state']} {uuid} (202 at t={ack['done_s']}s)")
        for uuid in sorted(history_acks - set(delivered)):
            problems["the masters recorded an ack of an update never delivered"].append(f"{name} {uuid}")
        for uuid in sorted(set(master_updates.get(fid, [])) - set(delivered)):
            problems["an update the masters forwarded never reached the framework"].append(f"{name} {uuid}")
    ok = not problems
    return Verdict(
        name="acknowledged updates delivered exactly once",
        ok=ok,
        proves="status updates are at-least-once until acknowledged and never resent once the acknowledgement "
               "was answered: an acknowledged update reaches its framework exactly once per uuid",
        expected=f"each of {acked_total} acknowledged uuids delivered before its ack and not on a later "
                 "subscription; every ack and every update the masters forwarded in their history matches the "
                 "framework's",
        seen=("as expected" if ok else "; ".join(f"{k}: {len(v)}" for k, v in problems.items()))
        + f" ({duplicates} redeliveries before an acknowledgement was committed: allowed, at-least-once)",
        evidence={"acknowledged": acked_total, "redelivered_before_ack": duplicates,
                  "problems": _problems(problems)})


# -- replicas ------------------------------------------------------------------------------------

def check_convergence(digests: dict[str, dict | None], verifies: dict[str, dict]) -> Verdict:
    """All masters report the same digest at the same position, and `mesos-es replay verify` of
    each master's work dir, folded to that position, passes with that digest."""
    problems: dict[str, list] = defaultdict(list)
    answers = {m: d for m, d in digests.items() if d}
    for m, d in digests.items():
        if not d:
            problems["a master gave no digest"].append(m)
    distinct = {(d["position"], d["digest"]) for d in answers.values()}
    if len(distinct) > 1:
        problems["masters differ"].extend(f"{m}: position {d['position']} digest {d['digest'][:16]}"
                                          for m, d in sorted(answers.items()))
    target = next(iter(distinct)) if len(distinct) == 1 else None
    for m, v in sorted(verifies.items()):
        if v.get("error") or not v.get("ok"):
            problems["replay verify failed"].append(
                f"{m}: exit {v.get('exit')}, {v.get('error') or ''} {v.get('violations', [])[:3]}".strip())
        if target and (v.get("position"), v.get("digest")) != target:
            problems["replay verify's fold differs from the live digest"].append(
                f"{m}: folded position {v.get('position')} digest {str(v.get('digest'))[:16]}, live "
                f"{target[0]} {target[1][:16]}")
    ok = not problems and target is not None
    return Verdict(
        name="replicas converge and replay verifies",
        ok=ok,
        proves="every replica folded the same history to the same state, and each one's archive is an "
               "unbroken hash chain whose events obey the invariants replay verify checks",
        expected=f"{len(digests)} masters at one (position, digest); replay verify ok on each work dir at it",
        seen="as expected" if ok else "; ".join(f"{k}: {len(v)}" for k, v in problems.items()),
        evidence={"digests": digests, "verify": {m: {k: v.get(k) for k in ("ok", "exit", "position", "digest",
                                                                          "events", "error", "checks")}
                                                 for m, v in verifies.items()},
                  "problems": _problems(problems)})


# -- failover ------------------------------------------------------------------------------------

def distribution(values: list[float]) -> dict:
    """count, min, p50, p90, max (nearest rank), in the values' unit."""
    if not values:
        return {"count": 0, "min": None, "p50": None, "p90": None, "max": None}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, int(-(-p * len(ordered) // 1)) - 1))]

    return {"count": len(ordered), "min": round(ordered[0], 3), "p50": round(rank(0.5), 3),
            "p90": round(rank(0.9), 3), "max": round(ordered[-1], 3)}


def check_failover(faults: list[dict], leader_limit_s: float, agents_limit_s: float) -> Verdict:
    """After every fault that took the leader away a new one was elected within `leader_limit_s`,
    every agent was registered with it within `agents_limit_s`, and after every fault's recovery
    the whole cluster agreed on a leader again (liveness)."""
    problems: dict[str, list] = defaultdict(list)
    for f in faults:
        label = f"#{f['index']} {f['kind']} {f.get('resolved') or f['target']} at t={f.get('started_s')}s"
        if f.get("error"):
            problems["the fault could not be run"].append(f"{label}: {f['error']}")
        if f.get("expects_failover"):
            if f.get("new_leader_s") is None or f["new_leader_s"] > leader_limit_s:
                problems[f"no new leader within {leader_limit_s:g} s"].append(f"{label}: {f.get('new_leader_s')}")
            if f.get("agents_s") is None or f["agents_s"] > agents_limit_s:
                problems[f"agents not re-registered within {agents_limit_s:g} s"].append(f"{label}: {f.get('agents_s')}")
        if f["kind"] == "kill-agent" and f.get("agent_back_s") is None:
            problems["a restarted agent did not register again"].append(label)
        if not f.get("recovered"):
            problems["the cluster did not agree on a leader after the recovery"].append(label)
    times = failover_times(faults)
    ok = not problems
    return Verdict(
        name="failover bounded and the cluster recovers",
        ok=ok,
        proves="the cluster stays live: each fault that took the leader away was followed by a new leader and "
               "the agents' re-registration within the limits, and the cluster healed after every fault",
        expected=f"new leader within {leader_limit_s:g} s, agents within {agents_limit_s:g} s, recovery after each fault",
        seen=("as expected" if ok else "; ".join(f"{k}: {len(v)}" for k, v in problems.items()))
        + f" (new leader: {_short(times['new_leader_s'])}; agents re-registered: {_short(times['agents_s'])})",
        evidence={"distributions": times, "problems": _problems(problems)})


def failover_times(faults: list[dict]) -> dict:
    measured = [f for f in faults if f.get("expects_failover")]
    by_kind = defaultdict(list)
    for f in measured:
        if f.get("new_leader_s") is not None:
            by_kind[f["kind"]].append(f["new_leader_s"])
    return {"new_leader_s": distribution([f["new_leader_s"] for f in measured if f.get("new_leader_s") is not None]),
            "agents_s": distribution([f["agents_s"] for f in measured if f.get("agents_s") is not None]),
            "new_leader_s_by_kind": {k: distribution(v) for k, v in sorted(by_kind.items())},
            "agent_back_s": distribution([f["agent_back_s"] for f in faults
                                          if f["kind"] == "kill-agent" and f.get("agent_back_s") is not None]),
            "appends_stalled_s": distribution([f["appends_stalled_s"] for f in measured
                                               if f.get("appends_stalled_s") is not None])}


def _short(d: dict) -> str:
    if not d["count"]:
        return "none measured"
    return f"n={d['count']} min {d['min']} p50 {d['p50']} p90 {d['p90']} max {d['max']} s"


# -- processes -----------------------------------------------------------------------------------

def check_processes(unexpected_exits: list[dict]) -> Verdict:
    """No master or agent exited unless the harness killed or stopped it."""
    ok = not unexpected_exits
    return Verdict(
        name="no process died on its own",
        ok=ok,
        proves="no master or agent crashed (a crash under faults is a bug even when the cluster survives it)",
        expected="every exit caused by the harness",
        seen="as expected" if ok else "; ".join(f"{e['node']} exited with status {e['status']} at t={e['t']}s"
                                                for e in unexpected_exits[:EXAMPLES]),
        evidence={"unexpected_exits": unexpected_exits[:EXAMPLES]})
