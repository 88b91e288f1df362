"""The digest an agent re-registers with, so that a master that already knows what the agent
runs (a hot standby that just took over) needs no task list and rebuilds nothing.

Both sides hash the same thing: the (framework id, task id) pairs of the agent's tasks that
are not terminal, as each side sees them. When they differ (a task ended or was lost while
the master changed), the agent sends its tasks and the master reconciles.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def tasks_digest(tasks: Iterable[tuple[str, str]]) -> str:
    digest = hashlib.sha256()
    for framework_id, task_id in sorted(set(tasks)):
        digest.update(b"%d:%s%d:%s;" % (len(framework_id), framework_id.encode(), len(task_id), task_id.encode()))
    return digest.hexdigest()
