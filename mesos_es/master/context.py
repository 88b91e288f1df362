"""What the HTTP handlers of one master work with."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mesos_es.log.archive import Archive
from mesos_es.log.interface import ReplicatedLog, Role
from mesos_es.master.config import MasterConfig
from mesos_es.master.replica import Replica


@dataclass
class MasterContext:
    config: MasterConfig
    log: ReplicatedLog
    replica: Replica
    archive: Archive | None = None
    # The leader's shell (streams, timers, allocation); set by serve().
    leader_shell: Any = None
    # The ZooKeeper advertiser (mesos_es/master/zk.py) with --zk; set by serve().
    zk: Any = None

    def leader(self) -> str | None:
        """HTTP address of the leader this master knows, or None."""
        return self.config.http_address_of(self.log.status().leader)

    def is_leader(self) -> bool:
        return self.log.status().role is Role.LEADER
