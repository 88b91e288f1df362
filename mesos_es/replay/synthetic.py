"""A synthetic, legal cluster history, for the replay benchmark and the replay tests.

A scripted leader: agents register, frameworks in four roles (weights, a quota guarantee, a
quota limit) subscribe, and then in rounds the real allocator (`core.allocator.allocate`)
makes offers on the folded state; frameworks launch tasks on most offers, decline some and
leave a few to time out; tasks run, finish or are killed, and every update is
acknowledged; frameworks append to named logs; now and then the leader changes (frameworks
re-subscribe) or an agent is lost and comes back. Every event is folded as it is made, so
the history is exactly what a master would have committed. Deterministic for a seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from mesos_es.core import allocator
from mesos_es.core.apply import apply
from mesos_es.core.convert import resources_to_proto
from mesos_es.core.inputs import allocation_inputs
from mesos_es.core.resources import parse_text
from mesos_es.core.state import State
from mesos_es.pb import events_pb2, mesos_pb2

START_MS = 1_790_000_000_000
AGENT_TEXT = "cpus:8;mem:16384;disk:100000;ports:[31000-31999]"
FRAMEWORK_ROLES = ("web", "batch", "analytics", "dev")
E = events_pb2


class SyntheticCluster:
    def __init__(self, seed: int = 1, agents: int = 20, frameworks: int = 4, log_share: float = 0.2):
        self.rng = random.Random(seed)
        self.state = State()
        self.now_ms = START_MS
        self.agents = [f"agent-{i:04d}" for i in range(agents)]
        self.frameworks = [f"fw-{i}" for i in range(frameworks)]
        self.log_share = log_share
        self.term = 0
        self.ids = 0
        # task key -> stage: "staging", "running", "done"
        self.tasks: dict[tuple[str, str], str] = {}
        self.unacked: list[tuple[str, str, str, bytes]] = []  # (framework, agent, task, uuid)
        self.unreachable: dict[str, int] = {}  # agent -> rounds until it comes back

    # -- making events ------------------------------------------------------------------------
    def emit(self, event: events_pb2.Event) -> bytes:
        self.now_ms += self.rng.randint(1, 15)
        event.timestamp_ms = self.now_ms
        apply(self.state, self.state.position + 1, event)
        return event.SerializeToString()

    def next_id(self, prefix: str) -> str:
        self.ids += 1
        return f"{prefix}-{self.ids:08d}"

    def events(self, count: int) -> Iterator[bytes]:
        """`count` events (the setup first, then rounds)."""
        produced = 0
        for data in self._setup():
            yield data
            produced += 1
        rounds = 0
        rng = self.rng
        while produced < count:
            rounds += 1
            for data in self._round(rounds):
                yield data
                produced += 1
                # frameworks' own log entries, interleaved: a share `log_share` of all events
                while produced < count and rng.random() < self.log_share:
                    yield self._log_entry()
                    produced += 1
                if produced >= count:
                    return

    def _setup(self) -> Iterator[bytes]:
        yield from self._elect()
        cpus = 8 * len(self.agents)
        yield self.emit(E.Event(weights_updated=E.WeightsUpdated(weights=[E.WeightInfo(role="web", weight=3.0)])))
        yield self.emit(E.Event(quota_updated=E.QuotaUpdated(configs=[
            E.QuotaConfig(role="analytics", guarantees=resources_to_proto(parse_text(f"cpus:{max(1, cpus // 10)}"))),
            E.QuotaConfig(role="batch", limits=resources_to_proto(parse_text(f"cpus:{max(1, cpus * 4 // 10)}"))),
        ])))
        total = resources_to_proto(parse_text(AGENT_TEXT))
        for agent_id in self.agents:
            info = mesos_pb2.AgentInfo(hostname=f"{agent_id}.example", port=5051, resources=total)
            yield self.emit(E.Event(agent_registered=E.AgentRegistered(agent_id=agent_id, agent_info=info)))
        for i, framework_id in enumerate(self.frameworks):
            yield self.emit(E.Event(framework_subscribed=E.FrameworkSubscribed(
                framework_id=framework_id, framework_info=self._framework_info(i))))

    def _framework_info(self, i: int) -> mesos_pb2.FrameworkInfo:
        role = FRAMEWORK_ROLES[i % len(FRAMEWORK_ROLES)]
        return mesos_pb2.FrameworkInfo(user="bench", name=f"framework {i}", roles=[role], failover_timeout=3600,
                                       capabilities=["MULTI_ROLE"])

    def _elect(self) -> Iterator[bytes]:
        self.term += 1
        leader = f"127.0.0.1:{5050 + self.term % 3}"
        yield self.emit(E.Event(master_elected=E.MasterElected(leader=leader, term=self.term)))

    def _round(self, number: int) -> Iterator[bytes]:
        rng, cluster = self.rng, self.state.cluster
        if number % 250 == 0:
            yield from self._elect()
            for i, framework_id in enumerate(self.frameworks):
                yield self.emit(E.Event(framework_subscribed=E.FrameworkSubscribed(
                    framework_id=framework_id, framework_info=self._framework_info(i), resubscribed=True)))
        if number % 97 == 0 and len(self.agents) > 1:
            yield from self._lose_agent(rng.choice(self.agents))
        for agent_id in sorted(self.unreachable):
            self.unreachable[agent_id] -= 1
            if self.unreachable[agent_id] <= 0:
                del self.unreachable[agent_id]
                yield from self._agent_back(agent_id)
        # the allocation cycle
        offers = allocator.allocate(**allocation_inputs(self.state, self.now_ms))
        if offers:
            made = [mesos_pb2.Offer(id=self.next_id("O"), framework_id=a.framework_id, agent_id=a.agent_id,
                                    hostname=f"{a.agent_id}.example", role=a.role,
                                    resources=resources_to_proto(a.resources)) for a in offers]
            yield self.emit(E.Event(offers_made=E.OffersMade(offers=made)))
            for offer in made:
                if offer.id not in cluster.offers:
                    continue
                yield from self._answer(cluster.offers[offer.id])
        # offers left outstanding time out
        stale = sorted(oid for oid, o in cluster.offers.items() if o.offered_at_ms < self.now_ms - 2_000)
        if stale:
            yield self.emit(E.Event(offers_rescinded=E.OffersRescinded(offer_ids=stale, reason="OFFER_TIMEOUT")))
        yield from self._progress_tasks()
        yield from self._acknowledge()

    def _log_entry(self) -> bytes:
        rng = self.rng
        framework_id = rng.choice(self.frameworks)
        data = rng.randbytes(rng.randint(32, 256))
        return self.emit(E.Event(log_entry_appended=E.LogEntryAppended(
            log=f"{framework_id}-state", data=data, idempotency_key=self.next_id("k"))))

    def _answer(self, offer: mesos_pb2.Offer) -> Iterator[bytes]:
        rng = self.rng
        choice = rng.random()
        if choice < 0.1:
            return  # left to time out
        if choice < 0.3:
            yield self.emit(E.Event(offers_declined=E.OffersDeclined(
                framework_id=offer.framework_id, offer_ids=[offer.id], refuse_seconds=1.0)))
            return
        cpus = sum(r.scalar.value for r in offer.resources if r.name == "cpus" and not r.reservations)
        mem = sum(r.scalar.value for r in offer.resources if r.name == "mem" and not r.reservations)
        tasks = []
        for _ in range(rng.randint(1, 3)):
            want_cpus, want_mem = rng.choice((0.5, 1.0, 2.0)), rng.choice((256, 512, 1024, 2048))
            if want_cpus > cpus or want_mem > mem:
                break
            cpus, mem = cpus - want_cpus, mem - want_mem
            task_id = self.next_id("task")
            tasks.append(mesos_pb2.TaskInfo(
                task_id=task_id, name=task_id, agent_id=offer.agent_id,
                resources=resources_to_proto(parse_text(f"cpus:{want_cpus};mem:{want_mem}")),
                json=b'{"command":{"value":"sleep 10"}}'))
            self.tasks[(offer.framework_id, task_id)] = "staging"
        yield self.emit(E.Event(offers_accepted=E.OffersAccepted(
            framework_id=offer.framework_id, offer_ids=[offer.id],
            operations=[E.Operation(type="LAUNCH", task_infos=tasks)] if tasks else [], refuse_seconds=1.0)))

    def _status(self, framework_id: str, task_id: str, state: int) -> Iterator[bytes]:
        framework = self.state.cluster.frameworks.get(framework_id)
        task = framework.tasks.get(task_id) if framework is not None else None
        if task is None:
            self.tasks.pop((framework_id, task_id), None)
            return
        agent_id = task.info.agent_id
        uuid = self.rng.randbytes(16)
        status = mesos_pb2.TaskStatus(task_id=task_id, state=state, source="SOURCE_EXECUTOR", uuid=uuid,
                                      timestamp=self.now_ms / 1000, agent_id=agent_id)
        yield self.emit(E.Event(task_status_updated=E.TaskStatusUpdated(framework_id=framework_id, status=status)))
        if any(u.uuid == uuid for u in task.unacknowledged):
            self.unacked.append((framework_id, agent_id, task_id, uuid))

    def _progress_tasks(self) -> Iterator[bytes]:
        rng = self.rng
        for key in sorted(self.tasks):
            stage = self.tasks[key]
            framework_id, task_id = key
            if stage == "staging":
                self.tasks[key] = "running"
                yield from self._status(framework_id, task_id, mesos_pb2.TASK_RUNNING)
            elif stage == "running" and rng.random() < 0.2:
                del self.tasks[key]
                ending = rng.random()
                if ending < 0.1:
                    agent = self._agent_of(framework_id, task_id)
                    yield self.emit(E.Event(task_kill_requested=E.TaskKillRequested(
                        framework_id=framework_id, task_id=task_id, agent_id=agent)))
                    yield from self._status(framework_id, task_id, mesos_pb2.TASK_KILLED)
                else:
                    yield from self._status(framework_id, task_id,
                                            mesos_pb2.TASK_FAILED if ending < 0.2 else mesos_pb2.TASK_FINISHED)

    def _agent_of(self, framework_id: str, task_id: str) -> str:
        framework = self.state.cluster.frameworks.get(framework_id)
        task = framework.tasks.get(task_id) if framework is not None else None
        return task.info.agent_id if task is not None else ""

    def _acknowledge(self) -> Iterator[bytes]:
        pending, self.unacked = self.unacked, []
        for framework_id, agent_id, task_id, uuid in pending:
            yield self.emit(E.Event(status_update_acknowledged=E.StatusUpdateAcknowledged(
                framework_id=framework_id, agent_id=agent_id, task_id=task_id, uuid=uuid)))

    def _lose_agent(self, agent_id: str) -> Iterator[bytes]:
        agent = self.state.cluster.agents.get(agent_id)
        if agent is None or not agent.reachable:
            return
        self.unreachable[agent_id] = 3
        yield self.emit(E.Event(agent_marked_unreachable=E.AgentMarkedUnreachable(
            agent_id=agent_id, reason="no answer to pings")))

    def _agent_back(self, agent_id: str) -> Iterator[bytes]:
        info = mesos_pb2.AgentInfo(hostname=f"{agent_id}.example", port=5051,
                                   resources=resources_to_proto(parse_text(AGENT_TEXT)))
        yield self.emit(E.Event(agent_reregistered=E.AgentReregistered(agent_id=agent_id, agent_info=info)))


def history(count: int, seed: int = 1, **kwargs) -> list[bytes]:
    return list(SyntheticCluster(seed, **kwargs).events(count))
