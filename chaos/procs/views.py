"""What the masters and the agents say happened, read from their files after the run.

- The masters' view: one master's archive folded from position 1 with the masters' own
  `apply` (the replay's fold), noting which ACCEPT created each task (a task id created
  twice was launched twice), which status updates with a uuid it forwarded, and which
  acknowledgements were applied, per framework.
- The agents' view: every launch makes a fresh sandbox,
  `sandboxes/<framework>/<executor>/<container>` (for a command task the executor id is the
  task id), and sandboxes are never removed: their count per task is how often the agents
  ran it.
"""

from __future__ import annotations

import base64
from collections import Counter, defaultdict
from pathlib import Path

from mesos_es.core.effects import ForwardUpdate
from mesos_es.core.outcomes import Applied
from mesos_es.replay.fold import Fold
from mesos_es.replay.sources import open_source


def masters_view(master_work_dir: Path) -> dict:
    """{"position", "launches": {"fw/task": n}, "updates": {fw: [uuid]}, "acks": {fw: [uuid]}, "frameworks": {fw: name}}."""
    launches: Counter = Counter()
    updates: dict[str, set[str]] = defaultdict(set)
    acks: dict[str, set[str]] = defaultdict(set)
    names: dict[str, str] = {}
    existing: set[str] = set()

    def before(position, event, state) -> None:
        if event.WhichOneof("kind") == "offers_accepted":
            framework = state.cluster.frameworks.get(event.offers_accepted.framework_id)
            existing.clear()
            if framework is not None:
                existing.update(framework.tasks.keys())

    def observer(position, event, outcome, state) -> None:
        if event is None:
            return
        kind = event.WhichOneof("kind")
        if kind == "offers_accepted":
            e = event.offers_accepted
            framework = state.cluster.frameworks.get(e.framework_id)
            if framework is None:
                return
            for op in e.operations:
                for info in op.task_infos:
                    if info.task_id in framework.tasks and info.task_id not in existing:
                        launches[f"{e.framework_id}/{info.task_id}"] += 1
        elif kind == "task_status_updated" and isinstance(outcome, Applied) and any(
                isinstance(effect, ForwardUpdate) for effect in outcome.effects):
            # Only the updates the master owes the framework: one for a task it no longer has
            # (an agent's TASK_LOST for a task it forgot) is acknowledged to the agent, no more.
            e = event.task_status_updated
            if e.status.uuid:
                updates[e.framework_id].add(base64.b64encode(e.status.uuid).decode())
        elif kind == "status_update_acknowledged" and isinstance(outcome, Applied):
            e = event.status_update_acknowledged
            acks[e.framework_id].add(base64.b64encode(e.uuid).decode())
        elif kind == "framework_subscribed":
            e = event.framework_subscribed
            names[e.framework_id] = e.framework_info.name

    fold = Fold()
    with open_source(str(master_work_dir)) as source:
        fold.run(source.batches(1), before=before, observer=observer)
    return {"position": fold.position, "digest": fold.digest(), "launches": dict(launches),
            "updates": {k: sorted(v) for k, v in updates.items()}, "acks": {k: sorted(v) for k, v in acks.items()},
            "frameworks": names}


def agent_runs(agent_work_dirs: list[Path]) -> dict[str, int]:
    """{"framework/task": number of sandboxes} over every agent."""
    runs: Counter = Counter()
    for work_dir in agent_work_dirs:
        root = work_dir / "sandboxes"
        if not root.is_dir():
            continue
        for framework in root.iterdir():
            for executor in framework.iterdir():
                runs[f"{framework.name}/{executor.name}"] += sum(1 for c in executor.iterdir() if c.is_dir())
    return dict(runs)
