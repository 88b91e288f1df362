"""The `mesos-es` command line."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from mesos_es import __version__, logconfig


def add_logging_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-format", choices=["auto", "json", "console"], default="auto",
                        help="log format (auto: readable on a terminal, JSON otherwise)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])


def master_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--id", help="this master's id in logs and answers (default: its address)")
    parser.add_argument("--address", default="127.0.0.1:5050", help="HTTP HOST:PORT (default %(default)s)")
    parser.add_argument("--raft-address", help="Raft HOST:PORT (default: HTTP port + 1000)")
    parser.add_argument(
        "--peers", default="",
        help="the cluster's masters, comma separated, each HOST:PORT (Raft on PORT+1000) or "
             "HOST:PORT=RAFTHOST:RAFTPORT; may include this master; empty for a single master",
    )
    parser.add_argument("--work-dir", type=Path, help="journal, archive and snapshots (default .mesos-es/master-PORT)")
    parser.add_argument("--raft-secret-file", help="file holding the Raft password shared by all masters")
    parser.add_argument("--journal-sync", choices=["fsync", "none"], default="fsync",
                        help="fsync the Raft journal before acknowledging entries (default %(default)s)")
    parser.add_argument("--max-entry-bytes", type=int, default=1 << 20, help="largest log entry (default %(default)s)")
    parser.add_argument("--snapshot-every", type=int, default=10_000,
                        help="write a state snapshot every N positions (default %(default)s)")
    parser.add_argument("--snapshot-suffix-ratio", type=float, default=0.25,
                        help="and only once the events since the last snapshot add up to this share of "
                             "its size, in bytes (default %(default)s; 0: every N positions)")
    parser.add_argument("--election-timeout-min-ms", type=int, default=1000)
    parser.add_argument("--election-timeout-max-ms", type=int, default=2000)
    parser.add_argument("--raft-pre-vote", choices=["on", "off"], default="on",
                        help="ask the other masters before starting an election, so that a master that was "
                             "paused or cut off cannot depose a working leader (default %(default)s)")
    parser.add_argument("--raft-stall-dump-s", type=float, default=0.0, metavar="SECONDS",
                        help="when the Raft thread has not run for this long, write every thread's stack to "
                             "raft-stalls.txt in the work dir, to see what held it up (default 0: off)")
    parser.add_argument("--raft-process", choices=["on", "off"], default="on",
                        help="run Raft in a process of its own beside the master, so that its heartbeats do not "
                             "wait behind a busy master (default %(default)s; off: on a thread of the master)")
    parser.add_argument("--raft-master-timeout-s", type=float, default=None, metavar="SECONDS",
                        help="with --raft-process on: a Raft process that hears nothing from its master for this "
                             "long stops leading until it does (default: twice the longest election timeout)")
    parser.add_argument("--compaction-min-entries", type=int, default=2_000,
                        help="compact the Raft journal past this many Raft entries (default %(default)s)")
    parser.add_argument("--compaction-interval-s", type=float, default=60.0,
                        help="or at least this often (default %(default)s)")
    parser.add_argument("--zk", metavar="zk://HOST:PORT[,HOST:PORT]/PATH",
                        help="advertise the leading master in ZooKeeper as Mesos does, for clients that "
                             "detect the leader there (default: not advertised)")
    scheduling = parser.add_argument_group("scheduling")
    scheduling.add_argument("--allocation-interval-s", type=float, default=1.0,
                            help="seconds between allocation cycles (default %(default)s)")
    scheduling.add_argument("--offer-timeout-s", type=float, default=60.0,
                            help="rescind offers unused this long; 0 never (default %(default)s)")
    scheduling.add_argument("--heartbeat-interval-s", type=float, default=15.0,
                            help="HEARTBEAT period on scheduler streams (default %(default)s)")
    scheduling.add_argument("--agent-ping-timeout-s", type=float, default=15.0,
                            help="PING period and timeout for agents (default %(default)s)")
    scheduling.add_argument("--max-agent-ping-timeouts", type=int, default=5,
                            help="missed pings before an agent is unreachable (default %(default)s)")
    scheduling.add_argument("--agent-reregister-timeout-s", type=float, default=75.0,
                            help="after an election, how long known agents have to re-register "
                                 "(default %(default)s)")
    scheduling.add_argument("--revoke-for-quota", action="store_true",
                            help="kill tasks of roles above their quota guarantee when roles below it "
                                 "cannot otherwise reach it (default: never revoke)")
    scheduling.add_argument("--revocation-grace-period-s", type=float, default=30.0,
                            help="grace period (SIGTERM to SIGKILL) of a revoked task (default %(default)s)")
    scheduling.add_argument("--scheduler_api", "--scheduler-api", dest="scheduler_api",
                            choices=["redirect", "proxy"], default="redirect",
                            help="on a master that does not lead: redirect schedulers to the leader (307, "
                                 "as Mesos) or proxy their calls and streams to it (default %(default)s)")
    scheduling.add_argument("--leader-hold-timeout-s", type=float, default=5.0,
                            help="how long an agent or scheduler call that arrives while no leader is known "
                                 "waits for one before it is answered 503; 0 answers at once (default %(default)s)")
    export = parser.add_argument_group("export")
    export.add_argument("--kafka", metavar="HOST:PORT[,HOST:PORT]",
                        help="export every committed event to Kafka while leading (default: no export)")
    export.add_argument("--kafka-topic", default="mesos-es.events",
                        help="the topic, one partition (default %(default)s)")
    add_logging_flags(parser)
    return parser


def master_config(args: argparse.Namespace):
    from mesos_es.master.config import (
        ConfigError,
        MasterConfig,
        default_raft_address,
        parse_address,
        parse_peers,
        resolve_raft_secret,
    )
    from mesos_es.master.zk import parse_zk_url

    if args.zk:
        parse_zk_url(args.zk)  # ConfigError if malformed
    parse_address(args.address)
    raft_address = args.raft_address or default_raft_address(args.address)
    parse_address(raft_address)
    peers = tuple(p for p in parse_peers(args.peers) if p.http != args.address and p.raft != raft_address)
    work_dir = args.work_dir or Path(".mesos-es") / f"master-{args.address.rpartition(':')[2]}"
    if args.election_timeout_min_ms >= args.election_timeout_max_ms:
        raise ConfigError("--election-timeout-min-ms must be below --election-timeout-max-ms")
    if not 0 <= args.snapshot_suffix_ratio <= 100:  # NaN too
        raise ConfigError("--snapshot-suffix-ratio must be between 0 and 100")
    if not 0 <= args.raft_stall_dump_s <= 3600:
        raise ConfigError("--raft-stall-dump-s must be between 0 (off) and 3600")
    if args.raft_master_timeout_s is not None and not 0.1 <= args.raft_master_timeout_s <= 3600:
        raise ConfigError("--raft-master-timeout-s must be between 0.1 and 3600")
    return MasterConfig(
        id=args.id or args.address,
        address=args.address,
        raft_address=raft_address,
        peers=peers,
        work_dir=work_dir.resolve(),
        zk=args.zk or None,
        raft_secret=resolve_raft_secret(args.raft_secret_file, work_dir, has_peers=bool(peers)),
        durable=args.journal_sync == "fsync",
        max_entry_bytes=args.max_entry_bytes,
        snapshot_every=args.snapshot_every,
        snapshot_suffix_ratio=args.snapshot_suffix_ratio,
        election_timeout_min_ms=args.election_timeout_min_ms,
        election_timeout_max_ms=args.election_timeout_max_ms,
        raft_pre_vote=args.raft_pre_vote == "on",
        raft_stall_dump_s=args.raft_stall_dump_s,
        raft_process=args.raft_process == "on",
        raft_master_timeout_s=args.raft_master_timeout_s,
        compaction_min_entries=args.compaction_min_entries,
        compaction_interval_s=args.compaction_interval_s,
        allocation_interval_s=args.allocation_interval_s,
        offer_timeout_s=args.offer_timeout_s,
        heartbeat_interval_s=args.heartbeat_interval_s,
        agent_ping_timeout_s=args.agent_ping_timeout_s,
        max_agent_ping_timeouts=args.max_agent_ping_timeouts,
        agent_reregister_timeout_s=args.agent_reregister_timeout_s,
        revoke_for_quota=args.revoke_for_quota,
        revocation_grace_period_s=args.revocation_grace_period_s,
        kafka=args.kafka or None,
        kafka_topic=args.kafka_topic,
        scheduler_api=args.scheduler_api,
        leader_hold_timeout_s=args.leader_hold_timeout_s,
    )


def run_master(args: argparse.Namespace) -> int:
    from mesos_es.master.config import ConfigError
    from mesos_es.master.main import MasterStartError, serve

    try:
        config = master_config(args)
    except (ConfigError, OSError) as e:
        print(f"mesos-es master: {e}", file=sys.stderr)
        return 2
    logconfig.configure(args.log_format, args.log_level, master=config.id)
    try:
        asyncio.run(serve(config))
    except MasterStartError as e:
        print(f"mesos-es master: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - e.g. RaftStartError, JournalCorrupt
        print(f"mesos-es master: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


def parse_duration_s(text: str) -> float:
    """Seconds from `2.5`, `500ms`, `10secs`, `1mins` (Mesos' duration syntax)."""
    text = str(text).strip()
    for suffix, scale in (("ms", 1e-3), ("secs", 1.0), ("s", 1.0), ("mins", 60.0), ("hrs", 3600.0)):
        if text.endswith(suffix) and text[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(text[: -len(suffix)]) * scale
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad duration {text!r} (e.g. 3, 500ms, 10secs, 1mins)") from None


def agent_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Flags as Mesos names them; each also accepts a dashed alias (--work-dir)."""

    def flag(name: str, **kwargs):
        names = [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])
        parser.add_argument(*names, dest=name, **kwargs)

    flag("master", required=True, help="the masters, HOST:PORT[,HOST:PORT...]; any of them leads the agent to the leader")
    flag("work_dir", type=Path, help="checkpoints and sandboxes (default .mesos-es/agent-PORT)")
    flag("ip", default="127.0.0.1", help="address of the agent's HTTP port, which executors use (default %(default)s)")
    flag("port", type=int, default=5051, help="the agent's HTTP port: the executor API (default %(default)s)")
    flag("hostname", help="the hostname reported to the master (default: this machine's)")
    flag("resources", help='e.g. "cpus:4;mem:8192;disk:10000;ports:[31000-32000]"; unnamed ones are detected')
    flag("attributes", default="", help='e.g. "rack:r1;zone:z2;level:3"')
    flag("reconfiguration_policy", choices=["equal", "additive"], default="equal",
         help="may a restart with changed resources/attributes keep the agent id (default %(default)s)")
    flag("executor_registration_timeout", type=parse_duration_s, default=60.0,
         help="a new executor must subscribe within this (default 60 s)")
    flag("executor_reregistration_timeout", type=parse_duration_s, default=10.0,
         help="after a restart, a recovered executor must re-subscribe within this (default 10 s)")
    flag("executor_shutdown_grace_period", type=parse_duration_s, default=5.0,
         help="after SHUTDOWN, an executor is killed if still running after this (default 5 s)")
    flag("resource_estimator", choices=["none", "slack"], default="none",
         help="report allocated-but-unused CPUs as revocable (slack) or nothing (default %(default)s)")
    flag("oversubscribed_resources_interval", type=parse_duration_s, default=5.0,
         help="how often the estimator runs (default 5 s)")
    flag("synthetic", type=int, default=0, metavar="N",
         help="run N simulated agents in this process instead (no processes are launched)")
    flag("synthetic_task_duration", type=parse_duration_s, default=10.0,
         help="synthetic tasks finish after this unless labelled (default 10 s; negative: until killed)")
    add_logging_flags(parser)
    return parser


def agent_config(args: argparse.Namespace):
    from mesos_es.agent.config import (
        AgentConfig,
        default_hostname,
        parse_attributes,
        parse_masters,
        resources_from_flag,
    )

    work_dir = (args.work_dir or Path(".mesos-es") / f"agent-{args.port}").resolve()
    return AgentConfig(
        masters=parse_masters(args.master),
        work_dir=work_dir,
        resources=resources_from_flag(args.resources, work_dir),
        attributes=parse_attributes(args.attributes),
        hostname=args.hostname or default_hostname(),
        ip=args.ip,
        port=args.port,
        reconfiguration_policy=args.reconfiguration_policy,
        executor_registration_timeout_s=args.executor_registration_timeout,
        executor_reregistration_timeout_s=args.executor_reregistration_timeout,
        executor_shutdown_grace_period_s=args.executor_shutdown_grace_period,
        resource_estimator=args.resource_estimator,
        oversubscription_interval_s=args.oversubscribed_resources_interval,
    )


def run_agent(args: argparse.Namespace) -> int:
    from mesos_es.agent.config import ConfigError
    from mesos_es.agent.main import AgentStartError, serve

    try:
        config = agent_config(args)
    except (ConfigError, OSError) as e:
        print(f"mesos-es agent: {e}", file=sys.stderr)
        return 2
    logconfig.configure(args.log_format, args.log_level, agent=f"{config.hostname}:{config.port}")
    try:
        if args.synthetic > 0:
            asyncio.run(_run_synthetic(config, args.synthetic, args.synthetic_task_duration))
        else:
            asyncio.run(serve(config))
    except AgentStartError as e:
        print(f"mesos-es agent: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"mesos-es agent: {e}", file=sys.stderr)
        return 1
    return 0


async def _run_synthetic(config, count: int, duration_s: float) -> None:
    import signal

    from mesos_es.agent.synthetic import serve_synthetic

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await serve_synthetic(config, count, duration_s, stop)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mesos-es",
        description="mesos-es: a Mesos-style cluster manager whose master is an event-sourced "
                    "state machine on a Raft replicated log.",
    )
    parser.add_argument("--version", action="version", version=f"mesos-es {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    master = commands.add_parser("master", help="run one master (a Raft replica and its HTTP APIs)")
    master_parser(master)
    master.set_defaults(run=run_master)

    agent = commands.add_parser("agent", help="run an agent: tasks as real processes, the v1 executor API")
    agent_parser(agent)
    agent.set_defaults(run=run_agent)

    cluster = commands.add_parser("cluster", help="a local cluster of processes")
    cluster_commands = cluster.add_subparsers(dest="cluster_command", required=True)
    from mesos_es.cluster.up import add_arguments as add_up_arguments
    from mesos_es.cluster.up import run as run_up

    up = cluster_commands.add_parser("up", help="start a local cluster and keep it up until interrupted")
    add_up_arguments(up)
    up.set_defaults(run=run_up)

    bench = commands.add_parser("bench", help="benchmarks that print a table (or --json)")
    bench_commands = bench.add_subparsers(dest="bench_command", required=True)
    from mesos_es.bench.log import add_arguments as add_log_bench_arguments
    from mesos_es.bench.log import run as run_log_bench

    log_bench = bench_commands.add_parser("log", help="the replicated log: appends/s and commit latency")
    add_log_bench_arguments(log_bench)
    log_bench.set_defaults(run=run_log_bench)
    from mesos_es.bench.alloc import add_arguments as add_alloc_bench_arguments
    from mesos_es.bench.alloc import run as run_alloc_bench

    alloc_bench = bench_commands.add_parser("alloc", help="the allocator: time of one allocation cycle")
    add_alloc_bench_arguments(alloc_bench)
    alloc_bench.set_defaults(run=run_alloc_bench)
    from mesos_es.bench.master import add_arguments as add_master_bench_arguments
    from mesos_es.bench.master import run as run_master_bench

    master_bench = bench_commands.add_parser(
        "master", help="real masters, synthetic agents, 10 frameworks: offer round trip and task launches/s")
    add_master_bench_arguments(master_bench)
    master_bench.set_defaults(run=run_master_bench)

    from mesos_es.bench.replay import add_arguments as add_replay_bench_arguments
    from mesos_es.bench.replay import run as run_replay_bench

    replay_bench = bench_commands.add_parser("replay", help="replay speed from each source, and export throughput")
    add_replay_bench_arguments(replay_bench)
    replay_bench.set_defaults(run=run_replay_bench)

    from mesos_es.bench.failover import add_arguments as add_failover_bench_arguments
    from mesos_es.bench.failover import run as run_failover_bench

    failover_bench = bench_commands.add_parser(
        "failover", help="SIGKILL the leader of 3 masters under N agents' tasks: election, time to completion, "
                         "cold start, memory, beside Mesos 1.5")
    add_failover_bench_arguments(failover_bench)
    failover_bench.set_defaults(run=run_failover_bench)

    replay = commands.add_parser("replay", help="rebuild and audit the cluster's history (docs/replay.md)")
    from mesos_es.replay.cli import add_arguments as add_replay_arguments
    from mesos_es.replay.cli import run as run_replay

    add_replay_arguments(replay)
    replay.set_defaults(run=run_replay)

    chaos = commands.add_parser("chaos", help="fault injection: a deterministic simulator and real processes (docs/chaos.md)")
    from chaos.cli import add_arguments as add_chaos_arguments

    add_chaos_arguments(chaos)

    version = commands.add_parser("version", help="print the version")
    version.set_defaults(run=lambda _args: print(__version__) or 0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)
