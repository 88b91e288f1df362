"""One simulated run: build the cluster from a seed, run the safety phase (workload and
faults), heal, run the liveness phase until the workload is done, then check everything.

`run_seed(seed)` is the whole of it; `mesos-es chaos sim` calls it once per seed. Sizes are
small on purpose (3 or 5 masters, 2-3 agents, 1-2 frameworks with a few jobs, a few log
appends, 20-40 simulated seconds of faults) so that hundreds of seeds run in seconds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from chaos.sim import checks
from chaos.sim.agent import SimAgent
from chaos.sim.consensus import Consensus, ModelError, Timing
from chaos.sim.faults import Nemesis
from chaos.sim.framework import Job, SimFramework
from chaos.sim.logclient import SimLogClient
from chaos.sim.master import SimConfig, SimMaster
from chaos.sim.net import Network
from chaos.sim.observe import Observations
from chaos.sim.world import World
from mesos_es.core import digest as canonical
from mesos_es.core.resources import parse_text
from mesos_es.pb import mesos_pb2

LIVENESS_CAP_MS = 240_000
# Planted bugs of the simulated leader, for the tests that prove the harness can fail.
PLANTS = {
    "send-before-commit": "the leader forwards an agent's status update to its framework, and answers a log "
                          "append, before the event is committed",
}


@dataclass(frozen=True)
class Options:
    """What the command line chooses for every seed; the rest is drawn from the seed."""

    masters: int = 3
    faults: bool = True
    allow_quorum_loss: bool = False
    plant: str = ""  # a planted bug of the simulated leader (PLANTS), for the harness's own tests
    keep_trace: bool = False


@dataclass
class Params:
    """What the seed drew, printed with a failing seed."""

    masters: int
    agents: list[str]
    frameworks: list[str]
    appends: int
    safety_ms: int
    fault_gap_ms: tuple[int, int]
    delay_ms: tuple[int, int]
    drop: float
    dup: float

    def describe(self) -> str:
        return (f"{self.masters} masters, agents {', '.join(self.agents)}; frameworks {'; '.join(self.frameworks)}; "
                f"{self.appends} log appends; {self.safety_ms / 1000:g} s of faults every "
                f"{self.fault_gap_ms[0] / 1000:g}-{self.fault_gap_ms[1] / 1000:g} s; network "
                f"{self.delay_ms[0]}-{self.delay_ms[1]} ms, drop {self.drop:g}, dup {self.dup:g}")


@dataclass
class Cluster:
    world: World
    net: Network
    consensus: Consensus
    masters: list[SimMaster]
    agents: list[SimAgent]
    frameworks: list[SimFramework]
    client: SimLogClient
    observations: Observations
    nemesis: Nemesis
    options: Options
    params: Params
    converged: bool = False
    safety_end_ms: int = 0


@dataclass
class SeedResult:
    seed: int
    ok: bool
    checks: list[checks.Check]
    params: str
    stats: dict
    trace_digest: str
    history_digest: str
    state_digest: str
    faults: list[str] = field(default_factory=list)
    trace: list[str] = field(default_factory=list)
    error: str = ""

    def failures(self) -> list[str]:
        out = [f"{c.name}: {e}" for c in self.checks if not c.ok for e in c.evidence[:5]]
        return ([f"error: {self.error}"] if self.error else []) + out

    def to_json(self) -> dict:
        return {"seed": self.seed, "ok": self.ok, "params": self.params, "stats": self.stats,
                "checks": {c.name: c.to_json() for c in self.checks}, "faults": self.faults,
                "trace_digest": self.trace_digest, "history_digest": self.history_digest,
                "state_digest": self.state_digest, **({"error": self.error} if self.error else {}),
                **({"trace": self.trace} if self.trace else {})}


def build(seed: int, options: Options) -> Cluster:
    world = World(seed, keep_trace=options.keep_trace)
    rng = world.rng
    net = Network(world)
    net.delay_ms = (1, rng.randint(3, 15))
    net.drop = rng.choice((0.0, 0.01, 0.03))
    net.dup = rng.choice((0.0, 0.01, 0.03))
    net.reset = 0.002
    observations = Observations()
    names = [f"m{i}" for i in range(1, options.masters + 1)]
    masters = []
    for name in names:
        master = SimMaster(world, net, name, SimConfig(id=name, address=f"{name}:5050"), observations, options.plant)
        master.clock_offset_ms = rng.randint(-500, 500)  # the masters' clocks are not in step
        net.add(master)
        masters.append(master)
    consensus = Consensus(world, net, masters, Timing())
    for master in masters:
        master.consensus = consensus
    ping_ms = int(masters[0].config.agent_ping_timeout_s * 1000)
    heartbeat_ms = int(masters[0].config.heartbeat_interval_s * 1000)
    agents = []
    for i in range(1, rng.randint(2, 3) + 1):
        resources = parse_text(f"cpus:{rng.randint(2, 4)};mem:{rng.choice((1024, 2048, 4096))}")
        agent = SimAgent(world, net, f"a{i}", resources, names, observations, ping_ms)
        net.add(agent)
        agents.append(agent)
    frameworks = []
    for i in range(1, rng.randint(1, 2) + 1):
        jobs = []
        for j in range(1, rng.randint(2, 4) + 1):
            resources = parse_text(f"cpus:{rng.choice((0.5, 1))};mem:{rng.choice((128, 256, 512))}")
            kill_after = rng.randint(500, 3_000) if world.chance(0.25) else None
            jobs.append(Job(f"j{j}", resources, float(rng.randint(1, 8)), kill_after))
        framework = SimFramework(world, net, f"f{i}", names, jobs, f"r{i}", world.chance(0.5), observations,
                                 heartbeat_ms)
        net.add(framework)
        frameworks.append(framework)
    client = SimLogClient(world, net, "c1", names, rng.randint(4, 10), (1_000, 4_000))
    net.add(client)
    gap = (1_500, 5_000)
    nemesis = Nemesis(world, net, consensus, masters, agents, [*agents, *frameworks, client], gap,
                      options.allow_quorum_loss)
    params = Params(
        masters=options.masters,
        agents=[f"{a.name} ({_text(a.resources)})" for a in agents],
        frameworks=[f"{f.name} ({len(f.jobs)} jobs{', partition-aware' if f.partition_aware else ''})" for f in frameworks],
        appends=client.count, safety_ms=rng.randint(20_000, 40_000), fault_gap_ms=gap, delay_ms=net.delay_ms,
        drop=net.drop, dup=net.dup)
    return Cluster(world, net, consensus, masters, agents, frameworks, client, observations, nemesis, options, params)


def _text(resources) -> str:
    from mesos_es.core.resources import to_text

    return to_text(resources)


def run_seed(seed: int, options: Options | None = None, prepare: Callable[[Cluster], None] | None = None) -> SeedResult:
    """One run. `prepare(cluster)`, for targeted tests, may tamper with the cluster first."""
    options = options or Options()
    cluster = build(seed, options)
    if prepare is not None:
        prepare(cluster)
    error = ""
    try:
        _run(cluster)
    except ModelError as e:
        error = f"the simulator's consensus model broke a rule: {e}"
    results, facts = checks.run_all(cluster) if not error else ([], checks.History())
    world = cluster.world
    history = cluster.consensus.history
    leader = cluster.consensus.current_leader()
    state_digest = canonical.digest(leader.node.state) if leader is not None else ""
    history_digest = history[-1].chain_hash.hex() if history else ""
    trace_digest = hashlib.sha256(f"{world.trace_digest()} {history_digest} {state_digest}".encode()).hexdigest()
    consensus_stats = cluster.consensus.stats
    stats = {
        "sim_ms": world.now, "safety_ms": cluster.safety_end_ms, "steps": world.steps, "positions": len(history),
        "elections": consensus_stats["elections"], "undecided_kept": consensus_stats["kept"],
        "undecided_lost": consensus_stats["lost"], "messages": cluster.net.sent, "dropped": cluster.net.dropped,
        "faults": dict(sorted(cluster.nemesis.counts.items())),
        "tasks": sum(len(f.tasks) for f in cluster.frameworks),
        "appends": len(cluster.client.appends),
        "events": dict(sorted(facts.kinds.items())),
    }
    ok = not error and all(c.ok for c in results)
    return SeedResult(seed, ok, results, cluster.params.describe(), stats, trace_digest, history_digest,
                      state_digest, list(cluster.nemesis.injected), list(world.trace), error)


def _run(cluster: Cluster) -> None:
    world, rng = cluster.world, cluster.world.rng
    world.at(0, cluster.consensus.reassess)  # the first election
    for agent in cluster.agents:
        world.at(rng.randint(0, 500), agent.start)
    for framework in cluster.frameworks:
        world.at(rng.randint(200, 2_000), framework.start)
    world.at(rng.randint(500, 3_000), cluster.client.start)
    if cluster.options.faults:
        cluster.nemesis.start()
    safety_ms = cluster.params.safety_ms
    world.run(safety_ms)
    cluster.safety_end_ms = world.now
    cluster.nemesis.heal_all()
    cluster.client.finish()
    cluster.converged = world.run(safety_ms + LIVENESS_CAP_MS, stop=lambda: converged(cluster))


def converged(cluster: Cluster) -> bool:
    """The liveness goal: one active leader, every master caught up, every job done and every
    task terminal as its framework was told, nothing unacknowledged anywhere, every log append
    acknowledged and read back."""
    return not pending(cluster)


def pending(cluster: Cluster) -> list[str]:
    consensus = cluster.consensus
    leader = consensus.current_leader()
    out = []
    if leader is None or leader.node.shell is None or not leader.node.shell.active:
        out.append("no active leader")
    for master in cluster.masters:
        if not master.alive or master.applied < len(consensus.history):
            out.append(f"{master.name} at {master.applied} of {len(consensus.history)}")
    if out:
        return out
    for node in [*cluster.frameworks, *cluster.agents, cluster.client]:
        out += [f"{node.name}: {what}" for what in node.busy()]
    for framework_id, framework in sorted(leader.node.state.cluster.frameworks.items()):
        for task_id, task in sorted(framework.tasks.items()):
            out.append(f"master: task {task_id} {mesos_pb2.TaskState.Name(task.state)} with "
                       f"{len(task.unacknowledged)} unacknowledged updates")
    return out
