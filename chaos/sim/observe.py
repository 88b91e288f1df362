"""What the checks need to know about a run that no node's state keeps: who was told what,
and when. Nodes write here; nothing reads it before the run ends, so it never steers a run."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Delivery:
    framework: str
    task_id: str
    uuid: str | None
    state: str
    at: int
    via: str


@dataclass
class Launch:
    agent: str
    key: tuple[str, str]
    at: int
    again: bool  # the agent had already run this task (and forgotten it)
    fits: bool  # the agent's tasks fit in its resources with this one


@dataclass
class Observations:
    # position -> {master: digest} of the replicas' checkpoint digests
    digests: dict[int, dict[str, str]] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)
    acks: list[tuple[str, str, str, int]] = field(default_factory=list)  # framework, task, uuid, time
    launches: list[Launch] = field(default_factory=list)
    accepts: list[tuple[str, list[str], int]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def replica_digest(self, master: str, position: int, digest: str) -> None:
        self.digests.setdefault(position, {})[master] = digest

    def delivered(self, framework, task_id, uuid, state, at, via) -> None:
        self.deliveries.append(Delivery(framework, task_id, uuid, state, at, via))

    def acknowledged(self, framework, task_id, uuid, at) -> None:
        self.acks.append((framework, task_id, uuid, at))

    def agent_launched(self, agent, key, at, again, fits) -> None:
        self.launches.append(Launch(agent, key, at, again, fits))

    def accept_sent(self, framework, task_ids, at) -> None:
        self.accepts.append((framework, list(task_ids), at))

    def note(self, text: str) -> None:
        self.notes.append(text)
