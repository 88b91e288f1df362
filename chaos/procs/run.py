"""One chaos run on real processes, from the schedule to the checkers' verdicts.

1. **Plan**: the scenario's faults for the seed (chaos/procs/schedule.py), printed first.
2. **Start** masters, agents (and the Raft proxy when the scenario partitions) on 127.0.0.1,
   wait for an agreed leader and every agent registered.
3. **Workload and faults**: the three frameworks (chaos/procs/frameworks.py) run while the
   fault tracks inject their episodes (chaos/procs/faults.py) until `duration_s`; a monitor
   samples every master's /health twice a second.
4. **Heal and settle**: everything restarted, resumed and healed; the frameworks stop
   launching; tasks still open are reconciled until each is terminal or 90 s pass; a final
   explicit reconciliation of what is left; offers suppressed, so the cluster goes quiet.
5. **Collect**: every master's digest until all agree (or 60 s), the named log read from
   every master, then the masters are stopped together; `mesos-es replay verify` of each work
   dir at the agreed position; one archive folded for the masters' view; the agents'
   sandboxes counted.
6. **Judge and report**: the checkers (chaos/procs/checkers.py), a JSON report and a PNG plot
   (chaos/procs/report.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from chaos.procs import checkers
from chaos.procs.cluster import Cluster, tail
from chaos.procs.faults import Context, run_fault
from chaos.procs.frameworks import TERMINAL, LogFramework, OurFramework, PymesosFramework
from chaos.procs.report import append_stalls, throughput
from chaos.procs.schedule import Fault, Scenario, format_schedule, plan
from chaos.procs.views import agent_runs, masters_view

START_TIMEOUT_S = 60.0
SETTLE_TIMEOUT_S = 90.0
RECONCILE_WAIT_S = 10.0
CONVERGE_TIMEOUT_S = 60.0
VERIFY_TIMEOUT_S = 600.0
MONITOR_EVERY_S = 0.5
OFFER_TIMEOUT_S = 60.0  # the masters' default; replay verify's offer check needs it
RECONCILE_EVERY_S = 5.0


class HarnessError(Exception):
    """The run could not be carried out (not a verdict on the cluster)."""


class Clock:
    """Seconds since the workload started (negative before)."""

    def __init__(self):
        self.zero = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self.zero


@dataclass
class Settings:
    seed: int
    scenario: Scenario
    duration_s: float
    work_dir: Path
    masters: int
    agents: int
    master_flags: dict[str, str] = field(default_factory=dict)
    leader_limit_s: float = 30.0
    agents_limit_s: float = 60.0
    log_writers: int = 3
    log_interval_s: float = 0.1
    inflight: int = 6

    def command(self) -> str:
        return (f"mesos-es chaos run --seed {self.seed} --duration {self.duration_s:g} "
                f"--scenario {self.scenario.name} --masters {self.masters} --agents {self.agents}")


def progress(clock: Clock, text: str) -> None:
    print(f"[t{clock():+7.1f}s] {text}", file=sys.stderr, flush=True)


async def execute(settings: Settings, faults: list[Fault]) -> dict:
    """Run it; the report (every checker's verdict in "checkers"). Raises HarnessError."""
    clock = Clock()

    def say(text: str) -> None:
        progress(clock, text)

    work = settings.work_dir
    work.mkdir(parents=True, exist_ok=True)
    _log_pymesos_to(work / "pymesos.log")
    cluster = Cluster(work_dir=work, masters=settings.masters, agents=settings.agents,
                      proxied=settings.scenario.uses_partitions,
                      master_flags={**dict(settings.scenario.master_flags), **settings.master_flags}, clock=clock)
    started_at = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    load_at_start = os.getloadavg()
    frameworks: list = []
    try:
        cluster.layout()
        await cluster.start()
        say(f"started {settings.masters} masters and {settings.agents} agents under {work}"
            + (" (Raft through the proxy)" if cluster.proxy else ""))
        if await cluster.wait_for_leader(START_TIMEOUT_S) is None or not await cluster.wait_agents_registered(
                START_TIMEOUT_S):
            raise HarnessError("the cluster did not start: " + _tails(cluster))
        clock.zero = time.monotonic()
        say("cluster up; workload and faults start")
        masters = cluster.master_addresses()
        horizon = settings.duration_s + 3600.0  # the frameworks' own bound; they are closed long before
        ours = OurFramework(masters, clock, seed=settings.seed * 10 + 1, inflight=settings.inflight)
        pymesos = PymesosFramework(masters[-1], clock, seed=settings.seed * 10 + 2, inflight=settings.inflight)
        logs = LogFramework(masters, clock, writers=settings.log_writers, interval_s=settings.log_interval_s)
        frameworks = [ours, pymesos]
        pymesos.start()
        running = [asyncio.create_task(ours.run(horizon)), asyncio.create_task(logs.run(horizon)),
                   asyncio.create_task(_every(RECONCILE_EVERY_S, pymesos.reconcile_stale))]
        samples: list[dict] = []
        monitor = asyncio.create_task(_monitor(cluster, clock, samples))
        records: list[dict] = []
        stop_faults = asyncio.Event()
        context = Context(cluster=cluster, clock=clock, say=say)
        tracks = [asyncio.create_task(_track([f for f in faults if f.track == name], faults, context, records,
                                             stop_faults, settings.duration_s)) for name in ("masters", "agents")]
        await asyncio.sleep(max(0.0, settings.duration_s - clock()))
        stop_faults.set()
        say("duration reached; the fault tracks finish their episodes")
        await asyncio.gather(*tracks)
        records.sort(key=lambda r: r["index"])

        # -- heal and settle --
        for node in cluster.nodes.values():
            if node.paused:
                cluster.resume(node)
            if not node.up:
                await cluster.restart(node)
        if cluster.proxy:
            await cluster.proxy.heal()
        end_leader = await cluster.wait_for_leader(90.0)
        agents_back = await cluster.wait_agents_registered(60.0)
        say(f"healed: leader {end_leader[0].name if end_leader else None}, agents registered {agents_back}")
        await ours.stop_launching()
        await pymesos.stop_launching()
        logs.stop()
        await running[1]
        settled = await _settle(frameworks, clock)
        say(f"tasks settled: {settled}; final reconciliation")
        await _final_reconcile(frameworks)
        for f in frameworks:
            await f.suppress()
        digests, converged = await _converge(cluster)
        say(f"replicas: {'converged at position ' + str(converged[0]) if converged else 'NOT converged'}")
        final_reads = [await logs.read_all(m) for m in masters]
        monitor.cancel()
        for task in running:
            task.cancel()
        await asyncio.gather(monitor, *running, return_exceptions=True)
        evidence_frameworks = [f.work.evidence() for f in frameworks]
        for f in frameworks:
            await f.close()
        frameworks = []
        await cluster.stop()
        say("processes stopped; replay verify of every master's work dir")
        verifies = {}
        for m in cluster.master_nodes:
            verifies[m.name] = await _replay_verify(m.work_dir, converged[0] if converged else None)
        view = await asyncio.to_thread(masters_view, cluster.master_nodes[0].work_dir)
        runs = agent_runs([a.work_dir for a in cluster.agent_nodes])
        series = _series(evidence_frameworks, logs, samples)
        for record, stall in zip(records, append_stalls(series["appends"], records), strict=True):
            record["appends_stalled_s"] = stall
        verdicts = [
            checkers.check_log(logs.appends, final_reads, logs.reads),
            checkers.check_tasks(evidence_frameworks, runs, view["launches"]),
            checkers.check_updates(evidence_frameworks, view["updates"], view["acks"]),
            checkers.check_convergence(digests, verifies),
            checkers.check_failover(records, settings.leader_limit_s, settings.agents_limit_s),
            checkers.check_processes(cluster.unexpected_exits),
        ]
        return {
            "ok": all(v.ok for v in verdicts),
            "seed": settings.seed,
            "scenario": settings.scenario.name,
            "scenario_doc": settings.scenario.doc,
            "duration_s": settings.duration_s,
            "masters": settings.masters,
            "agents": settings.agents,
            "command": settings.command(),
            "started_at": started_at,
            "elapsed_s": round(clock(), 1),
            # failover times depend on what else runs: the 1, 5 and 15 minute load averages
            "load_average": {"start": [round(x, 2) for x in load_at_start],
                             "end": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count()},
            "work_dir": str(work),
            "schedule": [f.to_json() for f in faults],
            "faults": records,
            "failover": checkers.failover_times(records),
            "checkers": [v.to_json() for v in verdicts],
            "workload": _workload(evidence_frameworks, logs),
            "throughput": throughput(series, settings.duration_s + 5.0, 1.0 if settings.duration_s <= 120 else 5.0),
            "samples": samples,
            "series": series,
            "unexpected_exits": cluster.unexpected_exits,
            "masters_view": {"position": view["position"], "digest": view["digest"],
                             "launches": sum(view["launches"].values())},
            "logs": {n.name: str(n.log) for n in cluster.nodes.values()},
            # everything the checkers judged, for the post-mortem (written to evidence.json)
            "evidence": {"frameworks": evidence_frameworks, "log": {**logs.evidence(), "final_reads": final_reads},
                         "masters_view": view, "agent_runs": runs, "digests": digests, "verify": verifies},
        }
    finally:
        for f in frameworks:
            with contextlib.suppress(Exception):
                await f.close()
        await cluster.stop()



async def _every(seconds: float, action) -> None:
    while True:
        await asyncio.sleep(seconds)
        with contextlib.suppress(Exception):
            await action()


async def _track(mine: list[Fault], everything: list[Fault], context: Context, records: list[dict],
                 stop: asyncio.Event, duration_s: float) -> None:
    """Run one track's faults in order, each when due (or once the previous one recovered)."""
    for fault in mine:
        wait = fault.at_s - context.clock()
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
        if stop.is_set() or context.clock() + fault.hold_s > duration_s:
            context.say(f"fault #{everything.index(fault) + 1} {fault.kind} not run: past the duration")
            continue
        records.append(await run_fault(everything.index(fault) + 1, fault, context))


async def _monitor(cluster: Cluster, clock: Clock, samples: list[dict]) -> None:
    """Every master's role, term and applied position, twice a second."""
    while True:
        answers = await cluster.healths()
        samples.append({"t": round(clock(), 2), "masters": {
            name: [a["role"], a["term"], a["applied_position"], _name(cluster, a["leader"])] if a else None
            for name, a in answers.items()}})
        await asyncio.sleep(MONITOR_EVERY_S)


def _name(cluster: Cluster, address: str | None) -> str | None:
    node = cluster.by_http(address)
    return node.name if node else address


async def _settle(frameworks: list, clock: Clock) -> bool:
    """Until every task is terminal (reconciling the open ones every 5 s), at most SETTLE_TIMEOUT_S."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    last = 0.0
    while time.monotonic() < deadline:
        open_tasks = [(f, f.work.open_tasks()) for f in frameworks]
        if not any(tasks for _, tasks in open_tasks):
            return True
        if time.monotonic() - last > RECONCILE_EVERY_S:
            last = time.monotonic()
            for f, tasks in open_tasks:
                if tasks and any(clock() - (t["last_news_s"] or 0) > 5.0 for t in tasks):
                    await f.reconcile(tasks)
        await asyncio.sleep(0.5)
    return False


async def _final_reconcile(frameworks: list) -> None:
    """Ask about every task still open; wait for an answer about each (at most RECONCILE_WAIT_S)."""
    asked = {}
    for f in frameworks:
        tasks = f.work.open_tasks()
        if tasks:
            with f.work.lock:
                for t in tasks:
                    t["reconciled"] = None
            asked[f] = [t["id"] for t in tasks]
            await f.reconcile(tasks)
    deadline = time.monotonic() + RECONCILE_WAIT_S
    while asked and time.monotonic() < deadline:
        if all(f.work.tasks[t]["reconciled"] or f.work.tasks[t]["terminal"] for f, ids in asked.items() for t in ids):
            return
        await asyncio.sleep(0.2)


async def _converge(cluster: Cluster) -> tuple[dict, tuple[int, str] | None]:
    """Every master's digest until all agree three polls in a row (or the timeout): the last
    answers, and the agreed (position, digest) or None."""
    deadline = time.monotonic() + CONVERGE_TIMEOUT_S
    agreed_polls = 0
    answers: dict = {}
    while time.monotonic() < deadline:
        answers = {m.name: await cluster.digest(m) for m in cluster.master_nodes}
        seen = {(a["position"], a["digest"]) if a else None for a in answers.values()}
        if len(seen) == 1 and None not in seen:
            agreed_polls += 1
            if agreed_polls >= 3:
                return answers, seen.pop()
        else:
            agreed_polls = 0
        await asyncio.sleep(0.5)
    return answers, None


async def _replay_verify(work_dir: Path, at: int | None) -> dict:
    """`mesos-es replay verify --json` of a master's work dir, folded to `at`."""
    argv = [sys.executable, "-m", "mesos_es", "replay", "verify", "--source", str(work_dir), "--json",
            "--no-progress", "--offer-timeout-s", str(OFFER_TIMEOUT_S)]
    if at is not None:
        argv += ["--at", str(at)]
    process = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL,
                                                   stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(process.communicate(), VERIFY_TIMEOUT_S)
    except TimeoutError:
        process.kill()
        await process.wait()
        return {"ok": False, "exit": None, "error": f"timed out after {VERIFY_TIMEOUT_S:g} s"}
    try:
        result = json.loads(out)
    except ValueError:
        return {"ok": False, "exit": process.returncode, "error": err.decode(errors="replace")[-500:]}
    error = result.get("error")
    return {"ok": bool(result.get("ok")) and process.returncode == 0, "exit": process.returncode,
            "position": result.get("position"), "digest": result.get("digest"), "events": result.get("events"),
            "error": error["message"] if error else None,
            "checks": {k: [v["checked"], v["violations"]] for k, v in result.get("checks", {}).items()},
            "violations": [f"position {v.get('position')} [{v.get('check')}] {v.get('message')}"
                           for v in result.get("violations", [])[:20]],
            "argv": " ".join(argv[1:])}


def _workload(frameworks: list[dict], logs: LogFramework) -> dict:
    totals = {}
    for fw in frameworks:
        totals[fw["name"]] = {"tasks": len(fw["tasks"]),
                              "accepted": sum(t["accept"] == "accepted" for t in fw["tasks"]),
                              "updates": len(fw["deliveries"]), "acks_ok": sum(a["ok"] for a in fw["acks"]),
                              "subscriptions": len(fw["subscriptions"]), "errors": fw["errors"][:20]}
    totals["log"] = {"appends": len(logs.appends), "acknowledged": sum(a["position"] is not None for a in logs.appends),
                     "reads": len(logs.reads)}
    return totals


def _series(frameworks: list[dict], logs: LogFramework, samples: list[dict]) -> dict:
    """Event times per kind (seconds since the workload started), for throughput over time."""
    terminal = []
    for fw in frameworks:
        terminal += [d["t"] for d in fw["deliveries"] if d.get("uuid") and d["state"] in TERMINAL]
    positions = []
    for s in samples:
        best = max((m[2] for m in s["masters"].values() if m), default=None)
        if best is not None:
            positions.append([s["t"], best])
    return {
        "appends": sorted(a["completed_s"] for a in logs.appends if a["position"] is not None),
        "launches": sorted(t["accept_s"] for fw in frameworks for t in fw["tasks"] if t["accept"] == "accepted"),
        "finished": sorted(terminal),
        "acks": sorted(a["done_s"] for fw in frameworks for a in fw["acks"] if a["ok"]),
        "positions": positions,
    }


def _tails(cluster: Cluster) -> str:
    return "; ".join(f"{n.name} ({'up' if n.up else 'exited'}): {' | '.join(tail(n.log, 3))}"
                     for n in cluster.nodes.values())


def _log_pymesos_to(path: Path) -> None:
    """pymesos logs every reconnection at WARNING; those go to a file, not the terminal."""
    import pymesos  # noqa: F401 - it adds its own stderr handler when imported; replace it

    logger = logging.getLogger("pymesos")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def plan_for(settings: Settings) -> list[Fault]:
    return plan(settings.scenario, settings.seed, settings.duration_s, settings.masters, settings.agents)


def schedule_text(settings: Settings, faults: list[Fault]) -> str:
    return format_schedule(settings.scenario, settings.seed, settings.duration_s, faults, settings.masters,
                           settings.agents)
