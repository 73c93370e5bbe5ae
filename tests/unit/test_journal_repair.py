"""Finishing a log compaction that a crash interrupted, when the journal opens."""
from __future__ import annotations

from pysyncobj.serializer import Serializer

from bazar import consensus  # noqa: F401  installs the journal and snapshot writer in PySyncObj
from bazar.consensus.journal import DurableJournal
from bazar.consensus.journal_repair import compaction_start


def _entry(index: int) -> tuple[bytes, int, int]:
    return (f"command {index}".encode(), index, 2)


def _write_journal(path, indexes) -> None:
    journal = DurableJournal(path)
    for index in indexes:
        journal.add(*_entry(index))
    journal._destroy()


def _read_journal(path, dump) -> list:
    journal = DurableJournal(path, snapshot=dump)
    try:
        return list(journal[:])
    finally:
        journal._destroy()


def _write_snapshot(path, last_index: int) -> None:
    """A dump as PySyncObj writes it: (state, last applied entry, the one before, cluster)."""
    serializer = Serializer(str(path), 1024, False, None, None, None)
    serializer.serialize(({"state": "at %d" % last_index}, _entry(last_index), _entry(last_index - 1), set()),
                         last_index - 1)


def test_a_journal_left_untruncated_keeps_every_entry_after_the_snapshot(tmp_path):
    journal, dump = tmp_path / "journal.bin", tmp_path / "snapshot.bin"
    _write_journal(journal, range(1, 31))   # entries 1..30, never truncated
    _write_snapshot(dump, 20)               # the crash came after the snapshot of 20
    entries = _read_journal(journal, dump)
    # Exactly what PySyncObj checks on start: the journal begins with the snapshot's last two entries...
    assert entries[:2] == [_entry(19), _entry(20)]
    # ... and every committed entry after the snapshot is still there.
    assert [e[1] for e in entries] == list(range(19, 31))
    # The repair was written to disk: a plain open (no snapshot given) sees it too.
    assert [e[1] for e in _read_journal(journal, None)] == list(range(19, 31))


def test_a_journal_that_was_truncated_is_left_alone(tmp_path):
    journal, dump = tmp_path / "journal.bin", tmp_path / "snapshot.bin"
    _write_journal(journal, range(19, 31))
    _write_snapshot(dump, 20)
    inode = journal.stat().st_ino
    assert [e[1] for e in _read_journal(journal, dump)] == list(range(19, 31))
    assert journal.stat().st_ino == inode   # not rewritten


def test_nothing_to_do_without_a_snapshot_or_when_the_snapshot_is_not_in_the_journal(tmp_path):
    journal, dump = tmp_path / "journal.bin", tmp_path / "snapshot.bin"
    _write_journal(journal, range(1, 11))
    assert [e[1] for e in _read_journal(journal, dump)] == list(range(1, 11))
    _write_snapshot(dump, 50)  # e.g. a snapshot received from the leader, newer than the journal
    assert [e[1] for e in _read_journal(journal, dump)] == list(range(1, 11))


def test_compaction_start_positions():
    entries = [_entry(i) for i in range(5, 12)]
    assert compaction_start(entries, (_entry(5), _entry(6))) == 0
    assert compaction_start(entries, (_entry(8), _entry(9))) == 3
    assert compaction_start(entries, (_entry(20), _entry(21))) is None
    assert compaction_start([], (_entry(1), _entry(2))) is None
