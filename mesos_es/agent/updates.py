"""Reliable status updates: per-task ordered queues, sent head first until acknowledged.

Pure: time is an argument. The agent checkpoints the queues (`to_json`) before it sends
anything, so an update survives an agent crash; only the head of each task's queue is ever
in flight, and it is resent with backoff (the agent's `update_backoff_s`: 10 s doubling to
10 min, as Mesos) until the master relays the framework's acknowledgement of its uuid.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

Key = tuple[str, str]  # (framework id, task id)


@dataclass
class PendingUpdate:
    framework_id: str
    status: dict
    saved: bool = False          # checkpointed: only saved updates may be sent
    next_send_at: float = 0.0    # not checkpointed: a restarted agent sends at once
    backoff_s: float = 0.0
    sends: int = 0

    @property
    def task_id(self) -> str:
        return self.status["task_id"]["value"]

    @property
    def uuid(self) -> str:
        return self.status["uuid"]

    @property
    def key(self) -> Key:
        return (self.framework_id, self.task_id)

    def to_json(self) -> dict:
        return {"framework_id": self.framework_id, "status": self.status}

    def to_json_call(self) -> dict:
        """The body of an UPDATE call (and an item of UPDATES)."""
        return {"framework_id": {"value": self.framework_id}, "status": self.status}


@dataclass
class UpdateQueues:
    initial_backoff_s: float = 1.0
    max_backoff_s: float = 10.0
    _queues: OrderedDict[Key, list[PendingUpdate]] = field(default_factory=OrderedDict)

    def add(self, framework_id: str, status: dict) -> PendingUpdate | None:
        """Append an update to its task's queue; None if its uuid is already queued."""
        update = PendingUpdate(framework_id, status)
        queue = self._queues.setdefault(update.key, [])
        if any(u.uuid == update.uuid for u in queue):
            return None
        queue.append(update)
        return update

    def head(self, key: Key) -> PendingUpdate | None:
        queue = self._queues.get(key)
        return queue[0] if queue else None

    def acknowledge(self, framework_id: str, task_id: str, uuid: str) -> PendingUpdate | None:
        """Drop the head of the task's queue if `uuid` is its uuid; the next one becomes due
        at once. An acknowledgement of anything else (a duplicate, a stale one) is ignored."""
        key = (framework_id, task_id)
        queue = self._queues.get(key)
        if not queue or queue[0].uuid != uuid:
            return None
        acked = queue.pop(0)
        if not queue:
            del self._queues[key]
        return acked

    def due(self, now: float) -> list[PendingUpdate]:
        """Heads that are checkpointed and whose resend time has come."""
        return [q[0] for q in self._queues.values() if q[0].saved and q[0].next_send_at <= now]

    def sent(self, update: PendingUpdate, now: float) -> None:
        update.sends += 1
        update.backoff_s = (
            self.initial_backoff_s if update.backoff_s == 0 else min(update.backoff_s * 2, self.max_backoff_s)
        )
        update.next_send_at = now + update.backoff_s

    def resend_all_now(self) -> None:
        """After (re-)registration: every head is due at once, with its backoff reset."""
        for queue in self._queues.values():
            queue[0].next_send_at = 0.0
            queue[0].backoff_s = 0.0

    def next_deadline(self) -> float | None:
        times = [q[0].next_send_at for q in self._queues.values() if q[0].saved]
        return min(times) if times else None

    def pending(self, key: Key) -> list[PendingUpdate]:
        return list(self._queues.get(key, []))

    def has_pending(self, key: Key) -> bool:
        return key in self._queues

    def all(self) -> list[PendingUpdate]:
        return [u for q in self._queues.values() for u in q]

    def drop_framework(self, framework_id: str) -> None:
        for key in [k for k in self._queues if k[0] == framework_id]:
            del self._queues[key]

    def __len__(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def to_json(self) -> list[dict]:
        return [u.to_json() for u in self.all()]

    @classmethod
    def from_json(cls, items: list[dict], **kwargs) -> UpdateQueues:
        queues = cls(**kwargs)
        for item in items:
            update = queues.add(item["framework_id"], item["status"])
            if update is not None:
                update.saved = True
        return queues
