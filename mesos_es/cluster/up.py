"""`mesos-es cluster up`: start masters and agents as child processes and watch them until
interrupted.

The configuration is the embedded default.toml, overlaid by `--config FILE`, overlaid by
flags. Each master runs as `python -m mesos_es master`, each agent as `python -m mesos_es
agent` (with an equal slice of the machine), each with its own work dir and log file;
`cluster.json` in the work dir lists them (pids included) for tools and tests. Processes
that die are reported, not restarted; running `cluster up` again on the same work dir
restarts the cluster from its files (agents recover their tasks). On Ctrl-C the agents'
tasks are killed too.
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

from mesos_es.cluster.kafka import start_kafka
from mesos_es.master.config import RAFT_PORT_OFFSET, RAFT_SECRET_FILE, write_new_secret
from mesos_es.processes import die_with_parent, stop_process

STOP_GRACE_S = 10.0
AGENT_PORT_OFFSET = 100       # agent i listens on base_port + AGENT_PORT_OFFSET + i
AGENT_PORTS_FIRST = 31000     # agent i offers ports [31000 + 1000 i, 31999 + 1000 i]


@dataclass(frozen=True)
class MasterSpec:
    id: str
    http: str
    raft: str
    work_dir: Path

    @property
    def log_file(self) -> Path:
        return self.work_dir / "master.log"


@dataclass(frozen=True)
class AgentSpec:
    id: str
    http: str
    work_dir: Path
    resources: str

    @property
    def log_file(self) -> Path:
        return self.work_dir / "agent.log"


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
    parser.add_argument("--agents", type=int, help="number of agents, each with a slice of the machine (default 2)")
    parser.add_argument("--kafka", nargs="?", const=True, metavar="HOST:PORT",
                        help="export every event to Kafka: start a broker (tansu) on 127.0.0.1:9092 "
                             "([cluster] kafka_port), or use the one at HOST:PORT")
    parser.add_argument("--zk", nargs="?", const=True, metavar="HOST:PORT[,HOST:PORT]",
                        help="advertise the leader in ZooKeeper (zk://.../mesos) for Mesos clients: start a "
                             "ZooKeeper on 127.0.0.1:2181 ([cluster] zk_port), or use the one at HOST:PORT")


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


def machine_slice(count: int, work_dir: Path) -> dict[str, float]:
    """An equal share of the machine for each of `count` agents (at least 0.1 CPU each)."""
    from mesos_es.agent.config import detect_resources

    whole = detect_resources(work_dir).scalars()
    cpus = max(0.1, round(whole.get("cpus", 1) / max(1, count), 1))
    return {"cpus": cpus, **{name: max(1, int(whole.get(name, 0) // max(1, count))) for name in ("mem", "disk")}}


def agent_specs(cluster: dict) -> list[AgentSpec]:
    work_dir = Path(cluster["work_dir"]).resolve()
    host, base, count = cluster["host"], int(cluster["base_port"]), int(cluster.get("agents", 0))
    share = machine_slice(count, work_dir) if count else {}
    specs = []
    for i in range(count):
        first = AGENT_PORTS_FIRST + 1000 * i
        resources = (f"cpus:{share['cpus']:g};mem:{share['mem']:g};disk:{share['disk']:g};"
                     f"ports:[{first}-{first + 999}]")
        specs.append(AgentSpec(id=f"agent-{i + 1}", http=f"{host}:{base + AGENT_PORT_OFFSET + i}",
                               work_dir=work_dir / f"agent-{i + 1}", resources=resources))
    return specs


def agent_command(spec: AgentSpec, masters: list[MasterSpec], config: dict) -> list[str]:
    host, _, port = spec.http.rpartition(":")
    command = [
        sys.executable, "-m", "mesos_es", "agent",
        "--master", ",".join(m.http for m in masters), "--work_dir", str(spec.work_dir),
        "--ip", host, "--port", port, "--hostname", host, "--resources", spec.resources,
        "--attributes", f"agent:{spec.id}", "--log-format", config["cluster"]["log_format"],
    ]
    for key, value in config.get("agent", {}).items():
        command += [f"--{key}", str(value)]
    return command


def kill_agent_tasks(spec: AgentSpec) -> None:
    """After its agent stopped: SIGKILL the process groups of the tasks it checkpointed."""
    from mesos_es.agent.checkpoint import read_json
    from mesos_es.agent.launcher import is_same_process

    try:
        state = read_json(spec.work_dir / "meta" / "state.json") or {}
    except (OSError, ValueError):
        return
    for item in [*state.get("tasks", []), *state.get("executors", [])]:
        if is_same_process(item.get("pid"), item.get("pid_start")):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(item["pid"], signal.SIGKILL)


def check_ports_free(specs: list[MasterSpec], agents: list[AgentSpec] = ()) -> None:
    for spec in agents:
        host, _, port = spec.http.rpartition(":")
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, int(port)))
            except OSError:
                raise SystemExit(f"mesos-es cluster up: {spec.http} is in use (is another cluster running?)") from None
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
    for key, value in (("masters", args.masters), ("base_port", args.base_port), ("work_dir", args.work_dir),
                       ("agents", args.agents), ("zk", args.zk)):
        if value is not None:
            config["cluster"][key] = str(value) if isinstance(value, Path) else value
    if getattr(args, "kafka", None) is not None:
        config["cluster"]["kafka"] = args.kafka
    if int(config["cluster"].get("agents", 0)) < 0:
        print("mesos-es cluster up: --agents must be 0 or more", file=sys.stderr)
        return 2
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
    agents = agent_specs(config["cluster"])
    check_ports_free(specs, agents)
    secret_file = work_dir / RAFT_SECRET_FILE
    if not secret_file.exists():
        write_new_secret(secret_file)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    processes: dict[str, asyncio.subprocess.Process] = {}
    kafka = await start_kafka(config["cluster"], work_dir, processes) if config["cluster"].get("kafka") else None
    if kafka is False:
        os.close(lock)
        return 1
    if kafka:
        config["master"]["kafka"] = kafka.address
    zk = await start_zookeeper(config["cluster"], work_dir, processes) if config["cluster"].get("zk") else None
    if zk is False:
        await stop_all(processes)  # what was started before it
        os.close(lock)
        return 1
    if zk:
        config["master"]["zk"] = zk.url
    commands = {spec.id: master_command(spec, specs, secret_file, config) for spec in specs}
    commands.update({spec.id: agent_command(spec, specs, config) for spec in agents})
    for spec in [*specs, *agents]:
        spec.work_dir.mkdir(parents=True, exist_ok=True)
        with open(spec.log_file, "ab") as log_file:  # noqa: ASYNC230 - a local file, once at start
            processes[spec.id] = await asyncio.create_subprocess_exec(
                *commands[spec.id],
                stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                # If `cluster up` dies, its masters and agents get SIGTERM: none outlives its cluster.
                preexec_fn=die_with_parent(signal.SIGTERM),
            )
    if kafka:
        print(f"kafka: {kafka.address}, topic mesos-es.events"
              + (f" (started here, pid {processes['kafka'].pid}, log {kafka.log_file})" if kafka.log_file else ""),
              flush=True)
    write_cluster_file(work_dir, specs, processes, secret_file, commands, agents, zk)
    print_table(work_dir, specs, processes, agents, zk)
    try:
        await watch([*specs, *agents, *([zk] if zk and zk.id in processes else [])], processes, stop, masters=specs)
    finally:
        await stop_all({a.id: processes[a.id] for a in agents})
        for spec in agents:
            kill_agent_tasks(spec)
        await stop_all({m.id: processes[m.id] for m in specs})
        if "kafka" in processes:  # after the masters, so the leader's last exports land
            await stop_all({"kafka": processes["kafka"]})
        if zk and zk.id in processes:  # after the masters, which delete their nodes as they stop
            await stop_all({zk.id: processes[zk.id]})
        with contextlib.suppress(OSError):
            (work_dir / "cluster.json").unlink()
        os.close(lock)
    print("cluster stopped", flush=True)
    return 0


def write_cluster_file(work_dir: Path, specs, processes, secret_file: Path, commands: dict, agents=(),
                       zk=None) -> None:
    data = {
        "work_dir": str(work_dir),
        "raft_secret_file": str(secret_file),
        "supervisor_pid": os.getpid(),
        "masters": [
            {"id": s.id, "http": s.http, "raft": s.raft, "pid": processes[s.id].pid,
             "work_dir": str(s.work_dir), "log": str(s.log_file), "argv": commands[s.id]}
            for s in specs
        ],
        "agents": [
            {"id": a.id, "http": a.http, "pid": processes[a.id].pid, "resources": a.resources,
             "work_dir": str(a.work_dir), "log": str(a.log_file), "argv": commands[a.id]}
            for a in agents
        ],
    }
    if zk:
        data["zk"] = {"url": zk.url, "pid": processes[zk.id].pid if zk.id in processes else None,
                      "work_dir": str(zk.work_dir) if zk.work_dir else None,
                      "log": str(zk.log_file) if zk.log_file else None}
    tmp = work_dir / "cluster.json.tmp"
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, work_dir / "cluster.json")


def print_table(work_dir: Path, specs, processes, agents=(), zk=None) -> None:
    print(f"mesos-es cluster: {len(specs)} master(s), {len(agents)} agent(s), work dir {work_dir}")
    print(f"  {'id':<10} {'http':<24} {'raft':<18} {'pid':<8} log")
    for s in specs:
        print(f"  {s.id:<10} {'http://' + s.http:<24} {s.raft:<18} {processes[s.id].pid:<8} {s.log_file}")
    for a in agents:
        print(f"  {a.id:<10} {'http://' + a.http:<24} {'-':<18} {processes[a.id].pid:<8} {a.log_file}")
        print(f"  {'':<10} resources {a.resources}")
    if zk:
        pid = processes[zk.id].pid if zk.id in processes else "-"
        print(f"  {'zookeeper':<10} {zk.url:<43} {pid!s:<8} {zk.log_file or '(not ours)'}")
    print("Press Ctrl-C to stop.", flush=True)


async def watch(specs: list, processes, stop: asyncio.Event, masters: list[MasterSpec] | None = None) -> None:
    """Report the leader as it changes and masters and agents as they exit, until stopped."""
    masters = specs if masters is None else masters
    exited: set[str] = set()
    leader_seen = None
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
        while not stop.is_set():
            for spec in specs:
                code = processes[spec.id].returncode
                if code is not None and spec.id not in exited:
                    exited.add(spec.id)
                    print(f"{spec.id} exited with status {code} (log: {spec.log_file})", flush=True)
            leader = await current_leader(session, [s for s in masters if s.id not in exited])
            if leader and leader != leader_seen:
                leader_seen = leader
                name = next((s.id for s in masters if s.http == leader), leader)
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
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError):
            continue
    return None


@dataclass(frozen=True)
class ZooKeeperSpec:
    url: str  # what the masters get: zk://HOST:PORT/mesos
    work_dir: Path | None = None  # None: a ZooKeeper that is not ours
    id: str = "zookeeper"

    @property
    def log_file(self) -> Path | None:
        return self.work_dir / "zookeeper.log" if self.work_dir else None


async def start_zookeeper(cluster: dict, work_dir: Path, processes: dict) -> ZooKeeperSpec | bool:
    """`--zk`: start ZooKeeper under work_dir/zookeeper and wait until it serves (its process
    goes into `processes`); `--zk HOST:PORT`: use that one. False (after saying why) if it
    cannot be had."""
    from mesos_es.cluster import zookeeper
    from mesos_es.master.config import ConfigError
    from mesos_es.master.zk import parse_zk_url

    given = cluster["zk"]
    if given is not True:
        url = given if str(given).startswith("zk://") else f"zk://{given}/mesos"
        try:
            hosts, _ = parse_zk_url(url)
        except ConfigError as e:
            print(f"mesos-es cluster up: --zk: {e}", file=sys.stderr)
            return False
        spec = ZooKeeperSpec(url=url)
        if not await asyncio.to_thread(zookeeper.wait_serving, hosts, 5.0):
            print(f"mesos-es cluster up: ZooKeeper at {hosts} does not answer yet; the masters will keep trying",
                  flush=True)
        return spec
    why = zookeeper.available()
    if why:
        print(f"mesos-es cluster up: cannot start ZooKeeper: {why}", file=sys.stderr)
        return False
    host, port = cluster["host"], int(cluster.get("zk_port", zookeeper.DEFAULT_PORT))
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            print(f"mesos-es cluster up: {host}:{port} is in use: pass --zk {host}:{port} to use the ZooKeeper "
                  "running there, or set zk_port in [cluster]", file=sys.stderr)
            return False
    spec = ZooKeeperSpec(url=f"zk://{host}:{port}/mesos", work_dir=work_dir / "zookeeper")
    config_file = zookeeper.write_config(spec.work_dir, host, port)
    with open(spec.log_file, "ab") as log_file:  # noqa: ASYNC230 - a local file, once at start
        process = await asyncio.create_subprocess_exec(
            *zookeeper.command(config_file), stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=log_file,
            preexec_fn=die_with_parent(signal.SIGTERM),
        )
    processes[spec.id] = process
    if not await asyncio.to_thread(zookeeper.wait_serving, f"{host}:{port}", 60.0,
                                   lambda: process.returncode is None):
        await stop_all({spec.id: process})
        print(f"mesos-es cluster up: ZooKeeper did not start (log: {spec.log_file})", file=sys.stderr)
        return False
    return spec


async def stop_all(processes: dict[str, asyncio.subprocess.Process]) -> None:
    await asyncio.gather(*(stop_process(p, STOP_GRACE_S) for p in processes.values()))
