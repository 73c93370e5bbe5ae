"""Finishing a log compaction that a crash interrupted, on PySyncObj's own file formats."""
from __future__ import annotations

from pysyncobj.journal import FileJournal
from pysyncobj.serializer import Serializer

from consensus.journal_repair import finish_interrupted_compaction


def _entry(index: int) -> tuple[bytes, int, int]:
    return (f"command {index}".encode(), index, 2)


def _write_journal(path, indexes) -> None:
    journal = FileJournal(str(path))
    for index in indexes:
        journal.add(*_entry(index))
    journal._destroy()


def _read_journal(path) -> list:
    journal = FileJournal(str(path))
    try:
        return [journal[i] for i in range(len(journal))]
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
    assert finish_interrupted_compaction(journal, dump) is True
    entries = _read_journal(journal)
    # Exactly what PySyncObj checks on start: the journal begins with the snapshot's last two entries...
    assert entries[:2] == [_entry(19), _entry(20)]
    # ...and the entries after the snapshot (committed, maybe acknowledged) are all still there.
    assert [e[1] for e in entries] == list(range(19, 31))
    assert not (tmp_path / "journal.bin.repair").exists()


def test_a_finished_compaction_is_left_alone(tmp_path):
    journal, dump = tmp_path / "journal.bin", tmp_path / "snapshot.bin"
    _write_journal(journal, range(19, 31))
    _write_snapshot(dump, 20)
    assert finish_interrupted_compaction(journal, dump) is False
    assert [e[1] for e in _read_journal(journal)] == list(range(19, 31))


def test_nothing_to_do_without_a_snapshot_or_when_the_snapshot_is_not_in_the_journal(tmp_path):
    journal, dump = tmp_path / "journal.bin", tmp_path / "snapshot.bin"
    _write_journal(journal, range(1, 11))
    assert finish_interrupted_compaction(journal, dump) is False
    _write_snapshot(dump, 50)  # e.g. a snapshot received from the leader, newer than the journal
    assert finish_interrupted_compaction(journal, dump) is False
    assert [e[1] for e in _read_journal(journal)] == list(range(1, 11))
