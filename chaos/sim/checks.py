"""The checks after a run: each a pass or a fail with evidence.

The committed history is folded once more, by `mesos_es.replay.fold.Fold` under the
auditor of `replay verify` (`mesos_es.replay.audit.Auditor`), and the same fold collects
the facts the other checks hold the nodes' observations against (chaos/sim/observe.py):

* `log`: every acknowledged append is in the final (strong) read of its named log exactly
  once, at the position its answer gave, in the order of the acknowledgements, and nothing
  else is; every read during the run agrees with the final log at every position it shows,
  and a strong read shows every append acknowledged before it was sent.
* `tasks`: every task a framework launched ended in a terminal state it was told, and what
  it was last told is the state the history ends with; every job finished; no task was
  launched twice (by the history, or by the agents: on two agents, or again after it ended);
  no agent ran more than its resources.
* `updates`: every status update with a uuid that a framework was given is one the history
  committed for that task; every update the history committed reached its framework and was
  acknowledged exactly once; a task's updates reached its framework in the history's order.
* `causality`: nothing left a leader before the event that decided it was committed: no
  framework got an update, no agent a launch, no log client an acknowledgement before its
  position's commit.
* `replicas`: every replica that reached a checkpoint position had the same digest there as
  every other and as the fold; at the end all masters are at the same position with the
  same digest.
* `audit`: `replay verify`'s checks on the whole history (hash chain, launches on offered
  resources, no agent over-allocated, legal transitions, offers answered, acknowledgements,
  quota, the rebuilt index).
* `liveness`: after healing, the cluster converged and finished the workload in time.
"""

from __future__ import annotations

import base64
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from chaos.sim.framework import FINAL
from chaos.sim.master import DIGEST_EVERY
from mesos_es.core import digest as canonical
from mesos_es.core import effects as fx
from mesos_es.core.convert import STATE_NAMES
from mesos_es.core.outcomes import Appended, Applied
from mesos_es.replay.audit import Auditor
from mesos_es.replay.fold import Fold

NEVER_LAUNCHED = frozenset({"TASK_LOST", "TASK_UNKNOWN", "TASK_DROPPED", "TASK_ERROR", "TASK_GONE"})

DESCRIPTIONS = {
    "log": "every acknowledged log append readable once, in order; reads agree with the history",
    "tasks": "no task lost, none launched twice, every job done, no agent over-allocated",
    "updates": "updates delivered as committed, acknowledged exactly once per uuid, in order",
    "causality": "nothing sent before the event that decided it was committed",
    "replicas": "replicas at the same position have the same digest",
    "audit": "the committed history passes replay verify",
    "liveness": "the cluster converged and finished the workload after healing",
}
MAX_EVIDENCE = 20


@dataclass
class Check:
    name: str
    checked: int = 0
    evidence: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.evidence

    def fail(self, text: str) -> None:
        if len(self.evidence) < MAX_EVIDENCE:
            self.evidence.append(text)

    def to_json(self) -> dict:
        return {"ok": self.ok, "description": DESCRIPTIONS[self.name], "checked": self.checked,
                "evidence": self.evidence}


@dataclass
class History:
    """Facts of the committed history, collected by one fold."""

    updates: dict[bytes, tuple[int, str, str]] = field(default_factory=dict)  # uuid -> position, fw, task
    acks: Counter = field(default_factory=Counter)  # uuid -> applied acknowledgements
    launches: Counter = field(default_factory=Counter)  # (framework id, task id) -> launches
    launched_at: dict[tuple[str, str], int] = field(default_factory=dict)  # -> first position
    appends: dict[str, int] = field(default_factory=dict)  # idempotency key -> position appended
    registrations: dict[str, list[tuple[int, str]]] = field(default_factory=dict)  # host -> (position, agent id)
    digests: dict[int, str] = field(default_factory=dict)  # checkpoint position -> fold's digest
    kinds: Counter = field(default_factory=Counter)  # events by kind: what the run exercised
    _existing: set[str] = field(default_factory=set)

    def before(self, position, event, state) -> None:
        if event.WhichOneof("kind") == "offers_accepted":
            framework = state.cluster.frameworks.get(event.offers_accepted.framework_id)
            self._existing = set(framework.tasks) if framework is not None else set()

    def after(self, position, event, outcome, state) -> None:
        kind = event.WhichOneof("kind") if event is not None else None
        self.kinds[kind or "undecodable"] += 1
        if kind == "task_status_updated":
            e = event.task_status_updated
            if isinstance(outcome, Applied) and e.status.uuid and any(
                    isinstance(x, fx.ForwardUpdate) and x.status.uuid == e.status.uuid for x in outcome.effects):
                self.updates.setdefault(e.status.uuid, (position, e.framework_id, e.status.task_id))
        elif kind == "status_update_acknowledged" and isinstance(outcome, Applied):
            self.acks[event.status_update_acknowledged.uuid] += 1
        elif kind == "offers_accepted":
            e = event.offers_accepted
            framework = state.cluster.frameworks.get(e.framework_id)
            for op in e.operations:
                for info in op.task_infos:
                    task = framework.tasks.get(info.task_id) if framework is not None else None
                    if task is not None and info.task_id not in self._existing \
                            and task.launched_at_ms == event.timestamp_ms:
                        key = (e.framework_id, info.task_id)
                        self.launches[key] += 1
                        self.launched_at.setdefault(key, position)
        elif kind == "agent_registered" and isinstance(outcome, Applied):
            e = event.agent_registered
            self.registrations.setdefault(e.agent_info.hostname, []).append((position, e.agent_id))
        elif kind == "log_entry_appended" and isinstance(outcome, Appended) and not outcome.duplicate:
            key = event.log_entry_appended.idempotency_key
            if key:
                self.appends.setdefault(key, position)
        if position % DIGEST_EVERY == 0:
            self.digests[position] = canonical.digest(state)


def run_all(cluster) -> tuple[list[Check], History]:
    history = History()
    auditor = Auditor(offer_timeout_s=cluster.masters[0].config.offer_timeout_s
                      + cluster.nemesis.clock_jumps_ms / 1000, deep_every=64)
    fold = Fold()

    def before(position, event, state):
        auditor.before(position, event, state)
        history.before(position, event, state)

    def after(position, event, outcome, state):
        auditor.after(position, event, outcome, state)
        history.after(position, event, outcome, state)

    records = [(c.position, c.payload, c.chain_hash) for c in cluster.consensus.history]
    fold.run(iter([records]), observer=after, before=before)
    auditor.finish(fold)
    commit_ms = cluster.consensus.commit_ms
    return [check_log(cluster, history, commit_ms), check_tasks(cluster, history, fold),
            check_updates(cluster, history), check_causality(cluster, history, commit_ms),
            check_replicas(cluster, history, fold), check_audit(auditor), check_liveness(cluster)], history


# -- the named log ---------------------------------------------------------------------------------

def check_log(cluster, history: History, commit_ms: list[int]) -> Check:
    check = Check("log")
    client = cluster.client
    final = client.final
    if final is None:
        check.fail("no final read of the log (see liveness)")
        return check
    log = dict(final.entries)
    sent = {a.data: a.key for a in client.appends}
    counts = Counter(final.entries[i][1] for i in range(len(final.entries)))
    last = 0
    for append in client.appends:
        if append.acked_at is None:
            continue
        check.checked += 1
        if log.get(append.position) != append.data:
            check.fail(f"append {append.key} was acknowledged at position {append.position}, which reads "
                       f"{log.get(append.position)!r}")
        if counts[append.data] != 1:
            check.fail(f"append {append.key} is in the log {counts[append.data]} times")
        if append.position <= last:
            check.fail(f"append {append.key} acknowledged at {append.position}, not after the previous "
                       f"acknowledged append (at {last})")
        last = max(last, append.position)
    for position, data in final.entries:
        if data not in sent:
            check.fail(f"position {position} holds {data!r}, which the client never sent")
    for read in client.reads:
        check.checked += 1
        for position, data in read.entries:
            if log.get(position) != data:
                check.fail(f"a {read.consistency} read from {read.master} at {read.answered_at} ms showed "
                           f"{data!r} at position {position}; the log holds {log.get(position)!r} there")
                break
        if read.consistency == "strong":
            shown = dict(read.entries)
            for key, position in sorted(read.acked_before.items()):
                if shown.get(position) is None:
                    check.fail(f"a strong read from {read.master} sent at {read.issued_at} ms misses append {key} "
                               f"(position {position}), acknowledged before it was sent")
    return check


# -- tasks -----------------------------------------------------------------------------------------

def check_tasks(cluster, history: History, fold: Fold) -> Check:
    check = Check("tasks")
    state = fold.state.cluster
    for framework in cluster.frameworks:
        recorded = state.frameworks.get(framework.framework_id) if framework.framework_id else None
        for task_id, view in sorted(framework.tasks.items()):
            check.checked += 1
            if view.state not in FINAL:
                check.fail(f"task {task_id} of {framework.name}: last told {view.state or 'nothing'}, not a terminal "
                           "state (nor TASK_UNKNOWN)")
                continue
            final = _final_state(recorded, task_id)
            if final is None:
                if view.state not in NEVER_LAUNCHED:
                    check.fail(f"task {task_id} of {framework.name}: told {view.state}, but the history never "
                               "launched it")
            elif final != view.state:
                check.fail(f"task {task_id} of {framework.name}: last told {view.state}, but the history ends with "
                           f"{final}")
        for name, job in sorted(framework.jobs.items()):
            if job.done == "gave up":
                check.fail(f"job {name} of {framework.name} gave up after {len(job.attempts)} attempts")
    ids = {f.name: f.framework_id for f in cluster.frameworks}
    for d in cluster.observations.deliveries:
        if d.state in ("TASK_DROPPED", "TASK_ERROR") and history.launches.get((ids[d.framework], d.task_id)):
            check.fail(f"{d.framework} was told {d.state} for task {d.task_id} at {d.at} ms (by {d.via}), which the "
                       "history launched")
    held = {a.ckpt.agent_id for a in cluster.agents}
    for host, registrations in sorted(history.registrations.items()):
        check.checked += 1
        for position, agent_id in registrations:
            if agent_id not in held:
                check.fail(f"agent {host} registered twice: the id {agent_id} it got at position {position} is held "
                           f"by no agent (it never got that REGISTERED and registered anew); "
                           f"{len(registrations)} registrations in all")
    for key, count in sorted(history.launches.items()):
        if count > 1:
            check.fail(f"task {key[1]} of {key[0]} was launched {count} times in the history")
    by_key = defaultdict(list)
    for launch in cluster.observations.launches:
        check.checked += 1
        by_key[launch.key].append(launch.agent)
        if launch.again:
            check.fail(f"agent {launch.agent} was told to run task {launch.key[1]} again at {launch.at} ms, after it "
                       "had run and ended")
        if not launch.fits:
            check.fail(f"agent {launch.agent} ran task {launch.key[1]} beyond its resources at {launch.at} ms")
    for key, agents in sorted(by_key.items()):
        if len(set(agents)) > 1:
            check.fail(f"task {key[1]} ran on several agents: {sorted(set(agents))}")
    return check


def _final_state(framework, task_id: str) -> str | None:
    if framework is None:
        return None
    task = framework.tasks.get(task_id)
    if task is not None:
        return STATE_NAMES[task.state]
    for done in reversed(framework.completed_tasks):
        if done.info.task_id == task_id:
            return STATE_NAMES[done.state]
    return None


# -- status updates --------------------------------------------------------------------------------

def check_updates(cluster, history: History) -> Check:
    check = Check("updates")
    names = {f.framework_id: f.name for f in cluster.frameworks}
    delivered: dict[bytes, int] = Counter()
    order: dict[tuple[str, str], list[int]] = defaultdict(list)
    for d in cluster.observations.deliveries:
        if not d.uuid:
            continue
        check.checked += 1
        uuid = base64.b64decode(d.uuid)
        known = history.updates.get(uuid)
        if known is None or names.get(known[1]) != d.framework or known[2] != d.task_id:
            check.fail(f"{d.framework} was given update {uuid.hex()[:12]} ({d.task_id} {d.state}) by {d.via} at {d.at} "
                       "ms, which the history does not hold for that task")
            continue
        if uuid not in delivered:
            order[(d.framework, d.task_id)].append(known[0])
        delivered[uuid] += 1
    for uuid, (position, framework_id, task_id) in sorted(history.updates.items(), key=lambda kv: kv[1][0]):
        check.checked += 1
        if framework_id in names and uuid not in delivered:
            check.fail(f"update {uuid.hex()[:12]} of task {task_id} (position {position}) never reached {names[framework_id]}")
        if history.acks[uuid] != 1:
            check.fail(f"update {uuid.hex()[:12]} of task {task_id} (position {position}) was acknowledged "
                       f"{history.acks[uuid]} times in the history")
    for (framework, task_id), positions in sorted(order.items()):
        if positions != sorted(positions):
            check.fail(f"{framework} got the updates of task {task_id} out of order (history positions {positions})")
    return check


# -- causality -------------------------------------------------------------------------------------

def check_causality(cluster, history: History, commit_ms: list[int]) -> Check:
    check = Check("causality")
    for d in cluster.observations.deliveries:
        if not d.uuid:
            continue
        known = history.updates.get(base64.b64decode(d.uuid))
        if known is None:
            continue  # the updates check says so
        check.checked += 1
        if d.at < commit_ms[known[0] - 1]:
            check.fail(f"{d.framework} was given the {d.state} update of {d.task_id} at {d.at} ms, before its event "
                       f"(position {known[0]}) was committed at {commit_ms[known[0] - 1]} ms")
    ids = {f.framework_id: f.name for f in cluster.frameworks}
    for launch in cluster.observations.launches:
        check.checked += 1
        position = history.launched_at.get(launch.key)
        if position is None:
            check.fail(f"agent {launch.agent} ran task {launch.key[1]} of {ids.get(launch.key[0], launch.key[0])}, "
                       "which no committed ACCEPT launched")
        elif launch.at < commit_ms[position - 1]:
            check.fail(f"agent {launch.agent} ran task {launch.key[1]} at {launch.at} ms, before its ACCEPT (position "
                       f"{position}) was committed at {commit_ms[position - 1]} ms")
    for append in cluster.client.appends:
        if append.acked_at is None:
            continue
        check.checked += 1
        position = history.appends.get(append.key)
        if position is None:
            check.fail(f"append {append.key} was acknowledged at {append.acked_at} ms but the history never "
                       "appended it")
        elif append.acked_at < commit_ms[position - 1]:
            check.fail(f"append {append.key} was acknowledged at {append.acked_at} ms, before its event (position "
                       f"{position}) was committed at {commit_ms[position - 1]} ms")
    return check


# -- replicas --------------------------------------------------------------------------------------

def check_replicas(cluster, history: History, fold: Fold) -> Check:
    check = Check("replicas")
    for position in sorted(cluster.observations.digests):
        seen = dict(cluster.observations.digests[position])
        if position in history.digests:
            seen["fold"] = history.digests[position]
        check.checked += 1
        if len(set(seen.values())) > 1:
            check.fail(f"at position {position}: " + ", ".join(f"{n} {d[:12]}" for n, d in sorted(seen.items())))
    final = fold.digest()
    for master in cluster.masters:
        if not master.alive:
            check.fail(f"{master.name} is down at the end")
            continue
        check.checked += 1
        if master.applied != fold.position:
            check.fail(f"{master.name} ends at position {master.applied}, the history at {fold.position}")
        elif canonical.digest(master.state) != final:
            check.fail(f"{master.name} ends with digest {canonical.digest(master.state)[:12]} at {master.applied}, "
                       f"the fold of the history with {final[:12]}")
    return check


def check_audit(auditor: Auditor) -> Check:
    check = Check("audit", checked=sum(auditor.checked.values()))
    for violation in auditor.violations:
        check.fail(f"position {violation.position}: {violation.check}: {violation.message}")
    return check


def check_liveness(cluster) -> Check:
    from chaos.sim.run import pending

    check = Check("liveness", checked=1)
    if not cluster.converged:
        waiting = pending(cluster)
        check.fail(f"not converged {(cluster.world.now - cluster.safety_end_ms) / 1000:g} s after healing: "
                   + "; ".join(waiting[:8]) + (f" (and {len(waiting) - 8} more)" if len(waiting) > 8 else ""))
    return check
