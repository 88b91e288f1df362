"""`mesos-es chaos run`: real masters, agents and frameworks under a seeded fault schedule.

    mesos-es chaos run --seed 1 --duration 600 --scenario leader-kills

prints the schedule first, then progress on stderr, then every checker's verdict and the
failover time distribution; writes report.json and report.png (see docs/chaos.md). Exit
status: 0 every checker passed, 1 a checker failed, 2 bad usage, 3 the run could not be
carried out (the cluster did not start). With --json, stdout carries exactly one JSON
object (the report) and the schedule goes to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import os
import sys
import traceback
from pathlib import Path

from chaos.procs.schedule import KINDS, PARTITIONS, SCENARIOS, most_masters_down

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_HARNESS = 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, help="the schedule's seed (default: a random one, printed)")
    parser.add_argument("--duration", type=float, metavar="SECONDS",
                        help="how long faults are injected, from the workload's start (default: the scenario's)")
    parser.add_argument("--scenario", default="smoke", choices=sorted(SCENARIOS),
                        help="the fault schedule (default %(default)s; --list describes them)")
    parser.add_argument("--masters", type=int, choices=[3, 5], help="number of masters (default: the scenario's)")
    parser.add_argument("--agents", type=int, help="number of agents (default: the scenario's)")
    parser.add_argument("--work-dir", type=Path, metavar="DIR",
                        help="the processes' work dirs and logs (default .mesos-es/chaos/SCENARIO-seedS-TIME; kept)")
    parser.add_argument("--report", type=Path, metavar="DIR", help="where report.json and report.png go "
                                                                   "(default: WORK_DIR/report)")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object on stdout")
    parser.add_argument("--list", action="store_true", help="describe the scenarios and fault kinds, and exit")
    parser.add_argument("--plan-only", action="store_true", help="print the schedule and exit")
    parser.add_argument("--master-flag", action="append", default=[], metavar="NAME=VALUE",
                        help="an extra flag for every master, e.g. journal_sync=none (repeatable)")
    parser.add_argument("--leader-limit-s", type=float, default=30.0,
                        help="a failover slower than this to a new leader fails the run (default %(default)s)")
    parser.add_argument("--agents-limit-s", type=float, default=60.0,
                        help="a failover slower than this to every agent re-registered fails the run "
                             "(default %(default)s)")


def run(args: argparse.Namespace) -> int:
    from chaos.procs.run import HarnessError, Settings, execute, plan_for, schedule_text

    if args.list:
        print(describe())
        return 0
    scenario = SCENARIOS[args.scenario]
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "big")
    duration = args.duration if args.duration is not None else scenario.default_duration_s
    masters = args.masters or scenario.masters
    agents = scenario.agents if args.agents is None else args.agents
    if duration <= 0 or agents < 1 or (scenario.name == "agents" and agents < 1):
        print("mesos-es chaos run: --duration must be positive and --agents at least 1", file=sys.stderr)
        return EXIT_USAGE
    flags = {}
    for item in args.master_flag:
        name, sep, value = item.partition("=")
        if not sep or not name:
            print(f"mesos-es chaos run: --master-flag {item!r} is not NAME=VALUE", file=sys.stderr)
            return EXIT_USAGE
        flags[name.replace("-", "_")] = value
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    work_dir = (args.work_dir or Path(".mesos-es/chaos") / f"{scenario.name}-seed{seed}-{stamp}").resolve()
    settings = Settings(seed=seed, scenario=scenario, duration_s=duration, work_dir=work_dir, masters=masters,
                        agents=agents, master_flags=flags, leader_limit_s=args.leader_limit_s,
                        agents_limit_s=args.agents_limit_s)
    faults = plan_for(settings)
    if most_masters_down(faults, masters) > (masters - 1) // 2:
        print("mesos-es chaos run: this schedule would take a majority of the masters down", file=sys.stderr)
        return EXIT_USAGE
    out = sys.stderr if args.json else sys.stdout
    print(schedule_text(settings, faults), file=out, flush=True)
    print(f"reproduce: {settings.command()}", file=out, flush=True)
    if args.plan_only:
        return 0
    from chaos.procs.report import render, write

    try:
        report = asyncio.run(execute(settings, faults))
    except HarnessError as e:
        print(f"mesos-es chaos run: {e}", file=sys.stderr)
        return EXIT_HARNESS
    except KeyboardInterrupt:
        print("mesos-es chaos run: interrupted", file=sys.stderr)
        return 130
    except Exception:  # noqa: BLE001 - e.g. pymesos re-raising its I/O thread's error in the main thread
        traceback.print_exc()
        print(f"mesos-es chaos run: the harness failed; the processes were stopped, their files are in "
              f"{work_dir}", file=sys.stderr)
        return EXIT_HARNESS
    write(report, (args.report or work_dir / "report").resolve())
    if args.json:
        sys.stdout.write(json.dumps(report) + "\n")
    else:
        print(render(report))
    sys.stdout.flush()
    return 0 if report["ok"] else EXIT_FAILED


def describe() -> str:
    lines = ["scenarios (mesos-es chaos run --scenario NAME):"]
    for s in SCENARIOS.values():
        lines.append(f"  {s.name:<13} {s.masters} masters, {s.agents} agents, default {s.default_duration_s:g} s")
        lines.append(f"  {'':<13} {s.doc}")
    lines.append("fault kinds:")
    lines += [f"  {k:<15} {v}" for k, v in KINDS.items()]
    lines.append("partitions (Raft traffic only, through the harness's proxy):")
    lines += [f"  {k:<17} {v}" for k, v in PARTITIONS.items()]
    return "\n".join(lines)
