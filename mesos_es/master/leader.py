"""The leader's shell: streams, timers, allocation, and carrying out effects.

Every master folds every event; only the leader talks to frameworks and agents. On winning
an election it commits `MasterElected` (after which it has applied everything before it,
since the log delivers in order), then starts its loops from the state: allocation, offer
timeouts, framework failover timeouts, agent pings. The moment it loses leadership it stops
sending and closes every stream, so clients reconnect to the new leader.

Effects (mesos_es/core/effects.py) are computed by the pure appliers; `on_applied` turns
them into stream messages here, after the event is committed and applied.
"""

from __future__ import annotations

import asyncio
import contextlib
import base64
import time
import uuid

import orjson
import structlog

from mesos_es import __version__
from mesos_es.core import allocator
from mesos_es.core import effects as fx
from mesos_es.core.convert import (
    TERMINAL_STATES,
    framework_info_to_json,
    ident,
    offer_to_json,
    resources_to_proto,
    task_info_to_json,
    task_status_to_json,
)
from mesos_es.core.inputs import allocation_inputs, revocation_inputs, wants_revocation
from mesos_es.core.outcomes import Applied, Outcome
from mesos_es.log.interface import LogError, NotLeader, Proposed, Role
from mesos_es.master.http.common import now_ms
from mesos_es.master.streams import EventStream
from mesos_es.master.zk import mesos_master_info
from mesos_es.pb import events_pb2, mesos_pb2

log = structlog.get_logger(__name__)

WATCH_INTERVAL_S = 0.05
TRIGGERED_CYCLE_GAP_S = 0.1  # the least time between two allocation cycles
OFFERS_PER_EVENT = 1000  # about 250 kB of OffersMade
STEP_DOWN_WAIT_S = 2.0


def new_id(suffix: str) -> str:
    return f"{uuid.uuid4()}-{suffix}"


class Leader:
    def __init__(self, master):
        self.master = master
        self.config = master.config
        self.frameworks: dict[str, EventStream] = {}
        self.agents: dict[str, EventStream] = {}
        self.agent_seen: dict[str, float] = {}  # agent id -> monotonic time of its last sign of life
        self.active = False  # leader, and MasterElected is applied
        self._tasks: list[asyncio.Task] = []
        self._watcher: asyncio.Task | None = None
        self._allocate_now = asyncio.Event()
        # Set while this master leads (MasterElected applied) or knows another leader: what
        # calls held by `hold_for_leader` (mesos_es/master/http/common.py) wait for.
        self.leader_known = asyncio.Event()
        master.replica.listeners.append(self.on_applied)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def stop(self) -> None:
        if self._watcher:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        await self._step_down()

    def is_leading(self) -> bool:
        return self.active and self.master.log.status().role is Role.LEADER

    async def _watch(self) -> None:
        while True:
            status = self.master.log.status()
            if status.role is Role.LEADER and not self.active:
                await self._become_leader(status.term)
            elif status.role is not Role.LEADER and (self.active or self._tasks):
                await self._step_down()
            if self.active or self.master.leader() not in (None, self.config.address):
                self.leader_known.set()
            else:
                self.leader_known.clear()
            await asyncio.sleep(WATCH_INTERVAL_S)

    async def _become_leader(self, term: int) -> None:
        event = events_pb2.Event(master_elected=events_pb2.MasterElected(leader=self.config.address, term=term))
        try:
            await self.propose(event)
        except LogError as e:
            log.warning("election_marker_failed", error=str(e))
            return
        self.active = True
        start = time.monotonic()
        # Known agents get the re-registration window to come back.
        grace = self.config.agent_reregister_timeout_s - self._agent_timeout_s()
        self.agent_seen = {aid: start + grace for aid, a in self.state.agents.items() if a.reachable}
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._allocation_loop()), loop.create_task(self._timer_loop()),
                       loop.create_task(self._ping_loop())]
        if self.master.zk is not None:
            self.master.zk.advertise(self.master_info())  # ZooKeeper's json.info_ node (--zk)
        log.info("leading", term=term, frameworks=len(self.state.frameworks), agents=len(self.state.agents))

    async def _step_down(self) -> None:
        was_active = self.active
        self.active = False
        for task in self._tasks:
            task.cancel()
        # Bounded: a loop that ignored its cancel must not keep the streams open.
        done, pending = await asyncio.wait(self._tasks, timeout=STEP_DOWN_WAIT_S) if self._tasks else ((), ())
        if pending:
            log.error("loops_ignored_cancel", loops=len(pending))
        self._tasks = []
        for stream in [*self.frameworks.values(), *self.agents.values()]:
            stream.close()
        if self.master.zk is not None:
            self.master.zk.withdraw()
        self.frameworks.clear()
        self.agents.clear()
        if was_active:
            log.info("stepped_down")

    @property
    def state(self):
        return self.master.replica.state.cluster

    async def propose(self, event: events_pb2.Event) -> Proposed:
        event.timestamp_ms = now_ms()
        return await self.master.log.propose(event.SerializeToString())

    def trigger_allocation(self) -> None:
        self._allocate_now.set()

    def master_info(self) -> dict:
        """This master as Mesos' MasterInfo JSON (in SUBSCRIBED, and in ZooKeeper)."""
        host, _, port = self.config.address.rpartition(":")
        return mesos_master_info({"id": self.config.id, "port": int(port), "hostname": host, "version": __version__})

    # -- effects -----------------------------------------------------------------------------
    def on_applied(self, position: int, event: events_pb2.Event, outcome: Outcome) -> None:
        if not self.active or not isinstance(outcome, Applied):
            return
        for effect in outcome.effects:
            self.carry_out(effect)
        kind = event.WhichOneof("kind")
        if kind in ("offers_declined", "offers_accepted", "framework_revived", "agent_registered",
                    "agent_reregistered", "framework_removed", "framework_subscribed", "quota_updated",
                    "weights_updated", "resources_unreserved", "resources_reserved",
                    "oversubscribed_resources_updated", "resources_revoked") or (
                kind == "task_status_updated" and event.task_status_updated.status.state in TERMINAL_STATES):
            self.trigger_allocation()

    def carry_out(self, effect) -> None:
        cluster = self.state
        match effect:
            case fx.SendOffers(framework_id, offer_ids):
                stream = self.frameworks.get(framework_id)
                if stream:
                    offers = [offer_to_json(cluster.offers[i], cluster.agents[cluster.offers[i].agent_id].info)
                              for i in offer_ids if i in cluster.offers]
                    stream.send({"type": "OFFERS", "offers": {"offers": offers}})
            case fx.RescindOffer(framework_id, offer_id):
                self._to_framework(framework_id, {"type": "RESCIND", "rescind": {"offer_id": ident(offer_id)}})
            case fx.ForwardUpdate(framework_id, status):
                self.send_update(framework_id, task_status_to_json(status))
            case fx.MessageToScheduler(framework_id, agent_id, executor_id, data):
                self._to_framework(framework_id, {"type": "MESSAGE", "message": {
                    "agent_id": ident(agent_id), "executor_id": ident(executor_id),
                    "data": base64.b64encode(data).decode()}})
            case fx.FrameworkGone(framework_id, message):
                stream = self.frameworks.pop(framework_id, None)
                if stream:
                    stream.send({"type": "ERROR", "error": {"message": message}})
                    stream.close()
            case fx.RunTask(agent_id, framework_id, task_id):
                self.send_run_task(agent_id, framework_id, task_id)
            case fx.RunTaskGroup(agent_id, framework_id, task_ids, executor_json):
                framework = cluster.frameworks.get(framework_id)
                if framework is not None:
                    self._to_agent(agent_id, {"type": "RUN_TASK_GROUP", "run_task_group": {
                        "framework_info": framework_info_to_json(framework.info, framework_id),
                        "executor": orjson.loads(executor_json) if executor_json else {},
                        "task_group": {"tasks": [task_info_to_json(framework.tasks[t].info) for t in task_ids
                                                 if t in framework.tasks]}}})
            case fx.KillTask(agent_id, framework_id, task_id, kill_policy_json):
                body = {"framework_id": ident(framework_id), "task_id": ident(task_id)}
                if kill_policy_json:
                    body["kill_policy"] = orjson.loads(kill_policy_json)
                self._to_agent(agent_id, {"type": "KILL_TASK", "kill_task": body})
            case fx.AcknowledgeToAgent(agent_id, framework_id, task_id, uuid_bytes):
                self.send_ack(agent_id, framework_id, task_id, uuid_bytes)
            case fx.MessageToExecutor(agent_id, framework_id, executor_id, data):
                self._to_agent(agent_id, {"type": "MESSAGE", "message": {
                    "framework_id": ident(framework_id), "executor_id": ident(executor_id),
                    "data": base64.b64encode(data).decode()}})
            case fx.ShutdownFramework(agent_id, framework_id):
                self._to_agent(agent_id, {"type": "SHUTDOWN_FRAMEWORK",
                                          "shutdown_framework": {"framework_id": ident(framework_id)}})

    def _to_framework(self, framework_id: str, event: dict) -> None:
        stream = self.frameworks.get(framework_id)
        if stream is not None:
            stream.send(event)

    def _to_agent(self, agent_id: str, event: dict) -> None:
        stream = self.agents.get(agent_id)
        if stream is not None:
            stream.send(event)

    def send_update(self, framework_id: str, status: dict) -> None:
        """An UPDATE event (`status` in Mesos JSON) on the framework's stream, if it has one."""
        self._to_framework(framework_id, {"type": "UPDATE", "update": {"status": status}})

    def send_run_task(self, agent_id: str, framework_id: str, task_id: str) -> None:
        framework = self.state.frameworks.get(framework_id)
        if framework is None or task_id not in framework.tasks:
            return
        self._to_agent(agent_id, {"type": "RUN_TASK", "run_task": {
            "framework_info": framework_info_to_json(framework.info, framework_id),
            "task": task_info_to_json(framework.tasks[task_id].info)}})

    def send_ack(self, agent_id: str, framework_id: str, task_id: str, uuid_bytes: bytes) -> None:
        self._to_agent(agent_id, {"type": "ACKNOWLEDGE", "acknowledge": {
            "framework_id": ident(framework_id), "task_id": ident(task_id),
            "uuid": base64.b64encode(uuid_bytes).decode()}})

    def resend_unacknowledged(self, framework_id: str) -> None:
        """After a (re)subscription: every update the framework has not acknowledged yet."""
        framework = self.state.frameworks.get(framework_id)
        if framework is None:
            return
        for task_id in sorted(framework.tasks):
            for status in framework.tasks[task_id].unacknowledged:
                self.send_update(framework_id, task_status_to_json(status))

    # -- allocation ---------------------------------------------------------------------------
    async def _allocation_loop(self) -> None:
        """A cycle every allocation interval, and sooner when a trigger says something may be
        offered; cycles are at least TRIGGERED_CYCLE_GAP_S apart, so a burst of ACCEPTs and
        updates makes one cycle, not one each."""
        interval = self.config.allocation_interval_s
        gap = min(interval, TRIGGERED_CYCLE_GAP_S)
        while True:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow the cancel
            # of _step_down when the trigger is set at the same moment, and the loop lives on.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._allocate_now.wait()
            self._allocate_now.clear()
            started = time.monotonic()
            try:
                await self.allocate_once()
            except (NotLeader, LogError) as e:
                log.warning("allocation_not_committed", error=str(e))
                await asyncio.sleep(interval)
            await asyncio.sleep(max(0.0, gap - (time.monotonic() - started)))

    def offer_inputs(self, state, ts: int) -> dict:
        """The allocator's inputs, with only the agents registered with this leader (a live
        stream here). It reaches an agent through its stream; and after a leader change an
        offer of an agent that has not re-registered yet is void the moment it does (its
        re-registration rescinds its offers), so a framework that accepted it had its tasks
        dropped. Mesos offers only re-registered agents too."""
        inputs = allocation_inputs(state, ts)
        inputs["agents"] = [a for a in inputs["agents"] if a.agent_id in self.agents]
        return inputs

    async def allocate_once(self) -> int:
        """One cycle on the applied state; its offers are committed before the next cycle.
        With --revoke-for-quota, the revocation policy runs first."""
        if self.config.revoke_for_quota:
            await self.revoke_once()
        if not self._anyone_wants_offers():
            return 0
        ts = now_ms()
        allocations = allocator.allocate(**self.offer_inputs(self.master.replica.state, ts))
        if not allocations:
            return 0
        cluster = self.state
        offers = []
        for a in allocations:
            offers.append(mesos_pb2.Offer(
                id=new_id("O"), framework_id=a.framework_id, agent_id=a.agent_id,
                hostname=cluster.agents[a.agent_id].info.hostname, role=a.role,
                resources=resources_to_proto(a.resources)))
        # One cycle at 10,000 agents would not fit in one log entry: a few events, committed
        # together by the log's group commit.
        await asyncio.gather(*(
            self.propose(events_pb2.Event(offers_made=events_pb2.OffersMade(offers=offers[i:i + OFFERS_PER_EVENT])))
            for i in range(0, len(offers), OFFERS_PER_EVENT)))
        return len(offers)

    def _anyone_wants_offers(self) -> bool:
        """A connected framework with a role it does not suppress: else a cycle offers nothing."""
        return any(f.connected and len(f.suppressed_roles) < len(f.info.roles) for f in self.state.frameworks.values())

    async def revoke_once(self) -> int:
        """Take back what roles below their quota guarantee need (one ResourcesRevoked event):
        offers at once, tasks with the grace period. Returns how many things were revoked."""
        if not wants_revocation(self.state):
            return 0
        revoked = allocator.revocations(**revocation_inputs(self.master.replica.state))
        if not revoked:
            return 0
        cluster = self.state
        offer_ids = sorted(oid for oid, o in cluster.offers.items()
                           if any(r.task_id is None and r.framework_id == o.framework_id and r.agent_id == o.agent_id
                                  for r in revoked))
        tasks = [events_pb2.RevokedTask(framework_id=r.framework_id, task_id=r.task_id)
                 for r in revoked if r.task_id is not None]
        for_roles = sorted({role for r in revoked for role in r.for_roles})
        await self.propose(events_pb2.Event(resources_revoked=events_pb2.ResourcesRevoked(
            offer_ids=offer_ids, tasks=tasks, for_roles=for_roles,
            grace_period_ms=int(self.config.revocation_grace_period_s * 1000))))
        log.info("resources_revoked", offers=len(offer_ids), tasks=len(tasks), for_roles=for_roles)
        return len(offer_ids) + len(tasks)

    # -- timers --------------------------------------------------------------------------------
    def _agent_timeout_s(self) -> float:
        return self.config.agent_ping_timeout_s * self.config.max_agent_ping_timeouts

    async def _ping_loop(self) -> None:
        """PING every agent stream each ping period, whatever the timers are waiting for."""
        while True:
            for stream in list(self.agents.values()):
                stream.send({"type": "PING", "ping": {}})
            await asyncio.sleep(self.config.agent_ping_timeout_s)

    async def _timer_loop(self) -> None:
        while True:
            await asyncio.sleep(min(0.25, self.config.agent_ping_timeout_s / 4))
            try:
                await self._expire()
            except (NotLeader, LogError) as e:
                log.warning("timer_event_not_committed", error=str(e))

    async def _expire(self) -> None:
        # Proposed together: the log's group commit makes them few entries, not one round each.
        await asyncio.gather(*(self.propose(event) for event in self.expired(now_ms(), time.monotonic())))

    def expired(self, ts: int, monotonic: float) -> list[events_pb2.Event]:
        """What the timers decide at wall time `ts` (ms) and monotonic time `monotonic` (s):
        offers past their timeout, frameworks past their failover timeout, agents that missed
        their pings (whose streams are closed now). The simulator (chaos/sim) runs it too."""
        cluster = self.state
        expired: list[events_pb2.Event] = []
        if self.config.offer_timeout_s > 0:
            limit = ts - int(self.config.offer_timeout_s * 1000)
            stale = sorted(oid for oid, o in cluster.offers.items() if o.offered_at_ms <= limit)
            if stale:
                expired.append(events_pb2.Event(offers_rescinded=events_pb2.OffersRescinded(
                    offer_ids=stale, reason="OFFER_TIMEOUT")))
        for framework_id in sorted(cluster.frameworks):
            framework = cluster.frameworks.get(framework_id)
            if framework is None or framework.connected:
                continue
            deadline = framework.disconnected_at_ms + int(framework.info.failover_timeout * 1000)
            if framework.disconnected_at_ms <= cluster.leader_since_ms:
                # A leader change is not the scheduler going away: every framework has the
                # re-registration window, whatever its failover timeout (even 0).
                deadline = max(deadline, cluster.leader_since_ms + int(self.config.agent_reregister_timeout_s * 1000))
            if ts >= deadline:
                expired.append(events_pb2.Event(framework_removed=events_pb2.FrameworkRemoved(
                    framework_id=framework_id, reason="FAILOVER_TIMEOUT")))
        timeout = self._agent_timeout_s()
        for agent_id in sorted(cluster.agents):
            agent = cluster.agents.get(agent_id)
            if agent is None or not agent.reachable:
                continue
            seen = self.agent_seen.setdefault(agent_id, monotonic)
            if monotonic - seen > timeout:
                stream = self.agents.pop(agent_id, None)
                if stream:
                    stream.close()
                expired.append(events_pb2.Event(agent_marked_unreachable=events_pb2.AgentMarkedUnreachable(
                    agent_id=agent_id, reason=f"no answer to pings for {timeout:g} s")))
        return expired
