"""`replay verify`: check the whole history, event by event, independently of the appliers.

The fold is the masters' own; the checks below look at what each event asked for and at what
the fold made of it, so they catch both an illegal decision in the log (a forged or buggy
leader) and an applier that let one through:

* hash_chain: every stored chain hash is sha256(previous || position || event).
* launches: a task appears only through an OffersAccepted of its framework, on the agent and
  in the role of offers that framework held, and the tasks of one ACCEPT fit in those offers.
* agent_allocation: no agent ever has more non-revocable resources in use and on offer than
  it has (after every event, for the agents it touches; for all agents in the deep checks).
  And no OffersMade offers an agent more than it had free: the leader decides on the state
  it has applied, which may be a few events older than the position the offers land at, so a
  decision is judged against the state at the start and at the end of the window in which it
  was made (since the previous OffersMade or MasterElected); it must fit one of them.
* transitions: every task state change is legal (`core.cluster.legal_transition`), a new
  task starts in TASK_STAGING, a task leaves the active set only in a terminal state.
* quota: no OffersMade takes a role past its quota limit, or hands out beyond the roles'
  unmet guarantees more than was free beyond them (the headroom rule of docs/allocation.md),
  judged in the same window.
* offers: offers appear only through OffersMade and disappear only through an event that
  answers or rescinds them (ACCEPT, DECLINE, RESCIND, a leader change, their framework's or
  agent's departure...); none is left outstanding longer than the offer timeout.
* acknowledgements: every applied acknowledgement names an update in the history, once.
* deep: every `deep_every` events and at the end, the derived index is rebuilt from the state
  and compared with the fold's, and every task is one the checks saw launched.

It also reports DRF fairness over time: each role's weighted dominant share after every
allocation cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mesos_es.core.allocator import quota_consumption
from mesos_es.core.cluster import ClusterIndex, legal_transition
from mesos_es.core.convert import TERMINAL_STATES, resources_from_proto
from mesos_es.core.inputs import policy_inputs
from mesos_es.core.outcomes import Applied, Outcome, Rejected
from mesos_es.core.resources import EMPTY, ResourceError, Resources, to_text
from mesos_es.core.state import State
from mesos_es.pb import events_pb2, mesos_pb2
from mesos_es.replay.fold import Fold, format_ms
from mesos_es.replay.view import dominant_shares, quantities

CHECKS = {
    "hash_chain": "hash chain unbroken",
    "launches": "tasks launched on offered, unused resources",
    "agent_allocation": "no agent over-allocated",
    "transitions": "task state transitions legal",
    "quota": "quota guarantees and limits respected",
    "offers": "offers rescinded or answered",
    "acknowledgements": "acknowledged updates present",
    "deep": "derived index and tasks match the state",
}
TASK_STATE = mesos_pb2.TaskState.Name
OFFER_SLACK_MS = 10_000
# Kinds that may remove outstanding offers, and which ones.
BY_NAME = {"offers_accepted", "offers_declined", "offers_rescinded", "resources_revoked"}
BY_FRAMEWORK = {"framework_subscribed", "framework_updated", "framework_disconnected", "framework_removed"}
BY_AGENT = {"agent_marked_unreachable", "agent_reregistered", "agent_removed", "oversubscribed_resources_updated"}
OFFER_KINDS = BY_NAME | BY_FRAMEWORK | BY_AGENT | {"master_elected", "offers_made"}
TASK_AGENT_KINDS = {"agent_marked_unreachable", "agent_reregistered", "agent_removed"}


@dataclass
class Violation:
    position: int
    check: str
    message: str
    timestamp_ms: int = 0

    def to_json(self) -> dict:
        return {"position": self.position, "check": self.check, "message": self.message,
                "time": format_ms(self.timestamp_ms)}


@dataclass
class Window:
    """What the allocator could have seen: per agent free amounts, quota figures."""

    free: dict[str, dict[tuple[str, bool], int]]
    consumption: dict[str, dict[str, int]]
    guarantees: dict[str, dict[str, int]]
    limits: dict[str, dict[str, int]]
    free_unreserved: dict[str, int]


def _free(state: State, agent_id: str) -> dict[tuple[str, bool], int]:
    out: dict[tuple[str, bool], int] = {}
    for kind, value in state.index.available(agent_id).items():
        if value.__class__ is int:
            key = (kind.name, kind.revocable)
            out[key] = out.get(key, 0) + value
    return out


def window(state: State) -> Window:
    inputs = policy_inputs(state)
    free, free_unreserved = {}, {}
    for slot in inputs["agents"]:
        free[slot.agent_id] = _free(state, slot.agent_id)
        for name, value in quantities(slot.available, unreserved_only=True).items():
            free_unreserved[name] = free_unreserved.get(name, 0) + value
    guarantees = {name: quantities(p.guarantee) for name, p in inputs["roles"].items() if p.guarantee}
    limits = {name: quantities(p.limit) for name, p in inputs["roles"].items() if p.limit is not None}
    return Window(free, quota_consumption(inputs["agents"], inputs["frameworks"]), guarantees, limits,
                  free_unreserved)


@dataclass
class Auditor:
    offer_timeout_s: float = 60.0
    deep_every: int = 10_000
    violations: list[Violation] = field(default_factory=list)
    checked: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CHECKS, 0))
    rejected: dict[str, int] = field(default_factory=dict)  # deterministic refusals, by kind
    shares: list[tuple[int, int, dict[str, float]]] = field(default_factory=list)  # (position, ms, shares)
    max_violations: int = 1000
    # ledgers
    launched: set[tuple[str, str]] = field(default_factory=set)
    task_states: dict[tuple[str, str], int] = field(default_factory=dict)
    offer_made: dict[str, tuple[int, int]] = field(default_factory=dict)  # id -> (position, offered_at_ms)
    pending_updates: dict[tuple[str, str, bytes], int] = field(default_factory=dict)
    acknowledged: set[tuple[str, str, bytes]] = field(default_factory=set)
    _window: Window | None = None
    _before: dict = field(default_factory=dict)
    _since_deep: int = 0
    _last_ms: int = 0

    def flag(self, position: int, check: str, message: str) -> None:
        if len(self.violations) < self.max_violations:
            self.violations.append(Violation(position, check, message, self._last_ms))
        elif len(self.violations) == self.max_violations:
            self.violations.append(Violation(position, check, "(further violations not listed)", self._last_ms))

    # -- before each event ---------------------------------------------------------------------
    def before(self, position: int, event: events_pb2.Event, state: State) -> None:
        kind = event.WhichOneof("kind")
        cluster = state.cluster
        before: dict = {"offers": len(cluster.offers)}
        if kind in OFFER_KINDS:
            before["offer_ids"] = {oid: (o.framework_id, o.agent_id) for oid, o in cluster.offers.items()}
        if kind == "offers_made":
            self._check_offers_decision(position, event, state)
            before["window"] = window(state)
        elif kind == "offers_accepted":
            e = event.offers_accepted
            framework = cluster.frameworks.get(e.framework_id)
            before["valid"] = [cluster.offers[o] for o in e.offer_ids
                               if o in cluster.offers and cluster.offers[o].framework_id == e.framework_id]
            before["valid"] = [(o.id, o.agent_id, o.role, resources_from_proto(o.resources)) for o in before["valid"]]
            before["existing"] = {t.task_id for op in e.operations for t in op.task_infos
                                  if framework is not None and t.task_id in framework.tasks}
        elif kind == "task_status_updated":
            e = event.task_status_updated
            before["task"] = self._task_state(state, e.framework_id, e.status.task_id)
            before["agent"] = _task_agent(state, e.framework_id, e.status.task_id)
        elif kind in TASK_AGENT_KINDS:
            agent_id = getattr(event, kind).agent_id
            before["tasks"] = {key: self._task_state(state, *key)
                               for key in sorted(state.index.agent_tasks.get(agent_id, ()))}
        elif kind == "status_update_acknowledged":
            e = event.status_update_acknowledged
            before["task"] = self._task_state(state, e.framework_id, e.task_id)
        self._before = before

    @staticmethod
    def _task_state(state: State, framework_id: str, task_id: str) -> int | None:
        framework = state.cluster.frameworks.get(framework_id)
        task = framework.tasks.get(task_id) if framework is not None else None
        return task.state if task is not None else None

    # -- after each event ----------------------------------------------------------------------
    def after(self, position: int, event: events_pb2.Event | None, outcome: Outcome, state: State) -> None:
        if event is None:
            return
        self._last_ms = event.timestamp_ms or self._last_ms
        kind = event.WhichOneof("kind") or "unknown"
        if isinstance(outcome, Rejected):
            self.rejected[kind] = self.rejected.get(kind, 0) + 1
        before = self._before
        touched: set[str] = set()
        self._check_offers(position, kind, event, state, before, touched)
        if kind == "offers_accepted":
            self._check_launches(position, event, state, before, touched)
        elif kind == "task_status_updated":
            self._check_update(position, event, outcome, state, before, touched)
        elif kind in TASK_AGENT_KINDS:
            self._check_agent_tasks(position, kind, event, state, before)
        elif kind == "status_update_acknowledged":
            self._check_ack(position, event, outcome, state, before)
        elif kind == "framework_removed":
            framework_id = event.framework_removed.framework_id
            if framework_id not in state.cluster.frameworks:
                for key in [k for k in self.task_states if k[0] == framework_id]:
                    del self.task_states[key]
        elif kind == "offers_made":
            self._check_quota(position, event, state, before)
            self._window = window(state)
            self.shares.append((position, event.timestamp_ms, dominant_shares(state)))
        elif kind == "master_elected":
            self._window = window(state)
        body = getattr(event, kind, None) if kind != "unknown" else None
        agent_id = getattr(body, "agent_id", None) if body is not None else None
        if agent_id:
            touched.add(agent_id)
        for agent_id in sorted(touched):
            self._check_agent(position, state, agent_id, state.index)
        self._since_deep += 1
        if self._since_deep >= self.deep_every:
            self.deep_check(position, state)

    # -- offers ---------------------------------------------------------------------------------
    def _check_offers(self, position, kind, event, state, before, touched) -> None:
        offers = state.cluster.offers
        if "offer_ids" not in before:
            if len(offers) != before["offers"]:
                self.checked["offers"] += 1
                self.flag(position, "offers", f"{kind} changed the outstanding offers ({before['offers']} -> "
                                              f"{len(offers)}), which no {kind} may do")
            return
        self.checked["offers"] += 1
        old = before["offer_ids"]
        removed = [oid for oid in old if oid not in offers]
        added = [oid for oid in offers if oid not in old]
        body = getattr(event, kind)
        for oid in removed:
            framework_id, agent_id = old[oid]
            touched.add(agent_id)
            made = self.offer_made.pop(oid, None)
            if kind in BY_NAME:
                ok = oid in body.offer_ids
            elif kind in BY_FRAMEWORK:
                ok = framework_id == body.framework_id
            elif kind in BY_AGENT:
                ok = agent_id == body.agent_id
            else:
                ok = kind == "master_elected"
            if not ok:
                self.flag(position, "offers", f"{kind} removed offer {oid} of framework {framework_id} on agent "
                                              f"{agent_id}, which it neither names nor concerns")
            elif made is not None and kind != "master_elected" and self.offer_timeout_s > 0:
                held_ms = event.timestamp_ms - made[1]
                if held_ms > self.offer_timeout_s * 1000 + OFFER_SLACK_MS:
                    self.flag(position, "offers", f"offer {oid} (made at position {made[0]}) was outstanding "
                                                  f"{held_ms / 1000:.1f} s, beyond the {self.offer_timeout_s:g} s "
                                                  "offer timeout, before it was answered or rescinded")
        if added:
            wanted = {o.id for o in event.offers_made.offers} if kind == "offers_made" else set()
            for oid in added:
                offer = offers[oid]
                touched.add(offer.agent_id)
                if oid not in wanted:
                    self.flag(position, "offers", f"{kind} created offer {oid}, which only an OffersMade naming it "
                                                  "may do")
                self.offer_made[oid] = (position, offer.offered_at_ms)

    def _check_offers_decision(self, position: int, event, state: State) -> None:
        """Before an OffersMade: the offers fit what each agent had free (see the docstring)."""
        self.checked["agent_allocation"] += 1
        cluster = state.cluster
        wanted: dict[str, dict[tuple[str, bool], int]] = {}
        for offer in event.offers_made.offers:
            agent = cluster.agents.get(offer.agent_id)
            if agent is None or not agent.reachable:
                continue  # stale: the fold drops it, and nothing is held
            try:
                resources = resources_from_proto(offer.resources)
            except ResourceError:
                self.flag(position, "agent_allocation", f"offer {offer.id} carries malformed resources")
                continue
            into = wanted.setdefault(offer.agent_id, {})
            for kind, value in resources.items():
                if value.__class__ is int:
                    key = (kind.name, kind.revocable)
                    into[key] = into.get(key, 0) + value
        if not wanted:
            return
        now = {agent_id: _free(state, agent_id) for agent_id in wanted}
        earlier = self._window.free if self._window is not None else {}
        for agent_id, amounts in sorted(wanted.items()):
            if _fits(amounts, now[agent_id]) or (agent_id in earlier and _fits(amounts, earlier[agent_id])):
                continue
            total = quantities(state.index.total(agent_id), revocable=None)
            self.flag(position, "agent_allocation",
                      f"OffersMade offers agent {agent_id} {_amounts(amounts)}, but it had only "
                      f"{_amounts(now[agent_id])} free (total {_amounts(total)}): the agent would be over-allocated")

    def _check_quota(self, position: int, event, state: State, before: dict) -> None:
        self.checked["quota"] += 1
        windows = [w for w in (before.get("window"), self._window) if w is not None]
        if not windows:
            return
        # What the recorded offers gave each role of unreserved non-revocable scalars.
        given: dict[str, dict[str, int]] = {}
        for offer in event.offers_made.offers:
            if offer.id not in state.cluster.offers:
                continue
            amounts = quantities(resources_from_proto(offer.resources), unreserved_only=True)
            into = given.setdefault(offer.role, {})
            for name, value in amounts.items():
                into[name] = into.get(name, 0) + value
        if not given:
            return
        limit_problem = headroom_problem = None
        for w in windows:
            limit_problem = _limit_problem(w, given)
            if limit_problem is None:
                break
        for w in windows:
            headroom_problem = _headroom_problem(w, given)
            if headroom_problem is None:
                break
        for problem in (limit_problem, headroom_problem):
            if problem:
                self.flag(position, "quota", problem)

    # -- tasks ----------------------------------------------------------------------------------
    def _check_launches(self, position: int, event, state: State, before: dict, touched: set) -> None:
        e = event.offers_accepted
        framework = state.cluster.frameworks.get(e.framework_id)
        valid, existing = before["valid"], before["existing"]
        for _, agent_id, _, _ in valid:
            touched.add(agent_id)
        if framework is None:
            return
        new = []
        for op in e.operations:
            for info in op.task_infos:
                task = framework.tasks.get(info.task_id)
                if task is None or info.task_id in existing or task.launched_at_ms != event.timestamp_ms:
                    continue
                new.append(task)
        if not new:
            return
        self.checked["launches"] += 1
        reserving = any(op.type in ("RESERVE", "UNRESERVE") for op in e.operations)
        pool, agents, roles = EMPTY, {v[1] for v in valid}, {v[2] for v in valid}
        for _, _, _, resources in valid:
            pool = pool + resources
        wanted = EMPTY
        for task in new:
            key = (e.framework_id, task.info.task_id)
            self.launched.add(key)
            self.task_states[key] = task.state
            touched.add(task.info.agent_id)
            if task.state != mesos_pb2.TASK_STAGING:
                self.flag(position, "transitions", f"task {task.info.task_id} started in {TASK_STATE(task.state)}, "
                                                   "not TASK_STAGING")
            if not valid:
                self.flag(position, "launches", f"task {task.info.task_id} of {e.framework_id} was launched "
                                                "without a valid offer of that framework")
                continue
            if agents != {task.info.agent_id} or roles != {task.role}:
                self.flag(position, "launches", f"task {task.info.task_id} runs on {task.info.agent_id} in role "
                                                f"{task.role!r}, not on the offers' agent {sorted(agents)} and role "
                                                f"{sorted(roles)}")
            try:
                wanted = wanted + resources_from_proto(task.info.resources)
            except ResourceError:
                self.flag(position, "launches", f"task {task.info.task_id} holds malformed resources")
        if not valid:
            return
        fits = (_fits(quantities(wanted, revocable=None), quantities(pool, revocable=None)) if reserving
                else pool.contains(wanted))
        if not fits:
            self.flag(position, "launches", f"tasks {[t.info.task_id for t in new]} use {to_text(wanted)}, more than "
                                            f"the offers {[v[0] for v in valid]} held ({to_text(pool)})")

    def _check_update(self, position: int, event, outcome: Outcome, state: State, before: dict, touched) -> None:
        e = event.task_status_updated
        key = (e.framework_id, e.status.task_id)
        old = before["task"]
        if before.get("agent"):
            touched.add(before["agent"])
        if old is None:
            return
        self.checked["transitions"] += 1
        framework = state.cluster.frameworks.get(e.framework_id)
        task = framework.tasks.get(e.status.task_id) if framework is not None else None
        new = task.state if task is not None else _completed_state(framework, e.status.task_id)
        if new is not None and new != old and not legal_transition(old, new):
            self.flag(position, "transitions", f"task {e.status.task_id} went {TASK_STATE(old)} -> {TASK_STATE(new)}")
        if task is None:
            self.task_states.pop(key, None)
            if new is not None and new not in TERMINAL_STATES:
                self.flag(position, "transitions", f"task {e.status.task_id} left the active tasks in "
                                                   f"{TASK_STATE(new)}, which is not terminal")
        else:
            self.task_states[key] = task.state
            uuid = e.status.uuid
            if uuid and (e.framework_id, e.status.task_id, uuid) not in self.acknowledged and any(
                    u.uuid == uuid for u in task.unacknowledged):
                self.pending_updates.setdefault((e.framework_id, e.status.task_id, uuid), position)

    def _check_agent_tasks(self, position: int, kind: str, event, state: State, before: dict) -> None:
        for (framework_id, task_id), old in sorted(before.get("tasks", {}).items()):
            if old is None:
                continue
            self.checked["transitions"] += 1
            framework = state.cluster.frameworks.get(framework_id)
            task = framework.tasks.get(task_id) if framework is not None else None
            new = task.state if task is not None else _completed_state(framework, task_id)
            if new is not None and new != old and not legal_transition(old, new):
                self.flag(position, "transitions", f"{kind} moved task {task_id} {TASK_STATE(old)} -> {TASK_STATE(new)}")
            if task is None:
                self.task_states.pop((framework_id, task_id), None)
            else:
                self.task_states[(framework_id, task_id)] = task.state

    def _check_ack(self, position: int, event, outcome: Outcome, state: State, before: dict) -> None:
        e = event.status_update_acknowledged
        key = (e.framework_id, e.task_id, e.uuid)
        framework = state.cluster.frameworks.get(e.framework_id)
        task = framework.tasks.get(e.task_id) if framework is not None else None
        if task is None:
            self.task_states.pop((e.framework_id, e.task_id), None)
            old = before.get("task")
            if old is not None and old not in TERMINAL_STATES:
                self.flag(position, "transitions", f"task {e.task_id} left the active tasks in {TASK_STATE(old)}, "
                                                   "which is not terminal")
        if not isinstance(outcome, Applied):
            return
        self.checked["acknowledgements"] += 1
        if key in self.acknowledged:
            self.flag(position, "acknowledgements", f"update {e.uuid.hex()} of task {e.task_id} was acknowledged "
                                                    "twice")
        elif self.pending_updates.pop(key, None) is None:
            self.flag(position, "acknowledgements", f"acknowledged update {e.uuid.hex()} of task {e.task_id} "
                                                    f"({e.framework_id}) is not in the history")
        self.acknowledged.add(key)

    # -- agents ---------------------------------------------------------------------------------
    def _check_agent(self, position: int, state: State, agent_id: str, index: ClusterIndex, deep: bool = False) -> None:
        self.checked["agent_allocation"] += 1
        agent = state.cluster.agents.get(agent_id)
        if agent is None:
            return
        total = index.agent_total.get(agent_id, EMPTY).non_revocable()
        held = index.agent_used.get(agent_id, EMPTY).non_revocable()
        offered = index.agent_offered.get(agent_id, EMPTY).non_revocable()
        try:
            combined = held + offered
        except ResourceError:
            combined = None
        if combined is not None and total.contains(combined):
            return
        what = "the rebuilt index" if deep else "the fold"
        self.flag(position, "agent_allocation",
                  f"agent {agent_id} is over-allocated ({what}): {to_text(held) or 'nothing'} in use and "
                  f"{to_text(offered) or 'nothing'} on offer, of {to_text(total) or 'nothing'}")

    # -- deep checks ----------------------------------------------------------------------------
    def deep_check(self, position: int, state: State) -> None:
        self._since_deep = 0
        self.checked["deep"] += 1
        cluster = state.cluster
        rebuilt = ClusterIndex.rebuild(cluster)
        if rebuilt.snapshot() != state.index.snapshot():
            self.flag(position, "deep", "the fold's derived sums (used, offered, allocated) disagree with a rebuild "
                                        "from the state: an applier bug")
        for agent_id in sorted(cluster.agents):
            self._check_agent(position, state, agent_id, rebuilt, deep=True)
        for framework_id in sorted(cluster.frameworks):
            for task_id, task in sorted(cluster.frameworks[framework_id].tasks.items()):
                key = (framework_id, task_id)
                if key not in self.launched:
                    self.flag(position, "launches", f"task {task_id} of {framework_id} is in the state but no "
                                                    "OffersAccepted launched it")
                    self.launched.add(key)
                known = self.task_states.get(key)
                if known is not None and known != task.state:
                    self.flag(position, "transitions", f"task {task_id} changed {TASK_STATE(known)} -> "
                                                       f"{TASK_STATE(task.state)} without an event that explains it")
                self.task_states[key] = task.state

    def finish(self, fold: Fold) -> None:
        for found in fold.breaks:
            self.violations.insert(0, Violation(found.position, "hash_chain",
                                                f"hash chain broken at position {found.position}: stored "
                                                f"{found.stored.hex()[:16]}..., computed {found.computed.hex()[:16]}... "
                                                "(the event, or its stored hash, was altered)"))
        for position in fold.undecodable:
            self.violations.append(Violation(position, "hash_chain", f"the event at position {position} cannot be "
                                                                     "decoded (the masters skipped it)"))
        self.checked["hash_chain"] = fold.events
        state = fold.state
        if fold.events:
            self.deep_check(state.position, state)
            if self.offer_timeout_s > 0:
                now = fold.last_timestamp_ms
                for oid, (made_at, offered_ms) in sorted(self.offer_made.items()):
                    if oid in state.cluster.offers and now - offered_ms > self.offer_timeout_s * 1000 + OFFER_SLACK_MS:
                        self.flag(state.position, "offers", f"offer {oid} (made at position {made_at}) is still "
                                                            f"outstanding after {(now - offered_ms) / 1000:.1f} s, "
                                                            f"beyond the {self.offer_timeout_s:g} s offer timeout")
            self.shares.append((state.position, fold.last_timestamp_ms, dominant_shares(state)))
        self.violations.sort(key=lambda v: v.position)

    # -- the report -----------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(CHECKS, 0)
        for v in self.violations:
            counts[v.check] = counts.get(v.check, 0) + 1
        return counts

    def fairness(self, points: int = 12) -> dict:
        """Per role: min, mean, max and final dominant share; and up to `points` samples."""
        roles = sorted({r for _, _, shares in self.shares for r in shares})
        summary = {}
        for role in roles:
            values = [shares.get(role, 0.0) for _, _, shares in self.shares]
            summary[role] = {"min": round(min(values), 4), "mean": round(sum(values) / len(values), 4),
                             "max": round(max(values), 4), "final": round(values[-1], 4)}
        step = max(1, len(self.shares) // points)
        series = self.shares[::step]
        if self.shares and series[-1] is not self.shares[-1]:
            series.append(self.shares[-1])
        return {"roles": summary, "samples": len(self.shares),
                "series": [{"position": p, "time": format_ms(ms), "shares": {r: round(s.get(r, 0.0), 4) for r in roles}}
                           for p, ms, s in series]}


def _fits(wanted: dict, free: dict) -> bool:
    return all(value <= free.get(key, 0) for key, value in wanted.items())


def _amounts(amounts: dict) -> str:
    parts = []
    for key, value in sorted(amounts.items(), key=lambda kv: str(kv[0])):
        name, revocable = key if isinstance(key, tuple) else (key, False)
        parts.append(f"{name}{'(revocable)' if revocable else ''}:{value / 1000:g}")
    return ";".join(parts) or "nothing"


def _limit_problem(w: Window, given: dict[str, dict[str, int]]) -> str | None:
    for role, amounts in sorted(given.items()):
        limit = w.limits.get(role)
        if limit is None:
            continue
        for name, value in sorted(amounts.items()):
            if name in limit and value > 0 and w.consumption.get(role, {}).get(name, 0) + value > limit[name]:
                held = w.consumption.get(role, {}).get(name, 0)
                return (f"OffersMade gives role {role!r} {name}:{value / 1000:g} on top of {held / 1000:g}, past its "
                        f"quota limit of {limit[name] / 1000:g}")
    return None


def _headroom_problem(w: Window, given: dict[str, dict[str, int]]) -> str | None:
    names = sorted({n for amounts in given.values() for n in amounts})
    for name in names:
        unmet = {role: max(0, g.get(name, 0) - w.consumption.get(role, {}).get(name, 0))
                 for role, g in w.guarantees.items()}
        required = sum(unmet.values())
        if not required:
            continue
        surplus = max(0, w.free_unreserved.get(name, 0) - required)
        beyond = sum(max(0, amounts.get(name, 0) - unmet.get(role, 0)) for role, amounts in given.items())
        if beyond > surplus:
            return (f"OffersMade hands out {name}:{beyond / 1000:g} beyond the roles' unmet guarantees, but only "
                    f"{surplus / 1000:g} was free beyond the {required / 1000:g} held back for them (headroom)")
    return None


def _task_agent(state: State, framework_id: str, task_id: str) -> str | None:
    framework = state.cluster.frameworks.get(framework_id)
    task = framework.tasks.get(task_id) if framework is not None else None
    return task.info.agent_id if task is not None else None


def _completed_state(framework, task_id: str) -> int | None:
    if framework is None:
        return None
    for done in reversed(framework.completed_tasks):
        if done.info.task_id == task_id:
            return done.state
    return None


__all__ = ["CHECKS", "Auditor", "Resources", "Violation"]
