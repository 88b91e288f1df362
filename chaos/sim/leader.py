"""The leader's shell in simulated time: a subclass of the real `mesos_es.master.leader.Leader`.

What the real shell decides without I/O is inherited and runs unchanged: `on_applied` (which
events trigger an allocation), `carry_out` (effects -> stream events), `send_update`,
`send_run_task`, `send_ack`, `resend_unacknowledged`, `_anyone_wants_offers`, `master_info`.
The real HTTP handlers' pure helpers are called as they are: `parse_operation`,
`refuse_seconds`, `ids`, `_roles`, `_reconciled` (master/http/scheduler.py), `_parse_update`,
`_new_update_event`, `digest_matches` (master/http/agents.py); so are the allocator's inputs
(`core.inputs`), the allocator and the event builders.

What is asyncio or aiohttp in the real shell is a small twin here, driven by simulated timers
and calls; each names its real counterpart in its docstring, and the list is in docs/chaos.md:
`_become_leader`, `step_down` (`_step_down`), the allocation loop and `allocate_once`, the timer
loop and `_expire`, the ping loop, stream heartbeats (`EventStream.run`), and the handlers
`scheduler`, `subscribe` (with its stream's `finally`), the scheduler calls, `register`,
`agent_api`, `update`, `pong`.

The planted bug "send-before-commit" (a switch, for the tests that prove the harness can
fail) forwards an agent's status update to its framework before the update is committed.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from chaos.sim.net import Stream
from mesos_es.core import allocator
from mesos_es.core.convert import (
    TERMINAL_STATES,
    InvalidObject,
    canonical_json,
    framework_info_from_json,
    id_value,
    ident,
    resources_to_proto,
    task_status_to_json,
)
from mesos_es.core.outcomes import Rejected
from mesos_es.log.interface import LogError
from mesos_es.master.http import agents as agent_api
from mesos_es.master.http import scheduler as scheduler_api
from mesos_es.master.leader import Leader
from mesos_es.pb import events_pb2, mesos_pb2

TIMER_PERIOD_MS = 250  # the real timer loop: min(0.25, ping timeout / 4)
TRIGGERED_CYCLE_GAP_MS = 100


class SimLeader(Leader):
    def __init__(self, master, term: int):
        # Not Leader.__init__: it makes asyncio objects. These are the attributes the
        # inherited methods read.
        self.master = master
        self.config = master.config
        self.world = master.world
        self.term = term
        self.frameworks: dict[str, Stream] = {}
        self.agents: dict[str, Stream] = {}
        self.agent_seen: dict[str, float] = {}
        self.active = False
        self.stopped = False
        self._timers: dict[str, object] = {}
        self._cycle_timer = None
        self._allocating = False
        self._last_cycle_ms = -10**9
        self._expiring = 0

    # -- lifecycle (twins of _become_leader and _step_down) -------------------------------------
    def start(self) -> None:
        """`_become_leader`: commit MasterElected, then lead from the applied state."""
        event = events_pb2.Event(master_elected=events_pb2.MasterElected(leader=self.config.address, term=self.term))
        self.master.propose(event, self._elected)

    def _elected(self, result) -> None:
        if self.stopped:
            return
        if isinstance(result, LogError):
            self.master.log(f"election marker not committed: {result}")
            return
        self.active = True
        self.master.listeners.append(self.on_applied)
        now_s = self.world.now / 1000
        grace = self.config.agent_reregister_timeout_s - self._agent_timeout_s()
        self.agent_seen = {aid: now_s + grace for aid, a in self.state.agents.items() if a.reachable}
        self._every(int(self.config.allocation_interval_s * 1000), self._periodic_cycle)
        self._every(TIMER_PERIOD_MS, self._expire_tick)
        self._every(int(self.config.agent_ping_timeout_s * 1000), self._ping)
        self._every(int(self.config.heartbeat_interval_s * 1000), self._heartbeat)
        self.master.log(f"leading: term {self.term}, position {self.master.applied}")

    def step_down(self) -> None:
        """`_step_down`: stop sending, close every stream."""
        self.stopped = True
        self.active = False
        for timer in self._timers.values():
            timer.cancel()
        if self._cycle_timer is not None:
            self._cycle_timer.cancel()
        if self.on_applied in self.master.listeners:
            self.master.listeners.remove(self.on_applied)
        for stream in self.streams():
            stream.close()
        self.frameworks.clear()
        self.agents.clear()

    def streams(self) -> list[Stream]:
        return [*self.frameworks.values(), *self.agents.values()]

    def is_leading(self) -> bool:
        return self.active and self.master.consensus.is_leader(self.master.name)

    def _every(self, period_ms: int, fn: Callable) -> None:
        """Run `fn` every period while this shell leads (one of the real shell's loops)."""
        def tick() -> None:
            if self.stopped:
                return
            fn()
            self._timers[fn.__name__] = self.master.later(period_ms, tick)
        self._timers[fn.__name__] = self.master.later(period_ms, tick)

    def propose(self, event: events_pb2.Event, on_done: Callable = lambda result: None) -> None:
        self.master.propose(event, on_done)

    def now_ms(self) -> int:
        return self.master.clock_ms()

    # -- allocation (twins of _allocation_loop and allocate_once) -------------------------------
    def trigger_allocation(self) -> None:
        if not self.active:
            return
        delay = max(0, self._last_cycle_ms + TRIGGERED_CYCLE_GAP_MS - self.world.now)
        if self._cycle_timer is not None and not self._cycle_timer.cancelled \
                and self._cycle_timer.at <= self.world.now + delay:
            return
        if self._cycle_timer is not None:
            self._cycle_timer.cancel()
        self._cycle_timer = self.master.later(delay, self._cycle)

    def _periodic_cycle(self) -> None:
        if self.world.now - self._last_cycle_ms >= self.config.allocation_interval_s * 1000 - 1:
            self._cycle()

    def _cycle(self) -> None:
        """`allocate_once`: one cycle on the applied state; its offers commit before the next."""
        self._cycle_timer = None
        if self.stopped or self._allocating:
            return
        self._last_cycle_ms = self.world.now
        if not self._anyone_wants_offers():
            return
        ts = self.now_ms()
        allocations = allocator.allocate(**self.offer_inputs(self.master.state, ts))
        if not allocations:
            return
        cluster = self.state
        offers = [mesos_pb2.Offer(id=self.world.new_id("O"), framework_id=a.framework_id, agent_id=a.agent_id,
                                  hostname=cluster.agents[a.agent_id].info.hostname, role=a.role,
                                  resources=resources_to_proto(a.resources)) for a in allocations]
        self._allocating = True

        def done(result) -> None:
            self._allocating = False
        self.propose(events_pb2.Event(offers_made=events_pb2.OffersMade(offers=offers)), done)

    # -- timers (twins of _timer_loop/_expire, _ping_loop, EventStream.run's heartbeat) ---------
    def _expire_tick(self) -> None:
        """`_expire`: the real `Leader.expired` decides; proposed with continuations here."""
        if self._expiring:
            return  # the real loop awaits the previous round's proposals
        events = self.expired(self.now_ms(), self.world.now / 1000)
        self._expiring = len(events)

        def done(result) -> None:
            self._expiring -= 1
        for event in events:
            self.propose(event, done)

    def _ping(self) -> None:
        for agent_id in sorted(self.agents):
            self.agents[agent_id].send({"type": "PING", "ping": {}})

    def _heartbeat(self) -> None:
        for framework_id in sorted(self.frameworks):
            self.frameworks[framework_id].send({"type": "HEARTBEAT"})

    # -- calls ----------------------------------------------------------------------------------
    def handle(self, src: str, kind: str, request: dict, reply) -> None:
        try:
            if kind == "scheduler":
                self.scheduler(src, request, reply)
            else:
                self.agent_call(src, request, reply)
        except web.HTTPException as e:  # the real helpers raise aiohttp's errors
            reply(e.status, {"error": e.text})
        except InvalidObject as e:
            reply(400, {"error": str(e)})

    def _proposed(self, reply, on_success: Callable | None = None) -> Callable:
        """A proposal's continuation: 202 (or `on_success`) once committed, else common.propose's errors."""
        def done(result) -> None:
            self.master.answer_proposal(result, reply, on_success or (lambda proposed: reply(202)))
        return done

    # -- the scheduler API (twin of master/http/scheduler.py) -----------------------------------
    def scheduler(self, src: str, request: dict, reply) -> None:
        """`scheduler`: SUBSCRIBE, or a call on the framework's current stream."""
        call = request["call"]
        if call["type"] == "SUBSCRIBE":
            self.subscribe(src, call, reply, request.get("conn"))
            return
        framework_id = id_value(call, "framework_id")
        if framework_id not in self.state.frameworks:
            reply(404, {"error": f"framework {framework_id} is not subscribed"})
            return
        stream = self.frameworks.get(framework_id)
        if stream is None or request.get("stream_id") != stream.stream_id:
            reply(403, {"error": "the Mesos-Stream-Id header does not match the framework's subscription"})
            return
        handler = getattr(self, "call_" + call["type"].lower(), None)
        if handler is None:
            reply(400, {"error": f"unsupported call type {call['type']!r}"})
            return
        handler(framework_id, call, reply)

    def subscribe(self, src: str, call: dict, reply, conn=None) -> None:
        """`subscribe`: the stream is registered before the event is proposed, so effects of
        the commit queue behind SUBSCRIBED; it opens once FrameworkSubscribed is committed."""
        body = scheduler_api.section(call, "subscribe")
        raw_info = body.get("framework_info")
        info = framework_info_from_json(raw_info)
        framework_id = id_value(call, "framework_id", required=False) or id_value(raw_info, "id", required=False)
        cluster = self.state
        if framework_id and framework_id in cluster.removed_frameworks:
            reply(403, {"error": f"framework {framework_id} was removed; subscribe without an id"})
            return
        resubscribed = bool(framework_id) and framework_id in cluster.frameworks
        framework_id = framework_id or self.world.new_id("0000")
        stream = Stream(self.master.net, self.master, src, "framework", framework_id, self.world.new_id("stream"), conn)
        previous = self.frameworks.get(framework_id)
        self.frameworks[framework_id] = stream
        if previous is not None:
            previous.send({"type": "ERROR", "error": {"message": "framework failed over"}})
            previous.close()

        def done(result) -> None:
            if isinstance(result, LogError) or isinstance(result.result, Rejected):
                if self.frameworks.get(framework_id) is stream:
                    del self.frameworks[framework_id]
                if isinstance(result, LogError):
                    self.master.answer_proposal(result, reply, None)
                else:
                    reply(400, {"error": result.result.reason})
                return
            stream.on_server_end = self._framework_stream_ended
            stream.open({"type": "SUBSCRIBED", "subscribed": {
                "framework_id": ident(framework_id),
                "heartbeat_interval_seconds": self.config.heartbeat_interval_s,
                "master_info": self.master_info()}})
            self.resend_unacknowledged(framework_id)
            self.trigger_allocation()

        self.propose(events_pb2.Event(framework_subscribed=events_pb2.FrameworkSubscribed(
            framework_id=framework_id, framework_info=info, resubscribed=resubscribed)), done)

    def _framework_stream_ended(self, stream: Stream) -> None:
        """The `finally` of `subscribe` and `_disconnected`."""
        if self.frameworks.get(stream.owner) is stream:
            del self.frameworks[stream.owner]
            if self.is_leading():
                self.propose(events_pb2.Event(framework_disconnected=events_pb2.FrameworkDisconnected(
                    framework_id=stream.owner)))

    def call_accept(self, framework_id: str, call: dict, reply) -> None:
        body = scheduler_api.section(call, "accept")
        event = events_pb2.OffersAccepted(
            framework_id=framework_id, offer_ids=scheduler_api.ids(body.get("offer_ids") or [], "accept.offer_ids"),
            operations=[scheduler_api.parse_operation(op) for op in body.get("operations") or []],
            refuse_seconds=scheduler_api.refuse_seconds(body))
        self.propose(events_pb2.Event(offers_accepted=event), self._proposed(reply))

    def call_decline(self, framework_id: str, call: dict, reply) -> None:
        body = scheduler_api.section(call, "decline")
        self.propose(events_pb2.Event(offers_declined=events_pb2.OffersDeclined(
            framework_id=framework_id, offer_ids=scheduler_api.ids(body.get("offer_ids") or [], "decline.offer_ids"),
            refuse_seconds=scheduler_api.refuse_seconds(body))), self._proposed(reply))

    def call_revive(self, framework_id: str, call: dict, reply) -> None:
        roles = scheduler_api._roles(scheduler_api.section(call, "revive", required=False))
        self.propose(events_pb2.Event(framework_revived=events_pb2.FrameworkRevived(
            framework_id=framework_id, roles=roles)), self._proposed(reply))

    def call_suppress(self, framework_id: str, call: dict, reply) -> None:
        roles = scheduler_api._roles(scheduler_api.section(call, "suppress", required=False))
        self.propose(events_pb2.Event(framework_suppressed=events_pb2.FrameworkSuppressed(
            framework_id=framework_id, roles=roles)), self._proposed(reply))

    def call_kill(self, framework_id: str, call: dict, reply) -> None:
        body = scheduler_api.section(call, "kill")
        policy = body.get("kill_policy")
        self.propose(events_pb2.Event(task_kill_requested=events_pb2.TaskKillRequested(
            framework_id=framework_id, task_id=id_value(body, "task_id"),
            agent_id=id_value(body, "agent_id", required=False),
            kill_policy_json=canonical_json(policy) if isinstance(policy, dict) else b"")), self._proposed(reply))

    def call_acknowledge(self, framework_id: str, call: dict, reply) -> None:
        """`acknowledge`: an event only for an update still unacknowledged; 202 either way."""
        body = scheduler_api.section(call, "acknowledge")
        task_id = id_value(body, "task_id")
        uuid = scheduler_api.base64_field(body, "uuid", "acknowledge")
        task = self.state.frameworks[framework_id].tasks.get(task_id)
        if task is not None and any(u.uuid == uuid for u in task.unacknowledged):
            self.propose(events_pb2.Event(status_update_acknowledged=events_pb2.StatusUpdateAcknowledged(
                framework_id=framework_id, agent_id=id_value(body, "agent_id", required=False) or task.info.agent_id,
                task_id=task_id, uuid=uuid)), self._proposed(reply))
        else:
            reply(202)

    def call_reconcile(self, framework_id: str, call: dict, reply) -> None:
        """`reconcile`: answered from the applied state on the framework's stream; no event."""
        body = scheduler_api.section(call, "reconcile", required=False)
        framework = self.state.frameworks[framework_id]
        ts = self.now_ms() / 1000
        statuses = []
        wanted = body.get("tasks") or []
        if not wanted:
            for task_id in sorted(framework.tasks):
                task = framework.tasks[task_id]
                if task.state not in TERMINAL_STATES:
                    statuses.append(scheduler_api._reconciled(task.latest_status, ts))
        for item in wanted:
            task_id = id_value(item, "task_id")
            task = framework.tasks.get(task_id)
            if task is not None:
                statuses.append(scheduler_api._reconciled(task.latest_status, ts))
                continue
            done = next((t for t in framework.completed_tasks if t.info.task_id == task_id), None)
            if done is not None:
                statuses.append(scheduler_api._reconciled(done.latest_status, ts))
                continue
            partition_aware = "PARTITION_AWARE" in framework.info.capabilities
            statuses.append({"task_id": ident(task_id), "state": "TASK_UNKNOWN" if partition_aware else "TASK_LOST",
                             "source": "SOURCE_MASTER", "reason": "REASON_RECONCILIATION",
                             "message": "task unknown to the master", "timestamp": ts})
        for status in statuses:
            self.send_update(framework_id, status)
        reply(202)

    # -- the agent API (twin of master/http/agents.py) ------------------------------------------
    def agent_call(self, src: str, request: dict, reply) -> None:
        """`agent_api`: REGISTER, or a call on the agent's current stream."""
        call = request["call"]
        if call["type"] == "REGISTER":
            self.register(src, call, reply, request.get("conn"))
            return
        agent_id = id_value(call, "agent_id")
        stream = self.agents.get(agent_id)
        if stream is None or request.get("stream_id") != stream.stream_id:
            reply(403, {"error": "unknown or stale Mesos-Stream-Id: register again"})
            return
        self.agent_seen[agent_id] = self.world.now / 1000
        if call["type"] == "UPDATE":
            self.agent_update(agent_id, call, reply)
        elif call["type"] == "PONG":
            reply(202)
        else:
            reply(400, {"error": f"unsupported call type {call['type']!r}"})

    def register(self, src: str, call: dict, reply, conn=None) -> None:
        """`register`: by digest or with the task list; the stream opens once committed, and
        launches that may never have reached the agent are sent again."""
        agent_id, event, reports = agent_api.registration(
            self.master, scheduler_api.section(call, "register"), lambda: self.world.new_id("S0"))
        stream = Stream(self.master.net, self.master, src, "agent", agent_id, self.world.new_id("stream"), conn)
        previous = self.agents.get(agent_id)
        self.agents[agent_id] = stream
        if previous is not None:
            previous.close()

        def done(result) -> None:
            if isinstance(result, LogError) or isinstance(result.result, Rejected):
                if self.agents.get(agent_id) is stream:
                    del self.agents[agent_id]
                if isinstance(result, LogError):
                    self.master.answer_proposal(result, reply, None)
                else:
                    reply(400, {"error": result.result.reason})
                return
            self.agent_seen[agent_id] = self.world.now / 1000
            stream.on_server_end = self._agent_stream_ended
            stream.open({"type": "REGISTERED", "registered": {
                "agent_id": ident(agent_id), "ping_interval_seconds": self.config.agent_ping_timeout_s}})
            for framework_id, task_id in agent_api.unsent_launches(self.master, agent_id, reports):
                self.send_run_task(agent_id, framework_id, task_id)

        self.propose(event, done)

    def _agent_stream_ended(self, stream: Stream) -> None:
        if self.agents.get(stream.owner) is stream:
            del self.agents[stream.owner]

    def agent_update(self, agent_id: str, call: dict, reply) -> None:
        """`update`: an event unless the state already holds the update (then it is
        forwarded or acknowledged again by `_new_update_event`)."""
        framework_id, status = agent_api._parse_update(scheduler_api.section(call, "update"), agent_id)
        if self.master.plant == "send-before-commit":
            self.send_update(framework_id, task_status_to_json(status))  # the planted bug
        event = agent_api._new_update_event(self, agent_id, framework_id, status)
        if event is None:
            reply(202)
            return
        self.propose(event, self._proposed(reply))
