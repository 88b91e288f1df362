"""The simulated network: calls (HTTP requests) and streams (SUBSCRIBE / REGISTER responses).

Two kinds of traffic, because the real system has two:

* A **call** is one HTTP request and its answer, each on its way independently: either may be
  delayed, dropped or duplicated (a retrying proxy), and calls overtake each other. The caller
  gives up after its timeout and does not know whether the call took effect.
* A **stream** is one long-lived HTTP response (RecordIO over TCP): its events arrive in
  order, never duplicated. What can go wrong is the connection: a reset ends it (both sides
  notice after a delay), a partition makes it silent (the client notices by missing
  heartbeats or pings, the server when TCP gives up), a crash of either end ends it.

A partition is a set of cut links between named nodes; a crashed node is cut from everyone.
Messages are checked against the cuts when sent and again when they arrive.
"""

from __future__ import annotations

from collections.abc import Callable

from chaos.sim.world import Node, Timer, World

# How long the server side of a stream takes to notice that a silent peer is gone (TCP
# keepalive and write timeouts), in ms.
STREAM_SERVER_NOTICE_MS = (3_000, 8_000)


class Pending:
    """The caller's side of a call: answered once, or timed out."""

    __slots__ = ("done", "on_reply", "timer")

    def __init__(self, on_reply: Callable):
        self.done = False
        self.on_reply = on_reply
        self.timer: Timer | None = None

    def finish(self) -> None:
        """The caller got its answer another way (a SUBSCRIBE's stream opened)."""
        self.done = True
        if self.timer is not None:
            self.timer.cancel()


class Stream:
    """A server -> client event stream. Events queue until `open` (as the real EventStream is
    gated until its first event), so nothing overtakes SUBSCRIBED or REGISTERED."""

    def __init__(self, net: Network, server: Node, client: str, kind: str, owner: str, stream_id: str,
                 conn: int | None = None):
        self.net = net
        self.server = server
        self.client = client
        self.kind = kind  # "framework" or "agent"
        self.owner = owner  # framework or agent id
        self.stream_id = stream_id
        # The client's connection that asked for it: a client reads only the response to the
        # request it is waiting for (the answer to a request the network duplicated, or to one
        # it gave up on, goes nowhere: the client hangs up on it).
        self.conn = conn
        self.server_epoch = server.epoch
        self.client_epoch = net.nodes[client].epoch
        self.closed = False  # the server side is done with it
        self.broken = False  # nothing more reaches the client
        self._gated = True
        self._queue: list[dict] = []
        self._last_at = 0
        # Called once when the server side learns the stream ended (the real handler's finally).
        self.on_server_end: Callable[[Stream], None] | None = None

    def send(self, event: dict) -> None:
        if self.closed:
            return
        if self._gated:
            self._queue.append(event)
            return
        self.net._push(self, event)

    def open(self, first: dict) -> None:
        self._gated = False
        self.net._push(self, first)
        queued, self._queue = self._queue, []
        for event in queued:
            self.net._push(self, event)

    def close(self) -> None:
        """The server ends the stream (EOF to the client)."""
        if self.closed:
            return
        self.closed = True
        self.net._push(self, None)

    def client_closed(self) -> None:
        """The client hung up: the server notices soon, or late when the link is cut."""
        self.broken = True
        self.net._server_notices(self, connected_ms=self.net.world.uniform_ms(1, 20))

    def ended_on_server(self) -> None:
        if self.closed and self.on_server_end is None:
            return
        self.closed = True
        callback, self.on_server_end = self.on_server_end, None
        if callback is not None and self.server.alive and self.server.epoch == self.server_epoch:
            callback(self)


class Network:
    def __init__(self, world: World):
        self.world = world
        self.nodes: dict[str, Node] = {}
        self.cuts: set[frozenset[str]] = set()
        self.delay_ms = (1, 8)
        self.slow = 0.05  # chance that a message takes ten times longer
        self.drop = 0.0
        self.dup = 0.0
        self.reset = 0.0  # chance, per stream event, that the connection is reset
        self.on_change: list[Callable[[], None]] = []  # told when cuts or liveness change
        # For targeted tests: tamper(a, b, args, delays) -> the delays of the copies of a call's
        # message to deliver (args[3:5] of a request are its kind and body);
        # tamper_stream(stream, event) -> True to reset the connection instead of sending it.
        self.tamper: Callable[[str, str, tuple, list[int]], list[int]] | None = None
        self.tamper_stream: Callable[[Stream, dict], bool] | None = None
        self.sent = 0
        self.dropped = 0

    def add(self, node: Node) -> None:
        self.nodes[node.name] = node

    # -- topology -------------------------------------------------------------------------------
    def connected(self, a: str, b: str) -> bool:
        na, nb = self.nodes[a], self.nodes[b]
        if not na.alive or not nb.alive:
            return False
        return a == b or frozenset((a, b)) not in self.cuts

    def cut(self, a: str, b: str) -> None:
        if a != b:
            self.cuts.add(frozenset((a, b)))

    def heal(self, a: str, b: str) -> None:
        self.cuts.discard(frozenset((a, b)))

    def changed(self) -> None:
        for callback in self.on_change:
            callback()

    def delay(self) -> int:
        low, high = self.delay_ms
        d = self.world.rng.randint(low, high)
        return d * 10 if self.world.chance(self.slow) else d

    # -- calls ----------------------------------------------------------------------------------
    def call(self, src: Node, dst: str, kind: str, body: dict, on_reply: Callable[[int | None, dict], None],
             timeout_ms: int) -> Pending:
        """Send a request; `on_reply(status, body)` once, or `on_reply(None, {})` on timeout."""
        pending = Pending(on_reply)
        pending.timer = src.later(timeout_ms, self._timed_out, pending)
        self._transmit(src.name, dst, self._request, (src, src.epoch, dst, kind, body, pending), src, pending)
        return pending

    def _timed_out(self, pending: Pending) -> None:
        if not pending.done:
            pending.done = True
            pending.on_reply(None, {})

    def _request(self, src: Node, src_epoch: int, dst: str, kind: str, body: dict, pending: Pending) -> None:
        server = self.nodes[dst]

        def reply(status: int, answer: dict | None = None) -> None:
            self._transmit(dst, src.name, self._answer, (src, src_epoch, pending, status, answer or {}), src, pending)

        server.handle_call(src.name, kind, body, reply)

    def _answer(self, src: Node, src_epoch: int, pending: Pending, status: int, answer: dict) -> None:
        if pending.done or not src.alive or src.epoch != src_epoch:
            return
        pending.finish()
        pending.on_reply(status, answer)

    def _transmit(self, a: str, b: str, fn: Callable, args: tuple, caller: Node, pending: Pending) -> None:
        """One message of a call from a to b, after a delay. Lost if the link is cut (or
        either end restarted) when it is sent or when it arrives: the caller hears nothing and
        gives up after its timeout (TCP's). Dropped by chance: the connection failed, and the
        caller hears so after a while, not knowing whether the call took effect. Maybe
        delivered twice (a retrying proxy)."""
        self.sent += 1
        if not self.connected(a, b):
            self.dropped += 1
            if frozenset((a, b)) not in self.cuts and self.nodes[a].alive:
                caller.later(self.delay(), self._timed_out, pending)  # connection refused: the process is down
            return
        if self.world.chance(self.drop):
            self.dropped += 1
            caller.later(self.delay(), self._timed_out, pending)
            return
        epochs = (self.nodes[a].epoch, self.nodes[b].epoch)
        delays = [self.delay() for _ in range(2 if self.world.chance(self.dup) else 1)]
        if self.tamper is not None:
            delays = self.tamper(a, b, args, delays)
        for delay in delays:
            self.world.at(delay, self._arrive, a, b, epochs, fn, args)

    def _arrive(self, a: str, b: str, epochs: tuple[int, int], fn: Callable, args: tuple) -> None:
        if not self.connected(a, b) or (self.nodes[a].epoch, self.nodes[b].epoch) != epochs:
            self.dropped += 1
            return
        fn(*args)

    # -- streams --------------------------------------------------------------------------------
    def _push(self, stream: Stream, event: dict | None) -> None:
        """The next event of a stream (None: its end), in order after the ones before it."""
        if stream.broken:
            return
        if not self._stream_alive(stream):
            self._break(stream, client_hears=False)
            return
        if event is not None and (self.world.chance(self.reset)
                                  or self.tamper_stream is not None and self.tamper_stream(stream, event)):
            self._break(stream, client_hears=True)
            return
        at = max(self.world.now + self.delay(), stream._last_at)
        stream._last_at = at
        self.sent += 1
        self.world.at(at - self.world.now, self._stream_arrive, stream, event)
        if event is None:
            stream.broken = True  # the EOF is the last thing the client gets
            self._server_notices(stream, connected_ms=0)

    def _stream_alive(self, stream: Stream) -> bool:
        return (self.connected(stream.server.name, stream.client)
                and stream.server.epoch == stream.server_epoch
                and self.nodes[stream.client].epoch == stream.client_epoch)

    def _stream_arrive(self, stream: Stream, event: dict | None) -> None:
        if not self._stream_alive(stream):
            # Cut or crashed while on its way: this and everything after it is lost.
            stream.broken = True
            self._server_notices(stream, connected_ms=None)
            return
        self.nodes[stream.client].on_stream(stream, event)

    def _break(self, stream: Stream, client_hears: bool) -> None:
        """The connection is gone. A reset is heard by both ends soon; a cut or a crash is
        heard by the client only through silence, by the server when TCP gives up."""
        if stream.broken:
            return
        stream.broken = True
        if client_hears and self.connected(stream.server.name, stream.client):
            self.world.at(max(self.delay(), stream._last_at - self.world.now + 1), self._client_reset, stream)
            self._server_notices(stream, connected_ms=self.delay())
        else:
            self._server_notices(stream, connected_ms=None)

    def reset_by_crash(self, stream: Stream) -> None:
        """The server process died: the client's kernel gets a reset, unless the link is cut
        (then the client only hears silence)."""
        if stream.broken:
            return
        stream.broken = stream.closed = True
        client = self.nodes[stream.client]
        if frozenset((stream.server.name, stream.client)) not in self.cuts and client.alive \
                and client.epoch == stream.client_epoch:
            self.world.at(max(self.delay(), stream._last_at - self.world.now + 1), self._client_reset, stream)

    def _client_reset(self, stream: Stream) -> None:
        client = self.nodes[stream.client]
        if client.alive and client.epoch == stream.client_epoch:
            client.on_stream(stream, None)

    def _server_notices(self, stream: Stream, connected_ms: int | None) -> None:
        """The server learns the stream ended: after `connected_ms`, or, when the peer is cut
        off or dead, when TCP gives up; at once if the server itself restarted."""
        if stream.server.epoch != stream.server_epoch or not stream.server.alive:
            return
        if connected_ms is not None and self.connected(stream.server.name, stream.client):
            delay = connected_ms
        elif not self.nodes[stream.client].alive or self.nodes[stream.client].epoch != stream.client_epoch:
            delay = self.world.uniform_ms(1, 50)  # the peer's kernel resets the connection
        else:
            delay = self.world.uniform_ms(*STREAM_SERVER_NOTICE_MS)
        self.world.at(delay, stream.ended_on_server)
