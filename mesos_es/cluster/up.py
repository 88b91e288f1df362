"""`mesos-es cluster up`: start masters as child processes and watch them until interrupted.

The configuration is the embedded default.toml, overlaid by `--config FILE`, overlaid by
flags. Each master runs as `python -m mesos_es master` with its own work dir and log file;
`cluster.json` in the work dir lists them (pids included) for tools and tests. Masters that
die are reported, not restarted; running `cluster up` again on the same work dir restarts
the cluster from its files.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import json
import os
import signal
import socket
import sys
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import aiohttp

from mesos_es.master.config import RAFT_PORT_OFFSET, RAFT_SECRET_FILE, write_new_secret
from mesos_es.processes import die_with_parent, stop_process

STOP_GRACE_S = 10.0


@dataclass(frozen=True)
class MasterSpec:
    id: str
    http: str
    raft: str
    work_dir: Path

    @property
    def log_file(self) -> Path:
        return self.work_dir / "master.log"


def load_config(path: Path | None) -> dict:
    config = tomllib.loads(resources.files("mesos_es.cluster").joinpath("default.toml").read_text())
    if path is not None:
        overlay = tomllib.loads(Path(path).read_text())
        for table, values in overlay.items():
            if table not in config:
                raise ValueError(f"{path}: unknown table [{table}]")
            config[table].update(values)
    return config


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="TOML file overlaid on the embedded default")
    parser.add_argument("--masters", type=int, choices=[1, 3, 5], help="number of masters (default 3)")
    parser.add_argument("--base-port", type=int, help="HTTP port of the first master (default 5050)")
    parser.add_argument("--work-dir", type=Path, help="folder for all work dirs (default .mesos-es/cluster)")


def master_specs(cluster: dict) -> list[MasterSpec]:
    work_dir = Path(cluster["work_dir"]).resolve()
    host, base = cluster["host"], int(cluster["base_port"])
    return [
        MasterSpec(
            id=f"master-{i + 1}",
            http=f"{host}:{base + i}",
            raft=f"{host}:{base + i + RAFT_PORT_OFFSET}",
            work_dir=work_dir / f"master-{i + 1}",
        )
        for i in range(int(cluster["masters"]))
    ]


def master_command(spec: MasterSpec, specs: list[MasterSpec], secret_file: Path, config: dict) -> list[str]:
    peers = ",".join(f"{s.http}={s.raft}" for s in specs)
    command = [
        sys.executable, "-m", "mesos_es", "master",
        "--id", spec.id, "--address", spec.http, "--raft-address", spec.raft, "--peers", peers,
        "--work-dir", str(spec.work_dir), "--raft-secret-file", str(secret_file),
        "--log-format", config["cluster"]["log_format"],
    ]
    for key, value in config["master"].items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    return command


def check_ports_free(specs: list[MasterSpec]) -> None:
    for spec in specs:
        for address in (spec.http, spec.raft):
            host, _, port = address.rpartition(":")
            with socket.socket() as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((host, int(port)))
                except OSError:
                    raise SystemExit(f"mesos-es cluster up: {address} is in use (is another cluster running?)") from None


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except (OSError, ValueError, tomllib.TOMLDecodeError) as e:
        print(f"mesos-es cluster up: {e}", file=sys.stderr)
        return 2
    for key, value in (("masters", args.masters), ("base_port", args.base_port), ("work_dir", args.work_dir)):
        if value is not None:
            config["cluster"][key] = str(value) if isinstance(value, Path) else value
    try:
        return asyncio.run(up(config))
    except KeyboardInterrupt:
        return 0


async def up(config: dict) -> int:
    specs = master_specs(config["cluster"])
    work_dir = specs[0].work_dir.parent
    work_dir.mkdir(parents=True, exist_ok=True)
    lock = os.open(work_dir / "cluster.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"mesos-es cluster up: a cluster is already running on {work_dir}", file=sys.stderr)
        return 1
    check_ports_free(specs)
    secret_file = work_dir / RAFT_SECRET_FILE
    if not secret_file.exists():
        write_new_secret(secret_file)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    processes: dict[str, asyncio.subprocess.Process] = {}
    commands = {spec.id: master_command(spec, specs, secret_file, config) for spec in specs}
    for spec in specs:
        spec.work_dir.mkdir(parents=True, exist_ok=True)
        with open(spec.log_file, "ab") as log_file:
            processes[spec.id] = await asyncio.create_subprocess_exec(
                *commands[spec.id],
                stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                # If `cluster up` dies, its masters get SIGTERM: none outlives its cluster.
                preexec_fn=die_with_parent(signal.SIGTERM),
            )
    write_cluster_file(work_dir, specs, processes, secret_file, commands)
    print_table(work_dir, specs, processes)
    try:
        await watch(specs, processes, stop)
    finally:
        await stop_all(processes)
        with contextlib.suppress(OSError):
            (work_dir / "cluster.json").unlink()
        os.close(lock)
    print("cluster stopped", flush=True)
    return 0


def write_cluster_file(work_dir: Path, specs, processes, secret_file: Path, commands: dict) -> None:
    data = {
        "work_dir": str(work_dir),
        "raft_secret_file": str(secret_file),
        "supervisor_pid": os.getpid(),
        "masters": [
            {"id": s.id, "http": s.http, "raft": s.raft, "pid": processes[s.id].pid,
             "work_dir": str(s.work_dir), "log": str(s.log_file), "argv": commands[s.id]}
            for s in specs
        ],
    }
    tmp = work_dir / "cluster.json.tmp"
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, work_dir / "cluster.json")


def print_table(work_dir: Path, specs, processes) -> None:
    print(f"mesos-es cluster: {len(specs)} master(s), work dir {work_dir}")
    print(f"  {'id':<10} {'http':<24} {'raft':<18} {'pid':<8} log")
    for s in specs:
        print(f"  {s.id:<10} {'http://' + s.http:<24} {s.raft:<18} {processes[s.id].pid:<8} {s.log_file}")
    print("Press Ctrl-C to stop.", flush=True)


async def watch(specs: list[MasterSpec], processes, stop: asyncio.Event) -> None:
    """Report the leader as it changes and masters as they exit, until stopped."""
    exited: set[str] = set()
    leader_seen = None
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
        while not stop.is_set():
            for spec in specs:
                code = processes[spec.id].returncode
                if code is not None and spec.id not in exited:
                    exited.add(spec.id)
                    print(f"{spec.id} exited with status {code} (log: {spec.log_file})", flush=True)
            leader = await current_leader(session, [s for s in specs if s.id not in exited])
            if leader and leader != leader_seen:
                leader_seen = leader
                name = next((s.id for s in specs if s.http == leader), leader)
                print(f"leader: {name} (http://{leader})", flush=True)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=0.5)


async def current_leader(session, specs: list[MasterSpec]) -> str | None:
    for spec in specs:
        try:
            async with session.get(f"http://{spec.http}/health") as response:
                if response.status == 200:
                    leader = (await response.json()).get("leader")
                    if leader:
                        return leader
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError, ValueError):
            continue
    return None


async def stop_all(processes: dict[str, asyncio.subprocess.Process]) -> None:
    await asyncio.gather(*(stop_process(p, STOP_GRACE_S) for p in processes.values()))
