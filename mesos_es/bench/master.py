"""`mesos-es bench master`: offer round trip and task launch throughput on real masters.

Each case starts real master processes (3 by default, durable journals, as `cluster up`
does), synthetic agents in separate processes (`mesos-es agent --synthetic`, at most
2,500 per process), and 10 frameworks in this process, each one our `SchedulerClient`
over real HTTP. Then, on that cluster:

1. **baseline**: named-log appends (`POST /api/v1/logs/bench/entries`) on the leader: an
   open loop at a modest rate gives the latency of one committed HTTP call, a closed loop
   gives committed HTTP calls per second. Measured minutes apart from the phases below on
   the same masters with the same agents attached, so the ratios hold on a noisy machine.
2. **offer round trip**: the frameworks take turns; a framework declines every offer it
   holds (`refuse_seconds: 0`, so no filter) and the sample is the time from the DECLINE
   call to the next OFFERS event on its stream. Nothing else is free meanwhile, so that
   OFFERS event comes from the allocation cycle its DECLINE triggered: the resources it
   gave back (DRF hands them back to it, now the framework with the lowest share).
3. **task launch**: every framework accepts offers with `--tasks-per-offer` tasks each
   (one LAUNCH per offer), keeping at most `--window` tasks per framework between ACCEPT
   and TASK_RUNNING, for `--duration` seconds or until `--tasks` tasks are launched. Each
   status update is acknowledged. A task's latency is from the start of its ACCEPT call
   to the TASK_RUNNING update on the scheduler's stream; tasks/s counts the tasks that
   reached TASK_RUNNING within the window (first ACCEPT to the end of the duration),
   divided by its length. Outstanding tasks are then waited for (bounded) for the latency
   figures. The CPU time of every process over the phase is recorded.

Every wait and loop is bounded in count and time. With `--json`, stdout carries exactly
one JSON object (one line); progress and logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import math
import os
import platform
import resource
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from mesos_es.bench._log_worker import latency_summary, make_payloads, percentile
from mesos_es.bench.table import format_table, number
from mesos_es.processes import children, die_with_parent, stop_process

DEFAULT_AGENTS = (1_000, 10_000)
QUICK_AGENTS = (20,)
DEFAULT_MASTERS = (3,)
FRAMEWORKS = 10
AGENTS_PER_PROCESS = 2_500
AGENT_RESOURCES = "cpus:16;mem:65536;disk:200000;ports:[31000-32000]"
TASK_CPUS = 0.1
TASK_MEM_MB = 32.0
TASKS_PER_OFFER = 10
WINDOW = 200  # tasks per framework between ACCEPT and TASK_RUNNING
DEFAULT_DURATION_S = 20.0
QUICK_DURATION_S = 3.0
DEFAULT_MAX_TASKS = 200_000
QUICK_MAX_TASKS = 300
DEFAULT_ROUNDS = 5
QUICK_ROUNDS = 1
BASELINE_S = 3.0
QUICK_BASELINE_S = 1.0
BASELINE_RATE = 100.0  # appends/s of the latency baseline: light, like one DECLINE at a time
BASELINE_CONCURRENCY = 128  # as bench log's HTTP throughput phase
TARGET_AGENTS = 10_000
TARGET_TASKS_PER_S = 4_000
HEADLINE_MASTERS = 3

START_TIMEOUT_S = 30.0  # masters started and a leader elected
REGISTER_TIMEOUT_S = 60.0  # plus 1 s per 100 agents
OFFERS_TIMEOUT_S = 60.0  # every agent offered after the frameworks subscribe
ROUND_TRIP_TIMEOUT_S = 30.0  # one offer round trip
ROUND_TRIP_PHASE_S = 120.0  # all of them
DRAIN_TIMEOUT_S = 30.0  # outstanding tasks after the launch phase
STOP_TIMEOUT_S = 10.0
ACK_CONCURRENCY = 32  # acknowledgements in flight per framework
LOG_NAME = "bench"
LABEL_DURATION = "mesos-es/duration-seconds"
PROGRESS_S = 0.5  # synthetic agents log their progress this often
FAILOVER_TIMEOUT_S = 3600.0


class BenchError(Exception):
    pass


@dataclass(frozen=True)
class Settings:
    rounds: int
    duration: float
    max_tasks: int
    tasks_per_offer: int
    window: int
    baseline_s: float
    max_entry_bytes: int | None
    agents_per_process: int
    profile_dir: Path | None
    work_dir: Path | None
    master_flags: tuple[str, ...] = ()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run: {QUICK_AGENTS[0]} agents, {QUICK_ROUNDS} round, "
                             f"{QUICK_DURATION_S:g} s of launches, at most {QUICK_MAX_TASKS} tasks "
                             "(each unless given)")
    parser.add_argument("--agents", help="comma-separated synthetic agent counts "
                                         f"(default {','.join(map(str, DEFAULT_AGENTS))})")
    parser.add_argument("--masters", default=",".join(map(str, DEFAULT_MASTERS)),
                        help="comma-separated master counts, each of 1, 3, 5 (default %(default)s)")
    parser.add_argument("--rounds", type=int, help=f"offer round trips per framework (default {DEFAULT_ROUNDS})")
    parser.add_argument("--duration", type=float, metavar="SECONDS",
                        help=f"length of the launch phase (default {DEFAULT_DURATION_S:g})")
    parser.add_argument("--tasks", type=int, help=f"at most this many tasks launched (default {DEFAULT_MAX_TASKS})")
    parser.add_argument("--tasks-per-offer", type=int, default=TASKS_PER_OFFER,
                        help="tasks in each ACCEPT (one offer, one LAUNCH) (default %(default)s)")
    parser.add_argument("--window", type=int, default=WINDOW,
                        help="tasks per framework between ACCEPT and TASK_RUNNING (default %(default)s)")
    parser.add_argument("--max-entry-bytes", type=int,
                        help="passed to the masters (default: the master's own, 1 MiB)")
    parser.add_argument("--agents-per-process", type=int, default=AGENTS_PER_PROCESS,
                        help="synthetic agents per agent process (default %(default)s)")
    parser.add_argument("--master-flag", action="append", default=[], metavar="NAME=VALUE",
                        help="an extra flag for every master, e.g. election-timeout-min-ms=1000 (repeatable; "
                             "for experiments: the default run uses the masters' defaults)")
    parser.add_argument("--work-dir", type=Path, metavar="DIR",
                        help="keep the processes' work dirs and logs under DIR (default: a temporary dir, removed)")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="profile the masters and agent processes during each phase (cProfile on the "
                             "event loop, stack samples of every thread) into DIR; slows them down")


def run(args: argparse.Namespace) -> int:
    from mesos_es import logconfig

    logconfig.configure("json", "warning")
    try:
        cases, settings = _plan(args)
    except ValueError as e:
        print(f"mesos-es bench master: {e}", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        rows = asyncio.run(_run_cases(cases, settings))
    except KeyboardInterrupt:
        print("mesos-es bench master: interrupted", file=sys.stderr)
        return 130
    report = _report(rows, settings, time.monotonic() - started)
    if args.json:
        sys.stdout.write(json.dumps(report) + "\n")
    else:
        print(_render(report))
    sys.stdout.flush()
    return 0 if all(row.get("error") is None for row in rows) else 1


def _plan(args: argparse.Namespace) -> tuple[list[tuple[int, int]], Settings]:
    def counts(text: str, what: str) -> list[int]:
        try:
            return sorted({int(n) for n in text.split(",") if n.strip()})
        except ValueError:
            raise ValueError(f"--{what} must be comma-separated integers") from None

    agents = counts(args.agents, "agents") if args.agents else list(QUICK_AGENTS if args.quick else DEFAULT_AGENTS)
    masters = counts(args.masters, "masters")
    if not agents or any(not 1 <= n <= 50_000 for n in agents):
        raise ValueError("--agents must be in [1, 50000]")
    if not masters or any(m not in (1, 3, 5) for m in masters):
        raise ValueError("--masters must be among 1, 3, 5")
    pick = (lambda given, quick, default: given if given is not None else (quick if args.quick else default))
    settings = Settings(
        rounds=pick(args.rounds, QUICK_ROUNDS, DEFAULT_ROUNDS),
        duration=pick(args.duration, QUICK_DURATION_S, DEFAULT_DURATION_S),
        max_tasks=pick(args.tasks, QUICK_MAX_TASKS, DEFAULT_MAX_TASKS),
        tasks_per_offer=args.tasks_per_offer,
        window=args.window,
        baseline_s=QUICK_BASELINE_S if args.quick else BASELINE_S,
        max_entry_bytes=args.max_entry_bytes,
        agents_per_process=args.agents_per_process,
        profile_dir=args.profile.resolve() if args.profile else None,
        work_dir=args.work_dir.resolve() if args.work_dir else None,
        master_flags=tuple(_master_flags(args.master_flag)),
    )
    if not 0 <= settings.rounds <= 100:
        raise ValueError("--rounds must be in [0, 100]")
    if not 0 < settings.duration <= 600:
        raise ValueError("--duration must be in (0, 600] seconds")
    if not 1 <= settings.max_tasks <= 10_000_000 or not 1 <= settings.tasks_per_offer <= 1_000:
        raise ValueError("--tasks must be in [1, 10000000] and --tasks-per-offer in [1, 1000]")
    if not 1 <= settings.window <= 100_000 or not 1 <= settings.agents_per_process <= 10_000:
        raise ValueError("--window must be in [1, 100000] and --agents-per-process in [1, 10000]")
    if settings.profile_dir is not None:
        settings.profile_dir.mkdir(parents=True, exist_ok=True)
    return [(m, n) for m in masters for n in agents], settings


def _master_flags(items: list[str]) -> list[str]:
    out = []
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip().lstrip("-")
        if not sep or not name:
            raise ValueError(f"--master-flag {item!r}: expected NAME=VALUE")
        out += [f"--{name}", value]
    return out


def _progress(message: str, bench: str = "master") -> None:
    print(f"bench {bench}: {message}", file=sys.stderr, flush=True)


# -- the cases ---------------------------------------------------------------------------------


async def _run_cases(cases: list[tuple[int, int]], settings: Settings) -> list[dict]:
    rows = []
    for masters, agents in cases:
        label = f"{masters} master{'s' if masters > 1 else ''}, {agents:,} agents"
        _progress(f"{label} ...")
        started = time.monotonic()
        row: dict = {"masters": masters, "agents": agents, "frameworks": FRAMEWORKS}
        bound = (START_TIMEOUT_S + REGISTER_TIMEOUT_S + agents / 100 + OFFERS_TIMEOUT_S + 2 * settings.baseline_s
                 + ROUND_TRIP_PHASE_S + settings.duration + DRAIN_TIMEOUT_S + 6 * STOP_TIMEOUT_S + 60)
        try:
            await asyncio.wait_for(_run_case(masters, agents, settings, row), timeout=bound)
            row["error"] = None
        except (BenchError, OSError, ValueError, KeyError, asyncio.TimeoutError) as e:
            row["error"] = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        row["case_s"] = round(time.monotonic() - started, 1)
        if row["error"]:
            _progress(f"{label}: failed: {row['error']}")
        else:
            _progress(f"{label}: offer round trip p50 {number(row.get('offer_rtt_p50_ms'), 1)} ms, "
                      f"{number(row.get('tasks_per_s'))} tasks/s ({row['case_s']:.0f} s)")
        rows.append(row)
    return rows


def case_work_dir(stack: contextlib.ExitStack, work_dir: Path | None, name: str, bench: str) -> Path:
    """A case's work dir: `work_dir/name`, emptied, when the processes' files are to be kept;
    else a temporary one that `stack` removes."""
    if work_dir is None:
        return Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"mesos-es-bench-{bench}-",
                                                                    ignore_cleanup_errors=True)))
    work = work_dir / name
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    return work


async def _run_case(masters: int, agents: int, settings: Settings, row: dict) -> None:
    import aiohttp

    with contextlib.ExitStack() as stack:
        work = case_work_dir(stack, settings.work_dir, f"{masters}m-{agents}a", "master")
        cluster = _Cluster(work, masters, agents, settings)
        frameworks: list[_Framework] = []
        try:
            t0 = time.monotonic()
            await cluster.start_masters()
            await cluster.start_agents()
            first_term = await cluster.max_term()
            try:
                await cluster.wait_registered(REGISTER_TIMEOUT_S + agents / 100)
            except BenchError as e:
                last_term = await cluster.max_term()
                if first_term is not None and last_term is not None and last_term > first_term:
                    raise BenchError(f"{e}; meanwhile the Raft term went from {first_term} to {last_term} "
                                     "(leader elections: every agent then registers again)") from None
                raise
            row["register_s"] = round(time.monotonic() - t0, 1)
            _progress(f"{agents:,} agents registered in {row['register_s']:g} s")
            connector = aiohttp.TCPConnector(limit=max(BASELINE_CONCURRENCY, 256))
            async with aiohttp.ClientSession(connector=connector,
                                             timeout=aiohttp.ClientTimeout(total=DRAIN_TIMEOUT_S)) as session:
                url = f"http://{cluster.leader}/api/v1/logs/{LOG_NAME}/entries"
                row.update(await _baseline(session, url, settings.baseline_s, cluster))
            _progress(f"baseline: append p50 {number(row['baseline_append_p50_ms'], 1)} ms, "
                      f"{number(row['baseline_appends_per_s'])} appends/s")
            frameworks = [_Framework(i, cluster.http_addresses()) for i in range(FRAMEWORKS)]
            t1 = time.monotonic()
            for fw in frameworks:
                fw.start()
            await _wait_offered(frameworks, agents, cluster)
            row["first_offers_s"] = round(time.monotonic() - t1, 2)
            terms = [await cluster.max_term()]
            await cluster.profile_start("round-trip")
            row.update(await _offer_round_trips(frameworks, settings.rounds))
            await cluster.profile_stop("round-trip")
            terms.append(await cluster.max_term())
            _progress(f"offer round trip: p50 {number(row.get('offer_rtt_p50_ms'), 1)} ms, "
                      f"p99 {number(row.get('offer_rtt_p99_ms'), 1)} ms ({row['offer_rtt_samples']} samples)")
            await cluster.profile_start("launch")
            row.update(await _launch(frameworks, settings, cluster))
            await cluster.profile_stop("launch")
            terms.append(await cluster.max_term())
            # Elections after the first: a loaded leader that loses its followers' votes.
            row["elections"] = {phase: (b - a if a is not None and b is not None else None)
                                for phase, a, b in (("round_trip", terms[0], terms[1]),
                                                    ("launch", terms[1], terms[2]))}
            row["resubscriptions"] = sum(fw.subscriptions - 1 for fw in frameworks)
            _finish_ratios(row)
        finally:
            await asyncio.gather(*(fw.close() for fw in frameworks), return_exceptions=True)
            await cluster.stop()


def _finish_ratios(row: dict) -> None:
    rtt, append = row.get("offer_rtt_p50_ms"), row.get("baseline_append_p50_ms")
    row["offer_rtt_ratio"] = round(rtt / append, 2) if rtt and append else None
    tasks, appends = row.get("tasks_per_s"), row.get("baseline_appends_per_s")
    row["ratio"] = round(tasks / appends, 3) if tasks and appends else None
    # What one launched task costs the leader, in appends' worth of its CPU, and in calls.
    per_task, per_append = row.get("leader_cpu_ms_per_task"), row.get("baseline_leader_cpu_ms_per_append")
    row["leader_appends_per_task"] = round(per_task / per_append, 1) if per_task and per_append else None
    running = row.get("tasks_running")
    row["calls_per_task"] = ({k: round(v / running, 2) for k, v in row["calls"].items()}
                             if running and row.get("calls") else None)


# -- processes ---------------------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (all its threads) and of its live child processes
    (a master's Raft process), from /proc."""
    total = None
    for one in (pid, *children(pid)):
        try:
            with open(f"/proc/{one}/stat") as f:
                fields = f.read().rpartition(")")[2].split()
        except OSError:
            continue
        total = (total or 0.0) + (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def _own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class _Process:
    name: str
    process: asyncio.subprocess.Process
    log: Path
    http: str = ""
    profile: Path | None = None
    argv: tuple[str, ...] = ()  # the `mesos-es` arguments it was started with (to start it again)


@dataclass
class _Cluster:
    """Real masters and synthetic agent processes. `settings` needs `work_dir`,
    `max_entry_bytes`, `master_flags`, `profile_dir` and `agents_per_process` (bench failover
    passes its own)."""

    bench = "master"  # whose progress lines these are

    work: Path
    masters: int
    agents: int
    settings: Settings
    master_procs: list[_Process] = field(default_factory=list)
    agent_procs: list[_Process] = field(default_factory=list)
    leader: str = ""
    _offsets: dict = field(default_factory=dict)
    _progress: dict = field(default_factory=dict)

    def http_addresses(self) -> list[str]:
        return [p.http for p in self.master_procs]

    async def _spawn(self, name: str, argv: list[str], profile: Path | None, append: bool = False) -> _Process:
        log = self.work / f"{name}.log"
        prefix = [sys.executable, "-m", "mesos_es"]
        if profile is not None:
            prefix = [sys.executable, "-m", "mesos_es.bench._profile", "--out", str(profile)]
        with open(log, "ab" if append else "wb") as out:
            process = await asyncio.create_subprocess_exec(
                *prefix, *argv, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
                preexec_fn=die_with_parent(signal.SIGKILL))
        return _Process(name, process, log, profile=profile, argv=tuple(argv))

    def _profile_path(self, name: str) -> Path | None:
        if self.settings.profile_dir is None:
            return None
        return self.settings.profile_dir / f"{self.masters}m-{self.agents}a-{name}"

    async def start_masters(self) -> None:
        from mesos_es.bench.log import _free_ports

        secret = self.work / "raft.secret"
        secret.write_text(os.urandom(24).hex() + "\n")
        secret.chmod(0o600)
        for attempt in range(2):  # again with other ports if one was taken meanwhile
            ports = _free_ports(2 * self.masters)
            https = [f"127.0.0.1:{p}" for p in ports[: self.masters]]
            rafts = [f"127.0.0.1:{p}" for p in ports[self.masters:]]
            peers = ",".join(f"{h}={r}" for h, r in zip(https, rafts)) if self.masters > 1 else ""
            for i, (http, raft) in enumerate(zip(https, rafts)):
                name = f"master-{i + 1}"
                argv = ["master", "--id", name, "--address", http, "--raft-address", raft, "--peers", peers,
                        "--work-dir", str(self.work / name), "--raft-secret-file", str(secret),
                        "--journal-sync", "fsync", "--log-format", "json",
                        # info when the logs are kept for reading (--work-dir)
                        "--log-level", "info" if self.settings.work_dir else "warning"]
                if self.settings.max_entry_bytes:
                    argv += ["--max-entry-bytes", str(self.settings.max_entry_bytes)]
                argv += self.settings.master_flags
                proc = await self._spawn(name, argv, self._profile_path(name))
                proc.http = http
                self.master_procs.append(proc)
            try:
                self.leader = await self._wait_for_leader()
                return
            except BenchError:
                if attempt == 1:
                    raise
                _progress("the masters did not start; retrying on other ports", self.bench)
                await self._stop(self.master_procs)
                self.master_procs = []

    async def _wait_for_leader(self) -> str:
        import aiohttp

        deadline = time.monotonic() + START_TIMEOUT_S
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
            while time.monotonic() < deadline:
                self._check_alive(self.master_procs)
                leaders = set()
                answers = 0
                for proc in self.master_procs:
                    try:
                        async with session.get(f"http://{proc.http}/health") as resp:
                            if resp.status == 200:
                                body = await resp.json()
                                answers += 1
                                if body.get("role") == "leader":
                                    leaders.add(proc.http)
                    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
                        pass
                if len(leaders) == 1 and answers == len(self.master_procs):
                    return leaders.pop()
                await asyncio.sleep(0.1)
        raise BenchError(f"no leading master within {START_TIMEOUT_S:g} s")

    async def max_term(self) -> int | None:
        """The highest Raft term any master reports: each election raises it by one or more."""
        import aiohttp

        terms = []
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            for proc in self.master_procs:
                try:
                    async with session.get(f"http://{proc.http}/health") as resp:
                        if resp.status == 200:
                            terms.append(int((await resp.json())["term"]))
                except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, KeyError):
                    pass
        return max(terms) if terms else None

    def _check_alive(self, procs: list[_Process]) -> None:
        for proc in procs:
            if proc.process.returncode is not None:
                raise BenchError(f"{proc.name} exited with {proc.process.returncode}:\n{_tail(proc.log)}")

    async def start_agents(self) -> None:
        per = self.settings.agents_per_process
        count = math.ceil(self.agents / per)
        masters = ",".join(self.http_addresses())
        for i in range(count):
            n = min(per, self.agents - i * per)
            name = f"agents-{i + 1}"
            argv = ["agent", "--synthetic", str(n), "--synthetic_task_duration", "-1",
                    "--master", masters, "--work_dir", str(self.work / name), "--hostname", f"bench{i + 1}",
                    "--port", str(20_000 + i * per), "--resources", AGENT_RESOURCES,
                    "--log-format", "json", "--log-level", "info"]
            self.agent_procs.append(await self._spawn(name, argv, self._profile_path(name)))

    def agent_progress(self) -> tuple[int, Counter]:
        """Agents registered, and calls made by the agents (by type), as last logged."""
        for proc in self.agent_procs:
            offset, found = _scan_progress(proc.log, self._offsets.get(proc.name, 0))
            self._offsets[proc.name] = offset
            if found is not None:
                self._progress[proc.name] = found
        calls: Counter = Counter()
        for found in self._progress.values():
            calls.update(found["calls"])
        return sum(p["registered"] for p in self._progress.values()), calls

    async def wait_registered(self, timeout: float) -> None:
        """Until every agent process logs that all its agents are registered."""
        deadline = time.monotonic() + timeout
        last_report = time.monotonic()
        registered = 0
        while time.monotonic() < deadline:
            self._check_alive(self.master_procs + self.agent_procs)
            registered, _ = self.agent_progress()
            total = registered
            if total >= self.agents:
                return
            if time.monotonic() - last_report > 10:
                _progress(f"{total:,} of {self.agents:,} agents registered", self.bench)
                last_report = time.monotonic()
            await asyncio.sleep(0.25)
        raise BenchError(f"only {registered} of {self.agents} agents registered within {timeout:g} s")

    def cpu(self) -> dict:
        leader = [p for p in self.master_procs if p.http == self.leader]
        followers = [p for p in self.master_procs if p.http != self.leader]
        return {
            "leader": sum(_cpu_seconds(p.process.pid) or 0.0 for p in leader),
            "followers": sum(_cpu_seconds(p.process.pid) or 0.0 for p in followers),
            "agents": sum(_cpu_seconds(p.process.pid) or 0.0 for p in self.agent_procs),
            "schedulers": _own_cpu_seconds(),
        }

    async def profile_start(self, label: str) -> None:
        for proc in self._profiled():
            Path(f"{proc.profile}.label").write_text(label)
            with contextlib.suppress(ProcessLookupError):
                proc.process.send_signal(signal.SIGUSR1)

    async def profile_stop(self, label: str) -> None:
        procs = self._profiled()
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                proc.process.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + 60
        for proc in procs:
            done = Path(f"{proc.profile}-{label}.done")
            while not done.exists() and time.monotonic() < deadline and proc.process.returncode is None:
                await asyncio.sleep(0.2)
        if procs:
            _progress(f"profiles of the {label} phase in {self.settings.profile_dir}", self.bench)

    def _profiled(self) -> list[_Process]:
        return [p for p in self.master_procs + self.agent_procs if p.profile is not None]

    async def _stop(self, procs: list[_Process]) -> None:
        await asyncio.gather(*(stop_process(p.process, STOP_TIMEOUT_S) for p in procs), return_exceptions=True)

    async def stop(self) -> None:
        await self._stop(self.agent_procs)
        await self._stop(self.master_procs)


def _scan_progress(log: Path, offset: int) -> tuple[int, dict | None]:
    """The newest `synthetic_agents_registered` line of an agent process's log after
    `offset`: {"registered": N, "calls": {type: n}} and the line's other fields
    (`mesos_es.agent.synthetic.progress`)."""
    found = None
    try:
        with open(log, "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return offset, None
    end = data.rfind(b"\n") + 1
    for line in data[:end].splitlines():
        if b"synthetic_agents_registered" in line:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                event = json.loads(line)
                found = {**{k: v for k, v in event.items() if k not in _LOG_FIELDS},
                         "registered": int(event["registered"]), "calls": dict(event.get("calls") or {})}
    return offset + end, found


_LOG_FIELDS = frozenset({"event", "level", "logger", "timestamp", "synthetic"})


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


# -- the baseline ------------------------------------------------------------------------------


async def _baseline(session, url: str, duration: float, cluster: _Cluster) -> dict:
    """Named-log appends on the leader: latency in an open loop at BASELINE_RATE, then
    committed appends/s in a closed loop of BASELINE_CONCURRENCY requests."""
    from mesos_es.bench._log_worker import measure_open_loop
    from mesos_es.bench.log import Settings as LogSettings
    from mesos_es.bench.log import _http_throughput, _post

    payloads = make_payloads(300, "random")
    latency = await measure_open_loop(lambda payload: _post(session, url, payload), payloads,
                                      BASELINE_RATE, duration, DRAIN_TIMEOUT_S)
    log_settings = LogSettings(duration=duration, warmup=0.0, entry_bytes=300, payload="random", in_flight=0,
                               http_concurrency=BASELINE_CONCURRENCY, rate=BASELINE_RATE)
    cpu0 = cluster.cpu()
    throughput = await _http_throughput(session, url, log_settings, duration)
    cpu1 = cluster.cpu()
    if not latency["count"] or not throughput["committed"]:
        raise BenchError("the baseline appends failed")
    leader_ms = 1e3 * (cpu1["leader"] - cpu0["leader"]) / throughput["committed"]
    return {
        "baseline_append_p50_ms": _round(latency["p50_ms"]),
        "baseline_append_p99_ms": _round(latency["p99_ms"]),
        "baseline_appends_per_s": round(throughput["appends_per_s"], 1),
        "baseline_errors": latency["errors"] + throughput["errors"],
        # the leader's CPU per committed append (all it did meanwhile, agents' PONGs included)
        "baseline_leader_cpu_ms_per_append": _round(leader_ms, 3),
    }


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None or math.isnan(value) else round(value, digits)


# -- frameworks --------------------------------------------------------------------------------


class _Framework:
    """One framework: our SchedulerClient, its stream read by a task that records when
    OFFERS and UPDATE events arrive and acknowledges every update."""

    def __init__(self, index: int, masters: list[str]):
        from mesos_es.client.scheduler import SchedulerClient

        self.index = index
        # A failover timeout, as real frameworks set one: a leader change then costs the
        # framework its offers (the new leader voids them), not its tasks.
        self.client = SchedulerClient(masters, {"user": "bench", "name": f"bench-{index}", "roles": ["*"],
                                                "failover_timeout": FAILOVER_TIMEOUT_S})
        self.subscriptions = 0
        self.offers: dict[str, dict] = {}  # held offers by id
        self.offers_seq = 0  # OFFERS events received
        self.offers_at: list[tuple[int, float, int]] = []  # (seq, time, offers in it), for round trips
        self.agents_offered: set[str] = set()
        self.changed = asyncio.Event()  # an OFFERS or UPDATE event arrived
        self.subscribed = asyncio.Event()
        self.accepted_at: dict[str, float] = {}  # task id -> start of its ACCEPT
        self.accept_done_at: dict[str, float] = {}  # task id -> its ACCEPT answered (202)
        self.starting_at: dict[str, float] = {}  # task id -> TASK_STARTING at the scheduler
        self.running_at: dict[str, float] = {}
        self.failed: dict[str, str] = {}  # task id -> terminal state before RUNNING
        self.states: Counter = Counter()
        self.errors: Counter = Counter()
        self.acks = asyncio.Semaphore(ACK_CONCURRENCY)
        self.calls: Counter = Counter()  # calls made, by type
        self.background: set[asyncio.Task] = set()
        self._reader: asyncio.Task | None = None

    def start(self) -> None:
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async with self.client:
            async for event in self.client.events():
                kind = event.get("type")
                now = time.perf_counter()
                if kind == "SUBSCRIBED":
                    self.subscriptions += 1
                    self.offers.clear()  # offers of a previous leader are void
                    self.subscribed.set()
                elif kind == "OFFERS":
                    offers = event["offers"].get("offers") or []
                    self.offers_seq += 1
                    self.offers_at.append((self.offers_seq, now, len(offers)))
                    for offer in offers:
                        self.offers[offer["id"]["value"]] = offer
                        self.agents_offered.add(offer["agent_id"]["value"])
                    self.changed.set()
                elif kind == "RESCIND":
                    self.offers.pop(event["rescind"]["offer_id"]["value"], None)
                elif kind == "UPDATE":
                    self._update(event["update"]["status"], now)
                elif kind == "ERROR":
                    self.errors["stream ERROR: " + str(event.get("error", {}).get("message"))[:80]] += 1

    def _update(self, status: dict, now: float) -> None:
        task_id = status["task_id"]["value"]
        state = status.get("state", "")
        self.states[state] += 1
        if task_id in self.accepted_at and task_id not in self.running_at and task_id not in self.failed:
            if state == "TASK_RUNNING":
                self.running_at[task_id] = now
            elif state == "TASK_STARTING":
                self.starting_at[task_id] = now
            elif state not in ("TASK_STAGING", "TASK_STARTING"):
                self.failed[task_id] = state
                self.errors[f"{state}: {status.get('message', '')[:80]}"] += 1
        if "uuid" in status:
            self.spawn(self._acknowledge(status))
        self.changed.set()

    async def _acknowledge(self, status: dict) -> None:
        self.calls["ACKNOWLEDGE"] += 1  # counted when due (it may wait for the semaphore)
        async with self.acks:
            try:
                await self.client.acknowledge(status)
            except Exception as e:  # noqa: BLE001 - counted, the bench goes on
                self.errors[f"ACKNOWLEDGE: {type(e).__name__}: {str(e)[:80]}"] += 1

    def spawn(self, coroutine) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    def outstanding(self) -> int:
        return len(self.accepted_at) - len(self.running_at) - len(self.failed)

    async def close(self) -> None:
        for task in list(self.background):
            task.cancel()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, *self.background, return_exceptions=True)
        await self.client.close()


async def _wait_offered(frameworks: list[_Framework], agents: int, cluster: _Cluster) -> None:
    """Until every framework is subscribed and every agent is on offer to one of them."""
    deadline = time.monotonic() + OFFERS_TIMEOUT_S
    while time.monotonic() < deadline:
        cluster._check_alive(cluster.master_procs + cluster.agent_procs)
        offered = set().union(*(fw.agents_offered for fw in frameworks))
        if all(fw.subscribed.is_set() for fw in frameworks) and len(offered) >= agents:
            return
        await asyncio.sleep(0.1)
    subscribed = sum(fw.subscribed.is_set() for fw in frameworks)
    offered = len(set().union(*(fw.agents_offered for fw in frameworks)))
    failed = _log_events(cluster.master_procs, "allocation_not_committed")
    why = f"; the leader logged allocation_not_committed {len(failed)} times: {failed[-1]}" if failed else ""
    raise BenchError(f"after {OFFERS_TIMEOUT_S:g} s: {subscribed} of {len(frameworks)} frameworks subscribed, "
                     f"{offered} of {agents} agents offered{why}")


def _log_events(procs: list[_Process], name: str) -> list[str]:
    """The `error` of each log line of these processes whose event is `name`."""
    out = []
    for proc in procs:
        with contextlib.suppress(OSError), open(proc.log, "rb") as f:
            for line in f:
                if name.encode() in line:
                    with contextlib.suppress(ValueError):
                        out.append(str(json.loads(line).get("error", ""))[:200])
    return out


# -- offer round trip --------------------------------------------------------------------------


async def _offer_round_trips(frameworks: list[_Framework], rounds: int) -> dict:
    """Each framework in turn declines every offer it holds; the sample is the time from the
    DECLINE call to the next OFFERS event on its stream."""
    clock = time.perf_counter
    samples, commits, sizes = [], [], []
    misses = 0
    deadline = time.monotonic() + ROUND_TRIP_PHASE_S
    for _ in range(rounds):
        for fw in frameworks:
            if time.monotonic() > deadline:
                break
            ids = sorted(fw.offers)
            if not ids:
                misses += 1
                continue
            seq = fw.offers_seq
            fw.offers.clear()
            t0 = clock()
            try:
                await fw.client.decline(ids, refuse_seconds=0)
            except Exception as e:  # noqa: BLE001
                fw.errors[f"DECLINE: {type(e).__name__}: {str(e)[:80]}"] += 1
                misses += 1
                continue
            t1 = clock()
            end = time.monotonic() + ROUND_TRIP_TIMEOUT_S
            while fw.offers_seq == seq and time.monotonic() < end:
                fw.changed.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(fw.changed.wait(), max(0.01, end - time.monotonic()))
            if fw.offers_seq == seq:
                misses += 1
                continue
            _, t2, size = next(x for x in fw.offers_at if x[0] == seq + 1)
            samples.append(t2 - t0)
            commits.append(t1 - t0)
            sizes.append(size)
            await asyncio.sleep(0.05)  # let the rest of that cycle's offers land
    samples.sort()
    commits.sort()
    return {
        "offer_rtt_samples": len(samples),
        "offer_rtt_misses": misses,
        "offer_rtt_p50_ms": _round(percentile(samples, 0.5) * 1e3) if samples else None,
        "offer_rtt_p99_ms": _round(percentile(samples, 0.99) * 1e3) if samples else None,
        "offer_rtt_max_ms": _round(samples[-1] * 1e3) if samples else None,
        "decline_commit_p50_ms": _round(percentile(commits, 0.5) * 1e3) if commits else None,
        "offers_per_event_p50": percentile(sorted(sizes), 0.5) if sizes else None,
    }


# -- task launch -------------------------------------------------------------------------------


def _scalar(offer: dict, name: str) -> float:
    return sum(r.get("scalar", {}).get("value", 0.0) for r in offer.get("resources") or []
               if r.get("name") == name and not r.get("revocable"))


def _task(task_id: str, agent_id: str, role: str) -> dict:
    def scalar(name, value):
        return {"name": name, "type": "SCALAR", "scalar": {"value": value}, "role": "*",
                "allocation_info": {"role": role}}

    return {"name": task_id, "task_id": {"value": task_id}, "agent_id": {"value": agent_id},
            "resources": [scalar("cpus", TASK_CPUS), scalar("mem", TASK_MEM_MB)],
            "command": {"shell": True, "value": "sleep 3600"},
            "labels": {"labels": [{"key": LABEL_DURATION, "value": "-1"}]}}


async def _launch(frameworks: list[_Framework], settings: Settings, cluster: _Cluster) -> dict:
    clock = time.perf_counter
    budget = {"left": settings.max_tasks}
    start = clock()
    end = start + settings.duration
    cpu0, wall0 = cluster.cpu(), time.monotonic()
    _, agent_calls0 = cluster.agent_progress()
    scheduler_calls0 = sum((fw.calls for fw in frameworks), Counter())

    async def accept(fw: _Framework, offer_id: str, operations: list[dict], task_ids: list[str]) -> None:
        try:
            fw.calls["ACCEPT"] += 1
            await fw.client.accept([offer_id], operations)
            now = clock()
            for task_id in task_ids:
                fw.accept_done_at[task_id] = now
        except Exception as e:  # noqa: BLE001 - counted, its tasks fail
            fw.errors[f"ACCEPT: {type(e).__name__}: {str(e)[:80]}"] += 1
            for task_id in task_ids:
                fw.failed.setdefault(task_id, "ACCEPT failed")
            fw.changed.set()

    async def one(fw: _Framework) -> None:
        n = 0
        while clock() < end and budget["left"] > 0:
            if fw.outstanding() >= settings.window or not fw.offers:
                fw.changed.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(fw.changed.wait(), min(0.1, max(0.001, end - clock())))
                continue
            offer_id, offer = fw.offers.popitem()
            fits = int(min(_scalar(offer, "cpus") / TASK_CPUS + 1e-9, _scalar(offer, "mem") / TASK_MEM_MB + 1e-9))
            k = min(settings.tasks_per_offer, fits, budget["left"], settings.window - fw.outstanding())
            if k <= 0:
                continue  # too small to use: let it go unused (it times out like any held offer)
            budget["left"] -= k
            role = (offer.get("allocation_info") or {}).get("role", "*")
            agent_id = offer["agent_id"]["value"]
            ids = [f"f{fw.index}-t{n + j}" for j in range(k)]
            n += k
            now = clock()
            for task_id in ids:
                fw.accepted_at[task_id] = now
            operations = [{"type": "LAUNCH", "launch": {"task_infos": [_task(t, agent_id, role) for t in ids]}}]
            fw.spawn(accept(fw, offer_id, operations, ids))

    await asyncio.gather(*(one(fw) for fw in frameworks))
    exhausted = budget["left"] <= 0
    cpu1, wall1 = cluster.cpu(), time.monotonic()
    # Drain: the tasks already accepted (bounded).
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while time.monotonic() < deadline and any(fw.outstanding() > 0 for fw in frameworks):
        await asyncio.sleep(0.1)
    if exhausted:  # every task launched before the end: the window closes at the last RUNNING
        cpu1, wall1 = cluster.cpu(), time.monotonic()
        window_end = max((t for fw in frameworks for t in fw.running_at.values()), default=clock())
    else:
        window_end = end
    running_in_window = sum(1 for fw in frameworks for t in fw.running_at.values() if t <= window_end)
    await asyncio.sleep(2 * PROGRESS_S)  # the agents' next progress lines
    _, agent_calls1 = cluster.agent_progress()
    calls = {f"agent {k}": v for k, v in sorted((agent_calls1 - agent_calls0).items())}
    calls.update({f"scheduler {k}": v for k, v in
                  sorted((sum((fw.calls for fw in frameworks), Counter()) - scheduler_calls0).items())})
    launched = sum(len(fw.accepted_at) for fw in frameworks)
    running = sum(len(fw.running_at) for fw in frameworks)
    failed = sum(len(fw.failed) for fw in frameworks)
    latencies = sorted(fw.running_at[t] - fw.accepted_at[t] for fw in frameworks for t in fw.running_at)
    summary = latency_summary(latencies, 0, 1.0)

    def median_ms(pairs) -> float | None:
        values = sorted(b - a for a, b in pairs)
        return _round(percentile(values, 0.5) * 1e3) if values else None

    stages = {  # medians of each step of a launch, over the tasks that reached TASK_RUNNING
        "accept_ms": median_ms((fw.accepted_at[t], fw.accept_done_at[t]) for fw in frameworks
                               for t in fw.running_at if t in fw.accept_done_at),
        "accept_to_starting_ms": median_ms((fw.accepted_at[t], fw.starting_at[t]) for fw in frameworks
                                           for t in fw.running_at if t in fw.starting_at),
        "starting_to_running_ms": median_ms((fw.starting_at[t], fw.running_at[t]) for fw in frameworks
                                            for t in fw.running_at if t in fw.starting_at),
    }
    window = window_end - start
    cpu = {k: round(cpu1[k] - cpu0[k], 2) for k in cpu0}
    wall = wall1 - wall0
    errors = Counter()
    for fw in frameworks:
        errors.update(fw.errors)
    leader_ms_per_task = 1e3 * cpu["leader"] / running_in_window if running_in_window else None
    return {
        "tasks_launched": launched,
        "tasks_running": running,
        "tasks_failed": failed,
        "tasks_unfinished": launched - running - failed,
        "tasks_running_in_window": running_in_window,
        "launch_window_s": round(window, 2),
        "tasks_per_s": round(running_in_window / window, 1) if window > 0 else None,
        "launch_p50_ms": _round(summary["p50_ms"]),
        "launch_p99_ms": _round(summary["p99_ms"]),
        "launch_max_ms": _round(summary["max_ms"]),
        "launch_stages_p50_ms": stages,
        "cpu_s": cpu,
        "cores": {k: round(v / wall, 2) for k, v in cpu.items()} if wall > 0 else None,
        "leader_cpu_ms_per_task": _round(leader_ms_per_task, 3),
        # HTTP calls to the leader during the phase (drain included), by who and type
        "calls": calls,
        "states": dict(sum((fw.states for fw in frameworks), Counter())),
        "errors": dict(errors.most_common(10)),
    }


# -- the report ------------------------------------------------------------------------------------


def _report(rows: list[dict], settings: Settings, elapsed: float) -> dict:
    ok = [r for r in rows if not r.get("error")]
    headline = next((r for r in ok if (r["masters"], r["agents"]) == (HEADLINE_MASTERS, TARGET_AGENTS)),
                    ok[-1] if ok else (rows[-1] if rows else {}))
    tasks = headline.get("tasks_per_s")
    at_target = (headline.get("masters"), headline.get("agents")) == (HEADLINE_MASTERS, TARGET_AGENTS)
    keys = ("masters", "agents", "frameworks", "offer_rtt_p50_ms", "offer_rtt_p99_ms", "tasks_per_s",
            "launch_p50_ms", "launch_p99_ms", "baseline_append_p50_ms", "baseline_appends_per_s",
            "offer_rtt_ratio", "ratio", "leader_cpu_ms_per_task")
    return {
        "benchmark": "master",
        **{k: headline.get(k) for k in keys},
        "targets": {
            f"tasks_per_s_at_least_{TARGET_TASKS_PER_S}_at_{TARGET_AGENTS}_agents":
                at_target and tasks is not None and tasks >= TARGET_TASKS_PER_S,
        },
        "settings": {"rounds": settings.rounds, "duration_s": settings.duration, "max_tasks": settings.max_tasks,
                     "tasks_per_offer": settings.tasks_per_offer, "window": settings.window,
                     "baseline_s": settings.baseline_s, "max_entry_bytes": settings.max_entry_bytes,
                     "agent_resources": AGENT_RESOURCES, "task": f"cpus:{TASK_CPUS:g};mem:{TASK_MEM_MB:g}"},
        "cases": rows,
        "elapsed_s": round(elapsed, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    }


def _ratio(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}x"


def _render(report: dict) -> str:
    cases = report["cases"]
    rtt_headers = ["masters", "agents", "samples", "rtt p50 ms", "rtt p99 ms", "decline ms", "offers/event",
                   "append p50 ms", "vs append"]
    rtt_rows = [[str(r["masters"]), number(r["agents"]), str(r.get("offer_rtt_samples", "-")),
                 number(r.get("offer_rtt_p50_ms"), 1), number(r.get("offer_rtt_p99_ms"), 1),
                 number(r.get("decline_commit_p50_ms"), 1), number(r.get("offers_per_event_p50")),
                 number(r.get("baseline_append_p50_ms"), 1), _ratio(r.get("offer_rtt_ratio"))] for r in cases]
    launch_headers = ["masters", "agents", "running", "tasks/s", "p50 ms", "p99 ms", "appends/s", "vs appends",
                      "leader ms/task", "cores L/F/A/S", "note"]
    launch_rows = []
    for r in cases:
        cores = r.get("cores") or {}
        note = ""
        if r.get("error"):
            note = "failed: " + r["error"].splitlines()[0][:70]
        else:
            notes = []
            if r.get("tasks_failed") or r.get("tasks_unfinished"):
                notes.append(f"{r['tasks_failed']} failed, {r['tasks_unfinished']} not running")
            elections = sum(v or 0 for v in (r.get("elections") or {}).values())
            if elections:
                notes.append(f"{elections} election{'s' if elections > 1 else ''} (term changes)")
            note = "; ".join(notes)
        launch_rows.append([
            str(r["masters"]), number(r["agents"]), number(r.get("tasks_running")), number(r.get("tasks_per_s")),
            number(r.get("launch_p50_ms"), 1), number(r.get("launch_p99_ms"), 1),
            number(r.get("baseline_appends_per_s")), _ratio(r.get("ratio"), 2),
            number(r.get("leader_cpu_ms_per_task"), 2),
            "/".join(f"{cores[k]:.2f}" for k in ("leader", "followers", "agents", "schedulers")) if cores else "-",
            note])
    s = report["settings"]
    tasks = report["tasks_per_s"]
    met = list(report["targets"].values())[0]
    target = (f"target: >= {TARGET_TASKS_PER_S:,} task launches/s at {TARGET_AGENTS:,} agents "
              f"({HEADLINE_MASTERS} masters): ")
    if (report["masters"], report["agents"]) == (HEADLINE_MASTERS, TARGET_AGENTS) and tasks is not None:
        target += f"{number(tasks)} tasks/s {'MET' if met else 'NOT MET'}"
    else:
        target += "not measured (no such case, or it failed)"
    return "\n".join([
        f"mesos-es bench master: {FRAMEWORKS} frameworks (our client, real HTTP), synthetic agents "
        f"({s['agent_resources']}), durable journals",
        "",
        "offer round trip: a framework DECLINEs every offer it holds -> the next OFFERS event on its stream; "
        "decline = the DECLINE call alone; append = one named-log append (HTTP, committed), same cluster",
        "",
        format_table(rtt_headers, rtt_rows, right=[True] * len(rtt_headers)),
        "",
        f"task launch: ACCEPT (start of the call) -> TASK_RUNNING at the scheduler, {s['tasks_per_offer']} tasks "
        f"per ACCEPT, at most {s['window']} in flight per framework, {s['duration_s']:g} s; appends/s = closed "
        f"loop of {BASELINE_CONCURRENCY} named-log appends, same cluster; cores = CPU used during the phase by "
        "the Leader, Followers, Agent processes, Schedulers (this process)",
        "",
        format_table(launch_headers, launch_rows, right=[True] * 10 + [False]),
        "",
        target,
        f"({report['machine']['cpus']} CPUs, Python {report['machine']['python']}, {report['machine']['date']}, "
        f"{report['elapsed_s']:g} s in all)",
    ])
