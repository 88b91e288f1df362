"""A fault-injecting TCP proxy for the masters' Raft links: partitions for `chaos run`.

pysyncobj opens one TCP connection per pair of masters, from the master whose Raft address
string is the greater to the other one, and the connecting side introduces itself by its
own address. So one proxy per pair is enough, and only the connecting master is told a
different address: it is given the proxy's (a port on 127.0.0.1 whose address string still
sorts below its own, so it still connects), while the other master keeps the real address
of the connecting one and recognises it by the address it sends. `plan_links` and
`peer_addresses` compute that; the masters map either address to the peer's HTTP address
through `--peers HTTP=RAFT`, so everything else (the leader a master names, redirects)
is unchanged.

The proxy runs as its own process (`python -m chaos.procs.proxy SPEC`, SPEC a JSON list of
links), so the Raft traffic it copies does not share the harness's interpreter. It is driven
by one command a line on stdin, each answered by one JSON line on stdout:

    cut A B    black-hole the A-B link: open connections stay open but carry nothing (as a
               real partition: the peers see silence and time out), new ones are accepted
               and carry nothing
    heal A B   let the link carry traffic again; the black-holed connections are closed, so
               the peers reconnect with clean streams
    heal       every link
    status     each link: cut or not, open and black-holed connections

Only Raft is cut. The HTTP between masters (a standby proxying the scheduler API to the
leader, archive gap fetches) and from agents and frameworks to masters is not: a partition
here is "the masters cannot replicate to each other", not "a machine is unreachable".
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from mesos_es.processes import die_with_parent

HOST = "127.0.0.1"
CONNECT_TIMEOUT_S = 5.0
COMMAND_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Link:
    """The connection `dialer` opens to `listener`'s Raft port, through `port` on HOST."""

    dialer: str  # the master whose Raft address sorts greater: it connects
    listener: str
    port: int
    target: str  # the listener's real Raft address

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    def to_json(self) -> dict:
        return {"dialer": self.dialer, "listener": self.listener, "port": self.port, "target": self.target}


def plan_links(raft: dict[str, str], ports: list[int]) -> list[Link]:
    """One link per pair of masters (`raft`: name -> real Raft address), on the given proxy ports.
    Each proxy address must sort below its dialer's address, or pysyncobj would stop dialing."""
    names = sorted(raft)
    pairs = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
    if len(ports) < len(pairs):
        raise ValueError(f"{len(pairs)} links need {len(pairs)} ports, got {len(ports)}")
    links = []
    for (a, b), port in zip(pairs, ports):
        dialer, listener = (a, b) if raft[a] > raft[b] else (b, a)
        link = Link(dialer=dialer, listener=listener, port=port, target=raft[listener])
        if not link.address < raft[dialer]:
            raise ValueError(f"proxy address {link.address} does not sort below {dialer}'s Raft address "
                             f"{raft[dialer]}: pysyncobj would not dial through it")
        links.append(link)
    return links


def peer_addresses(name: str, raft: dict[str, str], links: list[Link]) -> dict[str, str]:
    """The Raft address master `name` must be given for each other master."""
    seen = {other: address for other, address in raft.items() if other != name}
    for link in links:
        if link.dialer == name:
            seen[link.listener] = link.address
    return seen


# -- the proxy process ----------------------------------------------------------------------------

class _Connection:
    def __init__(self, client: asyncio.StreamWriter):
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.holed = False

    def close(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.close()


class _LinkState:
    def __init__(self, link: Link):
        self.link = link
        self.cut = False
        self.connections: set[_Connection] = set()
        self.accepted = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = _Connection(writer)
        self.connections.add(connection)
        self.accepted += 1
        try:
            if self.cut:
                connection.holed = True
                await _pump(reader, None, connection)
                return
            host, _, port = self.link.target.rpartition(":")
            try:
                up_reader, up_writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)),
                                                              CONNECT_TIMEOUT_S)
            except (OSError, TimeoutError):
                return
            connection.upstream = up_writer
            if self.cut:  # cut while connecting
                connection.holed = True
            await asyncio.gather(_pump(reader, up_writer, connection), _pump(up_reader, writer, connection))
        finally:
            self.connections.discard(connection)
            connection.close()

    def set_cut(self, cut: bool) -> None:
        self.cut = cut
        for connection in list(self.connections):
            if cut:
                connection.holed = True
            elif connection.holed:
                connection.close()

    def status(self) -> dict:
        return {**self.link.to_json(), "cut": self.cut, "open": len(self.connections),
                "holed": sum(c.holed for c in self.connections), "accepted": self.accepted}


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter | None, connection: _Connection) -> None:
    """Copy until either side ends; a black-holed connection reads and drops everything."""
    try:
        while True:
            data = await source.read(65536)
            if not data:
                break
            if connection.holed or sink is None:
                continue
            sink.write(data)
            await sink.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        connection.close()


def _pair(states: dict[frozenset, _LinkState], a: str, b: str) -> _LinkState:
    key = frozenset((a, b))
    if key not in states:
        raise KeyError(f"no link between {a} and {b}")
    return states[key]


def _execute(states: dict[frozenset, _LinkState], line: str) -> dict:
    words = line.split()
    if not words:
        return {"ok": False, "error": "empty command"}
    try:
        if words[0] == "cut" and len(words) == 3:
            _pair(states, words[1], words[2]).set_cut(True)
        elif words[0] == "heal" and len(words) == 3:
            _pair(states, words[1], words[2]).set_cut(False)
        elif words[0] == "heal" and len(words) == 1:
            for state in states.values():
                state.set_cut(False)
        elif words[0] != "status":
            return {"ok": False, "error": f"unknown command {line!r}"}
    except KeyError as e:
        return {"ok": False, "error": str(e)}
    return {"ok": True, "links": [s.status() for s in states.values()]}


async def serve(links: list[Link]) -> None:
    states = {frozenset((link.dialer, link.listener)): _LinkState(link) for link in links}
    servers = [await asyncio.start_server(state.handle, HOST, state.link.port) for state in states.values()]
    loop = asyncio.get_running_loop()
    commands = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(commands), sys.stdin)
    print(json.dumps({"ok": True, "ready": True}), flush=True)
    while line := await commands.readline():  # EOF: the harness is gone
        print(json.dumps(_execute(states, line.decode())), flush=True)
    for server in servers:
        server.close()


# -- the harness's side ---------------------------------------------------------------------------

class ProxyProcess:
    """The proxy process, started and commanded by the harness."""

    def __init__(self, links: list[Link], log_file: Path):
        self.links = links
        self.log_file = log_file
        self.process: asyncio.subprocess.Process | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        spec = json.dumps([link.to_json() for link in self.links])
        with open(self.log_file, "ab") as log:  # noqa: ASYNC230 - once, at start
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "chaos.procs.proxy", spec, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=log, preexec_fn=die_with_parent(signal.SIGKILL))
        answer = await self._answer()
        if not answer.get("ready"):
            raise RuntimeError(f"the Raft proxy did not start: {answer} (log {self.log_file})")

    async def _answer(self) -> dict:
        line = await asyncio.wait_for(self.process.stdout.readline(), COMMAND_TIMEOUT_S)
        if not line:
            raise RuntimeError(f"the Raft proxy exited (log {self.log_file})")
        return json.loads(line)

    async def command(self, line: str) -> dict:
        async with self._lock:
            self.process.stdin.write(line.encode() + b"\n")
            await self.process.stdin.drain()
            answer = await self._answer()
        if not answer.get("ok"):
            raise RuntimeError(f"proxy command {line!r} failed: {answer.get('error')}")
        return answer

    async def cut(self, pairs: list[tuple[str, str]]) -> None:
        for a, b in pairs:
            await self.command(f"cut {a} {b}")

    async def heal(self) -> None:
        await self.command("heal")

    async def stop(self) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        with contextlib.suppress(OSError, RuntimeError):
            self.process.stdin.close()
        try:
            await asyncio.wait_for(self.process.wait(), 5)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


def main(argv: list[str]) -> int:
    links = [Link(**item) for item in json.loads(argv[0])]
    asyncio.run(serve(links))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
