"""`mesos-es replay state|timeline|diff|verify` (docs/replay.md).

Exit status: 0 done (verify: no violation), 1 violations found (verify), 2 bad usage, 3 the
history could not be read (corrupt, truncated, out of order, unreachable): the message names
the position.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from contextlib import contextmanager

from mesos_es.core import digest as canonical
from mesos_es.pb import mesos_pb2
from mesos_es.replay.errors import ReplayError
from mesos_es.replay.fold import Fold, Target, format_ms, start
from mesos_es.replay.sources import Source, open_source

DEFAULT_SOURCE = ".mesos-es/cluster/master-1"
EXIT_VIOLATIONS, EXIT_USAGE, EXIT_INPUT = 1, 2, 3


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="replay_command", required=True)

    def common(sub: argparse.ArgumentParser, at: bool = True) -> None:
        sub.add_argument("--source", default=DEFAULT_SOURCE, metavar="DIR|http://HOST:PORT|kafka://HOST:PORT/TOPIC",
                         help="a master's work dir, a live master, or the exported Kafka topic "
                              "(default %(default)s, the first master of `mesos-es cluster up`)")
        if at:
            sub.add_argument("--at", metavar="POSITION|TIME",
                             help="stop at this log position, or after the last event stamped at or before this "
                                  "ISO 8601 time (no zone: UTC); default: the end")
        sub.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
        sub.add_argument("--no-progress", action="store_true", help="no progress bar (it only shows on a terminal)")

    state = commands.add_parser("state", help="the state at a position or time, and its digest")
    common(state)
    state.add_argument("--no-snapshots", action="store_true",
                       help="fold from position 1 instead of the newest snapshot at or below the target")
    state.set_defaults(replay_run=run_state)

    timeline = commands.add_parser("timeline", help="one task's, agent's or framework's history")
    common(timeline)
    which = timeline.add_mutually_exclusive_group(required=True)
    which.add_argument("--task", metavar="ID")
    which.add_argument("--agent", metavar="ID")
    timeline.add_argument("--framework", metavar="ID",
                          help="the framework (alone: its history; with --task: whose task)")
    timeline.set_defaults(replay_run=run_timeline)
    # --framework alone is allowed: the group above is checked in run_timeline
    which.required = False

    diff = commands.add_parser("diff", help="what changed between two positions (or times)")
    common(diff, at=False)
    diff.add_argument("a", metavar="A", help="position or time")
    diff.add_argument("b", metavar="B", help="position or time")
    diff.add_argument("--no-snapshots", action="store_true", help="fold from position 1")
    diff.set_defaults(replay_run=run_diff)

    verify = commands.add_parser("verify", help="check the whole history; exit 1 on any violation")
    common(verify)
    verify.add_argument("--offer-timeout-s", type=float, default=60.0,
                        help="the masters' --offer-timeout-s: no offer may stay outstanding longer "
                             "(plus 10 s of slack); 0 skips the check (default %(default)s)")
    verify.add_argument("--deep-every", type=int, default=10_000, metavar="N",
                        help="rebuild and compare the derived index every N events (default %(default)s)")
    verify.set_defaults(replay_run=run_verify)


def run(args: argparse.Namespace) -> int:
    import logging

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # its connection errors become our sentence
    try:
        return args.replay_run(args)
    except ReplayError as e:
        where = f" (position {e.position})" if e.position is not None and f"position {e.position}" not in str(e) else ""
        print(f"mesos-es replay: {e}{where}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("mesos-es replay: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


# -- helpers --------------------------------------------------------------------------------------

@contextmanager
def progress_bar(args, source: Source, fold: Fold, target: Target | None):
    """A tqdm bar on stderr for long replays (only on a terminal, never with --no-progress)."""
    if args.no_progress or not sys.stderr.isatty():
        yield None
        return
    from tqdm import tqdm

    total = target.position if target is not None and target.position is not None else None
    if total is None:
        try:
            total = source.last_position()
        except ReplayError:
            total = None
    bar = tqdm(total=total, initial=fold.position, unit=" events", unit_scale=True, file=sys.stderr,
               desc="replaying", dynamic_ncols=True, leave=False, mininterval=0.2)
    try:
        yield bar.update
    finally:
        bar.close()


def fold_to(args, source: Source, target: Target, fold: Fold | None = None, **hooks) -> Fold:
    fold = fold or Fold()
    with progress_bar(args, source, fold, target) as update:
        fold.fold_to(source, target, progress=update, **hooks)
    return fold


def emit(data: dict) -> None:
    sys.stdout.write(json.dumps(data, separators=(",", ":")) + "\n")


def table(headers: list[str], rows: list[list]) -> str:
    from mesos_es.bench.table import format_table

    return format_table(headers, [[str(c) for c in row] for row in rows])


def header(fold: Fold, source: Source, started_at: int) -> dict:
    return {"position": fold.position, "digest": fold.digest(), "chain_hash": fold.chain_hash.hex(),
            "timestamp_ms": fold.last_timestamp_ms, "time": format_ms(fold.last_timestamp_ms),
            "source": source.description, "folded_from": started_at, "events_folded": fold.events}


# -- state ----------------------------------------------------------------------------------------

def run_state(args) -> int:
    target = Target.parse(args.at)
    with open_source(args.source) as source:
        fold = start(source, target, use_snapshots=not args.no_snapshots)
        started_at = fold.position
        fold = fold_to(args, source, target, fold)
        info = header(fold, source, started_at)
        if args.json:
            from google.protobuf.json_format import MessageToDict

            info["state"] = MessageToDict(canonical.to_proto(fold.state), preserving_proto_field_name=True)
            emit(info)
        else:
            print(render_state(fold, info))
    return 0


def render_state(fold: Fold, info: dict) -> str:
    cluster = fold.state.cluster
    lines = [f"position {info['position']} ({info['time']})",
             f"digest   {info['digest']}",
             f"chain    {info['chain_hash']}",
             f"source   {info['source']} (folded {info['events_folded']} events from position {info['folded_from']})",
             f"leader   {cluster.leader or '-'} (term {cluster.leader_term}, since {format_ms(cluster.leader_since_ms)})",
             ""]
    if cluster.frameworks:
        rows = []
        for fid in sorted(cluster.frameworks):
            f = cluster.frameworks[fid]
            states = Counter(mesos_pb2.TaskState.Name(t.state) for t in f.tasks.values())
            rows.append([fid, f.info.name, ",".join(f.info.roles), "yes" if f.connected else "no",
                         len(f.tasks), ", ".join(f"{k}:{v}" for k, v in sorted(states.items())) or "-"])
        lines += [table(["framework", "name", "roles", "connected", "tasks", "by state"], rows), ""]
    if cluster.agents:
        from mesos_es.core.resources import to_text

        index = fold.state.index
        rows = [[aid, cluster.agents[aid].info.hostname, "yes" if cluster.agents[aid].reachable else "no",
                 to_text(index.total(aid)), to_text(index.agent_used.get(aid) or _empty()) or "-",
                 to_text(index.agent_offered.get(aid) or _empty()) or "-"] for aid in sorted(cluster.agents)]
        lines += [table(["agent", "hostname", "reachable", "total", "in use", "on offer"], rows), ""]
    if cluster.roles:
        from mesos_es.core.convert import resources_from_proto
        from mesos_es.core.resources import to_text
        from mesos_es.replay.view import dominant_shares

        shares = dominant_shares(fold.state)
        rows = [[name, f"{r.weight or 1:g}", to_text(resources_from_proto(r.quota_guarantees)) or "-",
                 to_text(resources_from_proto(r.quota_limits)) or "-", f"{shares.get(name, 0):.3f}"]
                for name, r in sorted(cluster.roles.items())]
        lines += [table(["role", "weight", "guarantee", "limit", "share"], rows), ""]
    lines.append(f"offers outstanding: {len(cluster.offers)}; filters: {len(cluster.filters)}")
    if fold.state.logs:
        rows = [[n, log.beginning, log.ending] for n, log in sorted(fold.state.logs.items())]
        lines += ["", table(["named log", "beginning", "ending"], rows)]
    return "\n".join(lines)


def _empty():
    from mesos_es.core.resources import EMPTY

    return EMPTY


# -- timeline -------------------------------------------------------------------------------------

def run_timeline(args) -> int:
    if not (args.task or args.agent or args.framework):
        print("mesos-es replay timeline: name one of --task, --agent or --framework", file=sys.stderr)
        return EXIT_USAGE
    from mesos_es.replay.timeline import Timeline

    target = Target.parse(args.at)
    timeline = Timeline(task=args.task, agent=args.agent, framework=args.framework)
    with open_source(args.source) as source:
        fold = fold_to(args, source, target, observer=timeline.observe, before=timeline.before)
        what = (f"task {args.task}" + (f" of {args.framework}" if args.framework else "") if args.task
                else f"agent {args.agent}" if args.agent else f"framework {args.framework}")
        if args.json:
            emit({"object": what, "position": fold.position, "source": source.description,
                  "events": [row.to_json() for row in timeline.rows]})
        else:
            print(f"{what}: {len(timeline.rows)} events in positions 1..{fold.position} of {source.description}")
            if timeline.rows:
                print(table(["position", "time", "who", "event", "what", "outcome"],
                            [[r.position, format_ms(r.timestamp_ms), r.actor, r.kind, r.what, r.outcome]
                             for r in timeline.rows]))
    return 0


# -- diff -----------------------------------------------------------------------------------------

def run_diff(args) -> int:
    from mesos_es.replay.diff import diff, state_dict, summarize

    a, b = Target.parse(args.a), Target.parse(args.b)
    if a.position is not None and b.position is not None and b.position < a.position:
        a, b = b, a
    with open_source(args.source) as source:
        fold = start(source, a, use_snapshots=not args.no_snapshots)
        fold = fold_to(args, source, a, fold)
        first = (fold.position, fold.digest(), fold.last_timestamp_ms)
        old = state_dict(fold.state)
        kinds: Counter = Counter()

        def count(position, event, outcome, state):
            kinds[event.WhichOneof("kind") if event is not None else "undecodable"] += 1

        if b.position is not None and b.position < fold.position:
            raise ReplayError(f"B ({b.describe()}) is before A (position {fold.position})", b.position)
        fold = fold_to(args, source, b, fold, observer=count)
        second = (fold.position, fold.digest(), fold.last_timestamp_ms)
        changes = diff(old, state_dict(fold.state))
    if args.json:
        emit({"from": {"position": first[0], "digest": first[1], "time": format_ms(first[2])},
              "to": {"position": second[0], "digest": second[1], "time": format_ms(second[2])},
              "events": dict(sorted(kinds.items())), "summary": summarize(changes),
              "changes": [c.to_json() for c in changes]})
        return 0
    print(f"from position {first[0]} ({format_ms(first[2])}) digest {first[1]}")
    print(f"to   position {second[0]} ({format_ms(second[2])}) digest {second[1]}")
    print(f"{second[0] - first[0]} events: " + (", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) or "none"))
    summary = summarize(changes)
    print("changes: " + (", ".join(f"{k} {v}" for k, v in summary.items()) or "none"))
    for change in changes:
        print(change.render())
    return 0


# -- verify ---------------------------------------------------------------------------------------

def run_verify(args) -> int:
    from mesos_es.replay.audit import CHECKS, Auditor

    if args.deep_every < 1:
        print("mesos-es replay verify: --deep-every must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    target = Target.parse(args.at)
    auditor = Auditor(offer_timeout_s=args.offer_timeout_s, deep_every=args.deep_every)
    fold = Fold(strict_chain=False)
    with open_source(args.source) as source:
        error: ReplayError | None = None
        try:
            fold_to(args, source, target, fold, observer=auditor.after, before=auditor.before)
        except ReplayError as e:  # still report what was checked up to there
            error = e
        auditor.finish(fold)
        counts = auditor.counts()
        description = source.description
    fairness = auditor.fairness()
    ok = not auditor.violations and error is None
    if args.json:
        emit({"ok": ok, "source": description, "position": fold.position, "digest": fold.digest(),
              "chain_hash": fold.chain_hash.hex(), "events": fold.events,
              "error": None if error is None else {"message": str(error), "position": error.position},
              "checks": {name: {"description": CHECKS[name], "checked": auditor.checked.get(name, 0),
                                "violations": counts.get(name, 0)} for name in CHECKS},
              "violations": [v.to_json() for v in auditor.violations],
              "rejected_events": dict(sorted(auditor.rejected.items())), "fairness": fairness})
    else:
        print(f"verified {fold.events} events, positions 1..{fold.position} of {description}")
        print(f"digest {fold.digest()}, chain hash {fold.chain_hash.hex()}")
        print()
        print(table(["check", "checked", "violations"],
                    [[CHECKS[name], auditor.checked.get(name, 0), counts.get(name, 0)] for name in CHECKS]))
        if auditor.rejected:
            print()
            print("events the appliers refused (deterministic rejections, not violations): "
                  + ", ".join(f"{k} {v}" for k, v in sorted(auditor.rejected.items())))
        if auditor.violations:
            print()
            print(f"{len(auditor.violations)} violation(s):")
            for v in auditor.violations:
                print(f"  position {v.position} [{v.check}] {v.message}")
        if fairness["roles"]:
            roles = sorted(fairness["roles"])
            print()
            print(f"DRF: weighted dominant share per role after each of {fairness['samples']} allocation cycles")
            print(table(["role", "min", "mean", "max", "final"],
                        [[r, *(f"{fairness['roles'][r][k]:.3f}" for k in ("min", "mean", "max", "final"))]
                         for r in roles]))
            print()
            print(table(["position", "time", *roles],
                        [[s["position"], s["time"], *(f"{s['shares'][r]:.3f}" for r in roles)]
                         for s in fairness["series"]]))
        if error is not None:
            print()
            print(f"stopped early: {error}")
    if error is not None:
        print(f"mesos-es replay: {error}", file=sys.stderr)
        return EXIT_INPUT
    return 0 if ok else EXIT_VIOLATIONS
