"""The agent's configuration: flags, detected resources, attributes."""

from __future__ import annotations

import os
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path

from mesos_es.core import resources as res


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class AgentConfig:
    masters: tuple[str, ...]
    work_dir: Path
    resources: res.Resources
    attributes: tuple[dict, ...] = ()
    hostname: str = "localhost"
    ip: str = "127.0.0.1"
    port: int = 5051
    reconfiguration_policy: str = "equal"
    executor_registration_timeout_s: float = 60.0
    executor_reregistration_timeout_s: float = 10.0
    executor_shutdown_grace_period_s: float = 5.0
    default_kill_grace_period_s: float = 3.0
    resource_estimator: str = "none"          # none | slack
    oversubscription_interval_s: float = 5.0
    oversubscription_margin: float = 0.2
    registration_backoff_max_s: float = 10.0
    # Resend an unacknowledged update after 10 s, doubling to 10 min, as Mesos does (and at
    # once after every REGISTERED): sooner only multiplies calls while a framework is busy.
    update_backoff_s: tuple[float, float] = (10.0, 600.0)
    extra: dict = field(default_factory=dict)

    def agent_info(self) -> dict:
        return {"hostname": self.hostname, "port": self.port,
                "resources": res.to_json(self.resources), "attributes": list(self.attributes)}


def parse_masters(text: str) -> tuple[str, ...]:
    masters = tuple(m.strip().removeprefix("http://").rstrip("/") for m in text.split(",") if m.strip())
    if not masters:
        raise ConfigError("--master needs at least one HOST:PORT")
    for master in masters:
        host, sep, port = master.rpartition(":")
        if not sep or not host or not port.isdigit():
            raise ConfigError(f"bad master address {master!r}: expected HOST:PORT")
    return masters


def parse_attributes(text: str) -> tuple[dict, ...]:
    """Mesos' flag syntax: `rack:r1;level:2;ports:[1-5]` (numbers are SCALAR, `[..]` RANGES,
    anything else TEXT)."""
    out = []
    for part in filter(None, (p.strip() for p in (text or "").split(";"))):
        name, sep, value = part.partition(":")
        name, value = name.strip(), value.strip()
        if not sep or not name:
            raise ConfigError(f"bad attribute {part!r}: expected name:value")
        if value.startswith("["):
            try:
                ranges = [r.strip().split("-") for r in value.strip("[]").split(",") if r.strip()]
                parsed = [{"begin": int(r[0]), "end": int(r[-1])} for r in ranges]
            except ValueError:
                raise ConfigError(f"bad ranges attribute {part!r}") from None
            out.append({"name": name, "type": "RANGES", "ranges": {"range": parsed}})
            continue
        try:
            out.append({"name": name, "type": "SCALAR", "scalar": {"value": float(value)}})
        except ValueError:
            out.append({"name": name, "type": "TEXT", "text": {"value": value}})
    return tuple(out)


def detect_resources(work_dir: Path) -> res.Resources:
    """As Mesos: all CPUs; memory less 1 GB (or half when under 2 GB); disk of the work dir
    less 5 GB (or half when under 10 GB); ports 31000-32000."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    mem_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)
    mem_mb = mem_mb - 1024 if mem_mb >= 2048 else mem_mb // 2
    probe = work_dir if work_dir.exists() else Path(".")
    disk_mb = shutil.disk_usage(probe).total // (1 << 20)
    disk_mb = disk_mb - 5120 if disk_mb >= 10240 else disk_mb // 2
    return res.parse_text(f"cpus:{cpus};mem:{mem_mb};disk:{disk_mb};ports:[31000-32000]")


def resources_from_flag(text: str | None, work_dir: Path) -> res.Resources:
    """`--resources` overrides what it names; the rest is detected."""
    detected = detect_resources(work_dir)
    if not text:
        return detected
    try:
        given = res.parse_text(text)
    except res.ResourceError as e:
        raise ConfigError(f"--resources: {e}") from None
    names = {k.name for k in given}
    return given + detected.filter(lambda k: k.name not in names)


def default_hostname() -> str:
    return socket.gethostname()
