"""Scenarios and their fault schedules: pure, drawn from `random.Random(seed)` alone.

A schedule is a list of `Fault`s planned before the run starts and printed first, so a
seed names the same faults at the same planned times on every machine. Targets that depend
on the running cluster ("the leader", "the second follower") are named by role and resolved
when the fault is injected; the real processes' interleaving is not reproducible (that is
what `chaos sim` is for), the faults are.

Faults on masters run one after another (an episode is injected, held, recovered, and the
cluster must have a leader again before the next one starts), so no episode takes more than
a minority of the masters away: a kill or pause takes one master, a partition isolates at
most a minority. Agent faults have their own track in `mixed` and may overlap master faults.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

# What each kind of fault does; the runner (chaos/procs/faults.py) implements each one.
KINDS = {
    "kill-leader": "SIGKILL the leader; start it again from its work dir after hold_s",
    "kill-master": "SIGKILL one master (by name: leader or follower, whichever it is then); restart after hold_s",
    "restart-leader": "SIGTERM the leader (a clean stop); start it again from its work dir after hold_s",
    "pause-leader": "SIGSTOP the leader (its Raft process too) for hold_s, then SIGCONT (a frozen VM)",
    "kill-agent": "SIGKILL one agent (its tasks keep running); restart it after hold_s (recovery from its checkpoint)",
    "partition": "cut the Raft traffic between two groups of masters for hold_s, then heal",
}

# Partitions, named relative to the leader when they start (`pick` chooses a follower).
PARTITIONS = {
    "isolate-leader": "the leader alone | every other master",
    "isolate-follower": "one follower alone | every other master (the leader keeps its majority)",
    "leader-minority": "the leader and followers up to a minority | the rest (5 masters or more)",
    "cut-leader-link": "only the link between the leader and one follower (a non-transitive partition)",
}


@dataclass(frozen=True)
class Fault:
    at_s: float  # planned start, seconds after the workload started
    kind: str  # a key of KINDS
    target: str  # "leader", "master-2", "agent-1", or a key of PARTITIONS
    hold_s: float  # down time, pause or partition length, before the recovery
    pick: int = 0  # partitions: which follower(s), an index into the followers sorted by name
    track: str = "masters"  # "masters" or "agents": faults of one track never overlap

    def describe(self) -> str:
        what = self.target if self.kind != "partition" else f"{self.target} (pick {self.pick})"
        return f"t+{self.at_s:6.1f}s  {self.kind:<14} {what:<28} hold {self.hold_s:4.1f}s"

    def to_json(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Scenario:
    name: str
    doc: str
    masters: int
    agents: int
    default_duration_s: float
    # (kind, weight) of the master track; empty: no master faults
    master_faults: tuple[tuple[str, float], ...] = ()
    partitions: tuple[str, ...] = ()  # the partition targets drawn from
    hold_s: tuple[float, float] = (3.0, 8.0)  # master faults' hold, uniform
    gap_s: tuple[float, float] = (12.0, 20.0)  # from one master fault's planned end to the next's start
    agent_every_s: tuple[float, float] | None = None  # agent track: gap between agent kills, uniform
    agent_hold_s: tuple[float, float] = (1.0, 6.0)
    first_at_s: tuple[float, float] = (5.0, 8.0)
    quiet_tail_s: float = 5.0  # no fault planned to end later than this before the end
    fixed: tuple[Fault, ...] = ()  # a scripted schedule (fractions of the duration in at_s), instead of drawn
    # Flags every master gets (before --master-flag's), e.g. faster agent pings.
    master_flags: tuple[tuple[str, str], ...] = ()

    @property
    def uses_partitions(self) -> bool:
        return any(kind == "partition" for kind, _ in self.master_faults) or any(
            f.kind == "partition" for f in self.fixed)


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario(
        name="smoke",
        doc="One leader SIGKILL (restarted from disk) and one leader SIGSTOP pause, on 3 masters and 2 agents: "
            "the CI run, about a minute all told.",
        masters=3, agents=2, default_duration_s=24.0,
        fixed=(Fault(at_s=0.2, kind="kill-leader", target="leader", hold_s=3.0),
               Fault(at_s=0.55, kind="pause-leader", target="leader", hold_s=4.0)),
    ),
    Scenario(
        name="leader-kills",
        doc="SIGKILL of the leader again and again, each restarted from its work dir 3-8 s later; the next kill "
            "once the cluster has a leader again and 12-20 s have passed. 3 masters, 2 agents. About 25 kills in "
            "10 minutes.",
        masters=3, agents=2, default_duration_s=120.0,
        master_faults=(("kill-leader", 1.0),), hold_s=(3.0, 8.0), gap_s=(12.0, 18.0),
    ),
    Scenario(
        name="pauses",
        doc="SIGSTOP of the leader for 3-12 s (well past the 1-2 s election timeout), then SIGCONT: the old "
            "leader wakes up behind a new term and must step down without acting on what it held. 3 masters.",
        masters=3, agents=2, default_duration_s=120.0,
        master_faults=(("pause-leader", 1.0),), hold_s=(3.0, 12.0), gap_s=(12.0, 20.0),
    ),
    Scenario(
        name="fast-pings",
        doc="The pauses with 2 s agent pings (unreachable after 10 s): the agents leave the paused leader for "
            "the new one once a ping is overdue, and the paused leader, resumed after 6-14 s, has every agent "
            "silent for longer than the unreachable threshold and offers on a stale state; none of what it "
            "decides before it hears of the new term may be committed. 3 masters.",
        masters=3, agents=2, default_duration_s=120.0,
        master_faults=(("pause-leader", 1.0),), hold_s=(6.0, 14.0), gap_s=(12.0, 20.0),
        master_flags=(("agent_ping_timeout_s", "2"),),
    ),
    Scenario(
        name="agents",
        doc="SIGKILL of an agent (its tasks keep running), restarted 1-6 s later from its checkpoint, every "
            "6-14 s; the masters are left alone. Outages stay well under the masters' unreachable threshold "
            "(missed pings), so no task may be reported lost.",
        masters=3, agents=3, default_duration_s=120.0,
        agent_every_s=(6.0, 14.0), agent_hold_s=(1.0, 6.0),
    ),
    Scenario(
        name="partitions",
        doc="Raft partitions between the masters (through the harness's TCP proxy): the leader isolated, a "
            "follower isolated, the leader with one follower in a 2|3 minority, one leader-follower link cut; "
            "4-12 s each, then healed. 5 masters, 2 agents.",
        masters=5, agents=2, default_duration_s=150.0,
        master_faults=(("partition", 1.0),),
        partitions=("isolate-leader", "isolate-follower", "leader-minority", "cut-leader-link"),
        hold_s=(4.0, 12.0), gap_s=(12.0, 20.0),
    ),
    Scenario(
        name="mixed",
        doc="Everything: leader kills, kills of any master, clean leader restarts, leader pauses and Raft "
            "partitions on the master track; agent kills and restarts on their own track, overlapping. "
            "3 masters behind the proxy, 2 agents.",
        masters=3, agents=2, default_duration_s=180.0,
        master_faults=(("kill-leader", 3.0), ("kill-master", 2.0), ("restart-leader", 1.0),
                       ("pause-leader", 2.0), ("partition", 2.0)),
        partitions=("isolate-leader", "isolate-follower", "cut-leader-link"),
        hold_s=(3.0, 9.0), gap_s=(10.0, 18.0), agent_every_s=(15.0, 30.0), agent_hold_s=(1.0, 6.0),
    ),
)}


def plan(scenario: Scenario, seed: int, duration_s: float, masters: int | None = None,
         agents: int | None = None) -> list[Fault]:
    """The scenario's faults for this seed and duration, in planned order."""
    rng = random.Random(seed)
    masters = masters or scenario.masters
    agents = scenario.agents if agents is None else agents
    if scenario.fixed:
        return [Fault(at_s=round(f.at_s * duration_s, 1), kind=f.kind, target=f.target, hold_s=f.hold_s,
                      pick=f.pick, track=f.track) for f in scenario.fixed]
    faults: list[Fault] = []
    end = duration_s - scenario.quiet_tail_s
    if scenario.master_faults:
        kinds = [k for k, _ in scenario.master_faults]
        weights = [w for _, w in scenario.master_faults]
        partitions = [p for p in scenario.partitions if masters >= 5 or p != "leader-minority"]
        at = rng.uniform(*scenario.first_at_s)
        while True:
            kind = rng.choices(kinds, weights)[0]
            hold = round(rng.uniform(*scenario.hold_s), 1)
            target, pick = "leader", 0
            if kind == "kill-master":
                target = f"master-{rng.randrange(masters) + 1}"
            elif kind == "partition":
                target = rng.choice(partitions)
                pick = rng.randrange(masters - 1)
            if at + hold > end:
                break
            faults.append(Fault(at_s=round(at, 1), kind=kind, target=target, hold_s=hold, pick=pick))
            at += hold + rng.uniform(*scenario.gap_s)
    if scenario.agent_every_s and agents:
        at = rng.uniform(*scenario.first_at_s)
        while True:
            hold = round(rng.uniform(*scenario.agent_hold_s), 1)
            if at + hold > end:
                break
            faults.append(Fault(at_s=round(at, 1), kind="kill-agent", target=f"agent-{rng.randrange(agents) + 1}",
                                hold_s=hold, track="agents"))
            at += hold + rng.uniform(*scenario.agent_every_s)
    return sorted(faults, key=lambda f: (f.at_s, f.track))


def partition_groups(target: str, pick: int, leader: str, masters: list[str]) -> list[tuple[str, str]]:
    """The pairs of masters whose Raft link a partition cuts, given who leads now."""
    followers = sorted(m for m in masters if m != leader)
    if not followers:
        return []
    chosen = followers[pick % len(followers)]
    if target == "isolate-leader":
        side = {leader}
    elif target == "isolate-follower":
        side = {chosen}
    elif target == "leader-minority":
        minority = (len(masters) - 1) // 2
        rotated = followers[pick % len(followers):] + followers[:pick % len(followers)]
        side = {leader, *rotated[:minority - 1]}
    elif target == "cut-leader-link":
        return [tuple(sorted((leader, chosen)))]
    else:
        raise ValueError(f"unknown partition {target!r}")
    return sorted(tuple(sorted((a, b))) for a in side for b in masters if b not in side)


def masters_cut_off(pairs: list[tuple[str, str]], masters: list[str]) -> int:
    """How many masters are outside the largest group whose members all still reach each other:
    a leader needs a majority it reaches directly, so this is what a partition takes away."""
    cut = {frozenset(p) for p in pairs}
    best = 0
    for mask in range(1, 1 << len(masters)):
        group = [m for i, m in enumerate(masters) if mask >> i & 1]
        if len(group) > best and all(frozenset((a, b)) not in cut for i, a in enumerate(group) for b in group[i + 1:]):
            best = len(group)
    return len(masters) - best


def most_masters_down(faults: list[Fault], masters: int) -> int:
    """The most masters one episode of this schedule takes away from the majority (master faults
    run one at a time). The plans keep it a minority; tests check that."""
    names = [f"master-{i + 1}" for i in range(masters)]
    worst = 0
    for fault in faults:
        if fault.track != "masters":
            continue
        if fault.kind == "partition":
            for leader in names:  # whoever leads then
                worst = max(worst, masters_cut_off(partition_groups(fault.target, fault.pick, leader, names), names))
        else:
            worst = max(worst, 1)
    return worst


def format_schedule(scenario: Scenario, seed: int, duration_s: float, faults: list[Fault], masters: int,
                    agents: int) -> str:
    lines = [(f"chaos run: seed {seed}, scenario {scenario.name}, duration {duration_s:g} s, "
              f"{masters} masters, {agents} agents, {len(faults)} faults planned"),
             f"  {scenario.doc}"]
    lines += [f"  {i + 1:3d}. {f.describe()}" for i, f in enumerate(faults)]
    return "\n".join(lines)

