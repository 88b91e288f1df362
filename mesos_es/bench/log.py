"""`mesos-es bench log`: committed appends/s and commit latency of the replicated log.

For 1 and 3 replicas, with 300-byte entries and the durable journal on and off, through the
interface (`RaftLog.propose`, load generated inside the leader's process) and through HTTP
(`POST /api/v1/logs/{name}/entries` on real masters), next to raw pysyncobj measured in
the same run (the ratio column): machines are shared and noisy, so the ratio to a baseline
measured minutes apart on the same machine means more than the absolute figure.

Every replica is a separate OS process on 127.0.0.1. Each case starts a fresh cluster in a
temporary directory, waits for a leader, warms up, then runs two phases:

* throughput: a closed loop keeping `--in-flight` proposals outstanding (HTTP:
  `--http-concurrency` requests) for `--duration` seconds -> committed appends/s;
* latency: an open loop issuing `--rate` appends/s for `--duration` seconds -> p50/p99 of
  the time from propose() (or the HTTP request) to its answer.

With `--json`, stdout carries exactly one JSON object; progress and logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import random
import signal
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mesos_es.bench._log_worker import make_payloads, measure_open_loop
from mesos_es.bench.table import format_table, number
from mesos_es.processes import die_with_parent, stop_process

DEFAULT_DURATION_S = 3.0
QUICK_DURATION_S = 0.5
ENTRY_BYTES = 300
IN_FLIGHT = 2_000
HTTP_CONCURRENCY = 128
LATENCY_RATE = 1_000.0
TARGET_APPENDS_PER_S = 20_000
TARGET_P99_MS = 50.0
HEADLINE = ("interface", 3, True)

START_TIMEOUT_S = 30.0  # processes started and a leader elected
DRAIN_TIMEOUT_S = 30.0  # outstanding requests answered after a phase (as in the worker)
STOP_TIMEOUT_S = 10.0
HTTP_LOG_NAME = "bench"
PATHS = ("pysyncobj", "interface", "http")


class BenchError(Exception):
    pass


@dataclass(frozen=True)
class Case:
    path: str  # "pysyncobj" (the baseline), "interface" or "http"
    replicas: int
    durable: bool

    @property
    def label(self) -> str:
        durable = "in memory" if self.path == "pysyncobj" else ("durable" if self.durable else "not durable")
        return f"{self.path}, {self.replicas} replica{'s' if self.replicas > 1 else ''}, {durable}"


@dataclass(frozen=True)
class Settings:
    duration: float
    warmup: float
    entry_bytes: int
    payload: str
    in_flight: int
    http_concurrency: int
    rate: float
    raft_process: bool = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    parser.add_argument("--duration", type=float, metavar="SECONDS",
                        help=f"length of each phase of each case (default {DEFAULT_DURATION_S:g})")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run: {QUICK_DURATION_S:g} s phases (unless --duration is given)")
    parser.add_argument("--paths", default=",".join(PATHS),
                        help="comma-separated subset of %(default)s")
    parser.add_argument("--replicas", default="1,3", help="comma-separated replica counts (default %(default)s)")
    parser.add_argument("--durable", choices=["both", "on", "off"], default="both",
                        help="durable journal on, off or both (default %(default)s)")
    parser.add_argument("--in-flight", type=int, default=IN_FLIGHT,
                        help="outstanding proposals in the throughput phase (default %(default)s)")
    parser.add_argument("--http-concurrency", type=int, default=HTTP_CONCURRENCY,
                        help="concurrent HTTP requests in the throughput phase (default %(default)s)")
    parser.add_argument("--rate", type=float, default=LATENCY_RATE,
                        help="appends/s of the latency phase (default %(default)g)")
    parser.add_argument("--raft-process", choices=["on", "off"], default="on",
                        help="our replicas run Raft in a process of their own, as masters do by default "
                             "(interface and http paths; default %(default)s)")
    parser.add_argument("--entry-bytes", type=int, default=ENTRY_BYTES, help="entry size (default %(default)s)")
    parser.add_argument("--payload", choices=["random", "repeated"], default="random",
                        help="random: distinct incompressible entries; repeated: one entry over and over, "
                             "which stock pysyncobj's zlib (the baseline; our replicas do not compress) "
                             "shrinks to almost nothing (default %(default)s)")


def run(args: argparse.Namespace) -> int:
    from mesos_es import logconfig

    logconfig.configure("json", "warning")
    try:
        settings, cases = _plan(args)
    except ValueError as e:
        print(f"mesos-es bench log: {e}", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        rows = asyncio.run(_run_cases(cases, settings))
    except KeyboardInterrupt:
        print("mesos-es bench log: interrupted", file=sys.stderr)
        return 130
    report = _report(rows, settings, time.monotonic() - started)
    if args.json:
        sys.stdout.write(json.dumps(report) + "\n")
    else:
        print(_render(report))
    sys.stdout.flush()
    return 0 if all(row.get("error") is None for row in rows) else 1


def _plan(args: argparse.Namespace) -> tuple[Settings, list[Case]]:
    duration = args.duration if args.duration is not None else (QUICK_DURATION_S if args.quick else DEFAULT_DURATION_S)
    if not 0 < duration <= 600:
        raise ValueError("--duration must be in (0, 600] seconds")
    if args.in_flight < 1 or args.http_concurrency < 1 or args.rate <= 0 or args.entry_bytes < 1:
        raise ValueError("--in-flight, --http-concurrency, --rate and --entry-bytes must be positive")
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    unknown = set(paths) - set(PATHS)
    if unknown:
        raise ValueError(f"unknown --paths {sorted(unknown)}; choose from {list(PATHS)}")
    try:
        replica_counts = sorted({int(r) for r in args.replicas.split(",") if r.strip()})
    except ValueError:
        raise ValueError("--replicas must be comma-separated integers") from None
    if not replica_counts or any(r not in (1, 3, 5) for r in replica_counts):
        raise ValueError("--replicas must be among 1, 3, 5")
    durables = {"both": [True, False], "on": [True], "off": [False]}[args.durable]
    cases = []
    for replicas in replica_counts:
        if "pysyncobj" in paths:
            cases.append(Case("pysyncobj", replicas, False))
        for path in ("interface", "http"):
            if path in paths:
                cases += [Case(path, replicas, durable) for durable in durables]
    settings = Settings(
        duration=duration,
        warmup=min(0.5, duration / 2),
        entry_bytes=args.entry_bytes,
        payload=args.payload,
        in_flight=args.in_flight,
        http_concurrency=args.http_concurrency,
        rate=args.rate,
        raft_process=args.raft_process == "on",
    )
    return settings, cases


def _progress(message: str) -> None:
    print(f"bench log: {message}", file=sys.stderr, flush=True)


# -- running the cases -------------------------------------------------------------------------


async def _run_cases(cases: list[Case], settings: Settings) -> list[dict]:
    rows = []
    for case in cases:
        _progress(f"{case.label} ...")
        started = time.monotonic()
        row = {"path": case.path, "replicas": case.replicas, "durable": case.durable,
               "appends_per_s": None, "p50_ms": None, "p99_ms": None}
        # A case is bounded: start, warm-up, two phases and their drains, and the stop.
        bound = 2 * START_TIMEOUT_S + settings.warmup + 2 * settings.duration + 3 * DRAIN_TIMEOUT_S + STOP_TIMEOUT_S
        error = None
        for attempt in range(2):  # once more if the cluster would not start (e.g. a port was taken)
            try:
                row.update(await asyncio.wait_for(_run_case(case, settings), timeout=bound))
                error = None
                break
            except _StartFailed as e:
                error = str(e)
                _progress(f"{case.label}: {error}" + ("; retrying" if attempt == 0 else ""))
            except (BenchError, OSError, ValueError, KeyError, asyncio.TimeoutError) as e:
                error = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
                break
        row["error"] = error
        row["case_s"] = round(time.monotonic() - started, 2)
        if error:
            _progress(f"{case.label}: failed: {error}")
        else:
            _progress(f"{case.label}: {number(row['appends_per_s'])} appends/s, p50 {number(row['p50_ms'], 1)} ms, "
                      f"p99 {number(row['p99_ms'], 1)} ms ({row['case_s']:.1f} s)")
        rows.append(row)
    baselines = {r["replicas"]: r.get("appends_per_s") for r in rows if r["path"] == "pysyncobj"}
    for row in rows:
        baseline = baselines.get(row["replicas"])
        value = row.get("appends_per_s")
        row["ratio"] = round(value / baseline, 3) if value and baseline else None
    return rows


class _StartFailed(BenchError):
    pass


async def _run_case(case: Case, settings: Settings) -> dict:
    with tempfile.TemporaryDirectory(prefix="mesos-es-bench-log-", ignore_cleanup_errors=True) as tmp:
        work = Path(tmp)
        secret = work / "raft.secret"
        secret.write_text(os.urandom(24).hex() + "\n")
        secret.chmod(0o600)
        if case.path == "http":
            return await _http_case(case, settings, work, secret)
        return await _worker_case(case, settings, work, secret)


def _free_ports(count: int) -> list[int]:
    """`count` distinct ports on 127.0.0.1 that can be bound now, outside the usual ephemeral
    range (so outgoing connections are unlikely to take them before the replicas bind)."""
    ports: list[int] = []
    rng = random.Random()
    for _ in range(2000):
        if len(ports) == count:
            return ports
        port = rng.randrange(20_000, 32_000)
        if port in ports:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
    raise BenchError("no free ports on 127.0.0.1")


def _stderr_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


# -- interface and raw pysyncobj: replicas as worker processes -----------------------------------


class _Worker:
    """One `_log_worker` process, spoken to in JSON lines over its stdin and stdout."""

    def __init__(self, name: str, process: asyncio.subprocess.Process, stderr_path: Path):
        self.name = name
        self.process = process
        self.stderr_path = stderr_path

    @classmethod
    async def spawn(cls, name: str, argv: list[str], stderr_path: Path) -> _Worker:
        with open(stderr_path, "wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=stderr,
                preexec_fn=die_with_parent(signal.SIGKILL),
            )
        return cls(name, process, stderr_path)

    async def read(self, timeout: float) -> dict:
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout)
        except asyncio.TimeoutError:
            raise BenchError(f"{self.name} did not answer within {timeout:g} s") from None
        if not line:
            tail = _stderr_tail(self.stderr_path)
            raise BenchError(f"{self.name} exited" + (f":\n{tail}" if tail else ""))
        answer = json.loads(line)
        if "error" in answer:
            raise BenchError(f"{self.name}: {answer['error']}")
        return answer

    async def request(self, command: dict, timeout: float) -> dict:
        self.process.stdin.write((json.dumps(command) + "\n").encode())
        await self.process.stdin.drain()
        return await self.read(timeout)

    async def stop(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(Exception):
                await self.request({"op": "stop"}, timeout=STOP_TIMEOUT_S)
            with contextlib.suppress(Exception):
                self.process.stdin.close()
            try:
                await asyncio.wait_for(self.process.wait(), timeout=STOP_TIMEOUT_S)
            except asyncio.TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.process.wait(), timeout=STOP_TIMEOUT_S)


async def _worker_case(case: Case, settings: Settings, work: Path, secret: Path) -> dict:
    kind = "raw" if case.path == "pysyncobj" else "raft"
    addresses = [f"127.0.0.1:{p}" for p in _free_ports(case.replicas)]
    workers: list[_Worker] = []
    try:
        for i, address in enumerate(addresses):
            argv = [
                sys.executable, "-m", "mesos_es.bench._log_worker", "--kind", kind,
                "--address", address, "--peers", ",".join(a for a in addresses if a != address),
                "--work-dir", str(work / f"replica-{i + 1}"), "--password-file", str(secret),
                "--max-lifetime", str(int(START_TIMEOUT_S + 4 * settings.duration + 4 * DRAIN_TIMEOUT_S + 60)),
            ]
            if case.durable:
                argv.append("--durable")
            if settings.raft_process:
                argv.append("--raft-process")
            workers.append(await _Worker.spawn(f"replica {i + 1}", argv, work / f"replica-{i + 1}.stderr"))
        deadline = time.monotonic() + START_TIMEOUT_S
        try:
            for worker in workers:
                await worker.read(max(0.1, deadline - time.monotonic()))  # {"event": "started"}
            leader = await _wait_for_leader_worker(workers, deadline)
        except BenchError as e:
            raise _StartFailed(str(e)) from None
        drain = settings.duration + DRAIN_TIMEOUT_S + 5
        entries = {"size": settings.entry_bytes, "payload": settings.payload}
        await leader.request({"op": "throughput", "duration": settings.warmup, "in_flight": settings.in_flight,
                              **entries}, timeout=drain)
        throughput = await leader.request({"op": "throughput", "duration": settings.duration,
                                           "in_flight": settings.in_flight, **entries}, timeout=drain)
        latency = await leader.request({"op": "latency", "duration": settings.duration, "rate": settings.rate,
                                        **entries}, timeout=drain)
        return _figures(throughput, latency)
    finally:
        await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)


async def _wait_for_leader_worker(workers: list[_Worker], deadline: float) -> _Worker:
    while time.monotonic() < deadline:
        leaders = []
        for worker in workers:
            answer = await worker.request({"op": "status"}, timeout=max(0.1, deadline - time.monotonic()))
            if answer["role"] == "leader":
                leaders.append(worker)
        if len(leaders) == 1:
            return leaders[0]
        await asyncio.sleep(0.05)
    raise BenchError(f"no leader elected within {START_TIMEOUT_S:g} s")


def _figures(throughput: dict, latency: dict) -> dict:
    return {
        "appends_per_s": round(throughput["appends_per_s"], 1),
        "committed": throughput["committed"],
        "throughput_errors": throughput["errors"],
        "p50_ms": _round(latency["p50_ms"]),
        "p99_ms": _round(latency["p99_ms"]),
        "max_ms": _round(latency["max_ms"]),
        "latency_samples": latency["count"],
        "latency_errors": latency["errors"],
        "latency_rate": round(latency["achieved_rate"], 1),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


# -- HTTP: real masters ------------------------------------------------------------------------------


async def _http_case(case: Case, settings: Settings, work: Path, secret: Path) -> dict:
    import aiohttp

    ports = _free_ports(2 * case.replicas)
    https = [f"127.0.0.1:{p}" for p in ports[: case.replicas]]
    rafts = [f"127.0.0.1:{p}" for p in ports[case.replicas :]]
    peers = ",".join(f"{h}={r}" for h, r in zip(https, rafts)) if case.replicas > 1 else ""
    masters: list[tuple[asyncio.subprocess.Process, Path]] = []
    try:
        for i, (http, raft) in enumerate(zip(https, rafts)):
            stderr_path = work / f"master-{i + 1}.log"
            with open(stderr_path, "wb") as stderr:
                process = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "mesos_es", "master", "--id", f"master-{i + 1}",
                    "--address", http, "--raft-address", raft, "--peers", peers,
                    "--work-dir", str(work / f"master-{i + 1}"), "--raft-secret-file", str(secret),
                    "--journal-sync", "fsync" if case.durable else "none",
                    "--raft-process", "on" if settings.raft_process else "off",
                    "--log-format", "json", "--log-level", "warning",
                    stdin=asyncio.subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                    preexec_fn=die_with_parent(signal.SIGKILL),
                )
            masters.append((process, stderr_path))
        connector = aiohttp.TCPConnector(limit=max(settings.http_concurrency, 512), force_close=False)
        timeout = aiohttp.ClientTimeout(total=DRAIN_TIMEOUT_S)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            try:
                leader = await _wait_for_leader_master(session, https, masters)
            except BenchError as e:
                raise _StartFailed(str(e)) from None
            url = f"http://{leader}/api/v1/logs/{HTTP_LOG_NAME}/entries"
            await _http_throughput(session, url, settings, settings.warmup)
            throughput = await _http_throughput(session, url, settings, settings.duration)
            latency = await _http_latency(session, url, settings)
        return _figures(throughput, latency)
    finally:
        await asyncio.gather(*(stop_process(p, STOP_TIMEOUT_S) for p, _ in masters), return_exceptions=True)


async def _wait_for_leader_master(session, https: list[str], masters) -> str:
    import aiohttp

    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        for process, stderr_path in masters:
            if process.returncode is not None:
                tail = _stderr_tail(stderr_path)
                raise BenchError(f"a master exited with {process.returncode}" + (f":\n{tail}" if tail else ""))
        leaders = []
        for http in https:
            try:
                async with session.get(f"http://{http}/health", timeout=aiohttp.ClientTimeout(total=1)) as resp:
                    if resp.status == 200 and (await resp.json()).get("role") == "leader":
                        leaders.append(http)
            except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
                pass
        if len(leaders) == 1:
            return leaders[0]
        await asyncio.sleep(0.1)
    raise BenchError(f"no leading master within {START_TIMEOUT_S:g} s")


async def _post(session, url: str, payload: bytes) -> bool:
    import aiohttp

    try:
        async with session.post(url, data=payload, allow_redirects=False,
                                headers={"Content-Type": "application/octet-stream"}) as resp:
            await resp.read()
            return resp.status == 200
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return False


async def _http_throughput(session, url: str, settings: Settings, duration: float) -> dict:
    payloads = make_payloads(settings.entry_bytes, settings.payload)
    clock = time.perf_counter
    committed = errors = issued = 0
    end = 0.0

    async def client() -> None:
        nonlocal committed, errors, issued
        while clock() < end:
            issued += 1
            if await _post(session, url, payloads[issued % len(payloads)]):
                if clock() <= end:
                    committed += 1
            else:
                errors += 1
                await asyncio.sleep(0.01)

    start = clock()
    end = start + duration
    tasks = [asyncio.create_task(client()) for _ in range(settings.http_concurrency)]
    await asyncio.sleep(max(0.0, end - clock()))
    elapsed = clock() - start
    _, pending = await asyncio.wait(tasks, timeout=DRAIN_TIMEOUT_S)
    for task in pending:
        task.cancel()
    return {"committed": committed, "elapsed_s": elapsed, "appends_per_s": committed / elapsed, "errors": errors}


async def _http_latency(session, url: str, settings: Settings) -> dict:
    payloads = make_payloads(settings.entry_bytes, settings.payload)
    return await measure_open_loop(lambda payload: _post(session, url, payload), payloads,
                                   settings.rate, settings.duration, DRAIN_TIMEOUT_S)


# -- the report ---------------------------------------------------------------------------------------


def _report(rows: list[dict], settings: Settings, elapsed: float) -> dict:
    headline = next((r for r in rows if (r["path"], r["replicas"], r["durable"]) == HEADLINE), {})
    baseline = next((r for r in rows if r["path"] == "pysyncobj" and r["replicas"] == 3), {})
    appends = headline.get("appends_per_s")
    p99 = headline.get("p99_ms")
    return {
        "benchmark": "log",
        "path": "interface",
        "replicas": 3,
        "durable": True,
        "appends_per_s": appends,
        "p50_ms": headline.get("p50_ms"),
        "p99_ms": p99,
        "baseline_appends_per_s": baseline.get("appends_per_s"),
        "ratio": headline.get("ratio"),
        "targets": {
            f"appends_per_s_at_least_{TARGET_APPENDS_PER_S}": appends is not None and appends >= TARGET_APPENDS_PER_S,
            f"p99_under_{TARGET_P99_MS:g}ms_at_{settings.rate:g}_per_s": p99 is not None and p99 < TARGET_P99_MS,
        },
        "entry_bytes": settings.entry_bytes,
        "payload": settings.payload,
        "duration_s": settings.duration,
        "in_flight": settings.in_flight,
        "http_concurrency": settings.http_concurrency,
        "latency_rate": settings.rate,
        "raft_process": settings.raft_process,
        "cases": rows,
        "elapsed_s": round(elapsed, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    }


def _render(report: dict) -> str:
    headers = ["path", "replicas", "durable", "appends/s", "p50 ms", "p99 ms", "vs pysyncobj", "note"]
    rows = []
    for row in report["cases"]:
        durable = "in mem" if row["path"] == "pysyncobj" else ("yes" if row["durable"] else "no")
        note = ""
        if row.get("error"):
            note = "failed: " + row["error"].splitlines()[0][:60]
        elif row.get("latency_errors") or row.get("throughput_errors"):
            note = f"{row.get('throughput_errors', 0) + row.get('latency_errors', 0)} errors"
        rows.append([
            row["path"], str(row["replicas"]), durable, number(row.get("appends_per_s")),
            number(row.get("p50_ms"), 1), number(row.get("p99_ms"), 1),
            "-" if row.get("ratio") is None else f"{row['ratio']:.2f}x", note,
        ])
    lines = [
        f"mesos-es bench log: {report['entry_bytes']}-byte entries ({report['payload']}), "
        f"{report['duration_s']:g} s per phase; "
        f"appends/s: closed loop, {report['in_flight']:,} in flight "
        f"(HTTP: {report['http_concurrency']} concurrent requests); "
        f"p50/p99: open loop at {report['latency_rate']:,.0f} appends/s",
        "",
        format_table(headers, rows, right=[False, True, False, True, True, True, True, False]),
        "",
    ]
    appends, p99 = report["appends_per_s"], report["p99_ms"]
    met = list(report["targets"].values())
    lines.append(
        f"targets (interface, 3 replicas, durable): >= {TARGET_APPENDS_PER_S:,} appends/s: "
        f"{number(appends)} {'MET' if met[0] else 'NOT MET'}; "
        f"p99 < {TARGET_P99_MS:g} ms at {report['latency_rate']:,.0f}/s: "
        f"{number(p99, 1)} ms {'MET' if met[1] else 'NOT MET'}"
    )
    lines.append(f"({report['machine']['cpus']} CPUs, Python {report['machine']['python']}, "
                 f"{report['machine']['date']}, {report['elapsed_s']:g} s in all)")
    return "\n".join(lines)
