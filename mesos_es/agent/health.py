"""Task health checks (Mesos `HealthCheck`: COMMAND, HTTP, TCP).

`HealthTracker` is the pure policy of Mesos' health checker: failures within
`grace_period_seconds` of the start are ignored until the first success; every other
failure reports unhealthy and counts; `consecutive_failures` in a row kill the task; the
first success, and the first after failures, reports healthy. `run_health_checks` is the
loop that performs the checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from dataclasses import dataclass

import aiohttp

from mesos_es.agent.aio import within

DEFAULTS = {"delay_seconds": 15.0, "interval_seconds": 10.0, "timeout_seconds": 20.0,
            "consecutive_failures": 3, "grace_period_seconds": 10.0}


@dataclass(frozen=True)
class HealthChange:
    healthy: bool
    kill: bool = False
    consecutive_failures: int = 0


class HealthTracker:
    def __init__(self, grace_period_s: float, consecutive_failures: int, started_at: float):
        self.grace_period_s = grace_period_s
        self.max_failures = max(1, consecutive_failures)
        self.started_at = started_at
        self.initializing = True
        self.failures = 0

    def record(self, ok: bool, now: float) -> HealthChange | None:
        if ok:
            change = HealthChange(True) if (self.initializing or self.failures > 0) else None
            self.initializing = False
            self.failures = 0
            return change
        if self.initializing and self.grace_period_s > 0 and now - self.started_at <= self.grace_period_s:
            return None
        self.failures += 1
        return HealthChange(False, kill=self.failures >= self.max_failures, consecutive_failures=self.failures)


def settings(health_check: dict) -> dict:
    out = dict(DEFAULTS)
    for key, default in DEFAULTS.items():
        if key in health_check:
            out[key] = type(default)(health_check[key])
    return out


def validate(health_check) -> str | None:
    if not isinstance(health_check, dict):
        return "health_check must be an object"
    kind = health_check.get("type")
    if kind == "COMMAND":
        if not (health_check.get("command") or {}).get("value"):
            return "a COMMAND health check needs command.value"
    elif kind == "HTTP":
        if not isinstance((health_check.get("http") or {}).get("port"), int):
            return "an HTTP health check needs http.port"
    elif kind == "TCP":
        if not isinstance((health_check.get("tcp") or {}).get("port"), int):
            return "a TCP health check needs tcp.port"
    else:
        return f"unknown health check type {kind!r}"
    try:
        settings(health_check)
    except (TypeError, ValueError):
        return "malformed health check settings"
    return None


async def check_once(health_check: dict, timeout_s: float, cwd: str, env: dict) -> tuple[bool, str]:
    kind = health_check["type"]
    try:
        if kind == "COMMAND":
            return await _command(health_check["command"], timeout_s, cwd, env)
        if kind == "HTTP":
            http = health_check["http"]
            path = http.get("path", "/")
            url = f"{http.get('scheme', 'http')}://127.0.0.1:{http['port']}{path if path.startswith('/') else '/' + path}"
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout_s)) as session, \
                    session.get(url) as response:
                return 200 <= response.status < 400, f"HTTP {response.status}"
        port = health_check["tcp"]["port"]
        _, writer = await within(asyncio.open_connection("127.0.0.1", port), timeout_s)
        writer.close()
        return True, "connected"
    except TimeoutError:
        return False, f"timed out after {timeout_s} s"
    except (aiohttp.ClientError, OSError) as e:
        return False, str(e)


async def _command(command: dict, timeout_s: float, cwd: str, env: dict) -> tuple[bool, str]:
    env = {**env, **{v["name"]: v.get("value", "") for v in (command.get("environment") or {}).get("variables", [])}}
    if command.get("shell", True):
        process = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", command["value"], cwd=cwd, env=env, start_new_session=True,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    else:
        argv = command.get("arguments") or [command["value"]]
        process = await asyncio.create_subprocess_exec(
            argv[0], *argv[1:], executable=command["value"], cwd=cwd, env=env, start_new_session=True,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        code = await within(process.wait(), timeout_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        return False, f"timed out after {timeout_s} s"
    return code == 0, f"exit status {code}"
