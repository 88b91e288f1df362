"""The replicated log on pysyncobj's Raft, made durable.

Threads: pysyncobj runs Raft on its own tick thread, in a process of its own by default
(`RaftConfig.node_process`, raft_process.py; there a reader thread of this process takes the
tick thread's part below); everything else runs on the asyncio loop. The tick thread does
only what must happen in Raft order: it archives each committed Raft entry (assigning
positions) and hands the result to the loop with `call_soon_threadsafe`. The loop delivers
entries to the apply callback, always reading forward from the archive, so a restart, a
lagging delivery and a gap fetched from a peer all take the same path.

What we change in pysyncobj 0.3.17 (see docs/log.md, "pysyncobj as we run it"):
* the journal is `DurableJournal` (installed by swapping pysyncobj's `createJournal` while
  the node is constructed), synced at the start of each tick and before every send;
* the "full dump" is our `RaftDump` protobuf, written by `_write_dump` after syncing the
  archive, without fork and without holding up the tick (`_DumpWriter`, swapped in like the
  journal); the state itself lives in the archive;
* `_Node._deserialize` finishes an interrupted journal compaction before pysyncobj compares
  the journal with the dump, which would otherwise make it discard acknowledged entries;
* one `@replicated` method, `append`, carrying an opaque RaftBatch of protobuf events, never
  forwarded to the leader by a follower (`_Node._checkCommandsToApply`);
* a Raft password is mandatory, so peers authenticate (Fernet) before anything is unpickled.
"""

from __future__ import annotations

import asyncio
import faulthandler
import functools
import logging
import os
import pickle
import queue
import random
import threading
import time
import zlib
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pysyncobj.pickle
import pysyncobj.syncobj
import pysyncobj.tcp_connection
import structlog
from google.protobuf.message import DecodeError
from pysyncobj import FAIL_REASON, SERIALIZER_STATE, SyncObj, SyncObjConf, replicated
from pysyncobj.serializer import Serializer
from pysyncobj.syncobj import SyncObjException, _RAFT_STATE
from pysyncobj.transport import TCPTransport

from mesos_es.log.archive import Archive, ArchiveError, ArchiveGap, fsync_directory
from mesos_es.log.chain import GENESIS_HASH
from mesos_es.log.interface import (
    Apply,
    Committed,
    EntryTooLarge,
    LogClosed,
    LogStatus,
    NotCommitted,
    NotLeader,
    OutcomeUnknown,
    Proposed,
    ReplicatedLog,
    Role,
    SnapshotMismatch,
)
from mesos_es.log.journal import DurableJournal
from mesos_es.pb import log_pb2

log = structlog.get_logger(__name__)

# Set by tests to widen the window in which a Raft dump is half written (it stalls Raft).
RAFT_DUMP_DELAY_ENV = "MESOS_ES_TEST_RAFT_DUMP_DELAY_S"

_ROLES = {
    _RAFT_STATE.LEADER: Role.LEADER,
    _RAFT_STATE.FOLLOWER: Role.FOLLOWER,
    _RAFT_STATE.CANDIDATE: Role.CANDIDATE,
}
_NOT_COMMITTED = {
    FAIL_REASON.QUEUE_FULL: "the Raft command queue is full",
    FAIL_REASON.MISSING_LEADER: "no leader is elected",
    FAIL_REASON.DISCARDED: "a new leader overwrote the entry",
    FAIL_REASON.NOT_LEADER: "the entry reached a replica that no longer leads",
    FAIL_REASON.REQUEST_DENIED: "the leader refused the entry",
}


class RaftStartError(Exception):
    pass


# Exit status of a master that stopped rather than continue with a history it cannot trust.
FAIL_STOP_EXIT_CODE = 70


def fail_stop(event: str, **details) -> None:
    """Stop the process now. Used on the tick thread, where an exception would be swallowed
    by pysyncobj and leave a replica applying nothing or diverging."""
    log.critical(event, exit_code=FAIL_STOP_EXIT_CODE, **details, exc_info=True)
    logging.shutdown()
    os._exit(FAIL_STOP_EXIT_CODE)


@dataclass(frozen=True)
class RaftConfig:
    address: str  # this replica's Raft host:port
    peers: tuple[str, ...]  # the other replicas' Raft host:port
    work_dir: Path
    password: str
    durable: bool = True
    append_entries_period_s: float = 0.01
    tick_period_s: float = 0.005
    election_timeout_min_s: float = 0.3
    election_timeout_max_s: float = 0.6
    # Ask the others before starting an election (see `pre_vote_granted`); off only to
    # compare with pysyncobj's own behaviour.
    pre_vote: bool = True
    # When the tick thread has not run for this long, dump every thread's stack to
    # `raft-stalls.txt` in the work dir (faulthandler's watchdog, which needs no GIL, so it
    # shows what held it); 0: off.
    stall_dump_s: float = 0.0
    connection_retry_s: float = 0.3
    # pysyncobj compacts its journal past this many Raft entries, or this often.
    compaction_min_entries: int = 2_000
    compaction_min_interval_s: float = 60.0
    # and we force it when the journal holds more bytes than this.
    compaction_max_journal_bytes: int = 256 << 20
    max_entry_bytes: int = 1 << 20
    max_batch_bytes: int = 1 << 20
    max_in_flight: int = 1
    commit_timeout_s: float = 10.0
    # Run pysyncobj in a process of its own (raft_process.py), so that its heartbeats do not
    # wait for the GIL behind a busy event loop; False: on a thread of this process.
    node_process: bool = False
    # With node_process: a Raft process that hears nothing from its master's event loop for
    # this long leads nothing until it does (None: twice the longest election timeout, and at
    # least 1 s: longer than the loop's usual pauses, as long as a leader cut off from its
    # majority takes to step down).
    master_timeout_s: float | None = None

    @property
    def master_timeout(self) -> float:
        return self.master_timeout_s if self.master_timeout_s is not None else max(1.0, 2 * self.election_timeout_max_s)


@dataclass
class _Flight:
    """A RaftBatch handed to pysyncobj and not yet answered."""

    futures: list[asyncio.Future]
    deadline: float
    archived: bool = False  # the batch was applied here; its futures wait for delivery


class _StoredZlib:
    """zlib for pysyncobj's connections, storing instead of compressing: on a LAN,
    compressing every message once per follower costs the leader more than it saves."""

    decompress = staticmethod(zlib.decompress)

    @staticmethod
    def compress(data: bytes, level: int = -1) -> bytes:
        return zlib.compress(data, 0)


def _tune_pysyncobj_wire() -> None:
    """Make pysyncobj's messages cheap to build, process-wide.

    pysyncobj pickles with protocol 2, which has no opcode for bytes and encodes them as
    latin-1 text: every byte >= 0x80 of an entry grows to two, twice (the command, then
    the message). Peers decode any protocol and any zlib level, so a tuned replica still
    talks to an untuned one."""
    pysyncobj.pickle.__dict__["__protocol"] = pickle.HIGHEST_PROTOCOL
    pysyncobj.tcp_connection.zlib = _StoredZlib


class _DurableTransport(TCPTransport):
    def send(self, node, message):
        # Whatever this message acknowledges (entries, a vote) must be on disk first.
        self._syncObj.journal.sync()
        return super().send(node, message)


_CREATE_NODE_LOCK = threading.Lock()  # while pysyncobj's journal and serializer are swapped


class _DumpWriter(Serializer):
    """pysyncobj's serializer, with our dump written without holding up the tick thread.

    `serialize` hands the dump to `write_dump(tmp_path, last, previous, cluster ids, done)`
    and returns; `checkSerializing` answers SERIALIZING until `done(ok)` was called (from
    any thread), and pysyncobj compacts its journal only after SUCCESS. In a Raft process
    the master writes the dump once it has archived every entry sent before the request:
    with a busy master that can take a while, and meanwhile the tick goes on (heartbeats).
    pysyncobj's private state is reached by its mangled names, as in `_Node`."""

    _WRITING = 1  # pysyncobj's pid: 0 idle, -1 written, -2 failed (it forks otherwise)

    def __init__(self, *args, write_dump):
        super().__init__(*args)
        self._Serializer__useFork = False  # whatever the conf says: we never fork
        self._write_dump = write_dump

    def serialize(self, data, id):  # noqa: A002 (pysyncobj's name)
        if self._Serializer__pid != 0:
            return
        self._Serializer__currentID = id
        self._Serializer__pid = self._WRITING
        _, last, previous, cluster = data
        tmp_path = self._Serializer__fileName + ".tmp"
        try:
            self._write_dump(tmp_path, last, previous, sorted(node.id for node in cluster if node is not None),
                             functools.partial(self._done, tmp_path))
        except Exception:
            log.exception("raft_dump_failed")
            self._Serializer__pid = -2

    def _done(self, tmp_path: str, ok: bool) -> None:
        if ok:
            try:
                os.replace(tmp_path, self._Serializer__fileName)
                fsync_directory(Path(tmp_path).parent)
            except OSError:
                log.exception("raft_dump_failed")
                ok = False
        self._Serializer__pid = -1 if ok else -2

    def checkSerializing(self):  # noqa: N802 (pysyncobj's name)
        if self._Serializer__pid == self._WRITING:
            return SERIALIZER_STATE.SERIALIZING, self._Serializer__currentID
        return super().checkSerializing()


def write_dump_at_once(write_dump):
    """A `_DumpWriter` write_dump that writes before returning (the tick thread writes it)."""
    def write(tmp_path: str, last, previous, cluster: list[str], done) -> None:
        try:
            write_dump(tmp_path, last, previous, cluster)
        except Exception:
            log.exception("raft_dump_failed")
            done(False)
        else:
            done(True)
    return write

# After its connection to the leader closes, a follower asks for pre-votes within this
# (random) delay: a killed leader's connections close at once, and the survivors should
# not wait out the election timeout to notice. The jitter spreads the two survivors' rounds.
LEADER_LOST_JITTER_S = 0.05

# A tick thread that did not run for this share of the minimum election timeout is logged
# (`raft_tick_stalled`); the stall dump is re-armed at most this often.
TICK_STALL_WARNING = 0.5
STALL_DUMP_REARM_S = 0.1

# A replica that grants a pre-vote stands back from its own election for this (random) time,
# and one refused by a replica that still heard the dying leader asks again after it: two
# survivors that noticed the leader's death together and asked each other at once would
# otherwise both become candidates, vote for themselves and split the vote, which costs a
# whole election timeout (1-2 s by default).
PRE_VOTE_BACKOFF_S = (0.05, 0.3)


def pre_vote_granted(*, leading: bool, leader_alive: bool, candidate_term: int, term: int,
                     candidate_log: tuple[int, int], log: tuple[int, int]) -> bool:
    """Whether a replica tells a would-be candidate that an election at `candidate_term`
    would get its vote (Raft's pre-vote, Ongaro's thesis section 9.6). A replica that still
    hears from a live leader, or leads, says no: so a replica that was cut off or stalled
    (a paused process, a starved tick thread) cannot depose a working leader by raising the
    term when it comes back, and only a majority that lost the leader starts an election.
    Logs are (last term, last index); answering records nothing (no term, no vote)."""
    return not leading and not leader_alive and candidate_term > term and candidate_log >= log


class _Node(SyncObj):
    def __init__(self, address: str, peers: Sequence[str], conf: SyncObjConf, journal: DurableJournal, on_entry,
                 write_dump, load_dump, pre_vote: bool = True, stall_dump_s: float = 0.0, stall_dump_path: Path | None = None,
                 after_tick=lambda: None, master_alive=lambda: True, max_journal_bytes: int = 0):
        self.journal = journal
        self._after_tick = after_tick
        # The dump is ours (docs/log.md): `write_dump(tmp_path, last, previous, cluster ids,
        # done)` (see _DumpWriter) and `load_dump(path) -> (last, previous, cluster ids)`.
        self._load_dump = load_dump
        # pysyncobj calls a custom serializer only through its Serializer, which _DumpWriter
        # replaces; it needs one set (and a deserializer) to take the custom path at all.
        conf.serializer, conf.deserializer = write_dump, self._deserialize
        # Whether the master this replica serves still runs (a Raft process of its own,
        # raft_process.py): a replica whose master is frozen must not lead.
        self._master_alive = master_alive
        self._master_lost = False
        self.max_journal_bytes = max_journal_bytes
        self._journal_checked = 0.0
        self._on_entry = on_entry
        self.leader_contact: float | None = None  # monotonic time of the leader's last append_entries
        self.pre_vote = pre_vote
        # The running pre-vote round: the term it asks for and the grants so far; set when a
        # majority granted it, so that the next tick runs pysyncobj's election.
        self._pre_vote_term: int | None = None
        self._pre_vote_grants = 0
        self._election_granted = False
        self._lost_leader = None  # the leader whose connection we saw close
        self._last_tick = time.monotonic()
        self.resumed_at = 0.0  # monotonic time of the first tick after the last stall
        self.stall_dump_s = stall_dump_s
        self._stall_dump = open(stall_dump_path, "a") if stall_dump_s > 0 else None  # noqa: SIM115 (closed on destroy)
        self._stall_dump_armed = 0.0
        with _CREATE_NODE_LOCK:
            original = pysyncobj.syncobj.createJournal, pysyncobj.syncobj.Serializer
            pysyncobj.syncobj.createJournal = lambda _path: journal
            pysyncobj.syncobj.Serializer = functools.partial(_DumpWriter, write_dump=write_dump)
            try:
                super().__init__(address, list(peers), conf, transportClass=_DurableTransport)
            finally:
                pysyncobj.syncobj.createJournal, pysyncobj.syncobj.Serializer = original

    def _onTick(self, timeToWait=0.0):
        self._watch_tick()
        # Entries added during the last tick become durable before this tick counts the
        # leader's own copy toward a commit.
        self.journal.sync()
        self._watch_master()
        self._watch_journal()
        if self.pre_vote:
            self._pre_vote_tick()
        super()._onTick(timeToWait)
        self._after_tick()

    def _watch_tick(self) -> None:
        """Say when this thread did not run for long enough to cost an election: a leader
        sends no heartbeat meanwhile, a follower answers nothing (etcd warns alike). The
        usual cause is this thread starving for the GIL behind the busy asyncio thread
        (docs/log.md, known limitations)."""
        now = time.monotonic()
        gap = now - self._last_tick
        self._last_tick = now
        if gap > TICK_STALL_WARNING * self.conf.raftMinTimeout:
            self.resumed_at = now
            log.warning("raft_tick_stalled", seconds=round(gap, 3), leading=self._SyncObj__raftState == _RAFT_STATE.LEADER,
                        election_timeout_min_s=self.conf.raftMinTimeout)
        # Each arming starts a watchdog thread: at most four per stall_dump_s and ten a
        # second (a stall of stall_dump_s is always dumped, a shorter one from 3/4 of it may be).
        if self._stall_dump is not None and now - self._stall_dump_armed > max(STALL_DUMP_REARM_S,
                                                                                self.stall_dump_s / 4):
            self._stall_dump_armed = now
            faulthandler.dump_traceback_later(self.stall_dump_s, file=self._stall_dump)

    def _watch_master(self) -> None:
        """While the master is not answering (raft_process.py: no ping for the master
        timeout), lead nothing: step down, and start no election. Its Raft process could
        otherwise keep the lead for a master that serves nothing, a frozen leader. It still
        votes and takes entries: that helps whichever replica leads."""
        if self._master_alive():
            if self._master_lost:
                self._master_lost = False
                log.info("raft_master_answering_again", term=self.raftCurrentTerm)
            return
        if not self._master_lost:
            self._master_lost = True
            log.warning("raft_master_not_answering", term=self.raftCurrentTerm,
                        leading=self._SyncObj__raftState == _RAFT_STATE.LEADER)
        if self._SyncObj__raftState == _RAFT_STATE.LEADER:
            self._SyncObj__setState(_RAFT_STATE.FOLLOWER)
            self._SyncObj__raftLeader = None
        self._pre_vote_term, self._election_granted = None, False
        self._SyncObj__raftElectionDeadline = time.monotonic() + self._SyncObj__generateRaftTimeout()

    def _watch_journal(self) -> None:
        """Compact when the journal holds too many bytes (pysyncobj counts only entries and
        time), looked at once a second."""
        now = time.monotonic()
        if self.max_journal_bytes and now - self._journal_checked >= 1.0:
            self._journal_checked = now
            if self.journal.size_bytes > self.max_journal_bytes:
                self.forceLogCompaction()

    def _deserialize(self, path: str):
        """pysyncobj's deserializer: the dump (`load_dump`), then finish an interrupted
        journal compaction before pysyncobj compares the journal with the dump."""
        last, previous, cluster = self._load_dump(path)
        self.journal.complete_compaction(previous, last)
        return last, previous, cluster

    def close_stall_dump(self) -> None:
        """Once the tick thread has stopped."""
        if self._stall_dump is not None:
            faulthandler.cancel_dump_traceback_later()
            self._stall_dump.close()
            self._stall_dump = None

    # -- pre-vote (pysyncobj's private state is reached by its mangled names) ---------------

    def _pre_vote_tick(self) -> None:
        """Before pysyncobj's tick: when the election deadline has passed, run a pre-vote
        round instead of an election (pushing the deadline on), unless a round just passed.
        A follower whose connection to the leader closed brings its deadline forward."""
        if not self._SyncObj__transport.ready or self._SyncObj__selfNode is None:
            return
        state = self._SyncObj__raftState
        if state == _RAFT_STATE.LEADER:
            self._pre_vote_term, self._election_granted, self._lost_leader = None, False, None
            return
        now = time.monotonic()
        leader = self._SyncObj__raftLeader
        if leader is not None and leader not in self._SyncObj__connectedNodes:
            if self._lost_leader is not leader:
                self._lost_leader = leader
                self._SyncObj__raftElectionDeadline = min(
                    self._SyncObj__raftElectionDeadline, now + random.uniform(0, LEADER_LOST_JITTER_S))
                log.info("raft_leader_connection_lost", leader=leader.id, term=self.raftCurrentTerm)
        else:
            self._lost_leader = None
        if self._SyncObj__raftElectionDeadline >= now or not self._SyncObj__otherNodes:
            self._election_granted = False  # a leader's message or a vote came first
            return
        if self._election_granted or self._SyncObj__transferInProgress:
            self._election_granted = False  # pysyncobj's tick starts the election now
            return
        if not self._SyncObj__connectedNodes:
            return  # pysyncobj would not start an election either
        self._SyncObj__raftElectionDeadline = now + self._SyncObj__generateRaftTimeout()
        self._pre_vote_term, self._pre_vote_grants = self.raftCurrentTerm + 1, 0
        message = {"type": "pre_vote", "term": self._pre_vote_term,
                   "last_log_index": self._SyncObj__getCurrentLogIndex(),
                   "last_log_term": self._SyncObj__getCurrentLogTerm()}
        for node in self._SyncObj__otherNodes:
            self._SyncObj__transport.send(node, message)

    def _leader_alive(self) -> bool:
        """Whether this replica leads, or heard from a leader it is still connected to within
        the minimum election timeout."""
        if self._SyncObj__raftState == _RAFT_STATE.LEADER:
            return True
        leader = self._SyncObj__raftLeader
        return (leader is not None and leader in self._SyncObj__connectedNodes and self.leader_contact is not None
                and time.monotonic() - self.leader_contact < self.conf.raftMinTimeout)

    def _on_pre_vote(self, node, message) -> None:
        """Answer a pre-vote (`voter_term` lets an asker that is behind in term catch up,
        `leader_alive` tells one that saw the leader die that we have not noticed yet)."""
        leader_alive = self._leader_alive()
        granted = pre_vote_granted(
            leading=self._SyncObj__raftState == _RAFT_STATE.LEADER, leader_alive=leader_alive,
            candidate_term=message["term"], term=self.raftCurrentTerm,
            candidate_log=(message["last_log_term"], message["last_log_index"]),
            log=(self._SyncObj__getCurrentLogTerm(), self._SyncObj__getCurrentLogIndex()))
        self._SyncObj__transport.send(node, {"type": "pre_vote_response", "term": message["term"],
                                             "granted": granted, "voter_term": self.raftCurrentTerm,
                                             "leader_alive": leader_alive})
        if granted:
            # Let the asker run its election: our own round, even one that passed, is over,
            # and we try again (after a short wait, not the whole timeout a round set) only
            # if the asker's election does not reach us.
            stand_back_until = time.monotonic() + random.uniform(*PRE_VOTE_BACKOFF_S)
            if self._pre_vote_term is None and not self._election_granted:
                stand_back_until = max(stand_back_until, self._SyncObj__raftElectionDeadline)
            self._pre_vote_term, self._election_granted = None, False
            self._SyncObj__raftElectionDeadline = stand_back_until

    def _on_pre_vote_response(self, node, message) -> None:
        if self._SyncObj__raftState == _RAFT_STATE.LEADER or message["term"] != self._pre_vote_term:
            return  # a round that is over
        if self._pre_vote_term != self.raftCurrentTerm + 1:
            self._pre_vote_term = None  # the term moved on meanwhile
            return
        if not message["granted"]:
            if message["voter_term"] > self.raftCurrentTerm:
                # Behind in term: catch up (as on any message with a higher term), so that
                # the next round asks for a term the others can grant.
                self._SyncObj__setCurrentTerm(message["voter_term"], None)
                self._SyncObj__setState(_RAFT_STATE.FOLLOWER)
                self._pre_vote_term = None
            elif message.get("leader_alive") and self._lost_leader is not None:
                # It has not yet seen the leader's connection close, as we have: ask again soon.
                self._SyncObj__raftElectionDeadline = min(self._SyncObj__raftElectionDeadline,
                                                          time.monotonic() + random.uniform(*PRE_VOTE_BACKOFF_S))
            return
        self._pre_vote_grants += 1
        if self._pre_vote_grants + 1 > (len(self._SyncObj__otherNodes) + 1) / 2:
            log.info("raft_pre_vote_passed", term=self._pre_vote_term, grants=self._pre_vote_grants)
            self._pre_vote_term = None
            self._election_granted = True
            self._SyncObj__raftElectionDeadline = 0

    def _checkCommandsToApply(self):  # noqa: N802 (pysyncobj's name)
        """Append queued commands only while leading; never forward them to the leader.

        pysyncobj sends a command queued on a follower to the leader (`apply_command`), which
        appends it in its own term. Ours are events a master decided as leader, on the state
        it had: a deposed leader whose event loop ran on (a paused master, just resumed) had
        its timers' and allocator's stale decisions (agents "silent" for the whole pause,
        offers of resources used since) committed by its successor. Here they fail
        (NOT_LEADER: the proposer is told it does not lead, nothing was written)."""
        if self._SyncObj__raftState == _RAFT_STATE.LEADER:
            return super()._checkCommandsToApply()
        commands = self._SyncObj__commandsQueue
        while True:
            try:
                _command, callback = commands.get_nowait()
            except queue.Empty:
                return
            if callback is not None and not isinstance(callback, tuple):
                callback(None, FAIL_REASON.NOT_LEADER)

    def _SyncObj__onMessageReceived(self, node, message):
        """pysyncobj's message handler, taking our pre-vote messages first, with three fixes.

        A late success reply never moves a follower's next index backwards: pysyncobj
        0.3.17 sets nextIndex to the index in any success reply that raises matchIndex,
        even when later entries were already sent; it then resends them, and its follower
        truncates everything after the resend's start without checking for a conflict,
        dropping entries it had acknowledged (and the leader had counted).

        A snapshot chunk never commits the follower's own entries: pysyncobj raises the
        commit index to min(leader's commit index, the follower's last index) on every
        append_entries, including the chunks of a snapshot transfer, which verify nothing
        about the follower's log. A restarted old leader then applied its own uncommitted
        tail, which the new leader had replaced (Raft: only up to the last *new* entry).

        A command another replica forwards (`apply_command`) is refused, not appended (see
        `_checkCommandsToApply`: ours never forward; this covers a peer that does)."""
        kind = message.get("type")
        if kind == "apply_command":
            if "request_id" in message:
                self._SyncObj__transport.send(node, {"type": "apply_command_response", "request_id": message["request_id"],
                                                     "error": FAIL_REASON.NOT_LEADER})
            return None
        if kind == "pre_vote":
            return self._on_pre_vote(node, message)
        if kind == "pre_vote_response":
            return self._on_pre_vote_response(node, message)
        if kind == "append_entries" and message.get("term", -1) >= self.raftCurrentTerm:
            self.leader_contact = time.monotonic()  # heartbeats included: the leader is alive
        if kind == "append_entries" and "prevLogIdx" not in message:
            message = {**message, "commit_index": min(message["commit_index"], self._SyncObj__raftCommitIndex)}
            return SyncObj._SyncObj__onMessageReceived(self, node, message)
        if kind != "next_node_idx" or message.get("reset") or not message.get("success"):
            return SyncObj._SyncObj__onMessageReceived(self, node, message)
        next_index = self._SyncObj__raftNextIndex
        sent_up_to = next_index.get(node)
        SyncObj._SyncObj__onMessageReceived(self, node, message)
        if sent_up_to is not None and next_index.get(node, sent_up_to) < sent_up_to:
            next_index[node] = sent_up_to

    @replicated
    def append(self, batch: bytes):
        # pysyncobj increments raftLastApplied after the call: this entry's index is +1.
        return self._on_entry(self.raftLastApplied + 1, batch)


def open_journal(config: RaftConfig) -> DurableJournal:
    return DurableJournal(Path(config.work_dir) / "raft" / "journal", durable=config.durable)


def create_node(config: RaftConfig, journal: DurableJournal, *, on_entry, write_dump, load_dump, on_state_changed,
                after_tick, master_alive=lambda: True) -> _Node:
    """A running pysyncobj replica (its tick thread started) on our journal and dump
    (blocking: it binds the Raft port). The callbacks run on the tick thread."""
    _tune_pysyncobj_wire()
    c = config
    conf = SyncObjConf(
        password=c.password,
        autoTick=True,
        autoTickPeriod=c.tick_period_s,
        appendEntriesPeriod=c.append_entries_period_s,
        raftMinTimeout=c.election_timeout_min_s,
        raftMaxTimeout=c.election_timeout_max_s,
        connectionTimeout=max(3.5, c.election_timeout_max_s),
        # Check-quorum: a leader that hears from no majority for this long steps down
        # (pysyncobj's default keeps a cut-off leader believing it leads for 30 s).
        leaderFallbackTimeout=2 * c.election_timeout_max_s,
        connectionRetryTime=c.connection_retry_s,
        # No single entry may reach this size: pysyncobj's chunked path for such
        # entries is not one we trust.
        appendEntriesBatchSizeBytes=4 * max(c.max_batch_bytes, c.max_entry_bytes) + (64 << 10),
        sendBufferSize=1 << 20,
        recvBufferSize=1 << 20,
        logCompactionMinEntries=c.compaction_min_entries,
        logCompactionMinTime=c.compaction_min_interval_s,
        fullDumpFile=str(Path(c.work_dir) / "raft" / "dump"),
        journalFile=str(journal.path),
        onStateChanged=on_state_changed,
        commandsQueueSize=100_000,
        bindRetryTime=0.5,
        maxBindRetries=20,
        dynamicMembershipChange=False,
    )
    node = _Node(c.address, c.peers, conf, journal, on_entry, write_dump, load_dump, pre_vote=c.pre_vote,
                 stall_dump_s=c.stall_dump_s, stall_dump_path=Path(c.work_dir) / "raft-stalls.txt",
                 after_tick=after_tick, master_alive=master_alive,
                 max_journal_bytes=c.compaction_max_journal_bytes)
    try:
        node.waitBinded()
    except SyncObjException as e:
        node.destroy()
        raise RaftStartError(f"cannot bind the Raft address {c.address}") from e
    return node


class RaftLog(ReplicatedLog):
    def __init__(self, config: RaftConfig, archive_peers: Sequence[str] = ()):
        """`archive_peers`: HTTP base URLs of the other masters, to fetch missing history."""
        self.config = config
        self.archive_peers = list(archive_peers)
        work_dir = Path(config.work_dir)
        self.archive = Archive(work_dir / "archive", durable=config.durable)
        # The journal is the Raft process's when there is one (RaftConfig.node_process).
        self.journal = None if config.node_process else open_journal(config)
        self._node: _Node | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._apply: Apply | None = None
        self._role = Role.FOLLOWER
        self._delivered = 0
        self._catching_up = False
        self._submit_scheduled = False
        self._closed = False
        self._pending: deque[tuple[bytes, asyncio.Future]] = deque()
        self._in_flight: dict[bytes, _Flight] = {}
        self._awaiting: dict[int, asyncio.Future] = {}
        self._barriers: list[tuple[int, asyncio.Future]] = []
        self._wakeup: asyncio.Event | None = None
        self._tasks: list[asyncio.Task] = []
        self._tick_calls: deque[tuple] = deque()  # for the event loop, sent once per tick
        self._http = None  # aiohttp session for backfill, made on first use

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self, apply: Apply, applied_position: int = 0, applied_hash: bytes = GENESIS_HASH) -> None:
        if applied_position > self.archive.last_position:
            raise SnapshotMismatch(f"position {applied_position} is beyond the archive ({self.archive.last_position})")
        try:
            known = self.archive.hash_at(applied_position)
        except ArchiveError as e:
            raise SnapshotMismatch(str(e)) from e
        if known != applied_hash:
            raise SnapshotMismatch(f"the archive's chain hash at position {applied_position} differs")
        self._loop = asyncio.get_running_loop()
        self._apply = apply
        self._delivered = applied_position
        self._wakeup = asyncio.Event()
        self._wakeup.set()
        self._tasks = [
            asyncio.create_task(self._deliver_loop(), name="raft-deliver"),
            asyncio.create_task(self._housekeeping_loop(), name="raft-housekeeping"),
        ]
        if self.config.node_process:
            from mesos_es.log.raft_process import NodeProcess  # noqa: PLC0415 (it imports this module)

            # Spawned on the loop's thread, which lives as long as this process (the Raft
            # process is killed when the thread that started it ends).
            node = NodeProcess.spawn(self.config, on_entry=self._on_raft_entry, write_dump=self._write_dump,
                                     load_dump=self._load_dump, on_state_changed=self._on_state_changed,
                                     after_messages=self._send_calls)
            try:
                await asyncio.to_thread(node.wait_ready)
            except RaftStartError:
                await asyncio.to_thread(node.destroy_synchronous)
                raise
            self._node = node
            self._tasks.append(asyncio.create_task(self._ping_loop(node), name="raft-ping"))
        else:
            self._node = await asyncio.to_thread(self._create_node)
        log.info("raft_started", address=self.config.address, peers=list(self.config.peers),
                 archive_position=self.archive.last_position, applied_position=applied_position)

    def _create_node(self) -> _Node:
        return create_node(self.config, self.journal, on_entry=self._on_raft_entry,
                           write_dump=write_dump_at_once(self._write_dump),
                           load_dump=self._load_dump, on_state_changed=self._on_state_changed,
                           after_tick=self._send_calls)

    async def stop(self) -> None:
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._node is not None:
            await asyncio.to_thread(self._node.destroy_synchronous)
            self._node.close_stall_dump()
        self.archive.close()
        closed = LogClosed("the replicated log was stopped")
        futures = [f for _, f in self._pending] + list(self._awaiting.values()) + [f for _, f in self._barriers]
        for flight in self._in_flight.values():
            futures += flight.futures
        for future in futures:
            if not future.done():
                future.set_exception(closed)
        if self._http is not None:
            await self._http.close()
        log.info("raft_stopped", applied_position=self._delivered)

    # -- status -------------------------------------------------------------------------

    @property
    def raft_pid(self) -> int:
        """The process that runs pysyncobj: the Raft process, or this one."""
        process = getattr(self._node, "process", None)
        return process.pid if process is not None else os.getpid()

    def status(self) -> LogStatus:
        node = self._node
        if node is None:
            return LogStatus(Role.FOLLOWER, 0, None, self._delivered)
        leader = node._getLeader()
        if self._role is Role.LEADER:
            contact = 0
        elif node.leader_contact is None:
            contact = None
        else:
            contact = int((time.monotonic() - node.leader_contact) * 1000)
        return LogStatus(
            role=self._role,
            term=node.raftCurrentTerm,
            leader=leader.id if leader is not None else None,
            applied_position=self._delivered,
            last_contact_ms=contact,
        )

    def _on_state_changed(self, old_state: int, new_state: int) -> None:
        # tick thread
        self._role = _ROLES[new_state]
        self._call_soon(self._on_role_changed, self._role)

    def _on_role_changed(self, role: Role) -> None:
        node = self._node
        term = node.raftCurrentTerm if node is not None else 0
        if role is Role.LEADER:
            log.info("leader_elected", term=term, address=self.config.address, position=self._delivered)
            return
        log.info("role_changed", role=role.value, term=term, position=self._delivered)
        not_leader = NotLeader(self.status().leader)
        while self._pending:
            _, future = self._pending.popleft()
            if not future.done():
                future.set_exception(not_leader)

    # -- proposing ----------------------------------------------------------------------

    async def propose(self, payload: bytes) -> Proposed:
        if self._closed or self._node is None:
            raise LogClosed("the replicated log is not running")
        if len(payload) > self.config.max_entry_bytes:
            raise EntryTooLarge(f"entry of {len(payload)} bytes exceeds {self.config.max_entry_bytes}")
        if self._role is not Role.LEADER:
            raise NotLeader(self.status().leader)
        future = self._loop.create_future()
        self._pending.append((payload, future))
        if not self._submit_scheduled:
            # Submit at the end of this loop iteration, so proposals made together (say,
            # by callers woken by the same commit) share one Raft entry.
            self._submit_scheduled = True
            self._loop.call_soon(self._scheduled_submit)
        return await future

    def _scheduled_submit(self) -> None:
        self._submit_scheduled = False
        self._submit()

    async def barrier(self) -> int:
        if self._closed or self._node is None:
            raise LogClosed("the replicated log is not running")
        if self._role is not Role.LEADER:
            raise NotLeader(self.status().leader)
        future = self._loop.create_future()
        self._propose_batch([], [future])
        return await future

    def _submit(self) -> None:
        """Group commit: everything pending goes into the next Raft entry once one is free."""
        limit = self.config.max_batch_bytes
        while self._pending and len(self._in_flight) < self.config.max_in_flight:
            payloads, futures, size = [], [], 0
            while self._pending and (not payloads or size + len(self._pending[0][0]) <= limit):
                payload, future = self._pending.popleft()
                if future.done():  # its caller gave up before it was proposed
                    continue
                payloads.append(payload)
                futures.append(future)
                size += len(payload)
            if futures:
                self._propose_batch(payloads, futures)

    def _propose_batch(self, payloads: list[bytes], futures: list[asyncio.Future]) -> None:
        nonce = os.urandom(8)
        batch = log_pb2.RaftBatch(nonce=nonce, events=payloads).SerializeToString()
        self._in_flight[nonce] = _Flight(futures, self._loop.time() + self.config.commit_timeout_s)
        self._node.append(batch, callback=functools.partial(self._on_result, nonce))

    def _on_result(self, nonce: bytes, _result, error: int) -> None:
        # tick thread: pysyncobj's answer for one of our batches
        self._call_soon(self._finish_flight, nonce, error)

    def _finish_flight(self, nonce: bytes, error: int) -> None:
        flight = self._in_flight.pop(nonce, None)
        if flight is not None and not flight.archived:
            if error == FAIL_REASON.SUCCESS:
                # Committed, yet never archived here: only a journal that lost committed
                # entries gets here. Never leave the proposer waiting.
                log.error("committed_batch_not_delivered", events=len(flight.futures))
                exc = OutcomeUnknown("committed but not delivered on this replica")
            elif error in _NOT_COMMITTED:
                exc = NotCommitted(f"not committed: {_NOT_COMMITTED[error]}")
            else:
                exc = OutcomeUnknown("leadership changed before the entry was known to be committed")
            for future in flight.futures:
                if not future.done():
                    future.set_exception(exc)
        self._submit()

    # -- committed entries (tick thread) ---------------------------------------------------

    def _on_raft_entry(self, raft_index: int, data: bytes) -> None:
        """Archive one committed Raft entry; never raises into pysyncobj (it would retry
        the entry forever), and stops the process if the archive cannot be written."""
        try:
            if raft_index <= self.archive.last_raft_index:
                return None  # archived before a restart; the journal replays it
            try:
                batch = log_pb2.RaftBatch.FromString(data)
            except DecodeError:
                log.critical("raft_entry_undecodable", raft_index=raft_index, size=len(data))
                return None
            records = self.archive.append(raft_index, list(batch.events))
            self._call_soon(self._on_archived, records, self.archive.last_position, batch.nonce)
        except (ArchiveError, OSError):
            # The entry is still in the journal: a restart (with room on disk) archives it.
            fail_stop("archive_write_failed", raft_index=raft_index)
        except Exception:
            log.critical("raft_entry_failed", raft_index=raft_index, exc_info=True)
        return None

    def _call_soon(self, callback, *args) -> None:
        """Have the event loop run `callback(*args)`, in order, after this tick (`_send_calls`):
        one `call_soon_threadsafe` per tick rather than per entry, each a syscall (a write to
        the loop's self-pipe) after which the tick thread must win the GIL back from the
        asyncio thread (see `raft_tick_stalled`)."""
        self._tick_calls.append((callback, args))

    def _send_calls(self) -> None:
        # tick thread, at the end of each tick (deque: pysyncobj may call back on the caller's thread)
        if not self._tick_calls:
            return
        calls = []
        while self._tick_calls:
            calls.append(self._tick_calls.popleft())
        try:
            self._loop.call_soon_threadsafe(self._run_calls, calls)
        except RuntimeError:
            pass  # the loop is closed: we are shutting down

    @staticmethod
    def _run_calls(calls) -> None:
        for callback, args in calls:
            try:
                callback(*args)
            except Exception:
                log.exception("raft_callback_failed", callback=getattr(callback, "__qualname__", repr(callback)))

    def _write_dump(self, tmp_path: str, last, previous, cluster: list[str]) -> None:
        """pysyncobj's serializer: record how far the archive reaches (tick thread)."""
        self.archive.sync()  # compaction will drop journal entries the archive must hold
        dump = log_pb2.RaftDump(
            last=log_pb2.RaftJournalEntry(command=last[0], index=last[1], term=last[2]),
            previous=log_pb2.RaftJournalEntry(command=previous[0], index=previous[1], term=previous[2]),
            cluster=cluster,
            archive_position=self.archive.last_position,
            archive_hash=self.archive.last_hash,
        )
        with open(tmp_path, "wb") as f:
            f.write(dump.SerializeToString())
            f.flush()
            if self.config.durable:
                os.fsync(f.fileno())
        delay = float(os.environ.get(RAFT_DUMP_DELAY_ENV, "0") or 0)
        if delay:
            time.sleep(delay)
        log.info("raft_dump_written", raft_index=last[1], archive_position=dump.archive_position)

    def _load_dump(self, path: str):
        """pysyncobj's deserializer, on restart or when the leader sent its dump (tick thread;
        `_Node._deserialize` then completes the journal's compaction)."""
        try:
            dump = log_pb2.RaftDump.FromString(Path(path).read_bytes())
        except (OSError, DecodeError):
            fail_stop("raft_dump_unreadable", file=path)
        if self.config.durable:
            with open(path, "rb") as f:
                os.fsync(f.fileno())
            fsync_directory(Path(path).parent)
        last = (dump.last.command, dump.last.index, dump.last.term)
        previous = (dump.previous.command, dump.previous.index, dump.previous.term)
        try:
            self.archive.skip_to(dump.archive_position, dump.archive_hash, dump.last.index)
        except ArchiveError:
            fail_stop("archive_diverged", position=dump.archive_position)
        log.info("raft_dump_loaded", raft_index=dump.last.index, archive_position=dump.archive_position)
        # The archive may now reach further (with a gap to fetch): delivery must look.
        self._call_soon(self._wakeup.set)
        return last, previous, list(dump.cluster)

    # -- delivery (event loop) -------------------------------------------------------------

    def _on_archived(self, records, archive_position: int, nonce: bytes) -> None:
        if self._closed:
            return
        flight = self._in_flight.get(nonce)
        if flight is not None:
            flight.archived = True
            if records:
                for record, future in zip(records, flight.futures):
                    self._awaiting[record.position] = future
            else:
                self._barriers.extend((archive_position, f) for f in flight.futures)
        if records and not self._catching_up and records[0].position == self._delivered + 1:
            for record in records:
                self._deliver(record.position, record.payload, record.hash)
        self._resolve_barriers()
        if self._delivered < archive_position:
            self._wakeup.set()

    def _deliver(self, position: int, payload: bytes, hash_: bytes) -> None:
        try:
            result = self._apply(Committed(position, payload, hash_))
            error = None
        except Exception as e:  # a bug in an applier must not stop the replica
            log.error("apply_failed", position=position, exc_info=True)
            error = e
        self._delivered = position
        future = self._awaiting.pop(position, None)
        if future is not None and not future.done():
            if error is None:
                future.set_result(Proposed(position, result))
            else:
                future.set_exception(error)

    def _resolve_barriers(self) -> None:
        if not self._barriers:
            return
        waiting = []
        for target, future in self._barriers:
            if self._delivered >= target:
                if not future.done():
                    future.set_result(self._delivered)
            else:
                waiting.append((target, future))
        self._barriers = waiting

    async def _deliver_loop(self) -> None:
        """Deliver whatever the archive holds beyond what was delivered: on start, after a
        burst the fast path skipped, and after a gap was filled from a peer."""
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._delivered < self.archive.last_position:
                self._catching_up = True
                first = self._delivered + 1
                last = min(self.archive.last_position, first + 9_999)
                try:
                    records = await asyncio.to_thread(self.archive.read, first, last, 8 << 20)
                except ArchiveGap as gap:
                    await self._backfill(gap)
                    continue
                for record in records:
                    if record.position == self._delivered + 1:
                        self._deliver(record.position, record.payload, record.hash)
                self._resolve_barriers()
                await asyncio.sleep(0)
            self._catching_up = False

    async def _backfill(self, gap: ArchiveGap) -> None:
        """Fetch missing history from a peer's archive; retried until it arrives."""
        from mesos_es.log.remote import fetch_archived  # aiohttp is only needed here

        import aiohttp

        log.info("archive_backfill_started", first=gap.first, last=gap.last)
        delay = 0.2
        while not self._closed:
            if self._http is None:
                self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
            for peer in self.archive_peers:
                try:
                    records = await fetch_archived(self._http, peer, gap.first, gap.last)
                    if records:
                        await asyncio.to_thread(self.archive.fill, records)
                        log.info("archive_backfilled", peer=peer, first=records[0].position,
                                 last=records[-1].position)
                        return
                except (aiohttp.ClientError, asyncio.TimeoutError, ArchiveError, ValueError) as e:
                    log.warning("archive_backfill_failed", peer=peer, error=str(e))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    @staticmethod
    async def _ping_loop(node) -> None:
        """Tell the Raft process that this event loop runs (RaftConfig.master_timeout)."""
        from mesos_es.log.raft_process import PING_INTERVAL_S  # noqa: PLC0415

        while True:
            node.ping()
            await asyncio.sleep(PING_INTERVAL_S)

    async def _housekeeping_loop(self) -> None:
        """Expire batches that never got an answer."""
        while True:
            await asyncio.sleep(0.5)
            now = self._loop.time()
            for nonce, flight in list(self._in_flight.items()):
                if now > flight.deadline:
                    del self._in_flight[nonce]
                    if not flight.archived:
                        expired = OutcomeUnknown(f"no commit within {self.config.commit_timeout_s:g} s")
                        for future in flight.futures:
                            if not future.done():
                                future.set_exception(expired)
            self._submit()

    # -- reading --------------------------------------------------------------------------

    def read(self, first: int, last: int) -> list[Committed]:
        return [Committed(r.position, r.payload, r.hash) for r in self.archive.read(first, last)]

    async def sync(self) -> None:
        await asyncio.to_thread(self.archive.sync)
