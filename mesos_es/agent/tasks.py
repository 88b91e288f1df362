"""Task states and Mesos v1 `TaskStatus` objects. Pure: uuids and timestamps are arguments."""

from __future__ import annotations

import base64
import re
import signal

TERMINAL_STATES = frozenset({
    "TASK_FINISHED", "TASK_FAILED", "TASK_KILLED", "TASK_ERROR", "TASK_LOST",
    "TASK_DROPPED", "TASK_GONE", "TASK_GONE_BY_OPERATOR",
})
STATES = TERMINAL_STATES | {"TASK_STAGING", "TASK_STARTING", "TASK_RUNNING", "TASK_KILLING", "TASK_UNREACHABLE", "TASK_UNKNOWN"}

_ID = re.compile(r"^[^/\s\x00]+$")


def is_terminal(state: str) -> bool:
    return state in TERMINAL_STATES


def transition_allowed(current: str, new: str) -> bool:
    """A task never leaves a terminal state; any other move is allowed (as on a Mesos agent,
    which lets the executor choose its states)."""
    return new in STATES and not is_terminal(current)


def valid_id(value) -> bool:
    """Mesos' id rules for anything that becomes a path component: non-empty, no '/',
    no whitespace, not '.' or '..'."""
    return isinstance(value, str) and bool(_ID.match(value)) and value not in (".", "..")


def encode_uuid(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def make_status(
    task_id: str, state: str, *, uuid: bytes, timestamp: float, agent_id: str | None,
    source: str = "SOURCE_EXECUTOR", executor_id: str | None = None, reason: str | None = None,
    message: str | None = None, healthy: bool | None = None,
) -> dict:
    status: dict = {"task_id": {"value": task_id}, "state": state, "source": source,
                    "uuid": encode_uuid(uuid), "timestamp": timestamp}
    if agent_id:
        status["agent_id"] = {"value": agent_id}
    if executor_id:
        status["executor_id"] = {"value": executor_id}
    if reason:
        status["reason"] = reason
    if message is not None:
        status["message"] = message
    if healthy is not None:
        status["healthy"] = healthy
    return status


def describe_exit(returncode: int) -> str:
    """Mesos' wording (WSTRINGIFY): `exited with status 3`, `terminated with signal Killed`."""
    if returncode < 0:
        sig = -returncode
        try:
            name = signal.strsignal(sig) or f"signal {sig}"
        except ValueError:
            name = f"signal {sig}"
        return f"terminated with signal {name}"
    return f"exited with status {returncode}"


def exit_state(returncode: int, killed: bool) -> str:
    """The command executor's terminal state: KILLED if we killed it, FINISHED on status 0."""
    if killed:
        return "TASK_KILLED"
    return "TASK_FINISHED" if returncode == 0 else "TASK_FAILED"


def labels(info: dict | None) -> dict[str, str]:
    """`{"labels": [{"key", "value"}]}` -> dict (later keys win)."""
    out: dict[str, str] = {}
    if not isinstance(info, dict):
        return out
    for label in (info.get("labels") or {}).get("labels") or []:
        if isinstance(label, dict) and isinstance(label.get("key"), str):
            out[label["key"]] = str(label.get("value", ""))
    return out


def duration_seconds(obj, default: float) -> float:
    """Mesos `DurationInfo` (`{"nanoseconds": N}`) -> seconds."""
    try:
        return max(0.0, int(obj["nanoseconds"]) / 1e9)
    except (KeyError, TypeError, ValueError):
        return default
