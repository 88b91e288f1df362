"""`mesos-es bench alloc`: the time of one allocation cycle (`core.allocator.allocate`).

For 1,000 and 10,000 synthetic agents and 10 frameworks, in one process, on a synthetic
cluster built to exercise every part of the policy (see `build_cluster`):

* four roles with weights 3, 1, 1, 1; one with a quota guarantee it has not yet reached
  (the quota stage runs and headroom is held until it is met), one with a quota limit;
* a multi-role framework, a suppressed role, two frameworks that accept revocable
  resources, 10 % of the agents with revocable cpus, 5 % with static reservations;
* tasks use part of most agents (a fifth are full); 5 % of the agents have an outstanding
  offer to one framework, 5 % are filtered for another.

The baseline, measured in the same run on the same agents, is `scan`: one pass that reads
every agent's `available` and `total` resources (as any allocator must) and makes one
`Allocation` per agent, with no policy at all. The ratio says how many times that floor a
real cycle costs; the machines are shared and noisy, so the ratio means more than the
absolute figure.

Each measurement runs after `gc.collect()` (outside the timing): a full collection
triggered inside a cycle costs as much as the cycle on a heap this size, and when it comes
depends on what ran before, not on the allocator. The figures are the median (and best) of
`--repeat` runs. With `--json`, stdout carries exactly one JSON object.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import random
import statistics
import sys
import time

from mesos_es.bench.table import format_table, number
from mesos_es.core.allocator import (
    AgentSlot,
    Allocation,
    Filter,
    FrameworkDemand,
    RolePolicy,
    allocate,
)
from mesos_es.core.resources import EMPTY, Kind, Resources, parse_text

DEFAULT_AGENTS = (1_000, 10_000)
FRAMEWORKS = 10
DEFAULT_REPEAT = 7
QUICK_REPEAT = 2
TARGET_AGENTS = 10_000
TARGET_CYCLE_MS = 100.0
NOW_MS = 1_000_000_000

AGENT_TEXT = "cpus:16;mem:65536;disk:200000;ports:[31000-32000]"
RESERVED_TEXT = "cpus(analytics):4;mem(analytics):16384"
REVOCABLE = Resources({Kind("cpus", (), True): 4_000})

# (framework id, roles, suppressed roles, revocable ok)
FRAMEWORK_SPECS = (
    ("web-1", ("web",), (), False),
    ("web-2", ("web",), (), False),
    ("web-3", ("web",), (), False),
    ("batch-1", ("batch",), (), True),
    ("batch-2", ("batch",), (), True),
    ("batch-3", ("batch",), ("batch",), False),  # suppressed: wants nothing now
    ("analytics-1", ("analytics",), (), False),
    ("analytics-2", ("analytics",), (), False),
    ("dev-1", ("dev",), (), False),
    ("dev-2", ("dev", "batch"), (), False),  # multi-role
)


class BenchError(Exception):
    pass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run: {QUICK_REPEAT} runs per case (unless --repeat is given)")
    parser.add_argument("--agents", default=",".join(str(n) for n in DEFAULT_AGENTS),
                        help="comma-separated agent counts (default %(default)s)")
    parser.add_argument("--repeat", type=int, metavar="N",
                        help=f"runs per case; the median is reported (default {DEFAULT_REPEAT})")
    parser.add_argument("--seed", type=int, default=1, help="seed of the synthetic cluster (default %(default)s)")


def build_cluster(agents: int, seed: int) -> dict:
    """The allocator's arguments for a synthetic cluster of `agents` agents (see the module
    docstring). Deterministic for a given seed."""
    rng = random.Random(seed)
    base = parse_text(AGENT_TEXT)
    reserved = parse_text(RESERVED_TEXT)
    ids = [spec[0] for spec in FRAMEWORK_SPECS]
    allocated: dict[str, dict[str, Resources]] = {fid: {} for fid in ids}
    slots = []
    outstanding = set()
    filters = []
    for i in range(agents):
        agent_id = f"agent-{i:06d}"
        total = base + reserved if i % 20 == 7 else base
        if i % 10 == 3:
            total = total + REVOCABLE
        if i % 5 == 0:  # full
            used = total.non_revocable().unreserved()
        else:
            cpus = rng.randint(0, 12)
            mem = rng.randint(0, 48) * 1024
            used = parse_text(f"cpus:{cpus};mem:{mem}") if cpus or mem else EMPTY
        if used:
            fid = ids[rng.randrange(len(ids))]
            role = FRAMEWORK_SPECS[ids.index(fid)][1][0]
            allocated[fid][role] = allocated[fid][role] + used if role in allocated[fid] else used
        available = total - used
        slots.append(AgentSlot(agent_id, available, total))
        if i % 20 == 11:
            outstanding.add((ids[i % len(ids)], agent_id))
        if i % 20 == 13:
            refused = None if i % 40 == 13 else available
            filters.append(Filter(ids[(i + 3) % len(ids)], agent_id, NOW_MS + 5_000, refused))
        if i % 50 == 17:
            filters.append(Filter(ids[(i + 5) % len(ids)], agent_id, NOW_MS - 1))  # expired
    frameworks = [
        FrameworkDemand(fid, roles, frozenset(suppressed), revocable_ok, allocated[fid])
        for fid, roles, suppressed, revocable_ok in FRAMEWORK_SPECS
    ]
    cpus, mem = agents * 16, agents * 65536
    policies = {
        "web": RolePolicy(weight=3.0),
        # a limit it reaches during the cycle
        "batch": RolePolicy(limit=parse_text(f"cpus:{cpus // 4}")),
        # 12 % of the cluster, of which it holds about 11 % (tasks and reservations): the
        # quota stage meets the rest, and headroom is held for it until it does
        "analytics": RolePolicy(guarantee=parse_text(f"cpus:{cpus * 12 // 100};mem:{mem * 12 // 100}")),
    }
    return {"agents": slots, "frameworks": frameworks, "roles": policies, "filters": filters,
            "outstanding": frozenset(outstanding), "now_ms": NOW_MS}


def scan(agents, frameworks, roles, filters, outstanding, now_ms) -> list[Allocation]:
    """The baseline: read every agent's resources once, one Allocation per agent."""
    out = []
    total: dict[str, int] = {}
    for slot in agents:
        for kind, value in slot.total.items():
            if value.__class__ is int:
                total[kind.name] = total.get(kind.name, 0) + value
        n = 0
        for kind, value in slot.available.items():
            if value.__class__ is int:
                n += value
        if n:
            out.append(Allocation(frameworks[0].framework_id, slot.agent_id, "*", slot.available))
    return out


def _time(fn, inputs: dict, repeat: int) -> tuple[list[float], list]:
    times = []
    result = None
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        result = fn(**inputs)
        times.append((time.perf_counter() - started) * 1000)
        result_len = len(result)
        del result
        result = result_len
    return times, result


def _case(agents: int, seed: int, repeat: int) -> dict:
    built = time.perf_counter()
    inputs = build_cluster(agents, seed)
    built = time.perf_counter() - built
    # One cycle checked for sanity (and to warm up): offers only where there is something.
    offers = allocate(**inputs)
    pairs = {(a.framework_id, a.agent_id) for a in offers}
    if len(pairs) != len(offers) or pairs & inputs["outstanding"]:
        raise BenchError("the allocator offered a pair twice, or one with an outstanding offer")
    by_role: dict[str, int] = {}
    for a in offers:
        by_role[a.role] = by_role.get(a.role, 0) + 1
    offered_agents = len({a.agent_id for a in offers})
    del offers
    cycle, _ = _time(allocate, inputs, repeat)
    base, _ = _time(scan, inputs, repeat)
    cycle_ms, base_ms = statistics.median(cycle), statistics.median(base)
    return {
        "agents": agents,
        "frameworks": len(inputs["frameworks"]),
        "offers": len(pairs),
        "offered_agents": offered_agents,
        "offers_by_role": dict(sorted(by_role.items())),
        "cycle_ms": round(cycle_ms, 2),
        "cycle_best_ms": round(min(cycle), 2),
        "baseline_ms": round(base_ms, 2),
        "baseline_best_ms": round(min(base), 2),
        "ratio": round(cycle_ms / base_ms, 2) if base_ms > 0 else None,
        "runs": repeat,
        "build_s": round(built, 2),
    }


def run(args: argparse.Namespace) -> int:
    try:
        sizes = sorted({int(n) for n in args.agents.split(",") if n.strip()})
    except ValueError:
        print("mesos-es bench alloc: --agents must be comma-separated integers", file=sys.stderr)
        return 2
    repeat = args.repeat if args.repeat is not None else (QUICK_REPEAT if args.quick else DEFAULT_REPEAT)
    if not sizes or any(n < 1 or n > 1_000_000 for n in sizes) or not 1 <= repeat <= 1000:
        print("mesos-es bench alloc: --agents must be in [1, 1000000] and --repeat in [1, 1000]", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        rows = [_case(n, args.seed, repeat) for n in sizes]
    except BenchError as e:
        print(f"mesos-es bench alloc: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mesos-es bench alloc: interrupted", file=sys.stderr)
        return 130
    report = _report(rows, args.seed, time.monotonic() - started)
    if args.json:
        sys.stdout.write(json.dumps(report) + "\n")
    else:
        print(_render(report))
    sys.stdout.flush()
    return 0


def _report(rows: list[dict], seed: int, elapsed: float) -> dict:
    headline = next((r for r in rows if r["agents"] == TARGET_AGENTS), rows[-1])
    cycle = headline["cycle_ms"]
    return {
        "benchmark": "alloc",
        "agents": headline["agents"],
        "frameworks": headline["frameworks"],
        "cycle_ms": cycle,
        "baseline_ms": headline["baseline_ms"],
        "ratio": headline["ratio"],
        "targets": {
            f"cycle_under_{TARGET_CYCLE_MS:g}ms_at_{TARGET_AGENTS}_agents":
                headline["agents"] == TARGET_AGENTS and cycle < TARGET_CYCLE_MS,
        },
        "seed": seed,
        "cases": rows,
        "elapsed_s": round(elapsed, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    }


def _render(report: dict) -> str:
    headers = ["agents", "frameworks", "offers", "cycle ms", "best ms", "scan ms", "vs scan"]
    rows = [
        [number(r["agents"]), str(r["frameworks"]), number(r["offers"]), number(r["cycle_ms"], 1),
         number(r["cycle_best_ms"], 1), number(r["baseline_ms"], 1),
         "-" if r["ratio"] is None else f"{r['ratio']:.1f}x"]
        for r in report["cases"]
    ]
    runs = report["cases"][0]["runs"]
    met = list(report["targets"].values())[0]
    return "\n".join([
        f"mesos-es bench alloc: one allocation cycle, median of {runs} run{'s' if runs > 1 else ''} "
        f"(best also shown); scan = one pass over every agent's resources, the baseline",
        "",
        format_table(headers, rows, right=[True] * len(headers)),
        "",
        f"target: < {TARGET_CYCLE_MS:g} ms per cycle at {TARGET_AGENTS:,} agents: "
        + (f"{number(report['cycle_ms'], 1)} ms {'MET' if met else 'NOT MET'}"
           if report["agents"] == TARGET_AGENTS else "not measured (no 10,000-agent case)"),
        f"({report['machine']['cpus']} CPUs, Python {report['machine']['python']}, "
        f"{report['machine']['date']}, {report['elapsed_s']:g} s in all)",
    ])
