"""A simulated master: a replica that folds the committed history with the real `apply`, and,
while it leads, the leader's shell (chaos/sim/leader.py).

The fold is the real one (`mesos_es.core.apply.apply`, events decoded from the committed
bytes on every replica); the twin of `mesos_es.master.replica.Replica.apply` is `_fold`,
a few lines. The named-log API is served here, not by the shell, because the real one asks
only whether this master is the Raft leader (`require_leader`), not whether its shell is
active. Calls and their answers go through the simulated network (chaos/sim/net.py).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from chaos.sim.world import EPOCH_MS, Node
from mesos_es.core import digest as canonical
from mesos_es.core import logs as named_logs
from mesos_es.core.apply import apply, skip_undecodable
from mesos_es.core.outcomes import Appended, Applied, Rejected
from mesos_es.core.state import State
from mesos_es.log.interface import LogError, NotLeader
from mesos_es.pb import events_pb2

# A checkpoint digest every this many positions: replicas at the same position must agree.
DIGEST_EVERY = 16
HOLD_POLL_MS = 50


@dataclass
class SimConfig:
    """The `MasterConfig` fields the shell reads, in the same units, at simulation scale."""

    id: str
    address: str
    allocation_interval_s: float = 1.0
    offer_timeout_s: float = 10.0
    heartbeat_interval_s: float = 3.0
    agent_ping_timeout_s: float = 2.0
    max_agent_ping_timeouts: int = 3
    agent_reregister_timeout_s: float = 10.0
    leader_hold_timeout_s: float = 5.0
    revoke_for_quota: bool = False
    revocation_grace_period_s: float = 30.0
    max_entry_bytes: int = 1 << 20


class SimMaster(Node):
    def __init__(self, world, net, name: str, config: SimConfig, observations, plant: str = ""):
        super().__init__(world, name)
        self.net = net
        self.config = config
        self.observations = observations
        self.plant = plant
        self.consensus = None  # set by the run, once every master exists
        self.state = State()
        self.listeners: list = []
        self.clock_offset_ms = 0
        self.shell = None
        self.replica = self  # the real Leader reads `master.replica.state`
        self.zk = None

    # -- time -----------------------------------------------------------------------------------
    def clock_ms(self) -> int:
        """This master's wall clock: what it stamps into events (the nemesis makes it jump)."""
        return EPOCH_MS + self.world.now + self.clock_offset_ms

    # -- the fold -------------------------------------------------------------------------------
    @property
    def applied(self) -> int:
        return self.state.position

    def deliver(self, upto: int):
        """Fold committed entries up to `upto`; the outcome of the last one."""
        outcome = None
        while self.state.position < upto:
            outcome = self._fold(self.state.position + 1)
        return outcome

    def _fold(self, position: int):
        """The twin of `Replica.apply`: decode, fold, tell the listeners (the leader's shell)."""
        committed = self.consensus.history[position - 1]
        try:
            event = events_pb2.Event.FromString(committed.payload)
        except DecodeError:
            return skip_undecodable(self.state, position)
        outcome = apply(self.state, position, event)
        if self.consensus.is_leader(self.name):
            self.log(f"committed {position} {event.WhichOneof('kind')}: {_summary(outcome)}")
        for listener in self.listeners:
            listener(position, event, outcome)
        if position % DIGEST_EVERY == 0:
            self.observations.replica_digest(self.name, position, canonical.digest(self.state))
        return outcome

    def propose(self, event: events_pb2.Event, on_done) -> None:
        """Stamp the event with this master's clock and propose it (common.propose's twin)."""
        event.timestamp_ms = self.clock_ms()
        self.consensus.propose(self.name, event.SerializeToString(), on_done)

    # -- leadership -----------------------------------------------------------------------------
    def become_leader(self, term: int) -> None:
        from chaos.sim.leader import SimLeader

        if self.shell is not None:
            self.shell.step_down()
        self.shell = SimLeader(self, term)
        self.shell.start()

    def step_down(self) -> None:
        if self.shell is not None:
            self.shell.step_down()
            self.shell = None

    def crash(self) -> None:
        streams = self.shell.streams() if self.shell is not None else []
        self.shell = None
        self.listeners = []
        super().crash()
        for stream in streams:
            self.net.reset_by_crash(stream)
        self.state = State()
        self.log("crashed")

    def restart(self, log_len: int) -> None:
        """Start again from durable state: the entries it had received, folded from the
        beginning with a snapshot round trip at a seeded position (a restart from a snapshot
        plus the archive's suffix must give the same state)."""
        self.alive = True
        self.state = State()
        snapshot_at = self.world.rng.randint(0, log_len)
        self.deliver(snapshot_at)
        self.state = canonical.from_proto(canonical.to_proto(self.state))
        self.deliver(log_len)
        self.log(f"restarted: folded {log_len} entries (snapshot at {snapshot_at})")

    def leader_hint(self) -> str | None:
        return self.consensus.known_leader(self.name)

    # -- calls ----------------------------------------------------------------------------------
    def handle_call(self, src: str, kind: str, body: dict, reply, held_since: int | None = None) -> None:
        if kind in ("scheduler", "agent"):
            shell = self.shell
            if not self._leader_known() and self.config.leader_hold_timeout_s > 0:
                # `hold_for_leader`: wait (the real shell's watch polls every 50 ms) until this
                # master leads or knows who does, for up to the hold timeout.
                since = self.world.now if held_since is None else held_since
                if self.world.now - since < self.config.leader_hold_timeout_s * 1000:
                    self.later(HOLD_POLL_MS, self.handle_call, src, kind, body, reply, since)
                    return
            if shell is None or not shell.is_leading():
                reply(*self.to_leader())
                return
            shell.handle(src, kind, body, reply)
        elif kind == "log_append":
            self.log_append(body, reply)
        elif kind == "log_read":
            self.log_read(body, reply)
        else:
            reply(400, {"error": f"unknown call {kind}"})

    def _leader_known(self) -> bool:
        """The real shell's `leader_known`: it leads (MasterElected applied) or knows another leader."""
        if self.shell is not None and self.shell.is_leading():
            return True
        return self.leader_hint() not in (None, self.name)

    def to_leader(self) -> tuple[int, dict]:
        """307 to the leader this master knows, or 503 (common.to_leader's twin)."""
        leader = self.leader_hint()
        if leader is None or leader == self.name:
            return 503, {"error": "no leading master is elected yet; retry shortly"}
        return 307, {"leader": leader}

    def answer_proposal(self, result, reply, on_success) -> None:
        """common.propose's error mapping: NotLeader -> 307/503, other LogErrors -> 503."""
        if isinstance(result, NotLeader):
            reply(*self.to_leader())
        elif isinstance(result, LogError):
            reply(503, {"error": str(result), "retry": "safe" if result.safe_to_retry else "idempotent-only"})
        else:
            on_success(result)

    # -- the named-log API (twin of mesos_es/master/http/logs.py) -------------------------------
    def log_append(self, body: dict, reply) -> None:
        if not self.consensus.is_leader(self.name):
            reply(*self.to_leader())
            return
        name, key, data = body["log"], body.get("key", ""), body["data"]
        problem = named_logs.log_name_problem(name) or named_logs.idempotency_key_problem(key)
        if problem:
            reply(400, {"error": problem})
            return
        existing = self.state.logs.get(name)
        if key and existing is not None and key in existing.recent_keys:
            reply(200, {"position": existing.recent_keys[key], "duplicate": True})
            return
        event = events_pb2.Event(log_entry_appended=events_pb2.LogEntryAppended(log=name, data=data,
                                                                                idempotency_key=key))
        if self.plant == "send-before-commit":
            # The planted bug: answer before the entry is committed.
            log = self.state.logs.get(name)
            reply(200, {"position": (log.ending if log else 0) + 1, "duplicate": False})
            reply = _ignore

        def done(result) -> None:
            def success(proposed) -> None:
                outcome = proposed.result
                if isinstance(outcome, Appended):
                    reply(200, {"position": outcome.position, "duplicate": outcome.duplicate})
                else:
                    reply(400, {"error": repr(outcome)})
            self.answer_proposal(result, reply, success)

        self.propose(event, done)

    def log_read(self, body: dict, reply) -> None:
        """A whole named log. `strong`: the leader, after a Raft round; `eventual`: this
        master's own state."""
        name = body["log"]
        if body.get("consistency") != "strong":
            self._answer_read(name, reply)
            return
        if not self.consensus.is_leader(self.name):
            reply(*self.to_leader())
            return
        epoch = self.epoch

        def after_barrier(ok: bool) -> None:
            if not self.alive or self.epoch != epoch:
                return
            if not ok:
                reply(*self.to_leader()) if not self.consensus.is_leader(self.name) else reply(
                    503, {"error": "could not confirm leadership"})
                return
            self._answer_read(name, reply)

        self.consensus.barrier(self.name, after_barrier)

    def _answer_read(self, name: str, reply) -> None:
        try:
            wanted = named_logs.read_range(self.state, name, None, None, 100_000)
        except named_logs.UnknownLog:
            reply(404, {"error": f"unknown log {name!r}", "applied_position": self.state.position})
            return
        entries = []
        for position, log_position in wanted:
            event = events_pb2.Event.FromString(self.consensus.payload(log_position))
            entries.append((position, base64.b64encode(event.log_entry_appended.data).decode()))
        log = self.state.logs[name]
        reply(200, {"entries": entries, "beginning": log.beginning, "ending": log.ending,
                    "applied_position": self.state.position})


def _ignore(*args) -> None:
    pass


def _summary(outcome) -> str:
    if isinstance(outcome, Rejected):
        return f"rejected ({outcome.reason})"
    if isinstance(outcome, Applied):
        effects = ", ".join(sorted({type(e).__name__ for e in outcome.effects}))
        return "applied" + (f", effects {effects}" if effects else "") + (f" ({outcome.note})" if outcome.note else "")
    return type(outcome).__name__.lower()
