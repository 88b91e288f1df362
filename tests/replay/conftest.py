"""Histories for the replay tests: synthetic (mesos_es.replay.synthetic) archives on disk,
and a Kafka broker (tansu) the tests start and stop themselves."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from mesos_es.cluster.kafka import Broker
from mesos_es.log.archive import Archive
from mesos_es.pb import events_pb2
from mesos_es.replay.synthetic import SyntheticCluster
from tests.support.ports import free_port_block


@functools.cache
def synthetic(count: int, seed: int = 1, agents: int = 8) -> tuple[tuple[bytes, ...], int, str]:
    """(event bytes, final position, digest) of a synthetic history."""
    from mesos_es.core import digest

    cluster = SyntheticCluster(seed, agents=agents)
    events = tuple(cluster.events(count))
    return events, cluster.state.position, digest.digest(cluster.state)


def write_archive(work_dir: Path, events, per_entry: int = 50, segment_bytes: int = 64 << 20) -> Path:
    """A master work dir holding `events` in its archive (Raft entries of `per_entry` events)."""
    archive = Archive(Path(work_dir) / "archive", durable=False, segment_bytes=segment_bytes)
    events = list(events)
    for i in range(0, len(events), per_entry):
        archive.append(i // per_entry + 1, events[i:i + per_entry])
    archive.close()
    return Path(work_dir)


def event(**kind) -> events_pb2.Event:
    return events_pb2.Event(**kind)


@pytest.fixture
def broker(tmp_path):
    port = free_port_block(1, (0,))
    with Broker(port, log_file=tmp_path / "tansu.log") as running:
        yield running
