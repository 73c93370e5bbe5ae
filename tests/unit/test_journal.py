"""Bazar's durable Raft journal: format, fsync points, torn tails, corruption, compaction, migration."""
from __future__ import annotations

import os

import pytest
from pysyncobj.journal import FileJournal

from bazar import consensus  # noqa: F401  installs the journal in PySyncObj
from bazar.consensus import journal as journal_module
from bazar.consensus.journal import DurableJournal, JournalCorrupt, JournalLocked
from bazar.consensus.storage import StoragePath


def _entry(index: int, term: int = 2) -> tuple[bytes, int, int]:
    return (f"command {index}".encode(), index, term)


def _crash(journal: DurableJournal) -> None:
    """What SIGKILL does to an open journal: descriptors closed, nothing else (no sync)."""
    os.close(journal._fd)
    os.close(journal._lock_fd)


def _entries(path, **kwargs) -> list:
    journal = DurableJournal(path, **kwargs)
    try:
        return list(journal[:])
    finally:
        journal._destroy()


@pytest.fixture
def fsyncs(monkeypatch):
    """Every fsync'd descriptor's target, in order."""
    calls: list[str] = []
    real = os.fsync

    def counting(fd):
        calls.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    return calls


def test_entries_and_raft_state_survive_a_restart(tmp_path):
    path = tmp_path / "journal.bin"
    journal = DurableJournal(path)
    for index in range(1, 6):
        journal.add(*_entry(index))
    journal.setCurrentTerm(7, "127.0.0.1:7101")
    journal.setRaftCommitIndex(4)
    journal._destroy()

    journal = DurableJournal(path)
    assert list(journal[:]) == [_entry(i) for i in range(1, 6)]
    assert journal[-1] == _entry(5) and len(journal) == 5
    assert (journal.getCurrentTerm(), journal.getVotedForNodeId(), journal.getRaftCommitIndex()) == \
        (7, "127.0.0.1:7101", 4)
    journal._destroy()


def test_a_crash_keeps_exactly_what_was_synced(tmp_path):
    path = tmp_path / "journal.bin"
    journal = DurableJournal(path)
    journal.add(*_entry(1))
    journal.add(*_entry(2))
    journal.sync()
    journal.add(*_entry(3))   # appended but never synced: nobody was told about it
    _crash(journal)
    assert _entries(path) == [_entry(1), _entry(2)]


def test_one_fsync_covers_a_batch_and_nothing_is_fsynced_twice(tmp_path, fsyncs):
    journal = DurableJournal(tmp_path / "journal.bin")
    fsyncs.clear()
    for index in range(1, 11):
        journal.add(*_entry(index))
    journal.sync()
    journal.sync()                       # nothing new: no second fsync
    journal.setRaftCommitIndex(10)       # already synced: no fsync either
    assert fsyncs == [str(tmp_path / "journal.bin")]
    journal._destroy()


def test_the_leader_syncs_before_a_commit_index_takes_effect(tmp_path, fsyncs):
    journal = DurableJournal(tmp_path / "journal.bin")
    journal.add(*_entry(1))
    fsyncs.clear()
    journal.setRaftCommitIndex(1)
    assert fsyncs == [str(tmp_path / "journal.bin")]
    journal._destroy()


def test_a_vote_is_durable_before_set_current_term_returns(tmp_path, fsyncs):
    path = tmp_path / "journal.bin"
    journal = DurableJournal(path)
    fsyncs.clear()
    journal.setCurrentTerm(3, "node-b")
    # The state file's data (a temporary name), then the directory holding the rename.
    assert len(fsyncs) == 2 and fsyncs[0].startswith(str(path) + ".state.tmp-") and fsyncs[1] == str(tmp_path)
    _crash(journal)
    journal = DurableJournal(path)
    assert (journal.getCurrentTerm(), journal.getVotedForNodeId()) == (3, "node-b")
    journal._destroy()


def test_fsync_off_writes_the_same_files_without_waiting_for_the_disk(tmp_path, fsyncs):
    path = tmp_path / "journal.bin"
    journal = DurableJournal(path, fsync=False)
    journal.add(*_entry(1))
    journal.setCurrentTerm(1, None)
    journal.sync()
    journal.deleteEntriesTo(0)
    assert fsyncs == []
    _crash(journal)  # a process crash still loses nothing that was synced (written)
    assert _entries(path, fsync=False) == [_entry(1)]


def test_a_torn_tail_is_cut_and_never_replayed(tmp_path):
    path = tmp_path / "journal.bin"
    journal = DurableJournal(path)
    for index in range(1, 4):
        journal.add(*_entry(index))
    journal.sync()
    good_size = path.stat().st_size
    journal.add(*_entry(4))
    journal.sync()
    _crash(journal)
    # A power cut mid-write: the last record is only partly on disk.
    with open(path, "r+b") as file:
        file.truncate(path.stat().st_size - 5)

    journal = DurableJournal(path)
    assert list(journal[:]) == [_entry(i) for i in range(1, 4)]
    assert path.stat().st_size == good_size
    journal.add(*_entry(4, term=3))   # appending after the cut gives a sound journal
    journal._destroy()
    assert _entries(path)[-1] == _entry(4, term=3)


def test_garbage_after_the_last_record_is_a_torn_tail(tmp_path):
    path = tmp_path / "journal.bin"
    journal = DurableJournal(path)
    journal.add(*_entry(1))
    journal._destroy()
    with open(path, "ab") as file:
        file.write(b"\0" * 4096)       # a page the kernel extended but never filled
    assert _entries(path) == [_entry(1)]


def _flip_a_byte_in_entry(path, index: int) -> None:
    data = bytearray(path.read_bytes())
    position = data.index(f"command {index}".encode()) + 3
    data[position] ^= 0x40
    path.write_bytes(bytes(data))


def test_a_flipped_byte_in_committed_entries_refuses_to_start(tmp_path):
    path = tmp_path / "journal.bin"
    journal = DurableJournal(path)
    for index in range(1, 21):
        journal.add(*_entry(index))
    journal.setRaftCommitIndex(15)
    journal._destroy()
    _flip_a_byte_in_entry(path, 8)
    before = path.read_bytes()

    with pytest.raises(JournalCorrupt, match=r"damaged record at byte \d+ .*entry 8.*Refusing to start"):
        DurableJournal(path)
    assert path.read_bytes() == before   # nothing cut, nothing lost: the operator decides


def test_a_flipped_byte_past_the_saved_commit_index_cuts_there_and_sets_an_index_to_catch_up_to(tmp_path):
    path = tmp_path / "journal.bin"
    journal = DurableJournal(path)
    for index in range(1, 21):
        journal.add(*_entry(index))
    journal.setRaftCommitIndex(15)
    journal._destroy()
    _flip_a_byte_in_entry(path, 18)
    journal = DurableJournal(path)
    assert [e[1] for e in journal[:]] == list(range(1, 18))
    assert (journal.getRaftCommitIndex(), journal.catch_up_to()) == (15, 20)   # 16, 17: not raised
    journal._destroy()


def _acknowledged_with_a_lagging_commit_index(path, count: int, saved_commit: int) -> None:
    """`count` entries synced and acknowledged, the commit index saved at `saved_commit` only:
    it is saved at most once a second, and the process died within that second."""
    journal = DurableJournal(path)
    for index in range(1, saved_commit + 1):
        journal.add(*_entry(index))
    journal.setRaftCommitIndex(saved_commit)
    journal.onOneSecondTimer()
    for index in range(saved_commit + 1, count + 1):
        journal.add(*_entry(index))
    journal.setRaftCommitIndex(count)    # synced, committed: not saved yet
    _crash(journal)


def test_damage_in_the_middle_past_the_saved_commit_index_waits_for_the_peers(tmp_path, caplog):
    path = tmp_path / "journal.bin"
    _acknowledged_with_a_lagging_commit_index(path, count=11, saved_commit=3)
    offset = path.read_bytes().index(b"command 6") - journal_module.RECORD.size - journal_module.ENTRY.size
    _flip_a_byte_in_entry(path, 6)

    with caplog.at_level("ERROR", logger="bazar.journal"):
        journal = DurableJournal(path)
    # The entries before the damage stay; 6..11 come back from the peers. Until they have,
    # the index to catch up to says this replica held entries up to 11 (so it neither votes
    # nor campaigns); its commit index stays the saved one (6..11 need not be committed).
    assert [e[1] for e in journal[:]] == [1, 2, 3, 4, 5]
    assert (journal.getRaftCommitIndex(), journal.catch_up_to()) == (3, 11)
    journal._destroy()
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and str(path) in errors[0] and f"byte {offset}" in errors[0]
    assert "entries 6 to 11" in errors[0]
    journal = DurableJournal(path)       # the repair is on disk, and the index to catch up to too
    assert ([e[1] for e in journal[:]], journal.catch_up_to()) == ([1, 2, 3, 4, 5], 11)
    journal._destroy()


def test_damage_in_the_length_field_is_found_past_by_scanning(tmp_path):
    path = tmp_path / "journal.bin"
    _acknowledged_with_a_lagging_commit_index(path, count=11, saved_commit=3)
    data = bytearray(path.read_bytes())
    length_field = data.index(b"command 6") - journal_module.RECORD.size - journal_module.ENTRY.size
    data[length_field + 1] ^= 0x01      # entry 6 now claims 256 bytes more than it has
    path.write_bytes(bytes(data))
    journal = DurableJournal(path)
    assert ([e[1] for e in journal[:]], journal.catch_up_to()) == ([1, 2, 3, 4, 5], 11)
    journal._destroy()


def test_a_damaged_last_record_is_still_a_torn_tail(tmp_path, caplog):
    path = tmp_path / "journal.bin"
    _acknowledged_with_a_lagging_commit_index(path, count=11, saved_commit=3)
    _flip_a_byte_in_entry(path, 11)
    with caplog.at_level("WARNING", logger="bazar.journal"):
        journal = DurableJournal(path)
    assert ([e[1] for e in journal[:]], journal.getRaftCommitIndex()) == (list(range(1, 11)), 3)
    journal._destroy()
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "torn by a crash" in caplog.records[0].getMessage()


def test_an_interrupted_repair_is_finished_on_the_next_start(tmp_path, monkeypatch):
    path = tmp_path / "journal.bin"
    _acknowledged_with_a_lagging_commit_index(path, count=11, saved_commit=3)
    _flip_a_byte_in_entry(path, 6)
    damaged = path.read_bytes()

    def killed(*args):
        raise KeyboardInterrupt("killed between saving the index to catch up to and the cut")

    monkeypatch.setattr(journal_module, "_cut", killed)
    with pytest.raises(KeyboardInterrupt):
        DurableJournal(path)
    monkeypatch.undo()
    assert path.read_bytes() == damaged  # the state file marks the repair begun at 6
    journal = DurableJournal(path)
    assert ([e[1] for e in journal[:]], journal.catch_up_to()) == ([1, 2, 3, 4, 5], 11)
    journal._destroy()


def test_with_fsync_off_damage_in_the_middle_is_cut_as_before(tmp_path):
    path = tmp_path / "journal.bin"
    journal = DurableJournal(path, fsync=False)
    for index in range(1, 12):
        journal.add(*_entry(index))
    journal.setRaftCommitIndex(3)
    journal.onOneSecondTimer()
    _crash(journal)
    _flip_a_byte_in_entry(path, 6)
    journal = DurableJournal(path, fsync=False)
    assert ([e[1] for e in journal[:]], journal.getRaftCommitIndex()) == ([1, 2, 3, 4, 5], 3)
    journal._destroy()


def test_a_damaged_state_file_refuses_to_start(tmp_path):
    path = tmp_path / "journal.bin"
    journal = DurableJournal(path)
    journal.setCurrentTerm(4, "node-c")
    journal._destroy()
    state = tmp_path / "journal.bin.state"
    state.write_bytes(state.read_bytes().replace(b"node-c", b"node-d"))
    with pytest.raises(JournalCorrupt, match="Raft state"):
        DurableJournal(path)


def test_deleting_a_conflicting_tail_cuts_the_file(tmp_path):
    path = tmp_path / "journal.bin"
    journal = DurableJournal(path)
    for index in range(1, 11):
        journal.add(*_entry(index))
    journal.sync()
    journal.deleteEntriesFrom(6)          # written entries 7..10 conflict with the leader's
    journal.add(*_entry(7, term=3))
    journal.add(*_entry(8, term=3))
    journal.deleteEntriesFrom(7)          # ... and an entry that was only pending
    journal._destroy()
    assert _entries(path) == [_entry(i) for i in range(1, 7)] + [_entry(7, term=3)]


def test_compaction_writes_a_new_file_and_never_touches_the_old_one(tmp_path):
    path = tmp_path / "journal.bin"
    journal = DurableJournal(path)
    for index in range(1, 31):
        journal.add(*_entry(index))
    journal.sync()
    old_inode, old_content = path.stat().st_ino, path.read_bytes()
    old_file = open(path, "rb")  # keeps the old file's data reachable
    journal.deleteEntriesTo(20)
    assert path.stat().st_ino != old_inode
    assert old_file.read() == old_content
    old_file.close()
    assert list(journal[:]) == [_entry(i) for i in range(21, 31)]
    journal.add(*_entry(31))
    journal._destroy()
    assert [e[1] for e in _entries(path)] == list(range(21, 32))


def test_rebasing_on_a_snapshot_keeps_the_entries_after_it_through_a_crash(tmp_path, monkeypatch):
    """The log holds the snapshot's last entry (20) but not the one before: it is rebuilt as
    19, 20 and the kept entries 21..30. A crash part-way must not leave it empty."""
    from pysyncobj.syncobj import SyncObj

    from bazar.consensus.raft_fixes import _SyncObj

    path = tmp_path / "journal.bin"
    journal = DurableJournal(path)
    for index in range(20, 31):
        journal.add(*_entry(index))
    journal.sync()
    replica = object.__new__(SyncObj)      # just what rebase_log reads: the journal
    replica._SyncObj__raftLog = journal

    def killed(*args):
        raise KeyboardInterrupt("killed while the journal is refilled")

    monkeypatch.setattr(DurableJournal, "add", killed)
    try:
        _SyncObj.rebase_log(replica, _entry(19), _entry(20))
    except KeyboardInterrupt:
        pass
    _crash(journal)
    monkeypatch.undo()
    assert [e[1] for e in _entries(path)] == list(range(19, 31))


def test_temporary_files_of_an_interrupted_rewrite_are_removed_on_start(tmp_path):
    path = tmp_path / "journal.bin"
    journal = DurableJournal(path)
    journal.add(*_entry(1))
    journal._destroy()
    leftovers = [tmp_path / "journal.bin.tmp-123-abcd", tmp_path / "journal.bin.state.tmp-9-ff",
                 tmp_path / "snapshot.bin.tmp-77-00", tmp_path / "snapshot.bin.tmp"]
    for leftover in leftovers:
        leftover.write_bytes(b"half written")
    assert _entries(path, snapshot=tmp_path / "snapshot.bin") == [_entry(1)]
    assert not any(leftover.exists() for leftover in leftovers)


def test_pysyncobj_journals_are_migrated_with_their_raft_state(tmp_path):
    path = tmp_path / "journal.bin"
    old = FileJournal(str(path))
    for index in range(1, 8):
        old.add(*_entry(index))
    old.setCurrentTerm(5, "127.0.0.1:7102")
    old.setRaftCommitIndex(6)
    old.onOneSecondTimer()
    old._destroy()

    journal = DurableJournal(path)
    assert list(journal[:]) == [_entry(i) for i in range(1, 8)]
    assert (journal.getCurrentTerm(), journal.getVotedForNodeId(), journal.getRaftCommitIndex()) == \
        (5, "127.0.0.1:7102", 6)
    journal._destroy()
    assert path.read_bytes().startswith(journal_module.MAGIC)
    assert not (tmp_path / "journal.bin.meta").exists()
    assert _entries(path) == [_entry(i) for i in range(1, 8)]   # and it opens as Bazar's from now on


def test_a_crash_during_migration_migrates_again(tmp_path, monkeypatch):
    path = tmp_path / "journal.bin"
    old = FileJournal(str(path))
    for index in range(1, 4):
        old.add(*_entry(index))
    old._destroy()

    def crash(*args):
        raise KeyboardInterrupt("killed between the state file and the journal's rename")

    monkeypatch.setattr(journal_module, "_write_journal", crash)
    with pytest.raises(KeyboardInterrupt):
        DurableJournal(path)
    monkeypatch.undo()
    assert path.read_bytes().startswith(b"PYSYNCOBJ")
    assert _entries(path) == [_entry(i) for i in range(1, 4)]


def test_a_second_process_cannot_open_a_journal_in_use(tmp_path, monkeypatch):
    monkeypatch.setattr(journal_module, "LOCK_WAIT_SECONDS", 0.2)
    journal = DurableJournal(tmp_path / "journal.bin")
    with pytest.raises(JournalLocked, match="another process"):
        DurableJournal(tmp_path / "journal.bin")
    journal._destroy()
    DurableJournal(tmp_path / "journal.bin")._destroy()


def test_pysyncobj_builds_bazars_journal_from_the_configured_path(tmp_path):
    import pysyncobj.syncobj
    journal = pysyncobj.syncobj.createJournal(StoragePath(tmp_path / "journal.bin", fsync=False))
    assert isinstance(journal, DurableJournal) and journal.fsync is False
    journal._destroy()
    assert type(pysyncobj.syncobj.createJournal(None)).__name__ == "MemoryJournal"


def test_raft_fsync_is_on_by_default_and_reaches_the_journal_and_snapshot_names(tmp_path):
    from bazar.cluster.config import ConfigError, RaftConfig, _raft
    from bazar.consensus.settings import syncobj_conf

    assert RaftConfig().fsync is True and _raft({}).fsync is True
    assert _raft({"fsync": False}).fsync is False
    with pytest.raises(ConfigError, match="raft.fsync: expected true or false"):
        _raft({"fsync": "no"})
    conf = syncobj_conf(_raft({"fsync": False}), tmp_path / "n1", None)
    assert conf.journalFile.fsync is False and conf.fullDumpFile.fsync is False
    assert conf.journalFile.snapshot == conf.fullDumpFile == str(tmp_path / "n1" / "snapshot.bin")
    assert syncobj_conf(RaftConfig(), tmp_path / "n2", None).journalFile.fsync is True


def test_durable_damage_is_repaired_from_peers_when_the_operator_asks(tmp_path, monkeypatch):
    """BAZAR_REPAIR_JOURNAL=1: the sound entries before the damage stay, the saved commit
    index is kept and the index to catch up to set to the sound entries after the damage, so the
    replica votes again only once a leader has given it everything it had; its term and
    vote stay. (Moving the data directory away instead forgets them: the simulator found
    two leaders in one term that way.)"""
    path = tmp_path / "journal.bin"
    journal = DurableJournal(path)
    for index in range(1, 21):
        journal.add(*_entry(index))
    journal.setCurrentTerm(3, "n2")
    journal.setRaftCommitIndex(15)
    journal._destroy()
    _flip_a_byte_in_entry(path, 8)

    monkeypatch.setenv("BAZAR_REPAIR_JOURNAL", "1")
    repaired = DurableJournal(path)
    assert [repaired[i][1] for i in range(len(repaired))] == list(range(1, 8))
    assert (repaired.getRaftCommitIndex(), repaired.catch_up_to()) == (15, 20)  # sound 9..20 after it
    assert (repaired.getCurrentTerm(), repaired.getVotedForNodeId()) == (3, "n2")
    repaired._destroy()
    monkeypatch.delenv("BAZAR_REPAIR_JOURNAL")
    again = DurableJournal(path)                        # repaired for good: no refusal now
    assert len(again) == 7 and (again.getRaftCommitIndex(), again.catch_up_to()) == (15, 20)
    again._destroy()
