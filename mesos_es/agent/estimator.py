"""The oversubscription estimator and its QoS correction. Pure: usage figures are arguments.

Revocable CPUs are the CPUs that tasks were allocated but do not use, less a safety margin:
`floor((allocated - used) * (1 - margin) / step) * step`. Only CPU is oversubscribed (memory
that a task may claim at any moment is not safe to lend). When the estimate shrinks below
what revocable (best-effort) tasks hold, `victims` names the tasks to kill, newest first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class SlackEstimator:
    margin: float = 0.2
    step: float = 0.1

    def estimate(self, allocated_cpus: float, used_cpus: float) -> float:
        slack = max(0.0, allocated_cpus - used_cpus) * (1.0 - self.margin)
        return round(math.floor(slack / self.step + 1e-9) * self.step, 3)


@dataclass(frozen=True)
class RevocableTask:
    key: tuple[str, str]
    revocable_cpus: float
    launched_at: float


def victims(tasks: list[RevocableTask], estimate_cpus: float) -> list[tuple[str, str]]:
    """The tasks to kill, newest first, so that what the rest hold fits the estimate."""
    held = sum(t.revocable_cpus for t in tasks)
    out = []
    for task in sorted(tasks, key=lambda t: (t.launched_at, t.key), reverse=True):
        if held <= estimate_cpus + 1e-9:
            break
        out.append(task.key)
        held -= task.revocable_cpus
    return out


def cpu_usage(previous: dict[int, int], current: dict[int, int], elapsed_s: float, ticks_per_s: float) -> float:
    """CPUs used between two samples of cumulative CPU ticks per session (or pid)."""
    if elapsed_s <= 0:
        return 0.0
    ticks = sum(max(0, t - previous.get(k, t)) for k, t in current.items())
    return ticks / ticks_per_s / elapsed_s
