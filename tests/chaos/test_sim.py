"""The deterministic simulator (`mesos-es chaos sim`, chaos/sim): seeds pass, a seed replays
exactly, and the harness can fail: planted bugs are caught, and a failing seed fails again
the same way."""

import json
import os
import subprocess
import sys

import pytest

from chaos.sim import cli
from chaos.sim.consensus import Consensus, Timing
from chaos.sim.run import Options, run_seed
from chaos.sim.world import Node, World
from mesos_es.core import apply as apply_module
from mesos_es.log.interface import OutcomeUnknown, Proposed


def sim(*argv: str) -> int:
    import argparse

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(list(argv)))


def test_seeds_pass_and_the_output_names_the_parameters_then_each_seed(capsys):
    assert sim("--seeds", "200") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("chaos sim: 200 seeds from 0; 3 masters; faults ")
    assert lines[2].startswith("seed 0 ... ok (")
    assert lines[-1].startswith("200 seeds in ") and lines[-1].endswith("200 passed, 0 failed")


def test_seeds_pass_with_five_masters_and_without_faults():
    for seed in range(10):
        result = run_seed(seed, Options(masters=5))
        assert result.ok, (seed, result.failures())
        assert result.stats["faults"], "the nemesis injected nothing"
    for seed in range(5):
        result = run_seed(seed, Options(faults=False))
        assert result.ok and not result.stats["faults"] and result.stats["elections"] == 1, result.failures()


def test_a_seed_replays_exactly():
    first = run_seed(7, Options(keep_trace=True))
    again = run_seed(7, Options(keep_trace=True))
    assert first.trace == again.trace and len(first.trace) > 50
    assert (first.trace_digest, first.history_digest, first.state_digest) == (
        again.trace_digest, again.history_digest, again.state_digest)
    assert first.stats == again.stats
    other = run_seed(8, Options())
    assert other.trace_digest != first.trace_digest


def test_a_seed_replays_exactly_in_another_process_with_another_hash_seed():
    """Nothing depends on the order of a set of strings (PYTHONHASHSEED) or on the process."""
    digests = []
    for hash_seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-m", "mesos_es", "chaos", "sim", "--seeds", "2", "--first-seed", "11", "--json",
             ],
            capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONHASHSEED": hash_seed}, check=True)
        report = json.loads(out.stdout)
        digests.append([(r["seed"], r["trace_digest"], r["state_digest"]) for r in report["results"]])
    assert digests[0] == digests[1]
    assert run_seed(11, Options()).trace_digest == digests[0][0][1]


def test_a_leader_that_sends_before_commit_is_caught(capsys):
    """Planted bug (b): the simulated leader forwards updates and answers appends before commit."""
    for seed in range(5):
        result = run_seed(seed, Options(plant="send-before-commit"))
        failed = {c.name for c in result.checks if not c.ok}
        assert "causality" in failed, (seed, result.failures())
    assert sim("--seeds", "2", "--plant", "send-before-commit", "--json") == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["failed"] == [0, 1]
    assert report["replay"]["0"] == "mesos-es chaos sim --seeds 1 --first-seed 0 --plant send-before-commit --trace"


def test_an_applier_that_reads_the_clock_is_caught(monkeypatch):
    """Planted bug (a): replicas that fold the same event at different moments diverge."""
    import time

    real = apply_module.APPLIERS["framework_subscribed"]

    def reads_the_clock(state, position, event):
        outcome = real(state, position, event)
        framework = state.cluster.frameworks.get(event.framework_subscribed.framework_id)
        if framework is not None:
            framework.registered_at_ms = time.perf_counter_ns()
        return outcome

    monkeypatch.setitem(apply_module.APPLIERS, "framework_subscribed", reads_the_clock)
    for seed in range(3):
        result = run_seed(seed, Options(faults=False))
        replicas = next(c for c in result.checks if c.name == "replicas")
        assert not replicas.ok and "at position" in replicas.evidence[0], result.failures()


def test_a_failing_seed_fails_again_the_same_way():
    options = Options(plant="send-before-commit")
    first, again = run_seed(3, options), run_seed(3, options)
    assert not first.ok
    assert first.failures() == again.failures() and first.trace_digest == again.trace_digest


def lose_the_first_registered(cluster) -> None:
    """The connection of the first REGISTER resets as its REGISTERED is sent."""
    lost = []

    def reset(stream, event) -> bool:
        if stream.kind == "agent" and event["type"] == "REGISTERED" and not lost:
            lost.append(stream.owner)
            return True
        return False
    cluster.net.tamper_stream = reset


def duplicate_every_accept(cluster) -> None:
    """A retrying proxy: every ACCEPT reaches the master twice, 30 ms apart."""
    def tamper(a, b, args, delays):
        if len(args) == 6 and args[3] == "scheduler" and args[4]["call"]["type"] == "ACCEPT":
            return [delays[0], delays[0] + 30]
        return delays
    cluster.net.tamper = tamper


def kinds(cluster) -> list[str]:
    from mesos_es.pb import events_pb2

    return [events_pb2.Event.FromString(c.payload).WhichOneof("kind") for c in cluster.consensus.history]


def test_the_bugs_it_found_stay_fixed():
    """Two bugs the simulator found, provoked on purpose: a REGISTER sent again after its
    REGISTERED was lost made a second, ghost agent (fixed by the registration key); a second
    copy of an ACCEPT reported the tasks the first had launched as TASK_DROPPED (fixed in the
    applier). The checks that caught them ("registered twice", "told TASK_DROPPED ... which
    the history launched") would catch them again."""
    for seed in range(3):
        clusters: list = []

        def lose(cluster, clusters=clusters):
            clusters.append(cluster)
            lose_the_first_registered(cluster)
        result = run_seed(seed, Options(faults=False), prepare=lose)
        assert result.ok, result.failures()
        history = kinds(clusters[-1])
        assert history.count("agent_registered") == len(clusters[-1].agents) and "agent_reregistered" in history

        def duplicate(cluster, clusters=clusters):
            clusters.append(cluster)
            duplicate_every_accept(cluster)
        result = run_seed(seed, Options(faults=False), prepare=duplicate)
        assert result.ok, result.failures()
        accepts = kinds(clusters[-1]).count("offers_accepted")
        assert accepts == 2 * len(clusters[-1].observations.accepts), "every ACCEPT was committed twice"


def crash_before_the_first_registered(cluster) -> None:
    """The first agent crashes as its first REGISTERED is sent, and restarts 1 s later."""
    agent, crashed = cluster.agents[0], []

    def restart() -> None:
        agent.restart()
        cluster.net.changed()

    def crash() -> None:
        agent.crash()
        cluster.net.changed()
        cluster.world.at(1_000, restart)

    def watch(stream, event) -> bool:
        if stream.client == agent.name and event["type"] == "REGISTERED" and not crashed:
            crashed.append(stream.owner)
            cluster.world.at(0, crash)
        return False
    cluster.net.tamper_stream = watch


def test_an_agent_crashing_before_its_first_registered_makes_no_ghost_agent():
    for seed in range(3):
        result = run_seed(seed, Options(faults=False), prepare=crash_before_the_first_registered)
        assert result.ok, result.failures()


def test_bad_usage_exits_2():
    assert sim("--seeds", "0") == 2


# -- the consensus model ---------------------------------------------------------------------------

class Replica(Node):
    """The least a consensus member needs: a fold position and leadership callbacks."""

    def __init__(self, world, name):
        super().__init__(world, name)
        self.applied = 0
        self.led: list[int] = []

    def deliver(self, upto):
        self.applied = max(self.applied, upto)
        return "outcome"

    def become_leader(self, term):
        self.led.append(term)

    def step_down(self):
        pass

    def restart(self, log_len):
        self.alive = True
        self.applied = log_len


def model(seed=0):
    from chaos.sim.net import Network

    world = World(seed)
    net = Network(world)
    replicas = [Replica(world, f"m{i}") for i in (1, 2, 3)]
    for r in replicas:
        net.add(r)
    consensus = Consensus(world, net, replicas, Timing())
    world.at(0, consensus.reassess)
    world.run(5_000)
    return world, net, consensus, {r.name: r for r in replicas}


def test_a_leader_cut_off_from_the_majority_commits_nothing_and_steps_down_after_its_fallback():
    world, net, consensus, replicas = model()
    leader = consensus.leader
    others = [n for n in replicas if n != leader]
    results = []
    for other in others:
        net.cut(leader, other)
    net.changed()
    consensus.propose(leader, b"x", results.append)
    world.run(world.now + 500)
    assert results == [] and consensus.is_leader(leader)  # it does not know yet, and cannot commit
    world.run(world.now + 5_000)
    assert not consensus.is_leader(leader) and isinstance(results[0], OutcomeUnknown)
    assert consensus.leader in others and consensus.term == 2
    assert all(replicas[n].applied == len(consensus.history) for n in others)
    net.cuts.clear()
    net.changed()
    world.run(world.now + 1_000)
    assert replicas[leader].applied == len(consensus.history)


def test_a_proposal_commits_in_order_on_a_majority_and_reaches_every_replica():
    world, _, consensus, replicas = model()
    results = []
    for payload in (b"a", b"b", b"c"):
        consensus.propose(consensus.leader, payload, results.append)
    world.run(world.now + 1_000)
    assert [r.position for r in results] == [1, 2, 3] and all(isinstance(r, Proposed) for r in results)
    assert [c.payload for c in consensus.history] == [b"a", b"b", b"c"]
    assert all(r.applied == 3 for r in replicas.values())


@pytest.mark.parametrize("seed", range(8))
def test_a_leader_killed_with_proposals_in_flight_leaves_them_committed_as_a_prefix_or_lost(seed):
    world, _, consensus, _ = model(seed)
    old = consensus.leader
    for payload in (b"a", b"b", b"c"):
        consensus.propose(old, payload, lambda result: None)
    consensus.crash(old)
    world.run(world.now + 5_000)
    assert consensus.leader != old and consensus.term == 2
    committed = [c.payload for c in consensus.history]
    assert committed == [b"a", b"b", b"c"][:len(committed)]
    assert consensus.stats["kept"] + consensus.stats["lost"] == 3


def test_a_crashed_leader_is_replaced_at_once_and_a_hung_one_after_the_election_timeout():
    world, net, consensus, replicas = model()
    crashed_at, old = world.now, consensus.leader
    consensus.crash(old)  # its connections close with it
    while consensus.term == 1 and world.now < crashed_at + 5_000:
        world.run(world.now + 10)
    assert consensus.term == 2 and world.now - crashed_at <= Timing().crashed_leader_election_ms[1] + 10
    consensus.restart(old)
    world.run(world.now + 1_000)
    leader = consensus.leader
    cut_at = world.now
    for other in replicas:
        if other != leader:
            net.cut(leader, other)  # alive but unheard: the others wait out their timeout
    net.changed()
    while consensus.term == 2 and world.now < cut_at + 10_000:
        world.run(world.now + 10)
    assert consensus.term == 3 and world.now - cut_at >= Timing().election_ms[0]


def test_a_master_cut_off_from_the_leader_cannot_depose_it_while_the_others_hear_it():
    world, net, consensus, replicas = model()
    leader = consensus.leader
    cut_off = next(n for n in replicas if n != leader)
    net.cut(leader, cut_off)  # it still reaches the third master, which hears the leader
    net.changed()
    world.run(world.now + 10_000)
    assert consensus.leader == leader and consensus.term == 1  # the pre-vote: the third says no
    net.cuts.clear()
    net.changed()
    world.run(world.now + 1_000)
    assert consensus.leader == leader and replicas[cut_off].applied == len(consensus.history)
