"""pysyncobj in a process of its own, beside its master (`RaftConfig.node_process`).

Why: on a thread of the master, Raft's tick thread competes for the GIL with the event loop,
and a busy loop starves it (docs/log.md, known limitations: ticks of 0.6-2.2 s at 10,000
agents, so no heartbeats, so elections the cluster did not need). In its own process the tick
thread has a GIL of its own and wakes on time.

What runs where:
* the Raft process (`main`): pysyncobj's replica, its tick thread, its transport and the
  journal. It sends its master each committed Raft entry, the answer to each append, role,
  term and leader changes, and the leader's last contact; and asks the master to write or
  load the Raft dump, which records the master's archive.
* the master: the rest of `RaftLog`, unchanged. A reader thread (`NodeProcess`) plays the tick
  thread's part: it archives the entries in Raft order and hands the results to the event
  loop once per read, as the tick thread does once per tick.

They talk over a socketpair: frames of a 4-byte length and a pickled tuple. Both ends are this
module, started by the master itself; nothing from the network is unpickled here (Raft's own
messages are pysyncobj's, authenticated by the Raft password).

Liveness, both ways:
* the Raft process dies with its master (PR_SET_PDEATHSIG, and at the end of its socket): a
  killed master must not go on voting and acknowledging entries;
* a master whose Raft process exits stops (fail-stop, exit 70), as when its archive cannot be
  written;
* the master's event loop pings every `PING_INTERVAL_S`. A Raft process that hears no ping for
  `RaftConfig.master_timeout` (a frozen or wedged master) leads nothing until pings come back
  (`_Node._watch_master`): it would otherwise keep the lead for a master that serves nothing.
"""

from __future__ import annotations

import functools
import itertools
import os
import pickle
import queue
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import structlog

from mesos_es import logconfig
from mesos_es.log.raft import RaftConfig, RaftStartError, create_node, fail_stop, open_journal
from mesos_es.processes import die_with_parent

log = structlog.get_logger(__name__)

PING_INTERVAL_S = 0.1
# The leader's last contact is sent at most this often (it changes with every heartbeat).
CONTACT_INTERVAL_S = 0.05
START_TIMEOUT_S = 120.0  # binding retries and loading a dump included
STOP_TIMEOUT_S = 10.0
_HEADER = struct.Struct(">I")


def _frame(message: tuple) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(body)) + body


class _Frames:
    """Whole frames off a blocking socket: as many as one read completes."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buffer = bytearray()

    def read(self) -> list[tuple] | None:
        """The next messages; None once the other end closed."""
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except OSError:
                return None
            if not data:
                return None
            buffer = self.buffer
            buffer += data
            messages, offset, end = [], 0, len(buffer)
            while end - offset >= _HEADER.size:
                (size,) = _HEADER.unpack_from(buffer, offset)
                if end - offset - _HEADER.size < size:
                    break
                start = offset + _HEADER.size
                messages.append(pickle.loads(buffer[start:start + size]))
                offset = start + size
            del buffer[:offset]
            if messages:
                return messages


@dataclass(frozen=True)
class _Leader:
    id: str


class NodeProcess:
    """The master's side: what `RaftLog` uses of a `_Node`, over the socket. Its callbacks
    run on the reader thread, in the order the Raft process made them."""

    def __init__(self, process: subprocess.Popen, sock: socket.socket, *, on_entry, write_dump, load_dump,
                 on_state_changed, after_messages):
        self.process = process
        self._sock = sock
        self._on_entry, self._on_state_changed, self._after_messages = on_entry, on_state_changed, after_messages
        self._calls = {"write_dump": write_dump, "load_dump": load_dump}
        self.raftCurrentTerm = 0  # noqa: N815 (pysyncobj's name, as RaftLog reads it of a _Node)
        self.leader_contact: float | None = None
        self._leader: _Leader | None = None
        self._answers: dict[int, object] = {}
        self._numbers = itertools.count()
        self._send_lock = threading.Lock()
        self._ready = threading.Event()
        self._start_error: str | None = None
        self._stopping = False
        self._reader = threading.Thread(target=self._read, name="raft-process-reader", daemon=True)

    @classmethod
    def spawn(cls, config: RaftConfig, **callbacks) -> NodeProcess:
        """Start the Raft process. Call it on a thread that lives as long as the master (the
        event loop's): the process is killed when the thread that started it ends."""
        ours, theirs = socket.socketpair()
        try:
            process = subprocess.Popen(
                [sys.executable, "-m", "mesos_es.log.raft_process", str(theirs.fileno()), str(os.getpid())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL)
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        node = cls(process, ours, **callbacks)
        node._send(("init", config, logconfig.settings()))
        node._reader.start()
        log.info("raft_process_started", pid=process.pid)
        return node

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        """Block until the replica is bound and running (RaftStartError if it cannot be)."""
        if not self._ready.wait(timeout):
            self.process.kill()
            raise RaftStartError(f"the Raft process did not start within {timeout:g} s")
        if self._start_error is not None:
            raise RaftStartError(self._start_error)

    # -- what RaftLog calls -------------------------------------------------------------

    def append(self, batch: bytes, callback) -> None:
        number = next(self._numbers)
        self._answers[number] = callback
        self._send(("append", number, batch))

    def ping(self) -> None:
        self._send(("ping",))

    def _getLeader(self) -> _Leader | None:  # noqa: N802 (pysyncobj's name)
        return self._leader

    def destroy_synchronous(self) -> None:
        self._stopping = True
        self._send(("stop",))
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            log.warning("raft_process_killed", pid=self.process.pid, after_s=STOP_TIMEOUT_S)
            self.process.kill()
            self.process.wait()
        self._reader.join(STOP_TIMEOUT_S)
        self._sock.close()

    def close_stall_dump(self) -> None:
        """The Raft process closes its own."""

    # -- the socket ---------------------------------------------------------------------

    def _send(self, message: tuple) -> None:
        data = _frame(message)
        with self._send_lock:
            try:
                self._sock.sendall(data)
            except OSError:
                pass  # it exited: the reader sees the end and stops the master

    def _read(self) -> None:
        frames = _Frames(self._sock)
        while (messages := frames.read()) is not None:
            try:
                for message in messages:
                    self._take(message)
                self._after_messages()
            except Exception:  # noqa: BLE001 - without this thread the master would archive nothing more
                fail_stop("raft_process_reader_failed", pid=self.process.pid)
        code = self.process.wait()
        if not self._ready.is_set():
            self._start_error = f"the Raft process exited with status {code} before it was running"
            self._ready.set()
        elif not self._stopping:
            fail_stop("raft_process_exited", pid=self.process.pid, status=code)

    def _take(self, message: tuple) -> None:
        kind = message[0]
        if kind == "entry":
            self._on_entry(message[1], message[2])
        elif kind == "answer":
            callback = self._answers.pop(message[1], None)
            if callback is not None:
                callback(None, message[2])
        elif kind == "status":
            _, self.raftCurrentTerm, leader, self.leader_contact = message
            self._leader = _Leader(leader) if leader is not None else None
        elif kind == "state":
            self._on_state_changed(message[1], message[2])
        elif kind == "call":
            _, number, name, args = message
            try:
                reply = ("ok", self._calls[name](*args))
            except Exception as e:  # noqa: BLE001 - the Raft process decides what a failure means
                log.exception("raft_process_call_failed", call=name)
                reply = ("error", f"{type(e).__name__}: {e}")
            self._send(("reply", number, reply))
        elif kind == "ready":
            self._ready.set()
        elif kind == "start_failed":
            self._start_error = message[1]
            self._ready.set()


# -- the Raft process -------------------------------------------------------------------------


class _Outbox(threading.Thread):
    """Sends to the master on a thread of its own: the tick thread never waits for a master
    that is slow to read."""

    def __init__(self, sock: socket.socket):
        super().__init__(name="raft-outbox", daemon=True)
        self.sock = sock
        self.queue: queue.SimpleQueue = queue.SimpleQueue()

    def put(self, message: tuple | None) -> None:
        """None: send what came before, then stop."""
        self.queue.put(message)

    def run(self) -> None:
        while True:
            messages = [self.queue.get()]
            while not self.queue.empty():
                messages.append(self.queue.get())
            done = None in messages
            data = b"".join(_frame(m) for m in messages if m is not None)
            try:
                self.sock.sendall(data)
            except OSError:
                os._exit(0)  # the master is gone; so is this process's reason to run
            if done:
                return


class _RaftProcess:
    def __init__(self, config: RaftConfig, sock: socket.socket):
        self.config = config
        self.outbox = _Outbox(sock)
        self.node = None
        self.last_ping = time.monotonic()
        self._replies: dict[int, object] = {}  # call number -> what takes the master's reply
        self._numbers = itertools.count()
        self._sent_status: tuple | None = None
        self._contact_sent_at = 0.0

    def run(self, frames: _Frames, messages: list[tuple]) -> None:
        """Create the replica and run it until the master says stop. The replica is created on
        this (main) thread, which must outlive it (pysyncobj's tick thread ends with the thread
        that created the replica), while a reader thread takes the master's messages: loading
        a dump asks the master, whose reply must be read meanwhile."""
        self.outbox.start()
        stop = threading.Event()
        threading.Thread(target=self._read, args=(frames, messages, stop), name="raft-reader", daemon=True).start()
        try:
            self.node = create_node(
                self.config, open_journal(self.config), on_entry=self._on_entry,
                write_dump=self._write_dump, load_dump=self._load_dump,
                on_state_changed=self._on_state_changed, after_tick=self._after_tick, master_alive=self._master_alive)
        except Exception as e:  # noqa: BLE001 - said to the master, which raises RaftStartError
            log.exception("raft_process_start_failed")
            self.outbox.put(("start_failed", str(e) or type(e).__name__))
            self.outbox.put(None)
            self.outbox.join(STOP_TIMEOUT_S)
            return
        self.outbox.put(("ready",))
        stop.wait()
        self.node.destroy_synchronous()
        self.node.close_stall_dump()
        self.outbox.put(None)
        self.outbox.join(STOP_TIMEOUT_S)

    def _read(self, frames: _Frames, messages: list[tuple], stop: threading.Event) -> None:
        while True:
            for message in messages:
                if message[0] == "stop":
                    stop.set()
                    return
                try:
                    self._take(message)
                except Exception:  # noqa: BLE001 - deaf to its master, this process must not go on
                    log.critical("raft_process_message_failed", kind=message[0], exc_info=True)
                    os._exit(1)  # the master sees its end and stops too (fail-stop)
            messages = frames.read()
            if messages is None:
                os._exit(0)  # the master is gone (its socket closed)

    # -- the replica's callbacks (tick thread) ----------------------------------------------

    def _on_entry(self, raft_index: int, data: bytes) -> None:
        self.outbox.put(("entry", raft_index, data))

    def _on_state_changed(self, old: int, new: int) -> None:
        self._send_status(force=True)
        self.outbox.put(("state", old, new))

    def _after_tick(self) -> None:
        self._send_status(force=False)

    def _send_status(self, force: bool) -> None:
        node = self.node
        if node is None:
            return
        leader = node._getLeader()
        status = (node.raftCurrentTerm, leader.id if leader is not None else None)
        contact, now = node.leader_contact, time.monotonic()
        if force or status != self._sent_status or (
                contact is not None and now - self._contact_sent_at >= CONTACT_INTERVAL_S):
            self._sent_status, self._contact_sent_at = status, now
            self.outbox.put(("status", *status, contact))

    def _answer(self, number: int, _result, error: int) -> None:
        self.outbox.put(("answer", number, error))

    def _write_dump(self, tmp_path: str, last, previous, cluster: list[str], done) -> None:
        """Have the master fsync its archive and write the dump (`RaftLog._write_dump`);
        `done(ok)` once it answered, while the tick goes on (`_DumpWriter`)."""
        self._call("write_dump", (tmp_path, last, previous, cluster), lambda reply: done(reply[0] == "ok"))

    def _load_dump(self, path: str):
        """Have the master load the dump (`RaftLog._load_dump`): rare (a restart, a snapshot
        from the leader), so the tick thread waits for it."""
        answer: queue.SimpleQueue = queue.SimpleQueue()
        self._call("load_dump", (path,), answer.put)
        status, value = answer.get()
        if status != "ok":
            raise RuntimeError(f"the master could not load the Raft dump: {value}")
        return value

    def _call(self, name: str, args: tuple, on_reply) -> None:
        number = next(self._numbers)
        self._replies[number] = on_reply
        self.outbox.put(("call", number, name, args))

    def _master_alive(self) -> bool:
        """A ping within the master timeout, counted from when this process last ran: after
        its own stall (or a pause of the whole process group) the pings still in the socket
        have not been read yet."""
        node = self.node
        since = max(self.last_ping, node.resumed_at if node is not None else 0.0)
        return time.monotonic() - since < self.config.master_timeout

    # -- the master's messages (reader thread) -------------------------------------------------

    def _take(self, message: tuple) -> None:
        kind = message[0]
        if kind == "append":
            self.node.append(message[2], callback=functools.partial(self._answer, message[1]))
        elif kind == "ping":
            self.last_ping = time.monotonic()
        elif kind == "reply":
            self._replies.pop(message[1])(message[2])


def _die_with(master_pid: int) -> None:
    """SIGKILL this process when its master's thread that started it ends (set here, after
    exec, rather than as a preexec_fn, which is unsafe in a process with threads)."""
    die_with_parent(signal.SIGKILL)()
    if os.getppid() != master_pid:  # it died before the line above
        os._exit(0)


def main(argv: list[str] | None = None) -> int:
    fd, master_pid = (int(a) for a in (argv or sys.argv[1:]))
    _die_with(master_pid)
    # Ctrl-C and SIGTERM reach the whole process group: the master stops this process itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock = socket.socket(fileno=fd)
    frames = _Frames(sock)
    messages = frames.read()
    if not messages or messages[0][0] != "init":
        return 2
    _, config, (fmt, level, context) = messages[0]
    logconfig.configure(fmt, level, **context)
    _RaftProcess(config, sock).run(frames, messages[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
