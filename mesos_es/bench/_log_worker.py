"""One replica of a `mesos-es bench log` cluster, run as its own process.

    python -m mesos_es.bench._log_worker --kind raft|raw --address H:P [--peers H:Q,...]
        --work-dir DIR [--durable] --password-file FILE

`raft` runs our `RaftLog` (the interface under test); `raw` runs a minimal pysyncobj
`SyncObj` with one `@replicated` method, tuned like ours (the baseline). The load generator
runs inside this process, because the interface is in-process.

Protocol, one JSON object per line: the worker writes `{"event": "started"}` (or
`{"error": ...}`) on stdout, then answers each command read from stdin with one line:

    {"op": "status"}                                   -> {"role": "leader"|"follower"|"candidate"}
    {"op": "throughput", "duration": S, "in_flight": N, "size": B, "payload": "random"|"repeated"}
        -> {"committed": N, "elapsed_s": S, "appends_per_s": X, "errors": N}
    {"op": "latency", "duration": S, "rate": R, "size": B, "payload": ...}
        -> {"count": N, "p50_ms": X, "p99_ms": X, "max_ms": X, "errors": N, "achieved_rate": X}
    {"op": "stop"}                                     -> {"stopped": true}, then exits

The worker exits when stdin closes, when its parent dies (PR_SET_PDEATHSIG, set by the
parent), or after --max-lifetime seconds, whichever comes first. Logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import math
import os
import signal
import sys
import threading
import time
from pathlib import Path

TIMEOUT_S = 30.0  # bound on draining outstanding proposals after a phase


_PROTOCOL = sys.stdout  # replaced in main()


def emit(obj: dict) -> None:
    _PROTOCOL.write(json.dumps(obj) + "\n")
    _PROTOCOL.flush()


def quiet_logging() -> None:
    from mesos_es import logconfig

    logconfig.configure("json", "warning")
    logging.getLogger("pysyncobj").setLevel(logging.ERROR)


POOL_SIZE = 1024  # distinct payloads cycled: more than zlib's 32 KiB window holds


def make_payloads(size: int, kind: str) -> list[bytes]:
    """`random`: distinct incompressible entries (cycled from a pool too large for
    pysyncobj's zlib to find repeats); `repeated`: one entry over and over."""
    if kind == "repeated":
        return [os.urandom(size)]
    return [os.urandom(size) for _ in range(POOL_SIZE)]


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (q in 0..1)."""
    if not sorted_values:
        return float("nan")
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


async def open_loop(one, payloads: list[bytes], rate: float, duration: float, drain_timeout: float) -> int:
    """Call `one(payload)` `rate` times a second for `duration` seconds, on schedule whatever
    the answers; returns how many calls were still unanswered after `drain_timeout`."""
    clock = time.perf_counter
    total = max(1, int(rate * duration))
    tasks: set[asyncio.Task] = set()
    start = clock()
    issued = 0
    while issued < total:
        due = start + issued / rate
        now = clock()
        if due > now:
            await asyncio.sleep(due - now)
            now = clock()
        while issued < total and start + issued / rate <= now:
            task = asyncio.create_task(one(payloads[issued % len(payloads)]))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            issued += 1
    if not tasks:
        return 0
    _, pending = await asyncio.wait(set(tasks), timeout=drain_timeout)
    for task in pending:
        task.cancel()
    return len(pending)


async def measure_open_loop(send, payloads: list[bytes], rate: float, duration: float, drain_timeout: float) -> dict:
    """Latencies of `send(payload)` (True when answered successfully) in an open loop."""
    clock = time.perf_counter
    latencies: list[float] = []
    errors = 0

    async def one(payload: bytes) -> None:
        nonlocal errors
        t0 = clock()
        if await send(payload):
            latencies.append(clock() - t0)
        else:
            errors += 1

    start = clock()
    errors += await open_loop(one, payloads, rate, duration, drain_timeout)
    return latency_summary(latencies, errors, max(clock() - start, duration))


def latency_summary(latencies: list[float], errors: int, elapsed: float) -> dict:
    latencies.sort()
    return {
        "count": len(latencies),
        "p50_ms": percentile(latencies, 0.50) * 1e3 if latencies else None,
        "p99_ms": percentile(latencies, 0.99) * 1e3 if latencies else None,
        "max_ms": latencies[-1] * 1e3 if latencies else None,
        "errors": errors,
        "achieved_rate": (len(latencies) + errors) / elapsed if elapsed > 0 else 0.0,
    }


# -- our RaftLog ----------------------------------------------------------------------------


class RaftReplica:
    """The interface under test: load goes through `RaftLog.propose` on the event loop."""

    def __init__(self, args):
        from mesos_es.log.raft import RaftConfig, RaftLog

        self.log = RaftLog(
            RaftConfig(
                address=args.address,
                peers=tuple(args.peers),
                work_dir=Path(args.work_dir),
                password=args.password,
                durable=args.durable,
                node_process=args.raft_process,
            ),
            archive_peers=[],
        )

    async def start(self) -> None:
        await self.log.start(lambda committed: None)

    def role(self) -> str:
        return self.log.status().role.value

    async def stop(self) -> None:
        await self.log.stop()

    async def throughput(self, duration: float, in_flight: int, payloads: list[bytes]) -> dict:
        """Closed loop: `in_flight` proposers, each proposing again as soon as one returns."""
        from mesos_es.log.interface import LogError

        propose = self.log.propose
        committed = errors = issued = 0
        pool = len(payloads)
        end = 0.0
        clock = time.perf_counter

        async def proposer() -> None:
            nonlocal committed, errors, issued
            while clock() < end:
                issued += 1
                try:
                    await propose(payloads[issued % pool])
                except LogError:
                    errors += 1
                    await asyncio.sleep(0.01)
                    continue
                if clock() <= end:
                    committed += 1

        start = clock()
        end = start + duration
        tasks = [asyncio.create_task(proposer()) for _ in range(in_flight)]
        await asyncio.sleep(max(0.0, end - clock()))
        elapsed = clock() - start
        done, pending = await asyncio.wait(tasks, timeout=TIMEOUT_S)
        for task in pending:
            task.cancel()
        return {
            "committed": committed,
            "elapsed_s": elapsed,
            "appends_per_s": committed / elapsed,
            "errors": errors,
            "undrained": len(pending),
        }

    async def latency(self, duration: float, rate: float, payloads: list[bytes]) -> dict:
        """Open loop: proposals issued at a fixed rate whatever the answers; each measured
        from its propose() call to its return."""
        from mesos_es.log.interface import LogError

        async def send(payload: bytes) -> bool:
            try:
                await self.log.propose(payload)
            except LogError:
                return False
            return True

        return await measure_open_loop(send, payloads, rate, duration, TIMEOUT_S)


# -- raw pysyncobj --------------------------------------------------------------------------


class RawReplica:
    """The baseline: pysyncobj as it comes, one `@replicated` method, callbacks (not sync
    calls), no journal file, no password; the load runs on a thread of its own, since a
    plain pysyncobj user has no event loop."""

    def __init__(self, args):
        from pysyncobj import SyncObj, SyncObjConf, replicated

        class Counter(SyncObj):
            def __init__(self, address, peers, conf):
                super().__init__(address, peers, conf)
                self.count = 0

            @replicated
            def append(self, data: bytes):
                self.count += 1
                return self.count

        self._cls = Counter
        self._conf = SyncObjConf(
            autoTick=True,
            autoTickPeriod=0.005,
            appendEntriesPeriod=0.01,
            raftMinTimeout=0.3,
            raftMaxTimeout=0.6,
            connectionTimeout=3.5,
            connectionRetryTime=0.3,
            appendEntriesBatchSizeBytes=4 * (1 << 20) + (64 << 10),
            sendBufferSize=1 << 20,
            recvBufferSize=1 << 20,
            commandsQueueSize=100_000,
            bindRetryTime=0.5,
            maxBindRetries=20,
            dynamicMembershipChange=False,
        )
        self._address = args.address
        self._peers = list(args.peers)
        self.node = None

    async def start(self) -> None:
        def create():
            node = self._cls(self._address, self._peers, self._conf)
            node.waitBinded()
            return node

        self.node = await asyncio.to_thread(create)

    def role(self) -> str:
        node = self.node
        if node is None:
            return "follower"
        if node._isLeader():
            return "leader"
        return "follower" if node._getLeader() is not None else "candidate"

    async def stop(self) -> None:
        node, self.node = self.node, None
        if node is not None:
            await asyncio.to_thread(node.destroy_synchronous)

    async def throughput(self, duration: float, in_flight: int, payloads: list[bytes]) -> dict:
        return await asyncio.to_thread(self._throughput, duration, in_flight, payloads)

    def _throughput(self, duration: float, in_flight: int, payloads: list[bytes]) -> dict:
        from pysyncobj import FAIL_REASON

        pool = len(payloads)
        issued = 0
        append = self.node.append
        permits = threading.Semaphore(in_flight)
        clock = time.perf_counter
        counts = {"committed": 0, "errors": 0, "outstanding": 0}
        lock = threading.Lock()
        end = 0.0

        def on_result(_result, error) -> None:  # pysyncobj's tick thread
            with lock:
                counts["outstanding"] -= 1
                if error != FAIL_REASON.SUCCESS:
                    counts["errors"] += 1
                elif clock() <= end:
                    counts["committed"] += 1
            permits.release()

        start = clock()
        end = start + duration
        while True:
            remaining = end - clock()
            if remaining <= 0:
                break
            if not permits.acquire(timeout=remaining):
                break
            with lock:
                counts["outstanding"] += 1
            issued += 1
            append(payloads[issued % pool], callback=on_result)
        elapsed = clock() - start
        drain_deadline = clock() + TIMEOUT_S
        while counts["outstanding"] > 0 and clock() < drain_deadline:
            time.sleep(0.01)
        return {
            "committed": counts["committed"],
            "elapsed_s": elapsed,
            "appends_per_s": counts["committed"] / elapsed,
            "errors": counts["errors"],
            "undrained": counts["outstanding"],
        }

    async def latency(self, duration: float, rate: float, payloads: list[bytes]) -> dict:
        return await asyncio.to_thread(self._latency, duration, rate, payloads)

    def _latency(self, duration: float, rate: float, payloads: list[bytes]) -> dict:
        from pysyncobj import FAIL_REASON

        append = self.node.append
        clock = time.perf_counter
        latencies: list[float] = []
        counts = {"errors": 0, "outstanding": 0}
        lock = threading.Lock()

        def on_result(t0, _result, error) -> None:  # pysyncobj's tick thread
            t1 = clock()
            with lock:
                counts["outstanding"] -= 1
                if error == FAIL_REASON.SUCCESS:
                    latencies.append(t1 - t0)
                else:
                    counts["errors"] += 1

        total = max(1, int(rate * duration))
        start = clock()
        for issued in range(total):
            delay = start + issued / rate - clock()
            if delay > 0:
                time.sleep(delay)
            with lock:
                counts["outstanding"] += 1
            append(payloads[issued % len(payloads)], callback=functools.partial(on_result, clock()))
        drain_deadline = clock() + TIMEOUT_S
        while counts["outstanding"] > 0 and clock() < drain_deadline:
            time.sleep(0.005)
        with lock:
            return latency_summary(list(latencies), counts["errors"] + counts["outstanding"],
                                   max(clock() - start, duration))


# -- the command loop -----------------------------------------------------------------------


def _read_stdin(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue) -> None:
    """Thread: hand stdin lines to the loop; None on EOF (the parent closed it or died)."""
    try:
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line)
    except (OSError, ValueError):
        pass
    try:
        loop.call_soon_threadsafe(queue.put_nowait, None)
    except RuntimeError:
        pass


async def serve(args) -> int:
    replica = RaftReplica(args) if args.kind == "raft" else RawReplica(args)
    try:
        await replica.start()
    except Exception as e:  # noqa: BLE001 - reported to the parent, which shows it
        emit({"error": f"{type(e).__name__}: {e}"})
        return 1
    emit({"event": "started", "pid": os.getpid()})
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    threading.Thread(target=_read_stdin, args=(loop, queue), daemon=True, name="stdin").start()
    deadline = loop.time() + args.max_lifetime
    try:
        while True:
            try:
                line = await asyncio.wait_for(queue.get(), timeout=max(0.0, deadline - loop.time()))
            except asyncio.TimeoutError:
                return 3
            if line is None:
                return 0
            line = line.strip()
            if not line:
                continue
            try:
                command = json.loads(line)
                op = command.get("op")
                if op == "status":
                    emit({"role": replica.role()})
                elif op == "throughput":
                    payloads = make_payloads(int(command["size"]), command.get("payload", "random"))
                    emit(await replica.throughput(float(command["duration"]), int(command["in_flight"]), payloads))
                elif op == "latency":
                    payloads = make_payloads(int(command["size"]), command.get("payload", "random"))
                    emit(await replica.latency(float(command["duration"]), float(command["rate"]), payloads))
                elif op == "stop":
                    await replica.stop()
                    emit({"stopped": True})
                    return 0
                else:
                    emit({"error": f"unknown op {op!r}"})
            except Exception as e:  # noqa: BLE001 - reported to the parent
                emit({"error": f"{type(e).__name__}: {e}"})
    finally:
        try:
            await asyncio.wait_for(replica.stop(), timeout=10)
        except Exception:  # noqa: BLE001 - exiting anyway
            pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mesos_es.bench._log_worker")
    parser.add_argument("--kind", choices=["raft", "raw"], required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--peers", default="")
    parser.add_argument("--work-dir", required=True)
    parser.add_argument("--durable", action="store_true")
    parser.add_argument("--raft-process", action="store_true", help="RaftConfig.node_process (kind raft)")
    parser.add_argument("--password-file", required=True)
    parser.add_argument("--max-lifetime", type=float, default=600.0)
    args = parser.parse_args(argv)
    global _PROTOCOL
    # Protocol lines go to the real stdout; anything else that prints goes to stderr.
    _PROTOCOL = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    args.peers = [p for p in args.peers.split(",") if p]
    args.password = Path(args.password_file).read_text().strip()
    quiet_logging()
    # Ctrl-C reaches the whole process group: the parent stops us through stdin.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    code = asyncio.run(serve(args))
    _PROTOCOL.flush()
    # pysyncobj's threads and our stdin reader are no reason to linger.
    os._exit(code)


if __name__ == "__main__":
    raise SystemExit(main())
