"""RaftLog with pysyncobj in a process of its own (RaftConfig.node_process)."""

import asyncio
import socket

import pytest

from mesos_es.log.interface import Role
from mesos_es.log.raft import RaftLog, RaftStartError
from mesos_es.log.raft_process import _frame, _Frames
from tests.log.test_raft import config, start
from tests.support.ports import free_port_block


async def test_proposals_commit_and_survive_a_restart_through_compaction(tmp_path):
    """Compaction has the master write the dump (after archiving every entry the Raft process
    sent before asking); the restart has it load the dump and skip what it archived."""
    cfg = config(tmp_path, free_port_block(1, (0,)), node_process=True, compaction_min_entries=10)
    first_run = []
    log = await start(cfg, first_run)
    try:
        assert log.status().role is Role.LEADER and log.status().term >= 1
        results = await asyncio.gather(*(log.propose(b"%d" % i) for i in range(300)))
        assert [r.position for r in results] == list(range(1, 301))
        for i in range(40):
            await log.propose(b"a%d" % i)
    finally:
        await log.stop()
    assert (tmp_path / "raft" / "dump").exists()
    assert not log._node.process.poll()  # it stopped when told to (status 0)
    second_run = []
    log = await start(cfg, second_run)
    try:
        await log.propose(b"after")
        assert second_run[:340] == first_run and len(first_run) == 340
        assert second_run[-1] == (341, b"after")
    finally:
        await log.stop()


async def test_a_raft_process_whose_master_is_silent_leads_nothing(tmp_path):
    cfg = config(tmp_path, free_port_block(1, (0,)), node_process=True, master_timeout_s=0.3)
    log = await start(cfg, [])
    try:
        ping = next(t for t in log._tasks if t.get_name() == "raft-ping")
        ping.cancel()  # as if the event loop had stopped for the Raft process
        for _ in range(100):
            if log.status().role is not Role.LEADER:
                break
            await asyncio.sleep(0.02)
        assert log.status().role is not Role.LEADER
        await asyncio.sleep(1.0)  # several election timeouts: it does not elect itself again
        assert log.status().role is not Role.LEADER
        log._tasks.append(asyncio.create_task(log._ping_loop(log._node), name="raft-ping"))
        for _ in range(150):
            if log.status().role is Role.LEADER:
                break
            await asyncio.sleep(0.02)
        assert log.status().role is Role.LEADER
        assert (await log.propose(b"x")).position == 1
    finally:
        await log.stop()


async def test_a_raft_process_that_cannot_start_is_a_clear_error(tmp_path):
    (tmp_path / "raft").write_text("a file where the journal's directory should be")
    log = RaftLog(config(tmp_path, free_port_block(1, (0,)), node_process=True))
    with pytest.raises(RaftStartError, match="File exists|Not a directory"):
        await log.start(lambda c: None)
    await log.stop()


def test_frames_are_read_whole_however_the_bytes_arrive():
    ours, theirs = socket.socketpair()
    with ours, theirs:
        messages = [("entry", 1, b"x" * 3000), ("ping",), ("answer", 7, 0)]
        data = b"".join(_frame(m) for m in messages)
        frames = _Frames(theirs)
        ours.sendall(data[:5])  # less than a header and a body
        ours.sendall(data[5:2000])
        ours.sendall(data[2000:])
        got = []
        while len(got) < len(messages):
            got += frames.read()
        assert got == messages
        ours.close()
        assert frames.read() is None


def test_the_dump_is_written_without_holding_up_the_tick(tmp_path):
    """pysyncobj asks for a dump and goes on ticking; it compacts only once the writer says
    the dump is on disk (SUCCESS), and a failed write compacts nothing (FAILED)."""
    from pysyncobj import SERIALIZER_STATE

    from mesos_es.log.raft import _DumpWriter

    started = []
    dump = tmp_path / "dump"
    writer = _DumpWriter(str(dump), 1, True, None, None, None,
                         write_dump=lambda *args: started.append(args))
    writer.serialize((None, ("last", 9, 2), ("previous", 8, 2), []), 8)
    assert len(started) == 1  # handed over, and serialize returned
    tmp_file, last, previous, cluster, done = started[0]
    assert (last, previous, cluster) == (("last", 9, 2), ("previous", 8, 2), [])
    assert writer.checkSerializing() == (SERIALIZER_STATE.SERIALIZING, 8)
    writer.serialize((None, ("last", 10, 2), ("previous", 9, 2), []), 9)
    assert len(started) == 1  # one dump at a time
    with open(tmp_file, "wb") as f:
        f.write(b"the dump")
    done(True)
    assert writer.checkSerializing() == (SERIALIZER_STATE.SUCCESS, 8)
    assert dump.read_bytes() == b"the dump" and not (tmp_path / "dump.tmp").exists()
    assert writer.checkSerializing()[0] == SERIALIZER_STATE.NOT_SERIALIZING

    writer.serialize((None, ("last", 20, 2), ("previous", 19, 2), []), 19)
    started[-1][-1](False)
    assert writer.checkSerializing() == (SERIALIZER_STATE.FAILED, 19)
    assert dump.read_bytes() == b"the dump"
