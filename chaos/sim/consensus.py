"""The replicated log, modelled above consensus (what Raft guarantees, not how).

The simulator does not run pysyncobj; it keeps the facts a Raft log gives the master and
lets the seed choose among the outcomes Raft allows:

* One committed **history** of entries with contiguous positions and the same hash chain as
  the real log (`mesos_es.log.chain`). Each master holds a durable prefix of it (`log_len`:
  what it received and persisted) and has folded a prefix of that (`node.applied`).
* A **leader per term**. A proposal commits after a short, seeded delay, in order, and only
  while its leader still leads the current term and reaches a live majority; the followers it
  reaches hold the entry from then on, and apply it when it reaches them (a per-replica delay).
* A leader that loses its majority goes on believing it leads until it hears of a higher term
  or its fallback timeout passes (pysyncobj's `leaderFallbackTimeout`); its proposals wait.
* An **election** happens only among live masters that no longer hear a leader, after an
  election timeout (or at once, 50-200 ms, when the leader crashed: its connections close
  with it), and is won only with the votes of a live, connected majority whose logs are no
  longer than the winner's, so the winner holds every committed entry (checked), and none of
  whom still hears a leader (the pre-vote: a master cut off from a leader the others hear
  cannot depose it).
* Proposals still in flight when their leader loses its term have an **unknown outcome**: the
  seed decides whether the next leader commits a prefix of those that may have reached a
  majority (as Raft can) or they are lost; their proposer only hears OutcomeUnknown.
* A crashed master keeps its durable `log_len`; on restart it folds it again and catches up
  from the leader once connected.

Everything is event driven: nothing ticks; a change of topology (a cut, a heal, a crash, a
restart) re-evaluates who hears whom.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from chaos.sim.net import Network
from chaos.sim.world import Timer, World
from mesos_es.log.chain import GENESIS_HASH, chain_hash
from mesos_es.log.interface import Committed, NotLeader, OutcomeUnknown, Proposed


class ModelError(AssertionError):
    """The consensus model broke one of its own rules: a bug in the simulator."""


@dataclass
class Proposal:
    leader: str
    term: int
    payload: bytes
    on_done: Callable | None
    ready_at: int
    # Proposed while its leader reached a majority: it may have reached one, so a later
    # leader may commit it.
    replicable: bool


@dataclass
class Member:
    name: str
    node: object  # the SimMaster
    log_len: int = 0
    term: int = 0
    leading: bool = False
    known_leader: str | None = None
    quorum_lost_at: int | None = None
    fallback: Timer | None = None
    stale: list[Proposal] = field(default_factory=list)  # proposed in a term it no longer leads


@dataclass
class Timing:
    election_ms: tuple[int, int] = (1_000, 2_000)
    # When the leader crashed: the survivors see its connections close and ask for pre-votes
    # within 50 ms, then vote (mesos_es/log/raft.py).
    crashed_leader_election_ms: tuple[int, int] = (50, 200)
    fallback_ms: int = 4_000  # pysyncobj's leaderFallbackTimeout: 2 x the longest election timeout
    commit_ms: tuple[int, int] = (1, 10)
    slow_commit: float = 0.1
    slow_commit_ms: tuple[int, int] = (20, 200)


class Consensus:
    def __init__(self, world: World, net: Network, masters: list, timing: Timing):
        self.world = world
        self.net = net
        self.timing = timing
        self.members = {m.name: Member(m.name, m) for m in masters}
        self.names = sorted(self.members)
        self.quorum = len(masters) // 2 + 1
        self.history: list[Committed] = []
        self.commit_ms: list[int] = []  # sim time each position was committed
        self.term = 0
        self.leader: str | None = None  # leader of self.term
        self.inflight: list[Proposal] = []
        self._election: Timer | None = None
        self._commit_timer: Timer | None = None
        # A nemesis hook: called with the leader's name when it proposes, if set.
        self.on_next_proposal: Callable[[str, int], None] | None = None
        self.stats = {"elections": 0, "kept": 0, "lost": 0, "stepped_down": 0}
        net.on_change.append(self.reassess)

    # -- queries ----------------------------------------------------------------------------------
    def reaches_quorum(self, name: str) -> bool:
        return sum(1 for other in self.names if self.net.connected(name, other)) >= self.quorum

    def current_leader(self) -> Member | None:
        """The leader of the current term, if it is alive and believes it leads."""
        if self.leader is None:
            return None
        member = self.members[self.leader]
        if member.node.alive and member.leading and member.term == self.term:
            return member
        return None

    def is_leader(self, name: str) -> bool:
        member = self.members[name]
        return member.leading

    def known_leader(self, name: str) -> str | None:
        return self.members[name].known_leader

    def payload(self, position: int) -> bytes:
        return self.history[position - 1].payload

    # -- proposals --------------------------------------------------------------------------------
    def propose(self, name: str, payload: bytes, on_done: Callable) -> None:
        """`on_done(Proposed)` once committed and applied on the proposer, or
        `on_done(LogError)`: NotLeader at once, OutcomeUnknown when its leader steps down."""
        member = self.members[name]
        if not member.leading:
            on_done(NotLeader(member.known_leader))
            return
        t = self.timing
        delay = (self.world.uniform_ms(*t.slow_commit_ms) if self.world.chance(t.slow_commit)
                 else self.world.uniform_ms(*t.commit_ms))
        proposal = Proposal(name, member.term, payload, on_done, self.world.now + delay,
                            replicable=member.term == self.term and self.reaches_quorum(name))
        if member.term != self.term:
            member.stale.append(proposal)  # a deposed leader that does not know it yet
            return
        self.inflight.append(proposal)
        self._schedule_commit(delay)
        if self.on_next_proposal is not None:
            hook, self.on_next_proposal = self.on_next_proposal, None
            hook(name, delay)

    def _schedule_commit(self, delay: int) -> None:
        at = self.world.now + delay
        if self._commit_timer is not None and not self._commit_timer.cancelled and self._commit_timer.at <= at:
            return
        if self._commit_timer is not None:
            self._commit_timer.cancel()
        self._commit_timer = self.world.at(delay, self._try_commit)

    def _try_commit(self) -> None:
        self._commit_timer = None
        leader = self.current_leader()
        if leader is None or not self.inflight or not self.reaches_quorum(leader.name):
            return  # waits for the majority to come back, or for the next election
        now = self.world.now
        while self.inflight and self.inflight[0].ready_at <= now:
            proposal = self.inflight.pop(0)
            position, outcome = self._commit(proposal.payload, leader)
            if proposal.on_done is not None:
                callback, proposal.on_done = proposal.on_done, None
                callback(Proposed(position, outcome))
            leader = self.current_leader()
            if leader is None:
                return  # the callback's effects crashed it (a nemesis hook)
        if self.inflight:
            self._schedule_commit(self.inflight[0].ready_at - now)

    def _commit(self, payload: bytes, leader: Member) -> tuple[int, object]:
        """Append to the history; the leader and every follower it reaches now hold the entry
        (they are the majority), the leader applies it at once, the others when it reaches them."""
        previous = self.history[-1].chain_hash if self.history else GENESIS_HASH
        position = len(self.history) + 1
        self.history.append(Committed(position, payload, chain_hash(previous, position, payload)))
        self.commit_ms.append(self.world.now)
        for name in self.names:
            if self.net.connected(leader.name, name):
                self.members[name].log_len = position
        outcome = leader.node.deliver(position)
        for name in self.names:
            if name != leader.name and self.net.connected(leader.name, name):
                self._replicate(self.members[name], position)
        return position, outcome

    def _replicate(self, member: Member, upto: int) -> None:
        node = member.node
        self.world.at(self.net.delay(), self._deliver, member, node.epoch, upto)

    def _deliver(self, member: Member, epoch: int, upto: int) -> None:
        node = member.node
        if not node.alive or node.epoch != epoch:
            return
        leader = self.current_leader()
        if leader is not None and self.net.connected(leader.name, member.name):
            member.log_len = max(member.log_len, upto)
            member.known_leader = leader.name
            member.term = max(member.term, self.term)
        node.deliver(min(upto, member.log_len))

    def barrier(self, name: str, on_done: Callable[[bool], None]) -> None:
        """A Raft round that proves `name` still leads (a strong read's barrier)."""
        self.world.at(2 * self.net.delay(), self._barrier_done, name, self.members[name].node.epoch, on_done)

    def _barrier_done(self, name: str, epoch: int, on_done: Callable[[bool], None]) -> None:
        member = self.members[name]
        if not member.node.alive or member.node.epoch != epoch:
            return
        on_done(member.leading and member.term == self.term and self.reaches_quorum(name))

    # -- who hears whom ---------------------------------------------------------------------------
    def reassess(self) -> None:
        """After any change of topology: masters learn of the current term from whoever they
        hear, deposed leaders that hear of it step down, a leader that lost its majority starts
        its fallback clock, lagging followers catch up, and an election is due if some live
        master hears no leader."""
        leader = self.current_leader()
        for name in self.names:
            member = self.members[name]
            if not member.node.alive:
                continue
            if not member.leading and (leader is None or not self.net.connected(leader.name, name)):
                member.known_leader = None  # it hears no leader (pysyncobj forgets it when it stands)
            if member.leading and member.term < self.term and any(
                    self.members[o].term > member.term and self.members[o].node.alive
                    and self.net.connected(name, o) for o in self.names):
                self._step_down(member, "heard of a newer term")
        if leader is not None:
            for name in self.names:
                member = self.members[name]
                if name == leader.name or not self.net.connected(leader.name, name):
                    continue
                member.term, member.known_leader = self.term, leader.name
                if member.leading:
                    self._step_down(member, "heard the current leader")
                if member.node.applied < len(self.history):
                    self._replicate(member, len(self.history))
            if self.reaches_quorum(leader.name):
                leader.quorum_lost_at = None
                if leader.fallback is not None:
                    leader.fallback.cancel()
                    leader.fallback = None
                if self.inflight:
                    self._schedule_commit(max(0, self.inflight[0].ready_at - self.world.now))
            elif leader.quorum_lost_at is None:
                leader.quorum_lost_at = self.world.now
                leader.fallback = self.world.at(self.timing.fallback_ms, self._fall_back, leader, self.term)
        if not self._election_due(leader):
            return
        crashed = self.leader is not None and not self.members[self.leader].node.alive
        if self._election is not None and not crashed:
            return
        delay = self.world.uniform_ms(*(self.timing.crashed_leader_election_ms if crashed else self.timing.election_ms))
        if self._election is not None:
            if self._election.at <= self.world.now + delay:
                return
            self._election.cancel()  # the leader crashed while an election was further off
        self._election = self.world.at(delay, self._elect)

    def _election_due(self, leader: Member | None) -> bool:
        return any(self._candidate(self.members[n], leader) for n in self.names)

    def _candidate(self, member: Member, leader: Member | None) -> bool:
        """A live master that hears no leader and reaches a majority may stand."""
        if not member.node.alive:
            return False
        if leader is not None and self.net.connected(leader.name, member.name):
            return False
        return self.reaches_quorum(member.name)

    def _fall_back(self, member: Member, term: int) -> None:
        member.fallback = None
        if member.leading and member.term == term and member.quorum_lost_at is not None:
            self._step_down(member, "no majority within the fallback timeout")
            self.reassess()

    def _elect(self) -> None:
        self._election = None
        leader = self.current_leader()
        candidates = [self.members[n] for n in self.names if self._candidate(self.members[n], leader)]
        self.world.rng.shuffle(candidates)  # whose election timeout fires first
        for candidate in candidates:
            # Pre-vote: a master that still hears the leader says no.
            voters = [self.members[n] for n in self.names
                      if self.net.connected(candidate.name, n) and self.members[n].log_len <= candidate.log_len
                      and (leader is None or n == candidate.name or not self.net.connected(leader.name, n))]
            if len(voters) >= self.quorum:
                self._won(candidate, voters)
                return
        self.reassess()

    def _won(self, winner: Member, voters: list[Member]) -> None:
        if winner.log_len < len(self.history):
            raise ModelError(f"{winner.name} won term {self.term + 1} holding {winner.log_len} of "
                             f"{len(self.history)} committed entries")
        old = self.leader
        self.term += 1
        self.leader = winner.name
        self.stats["elections"] += 1
        for voter in voters:
            voter.term, voter.known_leader = self.term, winner.name
            if voter.leading and voter is not winner:
                self._step_down(voter, "voted in a newer term")
        winner.leading = True
        winner.quorum_lost_at = None
        winner.node.log(f"elected: term {self.term} (previous leader {old or '-'}, log {winner.log_len})")
        # The previous term's undecided proposals: those that may have reached a majority are
        # committed first by the new leader, as a prefix, or lost; the seed decides.
        undecided, self.inflight = self.inflight, []
        replicable = 0
        while replicable < len(undecided) and undecided[replicable].replicable:
            replicable += 1
        kept = replicable if replicable and self.world.chance(0.5) else self.world.rng.randint(0, replicable)
        for proposal in undecided[:kept]:
            self._commit(proposal.payload, winner)
        for proposal in undecided:
            if proposal.on_done is not None:  # its proposer hears OutcomeUnknown when it steps down
                self.members[proposal.leader].stale.append(proposal)
        self.stats["kept"] += kept
        self.stats["lost"] += len(undecided) - kept
        if undecided:
            winner.node.log(f"previous term's undecided proposals: {kept} committed, {len(undecided) - kept} lost")
        winner.node.become_leader(self.term)
        self.reassess()

    def _step_down(self, member: Member, why: str) -> None:
        member.leading = False
        member.quorum_lost_at = None
        if member.fallback is not None:
            member.fallback.cancel()
            member.fallback = None
        self.stats["stepped_down"] += 1
        member.node.log(f"stepped down: {why}")
        member.node.step_down()
        failed = [p for p in self.inflight if p.leader == member.name] + member.stale
        member.stale = []
        for proposal in failed:
            if proposal.on_done is not None:
                callback, proposal.on_done = proposal.on_done, None
                callback(OutcomeUnknown("leadership changed before the entry was known to be committed"))

    # -- crashes ----------------------------------------------------------------------------------
    def crash(self, name: str) -> None:
        member = self.members[name]
        member.leading = False
        member.quorum_lost_at = None
        member.known_leader = None
        for proposal in self.inflight:
            if proposal.leader == name:
                proposal.on_done = None  # the proposer is gone; the entries' fate is undecided
        member.stale = []
        member.node.crash()
        self.net.changed()

    def restart(self, name: str) -> None:
        member = self.members[name]
        member.node.restart(member.log_len)
        self.net.changed()
