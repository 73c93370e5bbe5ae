"""Finish a log compaction that a crash interrupted (used by `consensus.journal` when it opens).

PySyncObj compacts in two steps: a forked child writes the snapshot (dump
file), and later the parent truncates the journal to start at the snapshot's
last two entries. On start it keeps the journal only if it begins with exactly
those two entries; otherwise it discards the journal, *including the committed
entries after the snapshot*. A process killed between the two steps therefore
forgets acknowledged writes, and because every replica compacts at the same
log index, a whole-cluster crash can make a majority forget them (found by
`bazar chaos`).

The journal finds where the snapshot ends in its entries and drops what comes
before (`compaction_start`), so it again begins where the snapshot ends and
keeps everything after it. No other process can be writing the snapshot
meanwhile: the journal holds the data directory's lock, which the snapshot
writer inherits (see `consensus.snapshot`).
"""
from __future__ import annotations

from pathlib import Path

from pysyncobj.serializer import Serializer


def snapshot_tail(dump_path: Path) -> tuple:
    """The snapshot's last two log entries, (before_last, last), as PySyncObj stores them."""
    dump = Serializer(str(dump_path), 1, False, None, None, None).deserialize()
    return dump[2], dump[1]


def compaction_start(entries: list, tail: tuple) -> int | None:
    """Where the journal should begin so that it starts with the snapshot's last two entries.

    0: it already does (the usual case). A positive position: a crash left the
    journal untruncated; drop the entries before it. None: the snapshot's
    entries are not in the journal (e.g. a snapshot received from the leader,
    newer than the whole journal), so PySyncObj's own handling is right."""
    before_last, last = tail
    for i in range(len(entries) - 1):
        if entries[i] == before_last and entries[i + 1] == last:
            return i
    return None
