"""The durable Raft journal behind pysyncobj."""

import pytest

from mesos_es.log.journal import DurableJournal, JournalCorrupt


def test_entries_and_term_survive_a_reopen(tmp_path):
    journal = DurableJournal(tmp_path / "journal")
    journal.add(b"\x01", 1, 0)
    journal.add(b"cmd", 2, 1)
    journal.setCurrentTerm(3, "127.0.0.1:6050")
    journal.setRaftCommitIndex(2)
    journal.onOneSecondTimer()
    journal.sync()
    reopened = DurableJournal(tmp_path / "journal")
    assert list(reopened) == [(b"\x01", 1, 0), (b"cmd", 2, 1)]
    assert reopened.getCurrentTerm() == 3
    assert reopened.getVotedForNodeId() == "127.0.0.1:6050"
    assert reopened.getRaftCommitIndex() == 2


def test_entries_not_yet_synced_are_not_on_disk(tmp_path):
    journal = DurableJournal(tmp_path / "journal")
    journal.add(b"a", 1, 0)
    journal.sync()
    journal.add(b"b", 2, 0)  # a crash now loses it; it was never acknowledged
    assert [e[1] for e in DurableJournal(tmp_path / "journal")] == [1]


def test_a_torn_tail_is_cut_off(tmp_path):
    path = tmp_path / "journal"
    journal = DurableJournal(path)
    for i in range(1, 4):
        journal.add(b"entry", i, 1)
    journal.sync()
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 2)
    reopened = DurableJournal(path)
    assert [e[1] for e in reopened] == [1, 2]
    reopened.add(b"entry", 3, 2)
    reopened.sync()
    assert [e[2] for e in DurableJournal(path)] == [1, 1, 2]


def test_conflicting_entries_are_removed_from_disk(tmp_path):
    journal = DurableJournal(tmp_path / "journal")
    for i in range(1, 6):
        journal.add(b"old", i, 1)
    journal.sync()
    journal.deleteEntriesFrom(2)  # a new leader overwrites from index 3
    journal.add(b"new", 3, 2)
    journal.sync()
    assert list(DurableJournal(tmp_path / "journal")) == [(b"old", 1, 1), (b"old", 2, 1), (b"new", 3, 2)]


def test_compaction_rewrites_the_file_atomically(tmp_path):
    journal = DurableJournal(tmp_path / "journal")
    for i in range(1, 11):
        journal.add(b"e", i, 1)
    journal.sync()
    journal.deleteEntriesTo(7)
    journal.add(b"e", 11, 1)
    journal.sync()
    assert [e[1] for e in DurableJournal(tmp_path / "journal")] == [8, 9, 10, 11]
    assert not (tmp_path / "journal.tmp").exists()


def test_an_interrupted_compaction_is_finished_instead_of_discarding_the_journal(tmp_path):
    journal = DurableJournal(tmp_path / "journal")
    entries = [(b"e%d" % i, i, 1) for i in range(1, 11)]
    for entry in entries:
        journal.add(*entry)
    journal.sync()
    # the dump covered index 6 (previous entry 5); the process died before compacting
    assert journal.complete_compaction(entries[4], entries[5])
    assert list(journal) == entries[4:]
    assert not journal.complete_compaction((b"other", 3, 9), entries[5])


def test_an_unreadable_term_file_stops_the_replica(tmp_path):
    DurableJournal(tmp_path / "journal").setCurrentTerm(2, None)
    (tmp_path / "journal.meta").write_bytes(b"{not json")
    with pytest.raises(JournalCorrupt):
        DurableJournal(tmp_path / "journal")


def test_a_file_that_is_not_a_journal_is_refused(tmp_path):
    (tmp_path / "journal").write_bytes(b"PYSYNCOBJ\0\0\0" + b"\0" * 40)
    with pytest.raises(JournalCorrupt):
        DurableJournal(tmp_path / "journal")
