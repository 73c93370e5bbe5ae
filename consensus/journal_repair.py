"""Finish a log compaction that a crash interrupted, before PySyncObj opens the files.

PySyncObj compacts in two steps: it writes the snapshot (dump file), and later
truncates the journal to start at the snapshot's last two entries. On start it
keeps the journal only if it begins with exactly those two entries; otherwise
it discards the journal, *including the committed entries after the snapshot*.
A process killed between the two steps therefore forgets acknowledged writes,
and because every replica compacts at the same log index, a whole-cluster crash
can make a majority forget them (found by `bazar chaos`).

`finish_interrupted_compaction` does the truncation the crash prevented, so the
journal again begins where the snapshot ends and keeps everything after it.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from pysyncobj.journal import FileJournal
from pysyncobj.serializer import Serializer

log = logging.getLogger("bazar.journal")


def finish_interrupted_compaction(journal_path: Path, dump_path: Path) -> bool:
    """Truncate the journal to start at the snapshot's last two entries, if a crash left it
    longer; return True when a repair was needed. The rewrite is atomic (new file, rename)."""
    if not journal_path.exists() or not dump_path.exists():
        return False
    dump = Serializer(str(dump_path), 1, False, None, None, None).deserialize()
    last, before_last = dump[1], dump[2]
    journal = FileJournal(str(journal_path))
    try:
        entries = [journal[i] for i in range(len(journal))]
    finally:
        journal._destroy()
    if entries[:2] == [before_last, last]:
        return False  # the usual case: compaction finished
    start = _position(entries, before_last, last)
    if start is None:
        return False  # nothing to keep: PySyncObj's own handling is right
    _rewrite(journal_path, entries[start:])
    log.warning("finished a log compaction interrupted by a crash: kept %d journal entries after "
                "snapshot index %d", len(entries) - start - 2, last[1])
    return True


def _position(entries: list, before_last, last) -> int | None:
    for i in range(len(entries) - 1):
        if entries[i] == before_last and entries[i + 1] == last:
            return i
    return None


def _rewrite(journal_path: Path, entries: list) -> None:
    """Write `entries` as a new journal and put it in place atomically (the .meta file stays)."""
    fresh = journal_path.with_name(journal_path.name + ".repair")
    for leftover in (fresh, Path(str(fresh) + ".meta")):
        leftover.unlink(missing_ok=True)
    journal = FileJournal(str(fresh))
    try:
        for command, index, term in entries:
            journal.add(command, index, term)
        journal.flush()
    finally:
        journal._destroy()
    os.replace(fresh, journal_path)
    Path(str(fresh) + ".meta").unlink(missing_ok=True)
