"""`mesos-es chaos sim`: run the deterministic simulation for a range of seeds (docs/chaos.md).

It prints its parameters first, then each seed before its run and the run's outcome after
it; a failing seed's evidence follows it, with the command that replays it. Exit status: 0
when every seed passed, 1 when any failed (their numbers are named at the end), 2 on bad
usage. With `--json`, stdout carries exactly one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from chaos.sim.faults import KINDS
from chaos.sim.run import LIVENESS_CAP_MS, PLANTS, Options, run_seed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seeds", type=int, default=100, metavar="N", help="how many seeds to run (default %(default)s)")
    parser.add_argument("--first-seed", type=int, default=0, metavar="S", help="the first seed (default %(default)s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of lines")
    parser.add_argument("--masters", type=int, choices=(3, 5), default=3, help="master replicas (default %(default)s)")
    parser.add_argument("--no-faults", action="store_true", help="run the workload without the nemesis")
    parser.add_argument("--allow-quorum-loss", action="store_true",
                        help="let faults take down or cut off a majority of masters (liveness may then fail)")
    parser.add_argument("--plant", choices=sorted(PLANTS), default="",
                        help="plant a bug in the simulated leader, to see the checks fail: "
                             + "; ".join(f"{name}: {what}" for name, what in sorted(PLANTS.items())))
    parser.add_argument("--trace", action="store_true", help="print each seed's event trace")
    parser.add_argument("--verbose", action="store_true", help="print each seed's parameters, faults and figures")


def run(args: argparse.Namespace) -> int:
    if args.seeds < 1:
        print("--seeds must be at least 1", file=sys.stderr)
        return 2
    options = Options(masters=args.masters, faults=not args.no_faults, allow_quorum_loss=args.allow_quorum_loss,
                      plant=args.plant, keep_trace=args.trace)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    parameters = {
        "seeds": args.seeds, "first_seed": args.first_seed, "masters": args.masters,
        "faults": sorted(KINDS) if options.faults else [], "allow_quorum_loss": options.allow_quorum_loss,
        "plant": options.plant or None,
        "per_seed": "2-3 agents, 1-2 frameworks of 2-4 jobs, 4-10 log appends; 20-40 s of faults, then "
                    f"up to {LIVENESS_CAP_MS // 1000} s to converge (simulated time)",
    }
    if not args.json:
        print(f"chaos sim: {args.seeds} seeds from {args.first_seed}; {args.masters} masters; faults "
              f"{', '.join(parameters['faults']) or 'off'}{'; quorum loss allowed' if options.allow_quorum_loss else ''}")
        print(f"  per seed: {parameters['per_seed']}")
        if options.plant:
            print(f"  planted bug: {options.plant} ({PLANTS[options.plant]})", flush=True)
    started = time.monotonic()
    results, failed = [], []
    for seed in seeds:
        if not args.json:
            print(f"seed {seed} ... ", end="", flush=True)
        result = run_seed(seed, options)
        results.append(result)
        if not result.ok:
            failed.append(seed)
        if args.json:
            continue
        stats = result.stats
        print(f"{'ok' if result.ok else 'FAIL'} ({stats['positions']} positions, {stats['elections']} elections, "
              f"{sum(stats['faults'].values())} faults, {stats['sim_ms'] / 1000:.1f} s simulated)", flush=True)
        if args.verbose or not result.ok:
            print(f"    {result.params}")
        if args.verbose:
            print(f"    faults: {'; '.join(result.faults) or 'none'}")
            print(f"    digests: trace {result.trace_digest[:16]}, history {result.history_digest[:16]}, "
                  f"state {result.state_digest[:16]}")
        for line in result.failures():
            print(f"    {line}")
        if not result.ok:
            print(f"    replay: {_replay_command(seed, args)}")
        if args.trace:
            print("\n".join(f"    | {line}" for line in result.trace))
    elapsed = round(time.monotonic() - started, 2)
    covered = {"faults": _total(r.stats["faults"] for r in results), "events": _total(r.stats["events"] for r in results),
               "elections": sum(r.stats["elections"] for r in results),
               "undecided_proposals": {"committed": sum(r.stats["undecided_kept"] for r in results),
                                       "lost": sum(r.stats["undecided_lost"] for r in results)}}
    if args.json:
        print(json.dumps({"parameters": parameters, "ok": not failed, "passed": len(results) - len(failed),
                          "failed": failed, "elapsed_s": elapsed,
                          "replay": {str(s): _replay_command(s, args) for s in failed}, "covered": covered,
                          "results": [r.to_json() for r in results]}))
    else:
        print(f"covered: {covered['elections']} elections; undecided proposals "
              f"{covered['undecided_proposals']['committed']} committed by the next leader, "
              f"{covered['undecided_proposals']['lost']} lost")
        print("  faults: " + ", ".join(f"{k} {v}" for k, v in covered["faults"].items()))
        print("  events: " + ", ".join(f"{k} {v}" for k, v in covered["events"].items()))
        print(f"{len(results)} seeds in {elapsed:g} s: {len(results) - len(failed)} passed, {len(failed)} failed"
              + (f": seeds {', '.join(map(str, failed))}" if failed else ""))
    return 1 if failed else 0


def _total(counts) -> dict[str, int]:
    total: dict[str, int] = {}
    for one in counts:
        for key, value in one.items():
            total[key] = total.get(key, 0) + value
    return dict(sorted(total.items()))


def _replay_command(seed: int, args: argparse.Namespace) -> str:
    flags = [f"--seeds 1 --first-seed {seed}"]
    if args.masters != 3:
        flags.append(f"--masters {args.masters}")
    if args.no_faults:
        flags.append("--no-faults")
    if args.allow_quorum_loss:
        flags.append("--allow-quorum-loss")
    if args.plant:
        flags.append(f"--plant {args.plant}")
    return "mesos-es chaos sim " + " ".join(flags) + " --trace"
