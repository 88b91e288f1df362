"""A master's configuration, and the parsing of the addresses and peers it is given."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

RAFT_PORT_OFFSET = 1000
RAFT_SECRET_ENV = "MESOS_ES_RAFT_SECRET"
RAFT_SECRET_FILE = "raft.secret"


class ConfigError(ValueError):
    pass


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"bad address {text!r}: expected HOST:PORT")
    return host, int(port)


def default_raft_address(http_address: str) -> str:
    host, port = parse_address(http_address)
    return f"{host}:{port + RAFT_PORT_OFFSET}"


@dataclass(frozen=True)
class Peer:
    """A master as its peers know it: HTTP address for clients, Raft address for Raft."""

    http: str
    raft: str

    @classmethod
    def parse(cls, text: str) -> Peer:
        """`HOST:PORT` (Raft on PORT+1000) or `HOST:PORT=RAFTHOST:RAFTPORT`."""
        http, _, raft = text.strip().partition("=")
        parse_address(http)
        raft = raft or default_raft_address(http)
        parse_address(raft)
        return cls(http=http, raft=raft)


def parse_peers(text: str) -> tuple[Peer, ...]:
    return tuple(Peer.parse(item) for item in text.split(",") if item.strip())


@dataclass(frozen=True)
class MasterConfig:
    id: str
    address: str  # HTTP host:port
    raft_address: str
    peers: tuple[Peer, ...]  # the other masters
    work_dir: Path
    raft_secret: str = field(repr=False)
    durable: bool = True
    # Advertise the leader in ZooKeeper for Mesos clients (zk://HOST:PORT[,...]/PATH), or None.
    zk: str | None = None
    max_entry_bytes: int = 1 << 20
    snapshot_every: int = 10_000
    snapshot_suffix_ratio: float = 0.25
    election_timeout_min_ms: int = 1000
    election_timeout_max_ms: int = 2000
    raft_pre_vote: bool = True
    raft_stall_dump_s: float = 0.0  # 0: off
    raft_process: bool = True  # Raft in a process of its own (mesos_es/log/raft_process.py)
    raft_master_timeout_s: float | None = None  # None: twice the longest election timeout
    compaction_min_entries: int = 2_000
    compaction_interval_s: float = 60.0
    commit_timeout_s: float = 10.0
    # Scheduling (Mesos' flag names where it has one).
    allocation_interval_s: float = 1.0
    offer_timeout_s: float = 60.0  # 0: offers never time out
    heartbeat_interval_s: float = 15.0  # scheduler streams
    # Mesos' defaults: an agent is unreachable after 75 s without a sign of life. Shorter
    # timeouts turn a leader slowed by load into a storm: agents whose PONGs wait in its
    # queue are marked unreachable, re-register with their task lists, and load it further
    # (seen with 5 s x 3 in bench failover under a busy machine).
    agent_ping_timeout_s: float = 15.0
    max_agent_ping_timeouts: int = 5
    # How long a new leader waits for known agents to re-register before marking them
    # unreachable: the steady-state agent timeout, so that a failover never judges agents more
    # harshly than a quiet leader would (Mesos waits 10 min; our standby already knows every
    # agent, and agents reconnect within seconds, so 10 min would only hide dead ones).
    agent_reregister_timeout_s: float = 75.0
    # Revocation: kill tasks of roles above their quota guarantee so that roles below it can
    # reach theirs (off by default: an operator opts in to preemption), after a grace period.
    revoke_for_quota: bool = False
    revocation_grace_period_s: float = 30.0
    # Kafka export (mesos_es/master/export.py): bootstrap HOST:PORT, or None for no export.
    kafka: str | None = None
    kafka_topic: str = "mesos-es.events"
    # What a master that does not lead does with the v1 scheduler API: "redirect" (307 to
    # the leader, as Mesos) or "proxy" (pass it through to the leader).
    scheduler_api: str = "redirect"
    # Nomad's rpc_hold_timeout: an agent or scheduler call that arrives while no leader is
    # known (an election, or the new leader committing MasterElected) waits this long for one
    # before it is answered 503; 0 answers at once.
    leader_hold_timeout_s: float = 5.0

    def http_address_of(self, raft_address: str | None) -> str | None:
        """The HTTP address of the master with this Raft address, if it is one we know."""
        if raft_address is None:
            return None
        if raft_address == self.raft_address:
            return self.address
        return next((p.http for p in self.peers if p.raft == raft_address), None)


def resolve_raft_secret(secret_file: str | None, work_dir: Path, has_peers: bool) -> str:
    """The Raft password: --raft-secret-file, then $MESOS_ES_RAFT_SECRET, then the work
    dir's raft.secret; a single master without one makes its own."""
    if secret_file:
        secret = Path(secret_file).read_text().strip()
        if not secret:
            raise ConfigError(f"{secret_file} is empty")
        return secret
    if os.environ.get(RAFT_SECRET_ENV):
        return os.environ[RAFT_SECRET_ENV]
    own = work_dir / RAFT_SECRET_FILE
    if own.exists():
        return own.read_text().strip()
    if has_peers:
        raise ConfigError(
            "masters of one cluster must share a Raft secret: pass --raft-secret-file "
            f"(or set ${RAFT_SECRET_ENV}) with the same secret on every master"
        )
    return write_new_secret(own)


def write_new_secret(path: Path) -> str:
    secret = secrets.token_urlsafe(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret + "\n")
    return secret
