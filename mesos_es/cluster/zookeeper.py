"""A local ZooKeeper server from Debian's `zookeeper` package, for `cluster up --zk` and tests.

The package (installed by scripts/install_zookeeper.sh) puts the server in
/usr/share/java/zookeeper.jar, whose manifest names its dependencies. We run its standalone
main class with a zoo.cfg of our own: data under the given dir, the client port on one
address, no AdminServer (it would take port 8080), no fsync (it only holds ephemeral nodes).
ZooKeeper 3.8 disables the `ruok` command by default, so readiness is a kazoo connection.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")
SLF4J_SIMPLE_JAR = Path("/usr/share/java/slf4j-simple.jar")  # logs to stderr; else slf4j is silent
MAIN_CLASS = "org.apache.zookeeper.server.ZooKeeperServerMain"
DEFAULT_PORT = 2181


def available() -> str | None:
    """None if a server can be started here, else why not."""
    if not ZOOKEEPER_JAR.exists():
        return f"{ZOOKEEPER_JAR} is missing: run scripts/install_zookeeper.sh (Debian's zookeeper package)"
    if shutil.which("java") is None:
        return "no java on PATH (Debian's zookeeper package depends on default-jre)"
    return None


def write_config(data_dir: Path, host: str, port: int, tick_ms: int = 2000) -> Path:
    """zoo.cfg in data_dir (made if missing). Sessions last 2 to 20 ticks."""
    data_dir.mkdir(parents=True, exist_ok=True)
    config = data_dir / "zoo.cfg"
    config.write_text("\n".join([
        f"tickTime={tick_ms}",
        f"dataDir={data_dir / 'data'}",
        f"clientPort={port}",
        f"clientPortAddress={host}",
        "admin.enableServer=false",
        "forceSync=no",
        "preAllocSize=1024",
        "maxClientCnxns=0",
        "",
    ]))
    return config


def command(config_file: Path) -> list[str]:
    """The java command line of a standalone server (its log goes to stderr)."""
    classpath = [str(ZOOKEEPER_JAR)] + ([str(SLF4J_SIMPLE_JAR)] if SLF4J_SIMPLE_JAR.exists() else [])
    return [
        shutil.which("java") or "java",
        "-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xshare:auto",
        "-Dzookeeper.jmx.log4j.disable=true", "-Dorg.slf4j.simpleLogger.defaultLogLevel=info",
        "-Dorg.slf4j.simpleLogger.showDateTime=true",
        "-cp", ":".join(classpath), MAIN_CLASS, str(config_file),
    ]


def wait_serving(hosts: str, timeout_s: float, alive=lambda: True) -> bool:
    """Block until a kazoo client connects to `hosts` (True), `alive()` turns false or the
    timeout passes (False)."""
    from kazoo.client import KazooClient
    from kazoo.handlers.threading import KazooTimeoutError

    for name in ("kazoo.client", "kazoo.protocol.connection"):
        logging.getLogger(name).setLevel(logging.ERROR)  # a refused connection, each retry
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and alive():
        client = KazooClient(hosts=hosts, timeout=5.0)
        try:
            client.start(timeout=min(2.0, max(0.1, deadline - time.monotonic())))
            client.stop()
            return True
        except KazooTimeoutError:
            pass
        finally:
            client.close()
        time.sleep(0.1)
    return False
