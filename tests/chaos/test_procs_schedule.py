"""Fault schedules of `chaos run` (chaos/procs/schedule.py): one seed, one schedule; never past quorum."""

import itertools

import pytest

from chaos.procs.schedule import (
    KINDS,
    PARTITIONS,
    SCENARIOS,
    masters_cut_off,
    most_masters_down,
    partition_groups,
    plan,
)

M3 = ["master-1", "master-2", "master-3"]
M5 = [f"master-{i}" for i in range(1, 6)]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_the_same_seed_gives_the_same_schedule_and_another_seed_another(name):
    scenario = SCENARIOS[name]
    duration = 300.0
    first = plan(scenario, 7, duration)
    assert first == plan(scenario, 7, duration)
    if not scenario.fixed:
        assert first != plan(scenario, 8, duration)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_no_schedule_takes_a_majority_of_the_masters_down(name):
    scenario = SCENARIOS[name]
    for seed in range(100):
        faults = plan(scenario, seed, 600.0)
        assert most_masters_down(faults, scenario.masters) <= (scenario.masters - 1) // 2, (seed, faults)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_faults_are_known_kinds_inside_the_duration_and_master_faults_do_not_overlap(name):
    scenario = SCENARIOS[name]
    for seed in range(50):
        faults = plan(scenario, seed, 400.0)
        for fault in faults:
            assert fault.kind in KINDS
            assert fault.kind != "partition" or fault.target in PARTITIONS
            assert 0 < fault.at_s and fault.at_s + fault.hold_s <= 400.0
        masters = [f for f in faults if f.track == "masters"]
        for a, b in itertools.pairwise(masters):
            assert a.at_s + a.hold_s < b.at_s


def test_ten_minutes_of_leader_kills_plans_at_least_twenty_kills():
    for seed in range(20):
        kills = [f for f in plan(SCENARIOS["leader-kills"], seed, 600.0) if f.kind == "kill-leader"]
        assert len(kills) >= 24, seed  # some slack: an episode may start late, waiting for the previous one


def test_the_smoke_scenario_is_one_leader_kill_and_one_pause():
    faults = plan(SCENARIOS["smoke"], 1, 24.0)
    assert [(f.kind, f.target) for f in faults] == [("kill-leader", "leader"), ("pause-leader", "leader")]
    assert faults[0].at_s == pytest.approx(4.8)


def test_partitions_are_resolved_around_the_leader():
    assert partition_groups("isolate-leader", 0, "master-2", M3) == [("master-1", "master-2"),
                                                                     ("master-2", "master-3")]
    assert partition_groups("isolate-follower", 1, "master-2", M3) == [("master-1", "master-3"),
                                                                       ("master-2", "master-3")]
    assert partition_groups("cut-leader-link", 0, "master-2", M3) == [("master-1", "master-2")]
    cut = partition_groups("leader-minority", 2, "master-1", M5)
    assert cut == sorted((min(a, b), max(a, b)) for a in ("master-1", "master-4")
                         for b in ("master-2", "master-3", "master-5"))


def test_masters_cut_off_counts_those_outside_the_largest_fully_connected_group():
    assert masters_cut_off([], M3) == 0
    assert masters_cut_off(partition_groups("isolate-leader", 0, "master-1", M3), M3) == 1
    assert masters_cut_off(partition_groups("leader-minority", 0, "master-1", M5), M5) == 2
    assert masters_cut_off([("master-1", "master-2")], M3) == 1  # {1, 3} or {2, 3} still a majority
    assert masters_cut_off([("master-1", "master-2"), ("master-2", "master-3")], M3) == 1
    assert masters_cut_off([("master-1", "master-2"), ("master-1", "master-3"), ("master-2", "master-3")], M3) == 2
