"""Write a replica's data directory that starts from a given state (`bazar restore`).

A replica restarts from its snapshot file and the journal entries after it. A
restored replica is one that has just compacted its log at `index`: its
snapshot holds the state (in the plain format of consensus/state.py) and its
journal the last two entries the snapshot covers, which is what PySyncObj
checks the journal against when it loads a snapshot. Both entries are Raft
no-ops of `term`, and the saved term is `term` too, so every replica of the
restored group starts with the same log and elections go on from there.
"""
from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

from pysyncobj.node import TCPNode

from bazar.consensus.journal import DurableJournal
from bazar.consensus.settings import data_files
from bazar.consensus.snapshot import write_snapshot
from bazar.consensus.state import SNAPSHOT_FORMAT
from bazar.consensus.storage import StoragePath, fsync_directory

NO_OP = struct.pack("B", 1)  # pysyncobj.syncobj._COMMAND_TYPE.NO_OP: applies nothing
PYSYNCOBJ_STATE = {"_SyncObj__enabledCodeVersion": 0}  # what PySyncObj keeps of its own in a snapshot


def write_data_dir(data_dir: Path, state: dict, index: int, term: int, members: list[str],
                   fsync: bool = True) -> None:
    """Create `data_dir` (absent or empty) so that a replica started on it holds `state` at `index`.

    `members`: the group's Raft addresses (PySyncObj records them in its snapshots).
    The files are written in a sibling folder that is renamed into place when
    complete: an interrupted restore leaves no half-filled data directory."""
    if index < 2 or term < 1:
        raise ValueError("a restored log needs index >= 2 and term >= 1")
    staging = data_dir.with_name(data_dir.name + ".restoring")
    shutil.rmtree(staging, ignore_errors=True)  # left by an interrupted restore
    staging.mkdir(parents=True, mode=0o700)
    _write_files(staging, state, index, term, members, fsync)
    if data_dir.exists():
        data_dir.rmdir()  # only an empty one; anything in it stops the restore here
    os.rename(staging, data_dir)
    if fsync:
        fsync_directory(data_dir.parent)


def _write_files(data_dir: Path, state: dict, index: int, term: int, members: list[str], fsync: bool) -> None:
    journal_path, snapshot_path = data_files(data_dir)
    previous, last = (NO_OP, index - 1, term), (NO_OP, index, term)
    journal = DurableJournal(journal_path, fsync=fsync)
    try:
        journal.add(*previous)
        journal.add(*last)
        journal.setCurrentTerm(term, None)
        journal.setRaftCommitIndex(index)
    finally:
        journal._destroy()  # syncs the entries and saves the commit index
    consumers = [PYSYNCOBJ_STATE, {"format": SNAPSHOT_FORMAT, "index": index, "state": state}]
    members = {TCPNode(address) for address in members}
    write_snapshot(StoragePath(snapshot_path, fsync=fsync), (consumers, last, previous, members))
