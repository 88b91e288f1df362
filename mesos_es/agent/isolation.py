"""Isolation by labels: exclusive cores, QoS classes, memory limits.

Labels on the TaskInfo (or ExecutorInfo) choose the isolation:

- `mesos-es/exclusive-cpus` = `true`: the task gets ceil(cpus) whole cores of its own
  (`sched_setaffinity`); other tasks are pinned to the cores nobody holds exclusively.
- `mesos-es/qos-class` = `latency-critical` | `latency-sensitive` | `normal` |
  `best-effort`: the nice value (-10, -5, 0, 19). Negative values need CAP_SYS_NICE; without
  it they fall back to 0. Tasks on revocable resources default to `best-effort`.

Memory: `RLIMIT_AS` of the `mem` resource (MB) in the child before exec; it bounds virtual
memory, so ask generously for runtimes that reserve address space. `CoreAllocator` is pure.
"""

from __future__ import annotations

import math
import os
import resource

LABEL_EXCLUSIVE_CPUS = "mesos-es/exclusive-cpus"
LABEL_QOS_CLASS = "mesos-es/qos-class"
QOS_NICE = {"latency-critical": -10, "latency-sensitive": -5, "normal": 0, "best-effort": 19}


class IsolationError(ValueError):
    pass


class CoreAllocator:
    """Whole cores held exclusively by owners; the rest form the shared pool."""

    def __init__(self, cores: list[int]):
        self.cores = sorted(cores)
        self.owners: dict[object, tuple[int, ...]] = {}

    def held(self) -> set[int]:
        return {c for cores in self.owners.values() for c in cores}

    def allocate(self, owner, count: int) -> tuple[int, ...]:
        if owner in self.owners:
            return self.owners[owner]
        free = [c for c in self.cores if c not in self.held()]
        # Keep one core shared, so tasks without exclusive cores can still run.
        if count < 1 or count > len(free) - 1:
            raise IsolationError(
                f"{count} exclusive core(s) asked, {max(0, len(free) - 1)} can be given "
                f"({len(self.cores)} cores, {len(self.held())} held exclusively, one kept shared)")
        chosen = tuple(free[:count])
        self.owners[owner] = chosen
        return chosen

    def restore(self, owner, cores) -> None:
        self.owners[owner] = tuple(cores)

    def release(self, owner) -> None:
        self.owners.pop(owner, None)

    def shared(self) -> tuple[int, ...]:
        held = self.held()
        return tuple(c for c in self.cores if c not in held) or tuple(self.cores)


def qos_class(labels: dict[str, str], revocable: bool) -> str:
    value = labels.get(LABEL_QOS_CLASS)
    if value is None:
        return "best-effort" if revocable else "normal"
    if value not in QOS_NICE:
        raise IsolationError(f"unknown {LABEL_QOS_CLASS} {value!r} (expected one of {', '.join(QOS_NICE)})")
    return value


def wants_exclusive_cpus(labels: dict[str, str]) -> bool:
    return labels.get(LABEL_EXCLUSIVE_CPUS, "").lower() in ("true", "1", "yes")


def exclusive_core_count(cpus: float) -> int:
    return max(1, math.ceil(cpus - 1e-9))


def preexec(cpus: tuple[int, ...] | None, nice: int, mem_bytes: int | None):
    """What the child does between fork and exec. Only async-signal-safe-ish calls."""

    def apply() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)
        if nice:
            try:
                os.setpriority(os.PRIO_PROCESS, 0, nice)
            except PermissionError:
                pass  # a negative nice without CAP_SYS_NICE: stay at 0
        if mem_bytes:
            resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))

    return apply
