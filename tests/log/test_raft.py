"""RaftLog on pysyncobj, one replica in this process: commit, recovery, compaction."""

import asyncio
import time

import pytest
import structlog

from mesos_es.log.interface import EntryTooLarge, NotLeader, Role
from mesos_es.log.journal import DurableJournal
from mesos_es.log.raft import PRE_VOTE_BACKOFF_S, RaftConfig, RaftLog, pre_vote_granted
from tests.support.ports import free_port_block


def config(work_dir, port, peers=(), **overrides):
    return RaftConfig(address=f"127.0.0.1:{port}", peers=tuple(f"127.0.0.1:{p}" for p in peers),
                      work_dir=work_dir, password="test-secret", **overrides)


async def start(cfg, applied):
    """Start a replica; a lone replica must elect itself within a few seconds."""
    log = RaftLog(cfg)
    await log.start(lambda c: applied.append((c.position, c.payload)) or len(applied))
    for _ in range(250):
        if log.status().role is Role.LEADER or cfg.peers:
            return log
        await asyncio.sleep(0.02)
    await log.stop()
    raise AssertionError("a single replica did not become leader")


async def three_replicas(tmp_path, applied: dict | None = None):
    """Three replicas in this process, once one leads: (the logs, the leader). `applied`, if
    given, gets each replica's applied (position, payload) list under its port."""
    base = free_port_block(3, (0,))
    ports = [base, base + 1, base + 2]
    applied = {} if applied is None else applied
    logs = [await start(config(tmp_path / f"r{i}", p, peers=[q for q in ports if q != p]), applied.setdefault(p, []))
            for i, p in enumerate(ports)]
    for _ in range(300):
        leaders = [l for l in logs if l.status().role is Role.LEADER]
        if leaders:
            return logs, leaders[0]
        await asyncio.sleep(0.02)
    for l in logs:
        await l.stop()
    raise AssertionError("three replicas elected no leader")


async def on_tick_thread(node, action):
    """Run `action` once on pysyncobj's tick thread, where real messages are handled, and
    return what it returned."""
    done = []

    def once():
        if not done:
            done.append(action())

    node.addOnTickCallback(once)
    try:
        for _ in range(200):
            if done:
                return done[0]
            await asyncio.sleep(0.01)
    finally:
        node.removeOnTickCallback(once)
    raise AssertionError("the tick thread did not run it")


async def test_concurrent_proposals_get_contiguous_positions_in_call_order(tmp_path):
    applied = []
    log = await start(config(tmp_path, free_port_block(1, (0,))), applied)
    try:
        results = await asyncio.gather(*(log.propose(b"%d" % i) for i in range(500)))
        assert [r.position for r in results] == list(range(1, 501))
        assert [p for _, p in applied] == [b"%d" % i for i in range(500)]
        assert results[-1].result == 500  # what apply returned for it
        assert await log.barrier() == 500
    finally:
        await log.stop()


async def test_an_oversized_entry_is_refused(tmp_path):
    log = await start(config(tmp_path, free_port_block(1, (0,)), max_entry_bytes=10), [])
    try:
        with pytest.raises(EntryTooLarge):
            await log.propose(b"x" * 11)
    finally:
        await log.stop()


async def test_history_survives_restarts_and_compaction(tmp_path):
    port = free_port_block(1, (0,))
    cfg = config(tmp_path, port, compaction_min_entries=10)
    first_run = []
    log = await start(cfg, first_run)
    for i in range(60):
        await log.propose(b"a%d" % i)
    await log.stop()
    assert len(log.journal) < 60  # the journal was compacted; the archive kept everything
    second_run = []
    log = await start(cfg, second_run)
    try:
        await log.propose(b"after")
        assert second_run[:60] == first_run
        assert second_run[-1] == (61, b"after")
    finally:
        await log.stop()


async def test_resuming_from_a_snapshot_position_delivers_only_the_suffix(tmp_path):
    port = free_port_block(1, (0,))
    cfg = config(tmp_path, port)
    log = await start(cfg, [])
    for i in range(10):
        await log.propose(b"%d" % i)
    hash_at_6 = log.archive.hash_at(6)
    await log.stop()
    applied = []
    log = RaftLog(cfg)
    await log.start(lambda c: applied.append(c.position), 6, hash_at_6)
    try:
        await asyncio.sleep(0.3)
        assert applied == [7, 8, 9, 10]
    finally:
        await log.stop()


async def test_a_crash_between_dump_and_compaction_loses_nothing(tmp_path):
    """pysyncobj as shipped discards the journal when the dump is newer than its first
    entry; a replica killed right after writing a dump lost acknowledged entries."""
    port = free_port_block(1, (0,))
    cfg = config(tmp_path, port)
    log = await start(cfg, [])
    for i in range(20):
        await log.propose(b"%d" % i)
    node = log._node
    # Take a dump, then "crash" before the journal is compacted: restore the journal file
    # as it was before compaction.
    before = list(log.journal)  # the journal as it is before the dump
    node.forceLogCompaction()
    for _ in range(100):
        if (tmp_path / "raft" / "dump").exists() and len(log.journal) < len(before):
            break
        await asyncio.sleep(0.02)
    for i in range(5):
        await log.propose(b"late%d" % i)
    await log.stop()
    # The crash window: the dump is on disk but the journal was never compacted.
    after = list(DurableJournal(log.journal.path))
    uncompacted = before + [e for e in after if e[1] > before[-1][1]]
    log.journal.path.unlink()
    rebuilt = DurableJournal(log.journal.path)
    for entry in uncompacted:
        rebuilt.add(*entry)
    rebuilt.sync()
    applied = []
    log = await start(cfg, applied)
    try:
        await log.propose(b"final")
        payloads = [p for _, p in applied]
        assert payloads[:20] == [b"%d" % i for i in range(20)]
        assert payloads[20:] == [b"late%d" % i for i in range(5)] + [b"final"]
    finally:
        await log.stop()


async def test_followers_refuse_proposals_and_learn_the_leader(tmp_path):
    by_port = {}
    logs, leader = await three_replicas(tmp_path, by_port)
    applied = list(by_port.values())
    try:
        for _ in range(300):
            if all(l.status().leader for l in logs):
                break
            await asyncio.sleep(0.02)
        follower = next(l for l in logs if l is not leader)
        with pytest.raises(NotLeader) as e:
            await follower.propose(b"x")
        assert e.value.leader == leader.config.address
        await asyncio.gather(*(leader.propose(b"%d" % i) for i in range(100)))
        for _ in range(200):
            if all(len(a) == 100 for a in applied):
                break
            await asyncio.sleep(0.02)
        assert applied[0] == applied[1] == applied[2]
        assert {l.archive.last_hash for l in logs} == {leader.archive.last_hash}
    finally:
        for l in logs:
            await l.stop()


async def test_a_raft_port_in_use_is_a_clear_error(tmp_path):
    import socket

    from mesos_es.log.raft import RaftStartError

    port = free_port_block(1, (0,))
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        log = RaftLog(config(tmp_path, port))
        log.config = log.config.__class__(**{**log.config.__dict__})
        import mesos_es.log.raft as raft

        original = raft.SyncObjConf
        try:
            raft.SyncObjConf = lambda **kw: original(**{**kw, "maxBindRetries": 2, "bindRetryTime": 0.05})
            with pytest.raises(RaftStartError, match="cannot bind"):
                await log.start(lambda c: None)
        finally:
            raft.SyncObjConf = original



async def test_a_late_success_reply_never_moves_a_followers_next_index_back(tmp_path):
    """The trigger of pysyncobj's truncation of acknowledged entries (see _Node): a success
    reply for an earlier append arriving after later entries were sent."""
    logs, leader = await three_replicas(tmp_path)
    try:
        await asyncio.gather(*(leader.propose(b"x") for _ in range(50)))
        node = leader._node
        follower = next(iter(node.otherNodes))

        def inject_stale_reply():
            sent_up_to = node._SyncObj__raftNextIndex[follower]
            node._SyncObj__raftMatchIndex[follower] = sent_up_to - 10  # replies still in flight
            node._SyncObj__onMessageReceived(follower, {
                "type": "next_node_idx", "next_node_idx": sent_up_to - 5, "reset": False, "success": True,
            })
            return sent_up_to, node._SyncObj__raftNextIndex[follower], node._SyncObj__raftMatchIndex[follower]

        sent_up_to, next_index, match_index = await on_tick_thread(node, inject_stale_reply)
        assert match_index == sent_up_to - 6  # the reply still counts as progress
        assert next_index == sent_up_to  # but nothing is sent twice
    finally:
        for l in logs:
            await l.stop()


async def test_a_snapshot_chunk_never_commits_the_followers_own_tail(tmp_path):
    """A restarted old leader holds entries nobody else has. pysyncobj committed them on the
    first snapshot chunk from the new leader (commit index = min(leader's, own last index));
    they must stay uncommitted until a real append_entries verifies the log."""
    port = free_port_block(1, (0,))
    cfg = config(tmp_path, port)
    applied = []
    log = await start(cfg, applied)
    for i in range(3):
        await log.propose(b"%d" % i)
    await log.stop()
    # An uncommitted tail, as an old leader killed before replicating it would have.
    journal = DurableJournal(log.journal.path)
    command, last_index, term = journal[len(journal) - 1]
    journal.add(command, last_index + 1, term)
    journal.sync()
    del journal

    # Restarted as a follower of an unreachable cluster: it can never win an election.
    peers = free_port_block(2, (0,))
    applied = []
    log = await start(config(tmp_path, port, peers=[peers, peers + 1]), applied)
    try:
        node = log._node
        leader = next(iter(node.otherNodes))
        commit_before = node.raftCommitIndex
        assert commit_before == last_index

        def inject_snapshot_chunk():
            node._SyncObj__onMessageReceived(leader, {
                "type": "append_entries", "term": node.raftCurrentTerm + 1,
                "commit_index": last_index + 100, "serialized": None,
            })
            return node.raftCommitIndex

        assert await on_tick_thread(node, inject_snapshot_chunk) == commit_before
        await asyncio.sleep(0.2)
        assert applied == [(1, b"0"), (2, b"1"), (3, b"2")]  # redelivered from the archive, no 4th
    finally:
        await log.stop()


@pytest.mark.parametrize("leading, leader_alive, candidate_term, term, candidate_log, log, granted", [
    (False, False, 5, 4, (4, 10), (4, 10), True),   # the leader is gone; the same log
    (False, False, 5, 4, (4, 11), (4, 10), True),   # a longer log of the same last term
    (False, False, 5, 4, (3, 99), (4, 10), False),  # an older last term loses, however long
    (False, False, 5, 4, (4, 9), (4, 10), False),   # a shorter log of the same last term
    (False, True, 5, 4, (4, 10), (4, 10), False),   # this replica still hears from its leader
    (True, False, 5, 4, (4, 10), (4, 10), False),   # this replica leads
    (False, False, 4, 4, (4, 10), (4, 10), False),  # the candidate is behind in term
])
def test_pre_vote_rule(leading, leader_alive, candidate_term, term, candidate_log, log, granted):
    assert pre_vote_granted(leading=leading, leader_alive=leader_alive, candidate_term=candidate_term, term=term,
                            candidate_log=candidate_log, log=log) is granted


async def test_a_granted_pre_vote_stands_back_and_a_premature_refusal_asks_again_soon(tmp_path):
    """Two survivors of a killed leader ask each other for pre-votes at the same moment: each
    grant must end the granter's own round, or both become candidates, vote for themselves
    and split the vote (a whole election timeout lost: the CI flake of the leader-kill test).
    And a refusal from a replica that has not yet seen the leader's connection close must not
    cost the asker its whole election timeout."""
    port = free_port_block(1, (0,))
    peers = free_port_block(2, (0,))
    # Restarted as a follower of an unreachable cluster: it never runs a round by itself.
    log = await start(config(tmp_path, port, peers=[peers, peers + 1], election_timeout_min_s=30,
                             election_timeout_max_s=60), [])
    try:
        node = log._node
        other, dead_leader = sorted(node.otherNodes, key=lambda n: n.id)
        def race():
            seen = {}
            term = node.raftCurrentTerm
            request = {"type": "pre_vote", "term": term + 1, "last_log_index": node._SyncObj__getCurrentLogIndex(),
                       "last_log_term": node._SyncObj__getCurrentLogTerm()}
            # Our round passed a moment ago; the other survivor's request crossed it.
            node._pre_vote_term, node._election_granted = None, True
            node._SyncObj__raftElectionDeadline = 0
            node._SyncObj__onMessageReceived(other, request)
            seen["granted"] = (node._election_granted, node._SyncObj__raftElectionDeadline - time.monotonic())
            # Our round is running (it set a whole timeout ahead) and the request crosses it.
            node._pre_vote_term = term + 1
            node._SyncObj__raftElectionDeadline = time.monotonic() + 30
            node._SyncObj__onMessageReceived(other, request)
            seen["running"] = (node._pre_vote_term, node._SyncObj__raftElectionDeadline - time.monotonic())
            # Our next round is refused by a replica still connected to the dead leader.
            node._lost_leader, node._pre_vote_term = dead_leader, term + 1
            node._SyncObj__raftElectionDeadline = time.monotonic() + 30
            node._SyncObj__onMessageReceived(other, {
                "type": "pre_vote_response", "term": term + 1, "granted": False, "voter_term": term,
                "leader_alive": True})
            seen["refused"] = node._SyncObj__raftElectionDeadline - time.monotonic()
            node._lost_leader, node._pre_vote_term = None, None
            node._SyncObj__raftElectionDeadline = time.monotonic() + 30
            seen["term"] = term
            return seen

        seen = await on_tick_thread(node, race)
        election_granted, stands_back_for = seen["granted"]
        assert not election_granted
        assert PRE_VOTE_BACKOFF_S[0] - 0.01 <= stands_back_for <= PRE_VOTE_BACKOFF_S[1]
        round_term, stands_back_for = seen["running"]
        assert round_term is None and stands_back_for <= PRE_VOTE_BACKOFF_S[1]
        assert seen["refused"] <= PRE_VOTE_BACKOFF_S[1]
        await asyncio.sleep(0.5)
        assert node.raftCurrentTerm == seen["term"]  # no election was started
    finally:
        await log.stop()


async def test_a_stalled_tick_thread_is_logged_and_its_stacks_dumped(tmp_path):
    """What held up the Raft thread long enough to cost an election is written down: a
    warning, and (opted in) every thread's stack from faulthandler's watchdog."""
    log = await start(config(tmp_path, free_port_block(1, (0,)), stall_dump_s=0.3), [])
    try:
        node = log._node

        def stall_once():  # the tick thread itself held up, as by a long GIL hold elsewhere
            time.sleep(0.7)

        with structlog.testing.capture_logs() as logs:
            await on_tick_thread(node, stall_once)
            for _ in range(100):
                if any(e["event"] == "raft_tick_stalled" for e in logs):
                    break
                await asyncio.sleep(0.01)
        (warning,) = [e for e in logs if e["event"] == "raft_tick_stalled"]
        assert warning["seconds"] >= 0.6 and warning["leading"] is True
    finally:
        await log.stop()
    dump = (tmp_path / "raft-stalls.txt").read_text()
    assert "stall_once" in dump and "Thread" in dump


def test_calls_from_the_tick_thread_run_in_order_and_one_failure_stops_none_of_the_others():
    ran = []

    def fails():
        raise ValueError("boom")

    with structlog.testing.capture_logs() as logs:
        RaftLog._run_calls([(ran.append, (1,)), (fails, ()), (ran.append, (2,))])
    assert ran == [1, 2]
    assert [e["event"] for e in logs] == ["raft_callback_failed"]


async def test_commands_are_never_forwarded_to_the_leader(tmp_path):
    """pysyncobj forwards a command queued on a follower to the leader, which commits it in
    its own term: a deposed leader's stale decisions (made by its event loop before it heard
    of the new term) were committed by its successor. A follower fails them (NOT_LEADER), and
    a leader refuses a forwarded one."""
    from pysyncobj import FAIL_REASON

    from mesos_es.pb import log_pb2

    applied = {}
    logs, leader = await three_replicas(tmp_path, applied)
    try:
        await leader.propose(b"before")
        follower = next(l for l in logs if l is not leader)
        batch = log_pb2.RaftBatch(nonce=b"stale", events=[b"decided by a deposed leader"]).SerializeToString()
        answer = asyncio.get_running_loop().create_future()
        loop = asyncio.get_running_loop()
        follower._node.append(batch, callback=lambda _r, error: loop.call_soon_threadsafe(answer.set_result, error))
        assert await asyncio.wait_for(answer, 5) == FAIL_REASON.NOT_LEADER

        node = leader._node
        some_follower = next(iter(node.otherNodes))
        await on_tick_thread(node, lambda: node._SyncObj__onMessageReceived(
            some_follower, {"type": "apply_command", "command": batch, "request_id": 7}))
        await leader.propose(b"after")
        await asyncio.sleep(0.3)
        assert len(applied) == 3
        for replica_applied in applied.values():
            assert [payload for _, payload in replica_applied] == [b"before", b"after"]
    finally:
        for l in logs:
            await l.stop()
