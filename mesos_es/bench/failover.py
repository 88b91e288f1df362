"""`mesos-es bench failover`: the Mesos master failover benchmark, on real masters.

Mesos' performance working group measured how long a master failover takes to complete
(every agent re-registered with the new leader) with N synthetic agents, 10 active tasks per
agent over 5 frameworks and 10 small labels per task, optionally with 100 completed tasks
per agent over 5 completed frameworks (Mesos 1.5 figures in `MESOS_1_5_S`). Each case here:

1. starts 3 real masters with durable journals (`mesos-es master`, as `cluster up`) and N
   synthetic agents in separate processes (`mesos-es agent --synthetic`, real protocol over
   HTTP); their fresh registration is the **baseline**;
2. **seeds** the cluster through the real APIs, one framework at a time: the completed
   frameworks first (each ACCEPTs every agent once with its share of the completed tasks,
   which finish at once; every update is acknowledged; the framework is then torn down),
   then the 5 active frameworks (each ACCEPTs every agent once with 2 tasks that run until
   killed). Tasks carry `mesos-es/synthetic-updates: minimal`, so a synthetic agent reports
   only TASK_RUNNING (TASK_FINISHED for a completed task): one UPDATE and one ACKNOWLEDGE per
   task. A framework takes one allocation cycle's offers (every agent), SUPPRESSes, ACCEPTs
   them one by one, and REVIVEs for another round only for agents whose offers timed out:
   each ACCEPT would otherwise trigger a cycle over every agent. Seeding is timed but is not
   part of the figures;
3. SIGKILLs the leader and measures `election_s` (kill until a survivor leads and has applied
   its MasterElected: its `/health` reports role leader and a position past the old leader's
   last) and `time_to_completion_s` (kill until every agent has received REGISTERED from the
   new leader, from the agents' own clocks), how each re-registered (task digest, or task list
   after a 412), and the events the new leader committed (its archive);
4. `cold_start_s`: stops every master, starts all three again from their work dirs, and times
   until one leads with the whole state (applied past the position reached before the stop);
5. `master_rss_mb`: the resident memory of every master (the largest is reported).

The active frameworks stay connected through the failover (suppressed, so nothing is offered
to them); Mesos' benchmark had no frameworks. Every wait and loop is bounded in count and
time; a size that cannot be seeded within `--seed-budget-s` is skipped and said so. With
`--json`, stdout carries exactly one JSON object (one line); progress and logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import itertools
import json
import math
import os
import platform
import resource
import signal
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from mesos_es.bench.master import (
    BenchError,
    _Cluster,
    case_work_dir,
    _cpu_seconds,
    _master_flags,
    _own_cpu_seconds,
    _Process,
    _round,
)
from mesos_es.bench.table import format_table, number
from mesos_es.processes import children

DEFAULT_AGENTS = (1_000, 5_000, 10_000, 20_000, 40_000)
DEFAULT_SERIES_COMPLETED = (0, 100)  # completed tasks per agent of the two series
QUICK_AGENTS = 20
QUICK_COMPLETED = 10
ACTIVE_FRAMEWORKS = 5
COMPLETED_FRAMEWORKS = 5
ACTIVE_TASKS_PER_AGENT = 10
LABELS_PER_TASK = 10
AGENTS_PER_PROCESS = 2_500
AGENT_RESOURCES = "cpus:16;mem:65536;disk:200000;ports:[31000-32000]"
TASK_CPUS = 0.01
TASK_MEM_MB = 1.0
WINDOW_TASKS = 200  # tasks launched and not yet acknowledged in the state they rest in
ACCEPTS_IN_FLIGHT = 8  # per framework
ACKS_IN_FLIGHT = 64  # per framework
DECLINE_CHUNK = 2_000  # offer ids per DECLINE
ROUND_SETTLE_S = 0.5  # after a round's first offers: the rest of that cycle's OffersMade events
ROUND_OFFERS_S = 20.0  # a round that gets no offer this long REVIVEs again
MAX_ROUNDS = 50
RECONCILE_EVERY_S = 15.0  # tasks whose ACCEPT was answered this long ago and not settled are asked about
RECONCILE_AFTER_S = 30.0
RECONCILE_CHUNK = 1_000
FAILOVER_TIMEOUT_S = 3600.0  # the frameworks': a leader change costs them nothing
TARGET_AGENTS = 40_000
TARGET_S = 5.0
LABEL_UPDATES = "mesos-es/synthetic-updates"
LABEL_DURATION = "mesos-es/duration-seconds"
# Mesos 1.5.0, time to completion in seconds, read off the charts of the working group's
# report (December 2017): quorum 1, in-process messages, a 2015 laptop.
MESOS_1_5_S = {1_000: ("< 1", "~ 2"), 5_000: ("~ 2", "~ 10"), 10_000: ("~ 4.5", "~ 25"),
               20_000: ("~ 9", "~ 55"), 40_000: ("~ 19", "~ 135")}

START_TIMEOUT_S = 30.0
REGISTER_TIMEOUT_S = 60.0  # plus 1 s per 100 agents
DEFAULT_SEED_BUDGET_S = 1_200.0
QUICK_SEED_BUDGET_S = 90.0
SEED_STALL_S = 120.0  # seeding with no task settled this long is abandoned
QUIET_TIMEOUT_S = 120.0  # agents with nothing left to send after seeding
FAILOVER_LIMIT_S = 120.0  # plus 1 s per 100 agents
COLD_START_LIMIT_S = 180.0  # plus 1 s per 100 agents
STOP_TIMEOUT_S = 30.0
POLL_S = 0.025  # the survivors' /health while electing
EPHEMERAL_RESERVE = 2_000  # loopback ports kept for everything else
FDS_RESERVE = 4_096


@dataclass(frozen=True)
class Settings:
    seed_budget_s: float
    window: int
    agents_per_process: int
    max_entry_bytes: int | None
    profile_dir: Path | None
    work_dir: Path | None
    master_flags: tuple[str, ...] = ()
    cold_start: bool = True


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    parser.add_argument("--quick", action="store_true",
                        help=f"a smoke run: {QUICK_AGENTS} agents, {QUICK_COMPLETED} completed tasks per agent "
                             "(each unless given)")
    parser.add_argument("--agents", help="comma-separated agent counts (default: the series "
                                         f"{','.join(map(str, DEFAULT_AGENTS))}, skipping what cannot finish)")
    parser.add_argument("--completed-per-agent", help="completed tasks per agent, over 5 completed frameworks; "
                                                      "comma-separated for several series (default 0; without "
                                                      "--agents: 0,100)")
    parser.add_argument("--seed-budget-s", type=float,
                        help=f"skip or abandon a size whose seeding takes longer (default {DEFAULT_SEED_BUDGET_S:g})")
    parser.add_argument("--window", type=int, default=WINDOW_TASKS,
                        help="tasks launched and not yet acknowledged while seeding (default %(default)s)")
    parser.add_argument("--agents-per-process", type=int, default=AGENTS_PER_PROCESS,
                        help="synthetic agents per agent process (default %(default)s)")
    parser.add_argument("--max-entry-bytes", type=int, help="passed to the masters (default: theirs)")
    parser.add_argument("--master-flag", action="append", default=[], metavar="NAME=VALUE",
                        help="an extra flag for every master (repeatable; for experiments)")
    parser.add_argument("--no-cold-start", action="store_true", help="skip the cold start")
    parser.add_argument("--work-dir", type=Path, metavar="DIR",
                        help="keep the processes' work dirs and logs under DIR (default: a temporary dir, removed)")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="profile the masters and agent processes while seeding and from the kill to "
                             "completion (cProfile on the event loop, stack samples of every thread) into DIR; "
                             "slows them down")


def run(args: argparse.Namespace) -> int:
    from mesos_es import logconfig

    logconfig.configure("json", "warning")
    try:
        cases, settings = _plan(args)
    except ValueError as e:
        print(f"mesos-es bench failover: {e}", file=sys.stderr)
        return 2
    files = _raise_open_files(max(agents for agents, _ in cases))
    started = time.monotonic()
    try:
        rows = asyncio.run(_run_cases(cases, settings, files))
    except KeyboardInterrupt:
        print("mesos-es bench failover: interrupted", file=sys.stderr)
        return 130
    report = _report(rows, settings, time.monotonic() - started)
    if args.json:
        sys.stdout.write(json.dumps(report) + "\n")
    else:
        print(_render(report))
    sys.stdout.flush()
    return 0 if all(row.get("error") is None for row in rows if not row.get("skipped")) else 1


def _plan(args: argparse.Namespace) -> tuple[list[tuple[int, int]], Settings]:
    def counts(text: str, what: str) -> list[int]:
        try:
            return sorted({int(n) for n in text.split(",") if n.strip()})
        except ValueError:
            raise ValueError(f"--{what} must be comma-separated integers") from None

    if args.agents:
        agents = counts(args.agents, "agents")
    else:
        agents = [QUICK_AGENTS] if args.quick else list(DEFAULT_AGENTS)
    if args.completed_per_agent is not None:
        completed = counts(args.completed_per_agent, "completed-per-agent")
    elif args.quick:
        completed = [QUICK_COMPLETED]
    else:
        completed = list(DEFAULT_SERIES_COMPLETED) if not args.agents else [0]
    if not agents or any(not 1 <= n <= 100_000 for n in agents):
        raise ValueError("--agents must be in [1, 100000]")
    if not completed or any(c < 0 or c > 10_000 or c % COMPLETED_FRAMEWORKS for c in completed):
        raise ValueError(f"--completed-per-agent must be multiples of {COMPLETED_FRAMEWORKS} in [0, 10000]")
    budget = args.seed_budget_s if args.seed_budget_s is not None else (
        QUICK_SEED_BUDGET_S if args.quick else DEFAULT_SEED_BUDGET_S)
    if not 0 < budget <= 24 * 3600:
        raise ValueError("--seed-budget-s must be in (0, 86400]")
    if not 1 <= args.window <= 1_000_000 or not 1 <= args.agents_per_process <= 10_000:
        raise ValueError("--window must be in [1, 1000000] and --agents-per-process in [1, 10000]")
    settings = Settings(
        seed_budget_s=budget, window=args.window, agents_per_process=args.agents_per_process,
        max_entry_bytes=args.max_entry_bytes, profile_dir=args.profile.resolve() if args.profile else None,
        work_dir=args.work_dir.resolve() if args.work_dir else None,
        master_flags=tuple(_master_flags(args.master_flag)), cold_start=not args.no_cold_start)
    if settings.profile_dir is not None:
        settings.profile_dir.mkdir(parents=True, exist_ok=True)
    return [(n, c) for c in completed for n in agents], settings


def _progress(message: str) -> None:
    print(f"bench failover: {message}", file=sys.stderr, flush=True)


# -- limits of this machine ----------------------------------------------------------------------


def _raise_open_files(agents: int) -> int:
    """Raise this process's open-files limit (the masters and agents inherit it) to what
    `agents` need, as far as allowed; returns the soft limit in force."""
    want = agents + FDS_RESERVE
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft
    if hard != resource.RLIM_INFINITY and hard < want:
        with contextlib.suppress(ValueError, OSError):  # root may raise the hard limit too
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))
            return want
    new = want if hard == resource.RLIM_INFINITY else min(want, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _ephemeral_ports() -> tuple[int, int]:
    try:
        lo, hi = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def _cannot_run(agents: int, settings: Settings, files: int) -> str | None:
    """Why this machine cannot hold `agents` agents' connections, or None."""
    processes = math.ceil(agents / settings.agents_per_process)
    from mesos_es.agent.synthetic import CALL_CONNECTIONS, PONG_CONNECTIONS

    connections = agents + processes * (CALL_CONNECTIONS + PONG_CONNECTIONS)
    lo, hi = _ephemeral_ports()
    if connections + EPHEMERAL_RESERVE > hi - lo + 1:
        return (f"{connections:,} connections from 127.0.0.1 to one master need more local ports than "
                f"net.ipv4.ip_local_port_range {lo}-{hi} has ({hi - lo + 1:,})")
    if agents + FDS_RESERVE > files:
        return f"the leader would hold {agents:,} connections; the open-files limit is {files:,}"
    return None


# -- the cases ---------------------------------------------------------------------------------------


async def _run_cases(cases: list[tuple[int, int]], settings: Settings, files: int) -> list[dict]:
    rows: list[dict] = []
    rates: dict[int, float] = {}  # completed per agent -> seeded tasks/s of the last case that seeded
    failed: dict[int, int] = {}  # completed per agent -> the smallest size that failed
    for agents, completed in cases:
        row: dict = {"agents": agents, "active_tasks": agents * ACTIVE_TASKS_PER_AGENT,
                     "completed_per_agent": completed, "completed_tasks": agents * completed,
                     "frameworks": {"active": ACTIVE_FRAMEWORKS, "completed": COMPLETED_FRAMEWORKS if completed else 0}}
        label = f"{agents:,} agents, {completed} completed tasks per agent"
        why = _cannot_run(agents, settings, files)
        rate = rates.get(completed)
        seeded = row["active_tasks"] + row["completed_tasks"]
        if why is None and completed in failed and agents > failed[completed]:
            why = f"{failed[completed]:,} agents failed (see that case)"
        if why is None and rate and seeded / rate > settings.seed_budget_s:
            why = (f"seeding {seeded:,} tasks would take about {seeded / rate:,.0f} s at the last size's "
                   f"{rate:,.0f} tasks/s, over --seed-budget-s {settings.seed_budget_s:g}")
        if why is not None:
            row.update(skipped=True, error=None, reason=why)
            _progress(f"{label}: skipped: {why}")
            rows.append(row)
            continue
        _progress(f"{label} ...")
        started = time.monotonic()
        bound = (START_TIMEOUT_S + REGISTER_TIMEOUT_S + agents / 100 + settings.seed_budget_s + QUIET_TIMEOUT_S
                 + 2 * (FAILOVER_LIMIT_S + agents / 100) + COLD_START_LIMIT_S + agents / 50 + 10 * STOP_TIMEOUT_S)
        try:
            await asyncio.wait_for(_run_case(agents, completed, settings, row), timeout=bound)
            row["error"] = None
        except (BenchError, OSError, ValueError, KeyError, asyncio.TimeoutError) as e:
            row["error"] = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        row["case_s"] = round(time.monotonic() - started, 1)
        if row.get("seed_tasks_per_s"):
            rates[completed] = row["seed_tasks_per_s"]
        if row["error"]:
            failed.setdefault(completed, agents)
            _progress(f"{label}: failed: {row['error']}")
        else:
            _progress(f"{label}: election {number(row.get('election_s'), 2)} s, completion "
                      f"{number(row.get('time_to_completion_s'), 2)} s, cold start "
                      f"{number(row.get('cold_start_s'), 2)} s ({row['case_s']:.0f} s)")
        rows.append(row)
    return rows


class _FailoverCluster(_Cluster):
    """bench master's cluster, plus what a failover needs: kill, restart, memory."""

    bench = "failover"

    async def start_agents(self) -> None:
        per = self.settings.agents_per_process
        masters = ",".join(self.http_addresses())
        for i in range(math.ceil(self.agents / per)):
            n = min(per, self.agents - i * per)
            name = f"agents-{i + 1}"
            argv = ["agent", "--synthetic", str(n), "--synthetic_task_duration", "-1",
                    "--master", masters, "--work_dir", str(self.work / name), "--hostname", f"bench{i + 1}",
                    "--port", str(20_000 + i * per), "--resources", AGENT_RESOURCES,
                    "--log-format", "json", "--log-level", "info"]
            self.agent_procs.append(await self._spawn(name, argv, self._profile_path(name)))

    def progress_lines(self) -> dict[str, dict]:
        """The newest progress line of every agent process (`mesos_es.agent.synthetic.progress`)."""
        self.agent_progress()
        return dict(self._progress)

    def master_proc(self, http: str) -> _Process:
        return next(p for p in self.master_procs if p.http == http)

    async def health(self, session, proc: _Process, timeout: float = 1.0) -> dict | None:
        import aiohttp

        try:
            async with session.get(f"http://{proc.http}/health", timeout=aiohttp.ClientTimeout(total=timeout)) as r:
                return await r.json() if r.status == 200 else None
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError, OSError):
            return None

    async def restart_masters(self) -> None:
        """Start every master again with its arguments, on its work dir (logs appended)."""
        procs = []
        for old in self.master_procs:
            proc = await self._spawn(old.name, list(old.argv), None, append=True)
            proc.http = old.http
            procs.append(proc)
        self.master_procs = procs

    async def stop_masters(self) -> None:
        await self._stop(self.master_procs)


def _memory_mb(pid: int) -> dict | None:
    """Resident memory now and at its peak (VmRSS, VmHWM), in MB, of a process with its live
    child processes (a master's Raft process; their peaks added, as if at the same time)."""
    out: dict[str, float] = {}
    for one in (pid, *children(pid)):
        try:
            with open(f"/proc/{one}/status") as f:
                for line in f:
                    if line.startswith(("VmRSS:", "VmHWM:")):
                        key = "rss_mb" if line.startswith("VmRSS") else "peak_mb"
                        out[key] = round(out.get(key, 0.0) + int(line.split()[1]) / 1024, 1)
        except OSError:
            if one == pid:
                return None
    return out or None


def _masters_memory(cluster: _FailoverCluster) -> dict[str, dict]:
    return {p.name: m for p in cluster.master_procs
            if p.process.returncode is None and (m := _memory_mb(p.process.pid)) is not None}


def _cpu(cluster: _FailoverCluster, leader: str | None = None) -> dict:
    """CPU seconds used so far: each live master by name (or `leader` and `followers` when
    the leader's address is given), the agent processes together, and this process."""
    live = [p for p in cluster.master_procs if p.process.returncode is None]
    out = {}
    if leader is None:
        out.update({p.name: _cpu_seconds(p.process.pid) or 0.0 for p in live})
    else:
        out["leader"] = sum(_cpu_seconds(p.process.pid) or 0.0 for p in live if p.http == leader)
        out["followers"] = sum(_cpu_seconds(p.process.pid) or 0.0 for p in live if p.http != leader)
    out["agents"] = sum(_cpu_seconds(p.process.pid) or 0.0 for p in cluster.agent_procs)
    out["bench"] = _own_cpu_seconds()
    return out


async def _run_case(agents: int, completed: int, settings: Settings, row: dict) -> None:
    with contextlib.ExitStack() as stack:
        work = case_work_dir(stack, settings.work_dir, f"{agents}a-{completed}c", "failover")
        cluster = _FailoverCluster(work, 3, agents, settings)
        seeders: list[_Seeder] = []
        try:
            await cluster.start_masters()
            await cluster.start_agents()
            await cluster.wait_registered(REGISTER_TIMEOUT_S + agents / 100)
            lines = cluster.progress_lines().values()
            starts = [x["started_at"] for x in lines if x.get("started_at")]
            ends = [x["registered_at_max"] for x in lines if x.get("registered_at_max")]
            # The baseline: the same agents registering fresh (first REGISTER to the last REGISTERED).
            row["baseline_register_s"] = _round(max(ends) - min(starts), 3) if starts and ends else None
            _progress(f"{agents:,} agents registered fresh in {number(row['baseline_register_s'], 2)} s")

            _, calls0 = cluster.agent_progress()
            await _profile(cluster, cluster.master_procs, "start", "seed")
            seeders = await _seed(cluster, agents, completed, settings, row)
            await _profile(cluster, cluster.master_procs, "stop", "seed")
            await _wait_quiet(cluster, agents)
            _, calls1 = cluster.agent_progress()  # lines written once the agents settled
            row["seed_calls"].update({f"agent {k}": v for k, v in (calls1 - calls0).items()})
            row["seed_calls"] = dict(sorted(row["seed_calls"].items()))
            row["master_memory_mb"] = {"seeded": _masters_memory(cluster)}

            await _failover(cluster, seeders, row)
            row["master_memory_mb"]["after_failover"] = _masters_memory(cluster)
            if settings.cold_start:
                await _cold_start(cluster, row)
                row["master_memory_mb"]["after_cold_start"] = _masters_memory(cluster)
            leader = cluster.master_proc(cluster.leader).name
            await cluster.stop()
            row["state"] = await asyncio.to_thread(_state_counts, work / leader)
            row["completed_tasks_in_state"] = row["state"].get("completed_tasks")
            rss = [m["rss_mb"] for phase in row["master_memory_mb"].values() for m in phase.values() if "rss_mb" in m]
            row["master_rss_mb"] = max(rss) if rss else None
            row["ratio"] = (_round(row["time_to_completion_s"] / row["baseline_register_s"], 2)
                            if row.get("time_to_completion_s") and row.get("baseline_register_s") else None)
        finally:
            await asyncio.gather(*(s.close() for s in seeders), return_exceptions=True)
            await cluster.stop()


# -- seeding -------------------------------------------------------------------------------------------


class _Window:
    """At most `size` tasks launched and not yet settled (acknowledged in the state they
    rest in, or failed)."""

    def __init__(self, size: int):
        self.size = size
        self.used = 0
        self.freed = asyncio.Event()

    async def take(self, n: int) -> None:
        while self.used + n > self.size and self.used > 0:
            self.freed.clear()
            await self.freed.wait()
        self.used += n

    def give(self, n: int = 1) -> None:
        self.used -= n
        self.freed.set()


def _task(task_id: str, agent_id: str, role: str, completed: bool) -> dict:
    def scalar(name, value):
        return {"name": name, "type": "SCALAR", "scalar": {"value": value}, "role": "*",
                "allocation_info": {"role": role}}

    labels = [{"key": f"label-{i}", "value": f"value-{i}"} for i in range(LABELS_PER_TASK)]
    labels.append({"key": LABEL_UPDATES, "value": "minimal"})
    if completed:
        labels.append({"key": LABEL_DURATION, "value": "0"})
    return {"name": task_id, "task_id": {"value": task_id}, "agent_id": {"value": agent_id},
            "resources": [scalar("cpus", TASK_CPUS), scalar("mem", TASK_MEM_MB)],
            "command": {"shell": True, "value": "sleep 3600"}, "labels": {"labels": labels}}


class _Seeder:
    """One framework that launches `per_agent` tasks on every agent (one ACCEPT each) and
    acknowledges every update, through our SchedulerClient over real HTTP.

    It works in rounds, so that the masters run as few allocation cycles as possible: it takes
    the offers of one cycle (every agent, as nobody else wants offers), SUPPRESSes, ACCEPTs
    each (the leftovers go back to a pool nobody wants, so no cycle runs for them), declines
    what was offered back meanwhile, and REVIVEs for another round only if some agents are
    left (their offers timed out or were dropped)."""

    def __init__(self, name: str, completed: bool, per_agent: int, agents: int, masters: list[str],
                 window: _Window):
        from mesos_es.client.scheduler import SchedulerClient

        self.name = name
        self.completed = completed
        self.rest = "TASK_FINISHED" if completed else "TASK_RUNNING"
        self.per_agent = per_agent
        self.agents = agents
        self.target = per_agent * agents
        self.window = window
        self.client = SchedulerClient(masters, {"user": "bench", "name": name, "roles": ["*"],
                                                "failover_timeout": FAILOVER_TIMEOUT_S})
        self.launched: set[str] = set()  # agents whose ACCEPT was answered
        self.queued: set[str] = set()  # agents with an ACCEPT to make or under way
        self.inflight: dict[str, str] = {}  # task id -> agent id, until settled
        self.queue: asyncio.Queue = asyncio.Queue()  # (offer id, agent id, role) to accept
        self.spare: set[str] = set()  # offers of agents already done: declined at the end of the round
        self.rescinded: set[str] = set()
        self.dropped: set[str] = set()  # tasks the master dropped (their offer was gone)
        self.answered: dict[str, float] = {}  # in-flight task id -> when its ACCEPT was answered
        self.reconciled = 0  # tasks asked about with RECONCILE
        self.rounds = 0
        self.gave_up = ""
        self.offered = asyncio.Event()  # an offer to use arrived
        self.idle = asyncio.Event()  # no ACCEPT to make or under way
        self.idle.set()
        self.settled = 0
        self.failed = 0
        self.states: Counter = Counter()
        self.errors: Counter = Counter()
        self.calls: Counter = Counter()
        self.subscribed_at: list[float] = []  # unix time of each SUBSCRIBED
        self.all_launched = asyncio.Event()
        self.all_settled = asyncio.Event()
        self.acks = asyncio.Semaphore(ACKS_IN_FLIGHT)
        self._ids = itertools.count()
        self._tasks: set[asyncio.Task] = set()
        self._reader: asyncio.Task | None = None
        self._controller: asyncio.Task | None = None

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._reader = loop.create_task(self._read())
        for _ in range(ACCEPTS_IN_FLIGHT):
            self.spawn(self._accept_loop())
        self.spawn(self._reconcile_loop())
        self._control()

    def spawn(self, coroutine) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _control(self) -> None:
        if self._controller is None or self._controller.done():
            self._controller = self.spawn(self._rounds())

    async def _rounds(self) -> None:
        self.all_launched.clear()
        while len(self.launched) < self.agents:
            if self.rounds >= MAX_ROUNDS:
                self.gave_up = f"{self.name}: {len(self.launched)} of {self.agents} agents after {self.rounds} rounds"
                return
            self.rounds += 1
            if self.rounds > 1:
                await self._call("REVIVE", self.client.revive())
            try:  # no offers (a REVIVE lost in a leader change): REVIVE again
                await asyncio.wait_for(self.offered.wait(), ROUND_OFFERS_S)
            except TimeoutError:
                continue
            await asyncio.sleep(ROUND_SETTLE_S)  # the rest of that cycle's OffersMade events
            await self._call("SUPPRESS", self.client.suppress())
            await self.idle.wait()
            self.offered.clear()
            spare, self.spare = sorted(self.spare), set()
            await self._decline(spare)
        self.all_launched.set()

    async def _reconcile_loop(self) -> None:
        """Ask about tasks whose ACCEPT was answered long ago and that have not settled: a
        TASK_DROPPED the master sent on a stream that a leader change cut is never sent again
        (a master's own updates carry no uuid); the master answers TASK_LOST for a task it
        does not know, and the agent gets its tasks again."""
        while True:
            await asyncio.sleep(RECONCILE_EVERY_S)
            limit = time.monotonic() - RECONCILE_AFTER_S
            stale = sorted(t for t, at in self.answered.items() if at < limit and t in self.inflight)
            for i in range(0, len(stale), RECONCILE_CHUNK):
                tasks = [{"task_id": {"value": t}, "agent_id": {"value": self.inflight[t]}}
                         for t in stale[i:i + RECONCILE_CHUNK] if t in self.inflight]
                self.reconciled += len(tasks)
                await self._call("RECONCILE", self.client.reconcile(tasks))

    async def _call(self, name: str, coroutine) -> None:
        self.calls[name] += 1
        try:
            await coroutine
        except Exception as e:  # noqa: BLE001 - counted; the round goes on
            self.errors[f"{name}: {type(e).__name__}: {str(e)[:80]}"] += 1

    async def _decline(self, offer_ids: list[str]) -> None:
        for i in range(0, len(offer_ids), DECLINE_CHUNK):
            await self._call("DECLINE", self.client.decline(offer_ids[i:i + DECLINE_CHUNK], refuse_seconds=0))

    async def _read(self) -> None:
        async with self.client:
            async for event in self.client.events():
                kind = event.get("type")
                if kind == "SUBSCRIBED":
                    self.subscribed_at.append(time.time())
                    self.spare.clear()  # a new leader voided every offer
                elif kind == "OFFERS":
                    self._offers(event["offers"].get("offers") or [])
                elif kind == "RESCIND":
                    offer_id = event["rescind"]["offer_id"]["value"]
                    self.spare.discard(offer_id)
                    self.rescinded.add(offer_id)
                elif kind == "UPDATE":
                    self._update(event["update"]["status"])
                elif kind == "ERROR":
                    self.errors["stream ERROR: " + str(event.get("error", {}).get("message"))[:80]] += 1

    def _offers(self, offers: list[dict]) -> None:
        if self.all_launched.is_set():  # made before our last SUPPRESS was committed
            self.spawn(self._decline([o["id"]["value"] for o in offers]))
            return
        for offer in offers:
            offer_id, agent_id = offer["id"]["value"], offer["agent_id"]["value"]
            if agent_id in self.launched or agent_id in self.queued:
                self.spare.add(offer_id)
                continue
            self.queued.add(agent_id)
            self.idle.clear()
            role = (offer.get("allocation_info") or {}).get("role", "*")
            self.queue.put_nowait((offer_id, agent_id, role))
            self.offered.set()

    async def _accept_loop(self) -> None:
        while True:
            offer_id, agent_id, role = await self.queue.get()
            try:
                if offer_id not in self.rescinded:
                    await self._accept(offer_id, agent_id, role)
            finally:
                self.queued.discard(agent_id)
                if not self.queued:
                    self.idle.set()

    async def _accept(self, offer_id: str, agent_id: str, role: str) -> None:
        await self.window.take(self.per_agent)
        ids = [f"{self.name}-{next(self._ids)}" for _ in range(self.per_agent)]
        operation = {"type": "LAUNCH", "launch": {"task_infos": [
            _task(t, agent_id, role, self.completed) for t in ids]}}
        self.calls["ACCEPT"] += 1
        for task_id in ids:  # before the call: TASK_RUNNING may arrive before its answer
            self.inflight[task_id] = agent_id
        try:
            await self.client.accept([offer_id], [operation], refuse_seconds=0)
        except Exception as e:  # noqa: BLE001 - counted; the agent is offered again next round
            self.errors[f"ACCEPT: {type(e).__name__}: {str(e)[:80]}"] += 1
            for task_id in ids:
                if self.inflight.pop(task_id, None) is not None:
                    self.window.give(1)
            return
        now = time.monotonic()
        for task_id in ids:
            if task_id in self.inflight:
                self.answered[task_id] = now
        if not any(t in self.dropped for t in ids):  # TASK_DROPPED may arrive before the answer
            self.launched.add(agent_id)

    def _update(self, status: dict) -> None:
        state = status.get("state", "")
        task_id = status["task_id"]["value"]
        self.states[state] += 1
        if "uuid" in status:
            self.spawn(self._acknowledge(status, state == self.rest and task_id in self.inflight))
        elif task_id in self.inflight and state in ("TASK_DROPPED", "TASK_ERROR", "TASK_LOST", "TASK_FAILED",
                                                      "TASK_KILLED", "TASK_GONE"):
            # From the master: the launch failed. A dropped one (its offer was gone), or one
            # the master does not know (reconciliation), is launched again in another round.
            agent_id = self.inflight.pop(task_id)
            self.answered.pop(task_id, None)
            self.window.give(1)
            self.errors[f"{state}: {status.get('message', '')[:80]}"] += 1
            if state == "TASK_DROPPED" or status.get("reason") == "REASON_RECONCILIATION":
                self.dropped.add(task_id)
                self.launched.discard(agent_id)
                self._control()
            else:
                self._settle(failed=True)

    async def _acknowledge(self, status: dict, rests: bool) -> None:
        async with self.acks:
            self.calls["ACKNOWLEDGE"] += 1
            try:
                await self.client.acknowledge(status)
            except Exception as e:  # noqa: BLE001 - the agent resends, the next one is acknowledged
                self.errors[f"ACKNOWLEDGE: {type(e).__name__}: {str(e)[:80]}"] += 1
                return
        if rests and self.inflight.pop(status["task_id"]["value"], None) is not None:
            self.answered.pop(status["task_id"]["value"], None)
            self.window.give(1)
            self._settle()

    def _settle(self, failed: bool = False) -> None:
        if failed:
            self.failed += 1
        else:
            self.settled += 1
        if self.settled + self.failed >= self.target:
            self.all_settled.set()

    async def teardown(self) -> None:
        self.calls["TEARDOWN"] += 1
        try:
            await self.client.teardown()
        finally:
            await self.close()

    async def close(self) -> None:
        self.client._closed = True  # no re-subscription when the stream ends
        for task in list(self._tasks):
            task.cancel()
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, *self._tasks, return_exceptions=True)
        await self.client.close()


async def _seed(cluster: _FailoverCluster, agents: int, completed: int, settings: Settings,
                row: dict) -> list[_Seeder]:
    """The completed frameworks (torn down once their tasks are acknowledged), then the active
    ones, one after the other; returns the active ones (still connected)."""
    window = _Window(settings.window)
    masters = cluster.http_addresses()
    plan = [(f"completed-{i}", True, completed // COMPLETED_FRAMEWORKS) for i in range(COMPLETED_FRAMEWORKS)
            if completed] + [(f"active-{i}", False, ACTIVE_TASKS_PER_AGENT // ACTIVE_FRAMEWORKS)
                             for i in range(ACTIVE_FRAMEWORKS)]
    seeders: list[_Seeder] = []
    teardowns: list[asyncio.Task] = []
    started = time.monotonic()
    deadline = started + settings.seed_budget_s
    cpu0 = _cpu(cluster, cluster.leader)
    term0 = await cluster.max_term()
    registrations0 = sum(_registrations(cluster).values())
    total = sum(per * agents for _, _, per in plan)

    def report() -> str:
        settled = sum(s.settled for s in seeders)
        return (f"{settled:,} of {total:,} tasks settled, {len(seeders)} of {len(plan)} frameworks "
                f"({time.monotonic() - started:.0f} s)")

    progress = {"settled": -1, "at": time.monotonic()}

    async def stalled() -> str:
        """Why nothing moves: agents re-registering (the leader marked them unreachable, or
        lost its lead), and leader changes."""
        again = sum(_registrations(cluster).values()) - registrations0
        term = await cluster.max_term()
        elections = f", the Raft term went from {term0} to {term}" if term0 is not None and term else ""
        return (f"{again:,} agent registrations since seeding began (an agent registers again when the "
                f"leader marked it unreachable, e.g. its PONGs came too late, or when the leader changed){elections}")

    async def until(event: asyncio.Event, what: str) -> None:
        last = time.monotonic()
        while not event.is_set():
            if any(s.gave_up for s in seeders):
                raise BenchError(f"seeding gave up: {'; '.join(s.gave_up for s in seeders if s.gave_up)}")
            settled = sum(s.settled for s in seeders)
            if settled != progress["settled"]:
                progress.update(settled=settled, at=time.monotonic())
            elif time.monotonic() - progress["at"] > SEED_STALL_S:
                raise BenchError(f"seeding stalled: no task settled in {SEED_STALL_S:g} s ({what}): {report()}; "
                                 + await stalled())
            if time.monotonic() > deadline:
                raise BenchError(f"seeding did not finish within --seed-budget-s {settings.seed_budget_s:g} "
                                 f"({what}): {report()}; " + await stalled())
            cluster._check_alive(cluster.master_procs + cluster.agent_procs)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(event.wait(), 1.0)
            if time.monotonic() - last > 15:
                _progress(report())
                last = time.monotonic()

    async def retire(seeder: _Seeder) -> None:
        await seeder.all_settled.wait()
        await seeder.teardown()

    try:
        for name, is_completed, per in plan:
            seeder = _Seeder(name, is_completed, per, agents, masters, window)
            seeders.append(seeder)
            seeder.start()
            await until(seeder.all_launched, f"{name} launching on every agent")
            if is_completed:
                teardowns.append(asyncio.get_running_loop().create_task(retire(seeder)))
        for seeder in seeders:
            await until(seeder.all_settled, f"{seeder.name}'s tasks acknowledged")
        for task in teardowns:
            await asyncio.wait_for(task, max(1.0, deadline - time.monotonic()))
    except BaseException:
        for task in teardowns:
            task.cancel()
        await asyncio.gather(*(s.close() for s in seeders), return_exceptions=True)
        raise
    elapsed = time.monotonic() - started
    cpu1 = _cpu(cluster, cluster.leader)
    term1 = await cluster.max_term()
    calls: Counter = Counter()  # the agents' are added once they have settled
    for seeder in seeders:
        calls.update({f"scheduler {k}": v for k, v in seeder.calls.items()})
    errors = sum((s.errors for s in seeders), Counter())
    errors.pop("stream ERROR: framework removed: TEARDOWN", None)  # what a TEARDOWN answers
    row.update({
        "seed_s": round(elapsed, 1),
        "seed_tasks": total,
        "seed_tasks_per_s": round(total / elapsed, 1) if elapsed > 0 else None,
        "seed_failed_tasks": sum(s.failed for s in seeders),
        "seed_rounds": {s.name: s.rounds for s in seeders},
        "seed_reconciled_tasks": sum(s.reconciled for s in seeders),
        # leader changes while seeding (Raft terms): a leader too busy to hold its followers
        "seed_elections": term1 - term0 if term0 is not None and term1 is not None else None,
        "seed_calls": dict(calls),
        "seed_cpu_s": {k: round(cpu1[k] - cpu0[k], 1) for k in cpu0},
        "seed_errors": dict(errors.most_common(10)),
    })
    _progress(f"seeded {total:,} tasks in {elapsed:.1f} s ({row['seed_tasks_per_s']:,} tasks/s; "
              f"leader CPU {row['seed_cpu_s']['leader']:.0f} s)")
    return [s for s in seeders if not s.completed]


async def _wait_quiet(cluster: _FailoverCluster, agents: int) -> None:
    """Until every agent runs its active tasks and has no update left to send."""
    expected = agents * ACTIVE_TASKS_PER_AGENT
    deadline = time.monotonic() + QUIET_TIMEOUT_S
    while time.monotonic() < deadline:
        lines = cluster.progress_lines().values()
        if (sum(x.get("tasks", 0) for x in lines) == expected and not any(x.get("pending_updates") for x in lines)
                and sum(x["registered"] for x in lines) == agents):
            await asyncio.sleep(1.0)  # the leader's last proposals (timers) settle
            return
        await asyncio.sleep(0.25)
    lines = cluster.progress_lines().values()
    raise BenchError(f"the agents did not settle within {QUIET_TIMEOUT_S:g} s: "
                     f"{sum(x.get('tasks', 0) for x in lines)} of {expected} tasks, "
                     f"{sum(x.get('pending_updates', 0) for x in lines)} updates pending")


# -- the failover --------------------------------------------------------------------------------------


def _registrations(cluster: _FailoverCluster) -> Counter:
    out: Counter = Counter()
    for line in cluster.progress_lines().values():
        out.update(line.get("registrations") or {})
    return out


async def _reregistered_since(cluster: _FailoverCluster, since_unix: float, limit_s: float,
                              before: Counter | None = None) -> float:
    """Wait until every agent's current registration was accepted after `since_unix`;
    returns the unix time of the last one. `before`: the accepted registrations by kind at
    `since_unix`, for the progress line."""
    deadline = time.monotonic() + limit_s
    last_report = time.monotonic()
    before = _registrations(cluster) if before is None else before
    while time.monotonic() < deadline:
        cluster._check_alive(cluster.agent_procs)
        lines = list(cluster.progress_lines().values())
        done = [x for x in lines if x["registered"] == x.get("count") and (x.get("registered_at_min") or 0) > since_unix]
        if len(lines) == len(cluster.agent_procs) and len(done) == len(lines):
            return max(x["registered_at_max"] for x in lines)
        if time.monotonic() - last_report > 10:
            accepted = sum((_registrations(cluster) - before).values())
            _progress(f"{accepted:,} registrations accepted since; {len(done)} of {len(cluster.agent_procs)} "
                      f"agent processes have every agent re-registered")
            last_report = time.monotonic()
        await asyncio.sleep(0.1)
    raise BenchError(f"not every agent re-registered within {limit_s:g} s")


async def _failover(cluster: _FailoverCluster, seeders: list[_Seeder], row: dict) -> None:
    import aiohttp

    cluster.leader = await cluster._wait_for_leader()  # it may have changed while seeding
    old = cluster.master_proc(cluster.leader)
    survivors = [p for p in cluster.master_procs if p is not old]
    async with aiohttp.ClientSession() as session:
        answers = [await cluster.health(session, p, 5.0) for p in cluster.master_procs]
        if any(a is None for a in answers):
            raise BenchError("a master did not answer /health before the kill")
        before = max(a["applied_position"] for a in answers)
        old_term = max(a["term"] for a in answers)
        row["position_at_kill"] = before
        registrations0 = _registrations(cluster)
        cpu0 = _cpu(cluster)
        await _profile(cluster, survivors, "start", "failover")
        killed_at = time.time()
        t0 = time.monotonic()
        old.process.send_signal(signal.SIGKILL)
        limit = FAILOVER_LIMIT_S + cluster.agents / 100

        # The election: a survivor leads and has applied its MasterElected (the first position
        # after the old leader's last: nothing else is proposed before it).
        raft_elected = elected = None
        new = None
        while time.monotonic() - t0 < limit and elected is None:
            answers = await asyncio.gather(*(cluster.health(session, p, 1.0) for p in survivors))
            now = time.monotonic() - t0
            for proc, answer in zip(survivors, answers):
                if answer and answer["role"] == "leader" and answer["term"] > old_term:
                    raft_elected = raft_elected or now
                    if answer["applied_position"] > before:
                        elected, new = now, proc
            await asyncio.sleep(POLL_S)
        if elected is None:
            raise BenchError(f"no survivor led within {limit:g} s of the kill")
        cluster.leader = new.http
        _progress(f"killed {old.name}; {new.name} leads after {elected:.2f} s")
        done_at = await _reregistered_since(cluster, killed_at, limit, registrations0)
        completion = done_at - killed_at
        await _profile(cluster, survivors, "stop", "failover")
        cpu1 = _cpu(cluster)
        await _frameworks_back(seeders, killed_at, limit)
        resubscribed = [min(t for t in s.subscribed_at if t > killed_at) for s in seeders
                        if any(t > killed_at for t in s.subscribed_at)]
        registrations = _registrations(cluster) - registrations0
        answer = await cluster.health(session, new, 10.0)
    events = await asyncio.to_thread(_events_since, cluster.work / new.name, before + 1)
    row.update({
        "killed": old.name, "new_leader": new.name,
        "killed_at": round(killed_at, 3),
        "raft_election_s": _round(raft_elected, 3), "election_s": _round(elected, 3),
        "time_to_completion_s": _round(completion, 3),
        # from the new leader's MasterElected to the last re-registration
        "reregistration_s": _round(completion - elected, 3),
        "reregistered_by_digest": registrations.get("digest", 0),
        "reregistered_with_tasks": registrations.get("full", 0),
        "registered_new": registrations.get("new", 0),
        # more registrations than agents: some registered twice (a stream that failed)
        "extra_registrations": max(0, sum(registrations.values()) - cluster.agents),
        "frameworks_resubscribed_s": _round(max(resubscribed) - killed_at, 3) if resubscribed else None,
        "failover_events": events,
        "position_after_failover": answer["applied_position"] if answer else None,
        # CPU seconds from the kill to the last registration, by process
        "failover_cpu_s": {k: round(cpu1[k] - cpu0[k], 2) for k in cpu1 if k in cpu0},
    })
    _progress(f"every agent re-registered {completion:.2f} s after the kill "
              f"({row['reregistered_by_digest']:,} by digest, {row['reregistered_with_tasks']:,} with tasks)")


async def _frameworks_back(seeders: list[_Seeder], since_unix: float, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if all(any(t > since_unix for t in s.subscribed_at) for s in seeders):
            return
        await asyncio.sleep(0.1)


async def _profile(cluster: _FailoverCluster, procs: list[_Process], what: str, label: str) -> None:
    if cluster.settings.profile_dir is None:
        return
    targets = [p for p in procs + cluster.agent_procs if p.profile is not None]
    saved = cluster.master_procs, cluster.agent_procs
    try:
        cluster.master_procs, cluster.agent_procs = targets, []
        await (cluster.profile_start(label) if what == "start" else cluster.profile_stop(label))
    finally:
        cluster.master_procs, cluster.agent_procs = saved


def _events_since(work_dir: Path, first: int) -> dict:
    """What the new leader committed from `first` on (its archive): events by type, and
    re-registrations with and without their task list."""
    from mesos_es.pb import events_pb2
    from mesos_es.replay.errors import ReplayError
    from mesos_es.replay.sources import ArchiveSource

    kinds: Counter = Counter()
    try:
        with ArchiveSource(work_dir) as source:
            last = source.last_position()
            for batch in source.batches(first, last):
                for _position, payload, _hash in batch:
                    event = events_pb2.Event.FromString(payload)
                    kind = event.WhichOneof("kind")
                    if kind == "agent_reregistered":
                        kind += " (tasks_unchanged)" if event.agent_reregistered.tasks_unchanged else " (with tasks)"
                    kinds[kind] += 1
    except (ReplayError, OSError) as e:
        return {"error": str(e)[:200]}
    return dict(kinds.most_common())


# -- the cold start ------------------------------------------------------------------------------------


async def _cold_start(cluster: _FailoverCluster, row: dict) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        leader = cluster.master_proc(cluster.leader)
        answer = await cluster.health(session, leader, 10.0)
        if answer is None:
            raise BenchError("the leader did not answer /health before the cold start")
        position = answer["applied_position"]
        t = time.monotonic()
        await cluster.stop_masters()
        row["cold_stop_s"] = round(time.monotonic() - t, 2)
        # Agents keep running: their streams end, and they retry (backing off) meanwhile.
        restarted_at = time.time()
        t0 = time.monotonic()
        await cluster.restart_masters()
        limit = COLD_START_LIMIT_S + cluster.agents / 100
        first_answer = leader_at = None
        while time.monotonic() - t0 < limit and leader_at is None:
            cluster._check_alive(cluster.master_procs)
            answers = await asyncio.gather(*(cluster.health(session, p, 1.0) for p in cluster.master_procs))
            now = time.monotonic() - t0
            for proc, a in zip(cluster.master_procs, answers):
                if a is not None:
                    first_answer = first_answer or now
                    if a["role"] == "leader" and a["applied_position"] > position:
                        leader_at = now
                        cluster.leader = proc.http
            await asyncio.sleep(0.05)
        if leader_at is None:
            raise BenchError(f"no master led with the whole state within {limit:g} s of the restart")
    row["position_before_cold_start"] = position
    row["cold_start_s"] = _round(leader_at, 3)
    row["cold_start_first_answer_s"] = _round(first_answer, 3)  # a master has replayed and serves HTTP
    _progress(f"cold start: a leader with the whole state {leader_at:.2f} s after starting the masters")
    done_at = await _reregistered_since(cluster, restarted_at, FAILOVER_LIMIT_S + cluster.agents / 100)
    row["cold_start_completion_s"] = _round(done_at - restarted_at, 3)


def _state_counts(work_dir: Path) -> dict:
    """What the state holds at the end of the history (a master's snapshot and archive,
    folded here after the masters stopped): frameworks, tasks, completed tasks, and its size."""
    from mesos_es.core import digest as canonical
    from mesos_es.replay.errors import ReplayError
    from mesos_es.replay.fold import start
    from mesos_es.replay.sources import ArchiveSource

    started = time.monotonic()
    try:
        with ArchiveSource(work_dir) as source:
            fold = start(source, None)
            loaded = time.monotonic()
            fold.fold_to(source)
    except (ReplayError, OSError) as e:
        return {"error": str(e)[:200]}
    done = time.monotonic()
    cluster = fold.state.cluster
    return {
        # what a restarting master does before it serves: load its newest snapshot (and
        # rebuild the index), then fold the archive after it; timed here, in this process
        "snapshot_position": fold.snapshot_position, "snapshot_load_s": round(loaded - started, 2),
        "tail_events": fold.events, "tail_fold_s": round(done - loaded, 2),
        "position": fold.position, "state_mb": round(len(canonical.canonical_bytes(fold.state)) / 1e6, 1),
        "frameworks": len(cluster.frameworks), "agents": len(cluster.agents),
        "tasks": sum(len(f.tasks) for f in cluster.frameworks.values()),
        "completed_tasks": sum(len(f.completed_tasks) for f in cluster.frameworks.values()),
        "removed_frameworks": len(cluster.removed_frameworks),
    }


# -- the report ----------------------------------------------------------------------------------------


KEYS = ("agents", "active_tasks", "completed_tasks", "completed_tasks_in_state", "election_s",
        "raft_election_s", "time_to_completion_s", "cold_start_s", "master_rss_mb", "reregistered_by_digest",
        "reregistered_with_tasks", "baseline_register_s", "ratio", "seed_s", "seed_tasks_per_s")


def _report(rows: list[dict], settings: Settings, elapsed: float) -> dict:
    ok = [r for r in rows if not r.get("error") and not r.get("skipped")]
    headline = next((r for r in ok if r["agents"] == TARGET_AGENTS and not r["completed_per_agent"]),
                    ok[-1] if ok else (rows[-1] if rows else {}))
    at_target = [r for r in ok if r["agents"] == TARGET_AGENTS]
    return {
        "benchmark": "failover",
        **{k: headline.get(k) for k in KEYS},
        "targets": {
            f"completion_within_{TARGET_S:g}_s_at_{TARGET_AGENTS}_agents":
                bool(at_target) and all(r["time_to_completion_s"] <= TARGET_S for r in at_target),
        },
        "mesos_1_5_s": {str(k): {"no_history": v[0], "with_history": v[1]} for k, v in MESOS_1_5_S.items()},
        "settings": {"seed_budget_s": settings.seed_budget_s, "window": settings.window,
                     "agents_per_process": settings.agents_per_process, "max_entry_bytes": settings.max_entry_bytes,
                     "master_flags": list(settings.master_flags), "agent_resources": AGENT_RESOURCES,
                     "task": f"cpus:{TASK_CPUS:g};mem:{TASK_MEM_MB:g}", "labels_per_task": LABELS_PER_TASK},
        "cases": rows,
        "elapsed_s": round(elapsed, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        },
    }


def _render(report: dict) -> str:
    headers = ["agents", "active tasks", "completed", "seed s", "election s", "completion s", "digest/list",
               "fresh reg s", "vs fresh", "cold start s", "RSS MB", "Mesos 1.5 s", "note"]
    out = []
    for r in report["cases"]:
        mesos = MESOS_1_5_S.get(r["agents"])
        mesos = mesos[1 if r["completed_per_agent"] else 0] if mesos else "-"
        completed = number(r["completed_tasks"])
        if r.get("completed_tasks_in_state") is not None and r["completed_tasks"]:
            completed += f" ({number(r['completed_tasks_in_state'])} kept)"
        note = ""
        if r.get("skipped"):
            note = "skipped: " + r["reason"]
        elif r.get("error"):
            note = "failed: " + r["error"].splitlines()[0][:90]
        elif r.get("extra_registrations"):
            note = f"{r['extra_registrations']} agents registered twice"
        digest = (f"{number(r.get('reregistered_by_digest'))}/{number(r.get('reregistered_with_tasks'))}"
                  if r.get("reregistered_by_digest") is not None else "-")
        out.append([number(r["agents"]), number(r["active_tasks"]), completed, number(r.get("seed_s")),
                    number(r.get("election_s"), 2), number(r.get("time_to_completion_s"), 2), digest,
                    number(r.get("baseline_register_s"), 2), "-" if r.get("ratio") is None else f"{r['ratio']:.2f}x",
                    number(r.get("cold_start_s"), 2), number(r.get("master_rss_mb")), mesos, note])
    target = list(report["targets"].items())[0]
    measured = [r for r in report["cases"] if r["agents"] == TARGET_AGENTS and r.get("time_to_completion_s")]
    line = f"target: every one of {TARGET_AGENTS:,} agents re-registered within {TARGET_S:g} s of the kill: "
    line += ("MET" if target[1] else "NOT MET") if measured else "not measured (no such case, or it failed)"
    return "\n".join([
        "mesos-es bench failover: 3 masters (durable journals), synthetic agents in separate processes, "
        f"{ACTIVE_TASKS_PER_AGENT} active tasks per agent over {ACTIVE_FRAMEWORKS} frameworks, "
        f"{LABELS_PER_TASK} labels per task; SIGKILL of the leader",
        "",
        "election = kill -> a survivor leads with its MasterElected applied; completion = kill -> every agent "
        "re-registered (election included); digest/list = agents re-registered by task digest / with their "
        "task list; fresh reg = the same agents registering into the empty cluster (the baseline); cold start "
        "= all masters restarted from disk -> a leader with the whole state; RSS = the largest master's; "
        "Mesos 1.5 = time to completion, read off the working group's charts (quorum 1, in-process, 2015 "
        "laptop); completed = tasks run to completion by frameworks torn down since (kept: still in the state)",
        "",
        format_table(headers, out, right=[True] * 12 + [False]),
        "",
        line,
        f"({report['machine']['cpus']} CPUs, Python {report['machine']['python']}, {report['machine']['date']}, "
        f"{report['elapsed_s']:g} s in all)",
    ])
