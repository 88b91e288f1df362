#!/usr/bin/env bash
# Install Debian's `zookeeper` package (the server's jars; not `zookeeperd`, which would start
# a system service): the ZooKeeper tests and `mesos-es cluster up --zk` run the server
# themselves from its jars (/usr/share/java/zookeeper.jar). Idempotent; run by `make test`
# and `make run` (through the venv install step).
#
# As root (CI, this project's machines) it installs with apt-get and fails if that fails.
# Without root and without passwordless sudo it only says so: the ZooKeeper tests then skip.
set -euo pipefail

# The server is libzookeeper-java's jar (a dependency of `zookeeper`), run with the JRE.
if [ -f /usr/share/java/zookeeper.jar ] && [ -d /usr/share/zookeeper ] && command -v java >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_zookeeper: no apt-get here; install ZooKeeper 3.8 by hand (the ZooKeeper tests skip)" >&2
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
else
    echo "install_zookeeper: not root: run 'apt-get install --no-install-recommends zookeeper' as root (the ZooKeeper tests skip)" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends zookeeper >/dev/null
