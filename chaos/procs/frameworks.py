"""The workload of a chaos run: three frameworks that record everything they were told.

- `OurFramework`: our asyncio scheduler client (`mesos_es.client.scheduler`) launching short
  command tasks and acknowledging every update;
- `PymesosFramework`: the unmodified pymesos driver doing the same, with explicit
  acknowledgements (so the harness knows which ones were answered 2xx);
- `LogFramework`: a framework that persists its state in a named log, with writers that
  append and a reader that reads the log back from every master in turn.

Each keeps plain, JSON-able records (what it launched and with which answer, every update
delivered with the subscription it came on, every acknowledgement and its answer, every
append's invocation, completion and answer, every read) that the checkers judge after
the run. A framework never relaunches a task id: an ACCEPT whose answer was lost is a task
of unknown fate that reconciliation settles. Every loop is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time

import aiohttp

from mesos_es.client.scheduler import SchedulerClient, SchedulerError, launch, scalar
from mesos_es.log.client import AsyncLogClient, LogClientError

TERMINAL = {"TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_LOST", "TASK_ERROR", "TASK_DROPPED",
            "TASK_GONE", "TASK_GONE_BY_OPERATOR", "TASK_UNKNOWN", "TASK_UNREACHABLE"}
TASK_CPUS = 0.1
TASK_MEM_MB = 16.0
TASKS_PER_OFFER = 3
CALL_TIMEOUT_S = 10.0
STALL_S = 7.0  # no event (not even a heartbeat, every 2 s) this long: the stream is dead, subscribe again
RECONCILE_EVERY_S = 5.0
RECONCILE_AFTER_S = 15.0  # tasks with no news this long are asked about
MAX_TASKS = 20_000


class Workload:
    """What one scheduler launched and was told; shared by both scheduler frameworks."""

    def __init__(self, name: str, clock, seed: int, inflight: int):
        self.name = name
        self.clock = clock
        self.rng = random.Random(seed)
        self.inflight = inflight
        self.framework_id: str | None = None
        self.subscriptions: list[float] = []  # times of SUBSCRIBED / (re)registered
        self.tasks: dict[str, dict] = {}
        self.deliveries: list[dict] = []
        self.acks: list[dict] = []
        self.errors: list[str] = []
        self.launching = True
        self.lock = threading.RLock()  # pymesos calls back on its own thread

    @property
    def stream(self) -> int:
        return len(self.subscriptions)

    def open_tasks(self) -> list[dict]:
        with self.lock:
            return [t for t in self.tasks.values() if t["terminal"] is None]

    def wants(self) -> int:
        if not self.launching or len(self.tasks) >= MAX_TASKS:
            return 0
        running = sum(1 for t in self.tasks.values() if t["terminal"] is None)
        return max(0, self.inflight - running)

    def new_tasks(self, offer: dict) -> list[dict]:
        """Task records (not yet launched) that fit in the offer, within the in-flight cap."""
        cpus = sum(r.get("scalar", {}).get("value", 0) for r in offer.get("resources", []) if r["name"] == "cpus")
        mem = sum(r.get("scalar", {}).get("value", 0) for r in offer.get("resources", []) if r["name"] == "mem")
        records = []
        with self.lock:
            count = min(self.wants(), TASKS_PER_OFFER, int(cpus / TASK_CPUS + 1e-9), int(mem / TASK_MEM_MB))
            for _ in range(max(0, count)):
                task_id = f"{self.name}-{len(self.tasks) + len(records):05d}"
                seconds = round(self.rng.uniform(0.2, 2.0), 1)
                records.append({"id": task_id, "agent_id": offer["agent_id"]["value"], "command": f"sleep {seconds}",
                                "accept": None, "accept_error": None, "launched_s": None, "accept_s": None,
                                "states": [], "terminal": None, "reconciled": None, "last_news_s": None})
        return records

    def launched(self, records: list[dict], outcome: str, error: str | None, started: float) -> None:
        with self.lock:
            for r in records:
                r.update(accept=outcome, accept_error=error, launched_s=round(started, 3),
                         accept_s=round(self.clock(), 3), last_news_s=round(self.clock(), 3))
                self.tasks[r["id"]] = r

    def delivered(self, status: dict) -> None:
        """Record an update as delivered; reconciliation answers (no uuid) become `reconciled`."""
        task_id = status.get("task_id", {}).get("value")
        state, uuid, reason = status.get("state"), status.get("uuid"), status.get("reason")
        now = round(self.clock(), 3)
        with self.lock:
            self.deliveries.append({"t": now, "uuid": uuid, "task": task_id, "state": state, "reason": reason,
                                    "stream": self.stream})
            task = self.tasks.get(task_id)
            if task is None:
                self.errors.append(f"an update for a task this framework never launched: {task_id} {state}")
                return
            task["last_news_s"] = now
            if uuid is None:
                task["reconciled"] = state
                if state in TERMINAL and task["terminal"] is None:
                    task["terminal"] = state
                return
            task["states"].append(state)
            if state in TERMINAL and task["terminal"] is None:
                task["terminal"] = state

    def acknowledged(self, status: dict, sent: float, ok: bool, error: str | None) -> None:
        with self.lock:
            self.acks.append({"uuid": status.get("uuid"), "task": status.get("task_id", {}).get("value"),
                              "state": status.get("state"), "sent_s": round(sent, 3),
                              "done_s": round(self.clock(), 3), "ok": ok, "error": error, "stream": self.stream})

    def stale(self, now: float) -> list[dict]:
        """Open tasks with no news for RECONCILE_AFTER_S (an update cut by a leader change)."""
        return [t for t in self.open_tasks() if now - (t["last_news_s"] or 0) > RECONCILE_AFTER_S]

    def evidence(self) -> dict:
        with self.lock:
            return {"name": self.name, "framework_id": self.framework_id,
                    "subscriptions": list(self.subscriptions), "tasks": [dict(t) for t in self.tasks.values()],
                    "deliveries": list(self.deliveries), "acks": list(self.acks), "errors": list(self.errors)}


def _task_info(record: dict, role: str | None) -> dict:
    resources = [scalar("cpus", TASK_CPUS), scalar("mem", TASK_MEM_MB)]
    if role is None:
        resources = [{k: v for k, v in r.items() if k != "role"} for r in resources]
    return launch(record["id"], record["agent_id"], record["command"], resources)["launch"]["task_infos"][0]


class OurFramework:
    """Our asyncio scheduler client, resubscribing on its own and when its stream stalls."""

    def __init__(self, masters: list[str], clock, seed: int, inflight: int = 6, name: str = "ours"):
        self.masters = masters
        self.work = Workload(name, clock, seed, inflight)
        self.client: SchedulerClient | None = None
        self.closed = asyncio.Event()

    async def run(self, deadline_s: float) -> None:
        info = {"user": "chaos", "name": f"chaos-{self.work.name}", "failover_timeout": 3600.0, "checkpoint": True}
        async with SchedulerClient(self.masters, info) as client:
            self.client = client
            reconciler = asyncio.create_task(self._reconcile_loop())
            try:
                while not self.closed.is_set() and self.work.clock() < deadline_s:
                    events = client.events()
                    try:
                        while not self.closed.is_set():
                            async with asyncio.timeout(STALL_S):
                                event = await anext(events)
                            await self._handle(event)
                    except TimeoutError:
                        self.work.errors.append(f"t={self.work.clock():.1f}: stream stalled {STALL_S} s; subscribing again")
                    except StopAsyncIteration:
                        break
                    except SchedulerError as e:
                        self.work.errors.append(f"t={self.work.clock():.1f}: {e}")
                        await asyncio.sleep(1)
                    finally:
                        with contextlib.suppress(Exception):
                            await events.aclose()
            finally:
                reconciler.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reconciler

    async def _call(self, what, *args, **kwargs) -> str | None:
        """None when the master answered 202; else why not (the outcome is then unknown)."""
        try:
            async with asyncio.timeout(CALL_TIMEOUT_S):
                await what(*args, **kwargs)
            return None
        except (SchedulerError, aiohttp.ClientError, OSError, TimeoutError) as e:
            return f"{type(e).__name__}: {e}"[:300]

    async def _handle(self, event: dict) -> None:
        kind = event.get("type")
        work = self.work
        if kind == "SUBSCRIBED":
            work.framework_id = event["subscribed"]["framework_id"]["value"]
            with work.lock:
                work.subscriptions.append(round(work.clock(), 3))
        elif kind == "OFFERS":
            for offer in event["offers"].get("offers", []):
                records = work.new_tasks(offer)
                if not records:
                    await self._call(self.client.decline, [offer["id"]["value"]],
                                     refuse_seconds=1.0 if work.launching else 60.0)
                    continue
                started = work.clock()
                error = await self._call(self.client.accept, [offer["id"]["value"]], [
                    {"type": "LAUNCH", "launch": {"task_infos": [_task_info(r, "*") for r in records]}}])
                work.launched(records, "accepted" if error is None else "unknown", error, started)
        elif kind == "UPDATE":
            status = event["update"]["status"]
            work.delivered(status)
            if status.get("uuid"):
                sent = work.clock()
                error = await self._call(self.client.acknowledge, status)
                work.acknowledged(status, sent, error is None, error)

    async def _reconcile_loop(self) -> None:
        while True:
            await asyncio.sleep(RECONCILE_EVERY_S)
            stale = self.work.stale(self.work.clock())
            if stale and self.client.stream_id:
                await self.reconcile(stale)

    async def reconcile(self, tasks: list[dict]) -> str | None:
        body = [{"task_id": {"value": t["id"]}, "agent_id": {"value": t["agent_id"]}} for t in tasks]
        return await self._call(self.client.reconcile, body)

    async def stop_launching(self) -> None:
        self.work.launching = False

    async def suppress(self) -> str | None:
        return await self._call(self.client.suppress) if self.client and self.client.stream_id else "not subscribed"

    async def close(self) -> None:
        self.closed.set()
        if self.client is not None:
            await self.client.close()


class PymesosFramework:
    """The unmodified pymesos driver (its own I/O thread), acknowledging explicitly.

    Every driver call is wrapped: pymesos lets a failed call raise in its I/O thread, which
    then aborts and interrupts the main thread."""

    def __init__(self, master: str, clock, seed: int, inflight: int = 6, name: str = "pymesos"):
        from pymesos import MesosSchedulerDriver, Scheduler

        self.master = master
        self.work = Workload(name, clock, seed, inflight)
        framework = self

        class _Scheduler(Scheduler):
            def registered(self, driver, framework_id, master_info):
                framework._subscribed(framework_id["value"])

            def reregistered(self, driver, master_info):
                framework._subscribed(None)

            def resourceOffers(self, driver, offers):
                framework._guard(framework._offers, driver, offers)

            def statusUpdate(self, driver, update):
                framework._guard(framework._update, driver, update)

            def error(self, driver, message):
                framework.work.errors.append(f"t={framework.work.clock():.1f}: error event: {message}")

        info = {"user": "chaos", "name": f"chaos-{name}", "failover_timeout": 3600.0, "checkpoint": True}
        self.driver = MesosSchedulerDriver(_Scheduler(), info, master, implicit_acknowledgements=False)

    def _guard(self, callback, *args) -> None:
        try:
            callback(*args)
        except Exception as e:  # noqa: BLE001 - never let pymesos' I/O thread see it
            self.work.errors.append(f"t={self.work.clock():.1f}: {callback.__name__}: {type(e).__name__}: {e}"[:300])

    def _subscribed(self, framework_id: str | None) -> None:
        with self.work.lock:
            if framework_id:
                self.work.framework_id = framework_id
            self.work.subscriptions.append(round(self.work.clock(), 3))

    def _send(self, what, *args) -> str | None:
        """None when the call was answered 2xx (pymesos raises otherwise); a call the driver
        would drop silently (not connected) is reported as not sent."""
        if not self.driver.connected:
            return "not connected: not sent"
        try:
            what(*args)
            return None
        except Exception as e:  # noqa: BLE001 - pymesos raises bare RuntimeError and socket errors alike
            return f"{type(e).__name__}: {e}"[:300]

    def _offers(self, driver, offers: list[dict]) -> None:
        work = self.work
        for offer in offers:
            records = work.new_tasks(offer)
            if not records:
                self._send(driver.declineOffer, [offer["id"]], {"refuse_seconds": 1.0 if work.launching else 60.0})
                continue
            started = work.clock()
            error = self._send(driver.launchTasks, [offer["id"]], [_task_info(r, None) for r in records])
            work.launched(records, "accepted" if error is None else "unknown", error, started)

    def _update(self, driver, status: dict) -> None:
        self.work.delivered(status)
        if status.get("uuid"):
            sent = self.work.clock()
            error = self._send(driver.acknowledgeStatusUpdate, status)
            self.work.acknowledged(status, sent, error is None, error)

    def start(self) -> None:
        self.driver.start()

    async def reconcile(self, tasks: list[dict]) -> str | None:
        body = [{"task_id": {"value": t["id"]}} for t in tasks]
        return await asyncio.to_thread(self._send, self.driver.reconcileTasks, body)

    async def reconcile_stale(self) -> None:
        stale = self.work.stale(self.work.clock())
        if stale:
            await self.reconcile(stale)

    async def stop_launching(self) -> None:
        self.work.launching = False

    async def suppress(self) -> str | None:
        return await asyncio.to_thread(self._send, self.driver.suppressOffers)

    async def close(self) -> None:
        """Stop the driver without TEARDOWN (failover=True): the masters keep the framework."""
        self.driver.stop(failover=True)
        await asyncio.to_thread(self.driver.join)


class LogFramework:
    """A framework whose state is a named log: writers append, a reader reads it back."""

    def __init__(self, masters: list[str], clock, writers: int = 3, interval_s: float = 0.1,
                 log: str = "chaos-state", max_appends: int = 200_000):
        self.masters = masters
        self.clock = clock
        self.writers = writers
        self.interval_s = interval_s
        self.log = log
        self.max_appends = max_appends
        self.appends: list[dict] = []
        self.reads: list[dict] = []
        self.stopping = asyncio.Event()

    async def run(self, deadline_s: float) -> None:
        await asyncio.gather(*(self._write(w, deadline_s) for w in range(self.writers)), self._read(deadline_s))

    async def _write(self, writer: int, deadline_s: float) -> None:
        async with AsyncLogClient(self.masters, timeout_s=5.0, retry_timeout_s=30.0) as client:
            for seq in range(self.max_appends // self.writers):
                if self.stopping.is_set() or self.clock() > deadline_s:
                    return
                data = f"{writer}:{seq}"
                record = {"writer": writer, "seq": seq, "data": data, "invoked_s": round(self.clock(), 4),
                          "completed_s": None, "position": None, "error": None}
                self.appends.append(record)
                try:
                    record["position"] = await client.append(self.log, data.encode())
                except LogClientError as e:
                    record["error"] = str(e)[:300]
                record["completed_s"] = round(self.clock(), 4)
                await asyncio.sleep(self.interval_s)

    async def _read(self, deadline_s: float) -> None:
        """Every second, the last entries from one master after another (eventual reads)."""
        turn = 0
        while not self.stopping.is_set() and self.clock() < deadline_s:
            await asyncio.sleep(1.0)
            master = self.masters[turn % len(self.masters)]
            turn += 1
            record = {"t": round(self.clock(), 3), "master": master, "entries": [], "error": None}
            try:
                async with AsyncLogClient([master], timeout_s=2.0, retry_timeout_s=2.0) as client:
                    info = await client.info(self.log)
                    if info.ending >= 1:
                        first = max(info.beginning, info.ending - 20, 1)
                        entries = await client.read(self.log, first=first, last=info.ending)
                        record["entries"] = [[e.position, e.data.decode(errors="replace")] for e in entries]
            except LogClientError as e:
                record["error"] = str(e)[:200]
            self.reads.append(record)

    async def read_all(self, master: str) -> dict:
        """The whole log as one master has it (eventual: after convergence, everything)."""
        try:
            async with AsyncLogClient([master], timeout_s=10.0, retry_timeout_s=20.0) as client:
                entries = await client.read(self.log)
            return {"master": master, "entries": [[e.position, e.data.decode(errors="replace")] for e in entries],
                    "error": None}
        except LogClientError as e:
            return {"master": master, "entries": [], "error": str(e)[:300]}

    def stop(self) -> None:
        self.stopping.set()

    def evidence(self) -> dict:
        return {"log": self.log, "appends": list(self.appends), "reads": list(self.reads)}


async def wait_for(predicate, timeout_s: float, interval_s: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval_s)
    return False
