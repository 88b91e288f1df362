"""Task and executor processes: sandboxes, environment, spawning, waiting, killing.

A process runs in its own session (its pid is its process group id), so a kill reaches
everything it started. Processes outlive the agent: a restarted agent re-attaches to them
by pid, guarding against pid reuse with the start time from /proc/<pid>/stat.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from pathlib import Path

from mesos_es.agent.aio import within


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (clock ticks after boot); None if gone or a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = data[data.rfind(b")") + 2:].split()
    if not fields or fields[0] == b"Z" or fields[0] == b"X":
        return None
    return int(fields[19])


def is_same_process(pid: int | None, start_time: int | None) -> bool:
    return bool(pid) and start_time is not None and process_start_time(pid) == start_time


def session_cpu_ticks() -> dict[int, int]:
    """Cumulative user+system CPU ticks of every live process, summed per session id."""
    out: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                data = f.read()
        except OSError:
            continue
        fields = data[data.rfind(b")") + 2:].split()
        try:
            sid = int(fields[3])
            out[sid] = out.get(sid, 0) + int(fields[11]) + int(fields[12])
        except (IndexError, ValueError):
            continue
    return out


class ProcessHandle:
    """A process to wait for and signal: a child of ours, or one adopted after a restart."""

    def __init__(self, pid: int, start_time: int | None, child: asyncio.subprocess.Process | None = None):
        self.pid = pid
        self.start_time = start_time
        self.child = child
        self.returncode: int | None = None
        self.exited = asyncio.Event()

    @classmethod
    def of_child(cls, child: asyncio.subprocess.Process) -> ProcessHandle:
        return cls(child.pid, process_start_time(child.pid), child)

    async def wait(self, poll_s: float = 0.25) -> int | None:
        """The return code (negative: signal), or None for an adopted process whose status is lost."""
        if self.exited.is_set():
            return self.returncode
        if self.child is not None:
            self.returncode = await self.child.wait()
        else:
            while is_same_process(self.pid, self.start_time):
                await asyncio.sleep(poll_s)
        self.exited.set()
        return self.returncode

    def signal_group(self, sig: int) -> None:
        if self.exited.is_set() and sig != signal.SIGKILL:
            return
        if self.child is None and not is_same_process(self.pid, self.start_time):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    async def kill(self, grace_s: float) -> None:
        """SIGTERM to the group, SIGKILL after `grace_s` if the process still runs."""
        self.signal_group(signal.SIGTERM)
        try:
            await within(asyncio.shield(self.exited.wait()), grace_s)
        except TimeoutError:
            self.signal_group(signal.SIGKILL)

    def reap_group(self) -> None:
        """After the leader exited: kill what is left of its group."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)


def base_environment() -> dict[str, str]:
    """The agent's environment without its own MESOS_* and LIBPROCESS_* variables."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("MESOS_", "LIBPROCESS_"))}


def command_environment(command: dict) -> dict[str, str]:
    out = {}
    for variable in (command.get("environment") or {}).get("variables") or []:
        if isinstance(variable, dict) and isinstance(variable.get("name"), str):
            out[variable["name"]] = str(variable.get("value", ""))
    return out


def command_argv(command: dict) -> tuple[str, list[str]]:
    """(executable, argv) for a CommandInfo: `/bin/sh -c value` when shell (the default),
    else `value` executed with `arguments` as its argv."""
    value = command.get("value")
    if not isinstance(value, str) or not value:
        raise ValueError("the command has no value")
    if command.get("shell", True):
        return "/bin/sh", ["sh", "-c", value]
    arguments = [str(a) for a in command.get("arguments") or []] or [value]
    return value, arguments


async def spawn(command: dict, sandbox: Path, env: dict[str, str], preexec=None) -> ProcessHandle:
    executable, argv = command_argv(command)
    with open(sandbox / "stdout", "ab") as out, open(sandbox / "stderr", "ab") as err:  # noqa: ASYNC230 - local, tiny
        child = await asyncio.create_subprocess_exec(
            argv[0], *argv[1:], executable=executable, cwd=str(sandbox), env=env,
            stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=err,
            start_new_session=True, preexec_fn=preexec,
        )
    return ProcessHandle.of_child(child)
