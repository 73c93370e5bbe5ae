"""Bazar's Raft journal: append-only, checksummed, and on disk before anything depends on it.

PySyncObj 0.3.17's FileJournal writes entries into a memory-mapped file and
never fsyncs, writes the Raft state (term, vote, commit index) without fsync,
rewrites the kept entries in place when it compacts (a crash part-way loses
them), and stores no checksums. `DurableJournal` keeps PySyncObj's Journal API
and replaces it (through `createJournal`, which `pysyncobj.syncobj` imports by
name), with these rules:

- `journal.bin`: a header (format, index of the first entry, CRC) and then
  records of `length, CRC32, index, term, command`. Appends go to the end of the
  file and nowhere else; `sync()` writes what was appended and fsyncs it.
- When is it synced? Before this replica tells anyone it holds entries: a
  follower syncs before its append-entries acknowledgement (`next_node_idx`,
  see `sync_before_acknowledging`), and every replica syncs before a commit
  index takes effect (`setRaftCommitIndex`), which is where a leader counts
  itself towards a majority: no client is answered, and no follower told about
  a commit, before the leader's own copy is on disk. A leader syncs its new
  entries right after sending them (`_sync_after_sending`), so its fsync runs
  while the followers do theirs instead of after, and the commit finds nothing
  left to sync. One fsync covers every entry of one append-entries message or
  one send.
- `journal.bin.state`: term, vote, commit index and the index to catch up to
  after a repair (see below), checksummed; replaced
  atomically and durably (`storage.replace_atomically`) before a new term or
  vote takes effect, i.e. before a vote is requested or granted; the commit
  index alone is saved at most once a second (it is only a hint for restarts).
- Compaction (`deleteEntriesTo`), `clear` and `replace_entries` (a log rebased
  on a snapshot: every entry replaced at once) write a new file and rename it
  into place; they never rewrite the live file.
- On open: PySyncObj's old format is migrated; temporary files of interrupted
  writes are removed; a compaction interrupted between the snapshot and the
  truncation is finished (`journal_repair`). A damaged record (see `_load`) is
  one of three things, and no sound, possibly acknowledged entry after it is
  ever silently forgotten:
  - the last thing in the file (nothing sound after it): a torn tail, cut with
    a warning;
  - followed by sound records, past the saved commit index: the disk lost
    entries this replica may have acknowledged. They are cut, the highest sound
    index found after the damage is saved as the index to catch up to
    (`catch_up_to`; the commit index stays what it was: those entries may never
    have been committed), and an ERROR is logged; the replica then neither votes
    nor stands for election until a leader has sent it entries up to there
    (`consensus.raft_fixes`, rule 3);
  - at or below the saved commit index: corruption of durable entries, the
    replica refuses to start (`JournalCorrupt`).
  All of that happens under an exclusive lock on the data directory, which a
  replica's forked snapshot writer inherits, so a new process never loads files
  that a straggler of the old one may still rename.

With `fsync` off (the `raft.fsync: false` opt-out) the same files are written
in the same order, but nothing waits for the disk: a process crash loses
nothing, a power cut can lose acknowledged writes; any damaged record is cut
as a torn tail.
"""
from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import struct
import time
import zlib
from array import array
from pathlib import Path
from typing import Callable, NamedTuple

import pysyncobj.syncobj
from pysyncobj.journal import FileJournal, Journal, MemoryJournal
from pysyncobj.syncobj import SyncObj

from bazar.consensus import journal_repair, patching, storage

log = logging.getLogger("bazar.journal")

MAGIC = b"BAZAR-RAFT-JOURNAL-1\n"
HEADER = struct.Struct("<QI")       # index of the first entry (0: not known), CRC32 of magic + index
RECORD = struct.Struct("<II")       # payload length, CRC32 of the payload
ENTRY = struct.Struct("<QQ")        # payload = index, term, then the command bytes
HEADER_SIZE = len(MAGIC) + HEADER.size
MIN_RECORD = RECORD.size + ENTRY.size   # a record with an empty command
MAX_RECORD = 1 << 30                # a longer length field can only be damage
STATE_MAGIC = b"BAZAR-RAFT-STATE-1\n"
OLD_FORMAT_MAGIC = b"PYSYNCOBJ"     # PySyncObj's FileJournal header
LOCK_WAIT_SECONDS = 15.0            # a straggling snapshot writer dies with its parent; this is ample
STATE_SUFFIX = ".state"
LOCK_SUFFIX = ".lock"


REPAIR_ENV = "BAZAR_REPAIR_JOURNAL"  # "1": repair durable damage from peers instead of refusing (see _load)


class JournalCorrupt(RuntimeError):
    """The journal or state file holds damaged data that was already durable; not retryable.

    The replica refuses to start rather than forget entries it may have
    acknowledged. Recovery from a damaged journal: start it once with
    `BAZAR_REPAIR_JOURNAL=1` (see `DurableJournal._load`): its saved term and vote
    keep it from voting twice in a term, and its raised commit index keeps it from
    voting or standing for election until a leader has sent it everything it had
    (consensus/raft_fixes.py). Moving the whole data directory away forgets both
    (the simulator found two leaders in one term that way). A damaged state file
    cannot be recovered in place: replace the member (`bazar member remove`, empty
    its data directory, `bazar member add`)."""


class JournalLocked(RuntimeError):
    """Another process holds this data directory (a second replica, or a snapshot writer)."""


class DurableJournal(Journal):
    """PySyncObj's Journal API over Bazar's append-only, checksummed file (see the module doc)."""

    def __init__(self, path: str | os.PathLike, fsync: bool = True, snapshot: str | os.PathLike | None = None):
        self.path = Path(path)
        self.fsync = fsync
        self.snapshot = None if snapshot is None else Path(snapshot)
        self._state_path = self.path.with_name(self.path.name + STATE_SUFFIX)
        self._lock_fd = _lock(self.path.with_name(self.path.name + LOCK_SUFFIX))
        try:
            self._open()
        except BaseException:
            os.close(self._lock_fd)
            raise

    def _open(self) -> None:
        for leftover in (storage.remove_temporary_files(self.path) + storage.remove_temporary_files(self._state_path)
                         + (storage.remove_temporary_files(self.snapshot) if self.snapshot else [])):
            log.warning("removed %s, left by a write that a crash interrupted", leftover)
        if _is_old_format(self.path):
            _migrate(self.path, self._state_path, self.fsync)
        self.path.with_name(self.path.name + ".meta").unlink(missing_ok=True)  # the old format's, once migrated
        self._state = _read_state(self._state_path)
        if not self.path.exists():
            _write_journal(self.path, [], self.fsync)
        entries, starts, size = self._load()
        if self.snapshot is not None and self.snapshot.exists():
            start = journal_repair.compaction_start(entries, journal_repair.snapshot_tail(self.snapshot))
            if start:
                log.warning("finished a log compaction interrupted by a crash: kept %d journal entries "
                            "after snapshot index %d", len(entries) - start - 2, entries[start + 1][1])
                _write_journal(self.path, entries[start:], self.fsync)
                entries, starts, size = _layout(entries[start:])
        self._entries: list = entries
        self._starts = starts               # byte offset of each entry's record
        self._written = size                # bytes handed to the kernel
        self._pending = bytearray()         # records appended since, not yet written
        self._dirty = False                 # written or truncated since the last fsync
        self._state_dirty = False
        # A saved commit index past the journal's end (a tail lost with fsync off) is returned
        # as it is: it tells the Raft layer that this replica lost committed entries
        # (consensus/raft_fixes.py keeps such a replica from voting until it has them again).
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        # Told how long each fsync of appended entries took (the replica's metrics listen).
        self.on_fsync: Callable[[float], None] | None = None

    def _load(self) -> tuple[list, array, int]:
        """Entries, record offsets and valid size of the journal file, once any damage in it
        has been dealt with. A damaged record (incomplete, failing its CRC, or not carrying
        the next index) is one of three things:

        - Corruption of durable entries: fsync is on and the damaged record's index is at
          or below the saved commit index (saved only after the entries up to it were
          synced). JournalCorrupt: nothing is cut, the operator decides. Started again with
          `BAZAR_REPAIR_JOURNAL=1`, the replica repairs from its peers instead, as below:
          the sound entries before the damage are kept, the rest cut, and the index to
          catch up to set to the saved commit index or the highest sound index after the
          damage, whichever is higher, so it votes again only once a leader has sent it
          everything it had. (Moving the whole
          data directory away instead forgets its term and vote too: the simulator found
          two leaders in one term that way.)
        - Corruption of entries that may have been acknowledged: fsync is on, the damaged
          record's index is past the saved commit index (which lags the acknowledged one:
          it is saved at most once a second), and sound records follow it. The entries
          before the damage are kept, the rest cut, and the highest index among those
          sound records saved as the index to catch up to (`catch_up_to`; saved before
          the cut, with a mark so that a crash in between finishes the repair on the next
          start instead of calling it corruption). An ERROR names the file, the byte and
          the entries dropped. `consensus.raft_fixes` reads that index, and the replica
          neither votes nor stands for election until a leader has sent it entries up to
          there: it can never help elect a leader that lacks them. The commit index is
          not raised: the entries cut may never have been committed (a deposed leader's,
          say), and a commit index covers committed entries only; raising it made the
          replica apply the sound entries before the damage up to its log's end as if
          committed, and refuse the new leader's entries there (simulator schedule 146).
          After a power cut, pages may reach the disk out of order, so the sound records
          after a hole may also be entries that were never synced nor acknowledged; the
          index to catch up to then only delays this replica's vote until the group's log
          is that long again, which is safe.
        - A torn tail: the damaged record is the last sound-looking thing in the file
          (nothing sound after it), the write a crash interrupted; or fsync is off
          (nothing was ever promised to be on disk). The file is cut there, with a warning.
        """
        scan = _scan(self.path)
        repairing = self._state.pop("repairing_from", None)  # a repair a crash interrupted
        if scan.valid == len(scan.data):
            return scan.entries, scan.starts, scan.valid
        committed, damaged, size = self._state.get("commit_index"), scan.damaged, len(scan.data)
        where = (f"{self.path}: damaged record at byte {scan.valid} of {size} (entry "
                 f"{'unknown' if damaged is None else damaged}; entries up to {committed} were "
                 f"committed and synced)")
        sound_after = None
        durable = (self.fsync and damaged is not None and committed is not None and damaged <= committed
                   and damaged != repairing)
        if durable and os.environ.get(REPAIR_ENV) != "1":
            raise JournalCorrupt(where + ": the disk corrupted durable data. Refusing to start. To repair "
                                 f"from its peers, start it once with {REPAIR_ENV}=1: it keeps the sound "
                                 "entries before the damage and neither votes nor stands for election until "
                                 "a leader has sent it the rest. Do not move its data directory away: that "
                                 "forgets its term and vote too")
        if self.fsync:
            sound_after = _highest_sound_index(scan)
        if sound_after is None and durable:
            sound_after = committed   # nothing sound after the damage: catch up to the saved index
        if sound_after is None:
            log.warning("%s: a write torn by a crash; cutting %d bytes (entries from %s on), the leader sends "
                        "them again", where, size - scan.valid, "unknown" if damaged is None else damaged)
            _cut(self.path, scan.valid, self.fsync)
            return scan.entries, scan.starts, scan.valid
        raised = max(committed or 0, sound_after, self._state.get("catch_up_to") or 0)
        log.error("%s, and sound records up to entry %d follow it: the disk lost entries this replica may "
                  "have acknowledged. Dropping entries %s to %d (cutting %d bytes); this replica neither "
                  "votes nor stands for election until a leader has sent it entries up to %d", where,
                  sound_after, "unknown" if damaged is None else damaged, sound_after,
                  size - scan.valid, raised)
        self._state.update(catch_up_to=raised, repairing_from=damaged)
        _write_state(self._state_path, self._state, self.fsync)   # first: see the docstring
        _cut(self.path, scan.valid, self.fsync)
        del self._state["repairing_from"]
        _write_state(self._state_path, self._state, self.fsync)
        return scan.entries, scan.starts, scan.valid

    @property
    def size_bytes(self) -> int:
        """The journal file's size: what was written to it (appended entries not synced yet aside)."""
        return self._written

    # -- entries ------------------------------------------------------------

    def add(self, command, idx, term):
        command = bytes(command)
        payload = ENTRY.pack(idx, term) + command
        self._starts.append(self._written + len(self._pending))
        self._pending += RECORD.pack(len(payload), zlib.crc32(payload)) + payload
        self._entries.append((command, idx, term))

    def __getitem__(self, item):
        return self._entries[item]

    def __len__(self):
        return len(self._entries)

    def deleteEntriesFrom(self, entryFrom):
        """Drop entries [entryFrom:] (a follower's conflicting tail): cut the file there."""
        if entryFrom >= len(self._entries):
            return
        cut = self._starts[entryFrom]
        if cut >= self._written:
            del self._pending[cut - self._written:]
        else:
            self._pending.clear()
            try:
                os.ftruncate(self._fd, cut)
            except OSError as error:
                storage.fatal_io_error(f"truncating {self.path}", error)
            self._written = cut
            self._dirty = True
        del self._entries[entryFrom:]
        del self._starts[entryFrom:]

    def deleteEntriesTo(self, entryTo):
        """Drop entries [:entryTo] (log compaction): a new file with the rest replaces this one."""
        self._rewrite(self._entries[entryTo:])

    def clear(self):
        self._rewrite([])

    def replace_entries(self, entries) -> None:
        """Make `entries` the whole log in one step (a new file renamed into place): a crash
        leaves the old entries or the new ones, never the empty log between clear() and add()."""
        self._rewrite(list(entries))

    def _rewrite(self, entries: list) -> None:
        try:
            _write_journal(self.path, entries, self.fsync)   # the old file stays whole until the rename
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        except OSError as error:
            storage.fatal_io_error(f"rewriting {self.path}", error)
        os.close(self._fd)
        self._fd = fd
        self._entries, self._starts, self._written = _layout(entries)
        self._pending.clear()
        self._dirty = False

    # -- durability ---------------------------------------------------------

    def sync(self) -> None:
        """Write what was appended and, with fsync on, wait until it is on disk.

        A failure stops the process (`storage.fatal_io_error`): the caller is
        about to acknowledge these entries."""
        if not self._pending and not self._dirty:
            return
        try:
            if self._pending:
                _write_all(self._fd, self._pending)
                self._written += len(self._pending)
                self._pending.clear()
            if self.fsync:
                started = time.perf_counter()
                os.fsync(self._fd)
                if self.on_fsync is not None:
                    self.on_fsync(time.perf_counter() - started)
                storage.record_durable(self.path, self._written)
        except OSError as error:
            storage.fatal_io_error(f"writing {self.path}", error)
        self._dirty = False

    flush = sync

    def _destroy(self):
        try:
            self.sync()
            if self._state_dirty:
                self._save_state()
        finally:
            os.close(self._fd)
            os.close(self._lock_fd)

    # -- Raft state ---------------------------------------------------------

    def setRaftCommitIndex(self, raftCommitIndex):
        # The leader's own copy of a newly committed entry must be durable before
        # the commit takes effect (it counted itself towards the majority).
        self.sync()
        if self._state.get("commit_index") != raftCommitIndex:
            self._state["commit_index"] = raftCommitIndex
            self._state_dirty = True

    def getRaftCommitIndex(self):
        return self._state.get("commit_index", 1)

    def catch_up_to(self) -> int | None:
        """The index this replica must hold again before it votes or campaigns (entries it
        may have acknowledged were lost from its disk), or None. Not a commit index: the
        entries up to it need not be committed."""
        return self._state.get("catch_up_to")

    def set_catch_up_to(self, index: int | None) -> None:
        """Record the index to catch up to (None: caught up); saved with the next state write."""
        if self._state.get("catch_up_to") != index:
            if index is None:
                self._state.pop("catch_up_to", None)
            else:
                self._state["catch_up_to"] = index
            self._state_dirty = True

    def setCurrentTerm(self, term, votedForNodeId):
        self._state["term"] = term
        self._state["voted_for"] = votedForNodeId
        self._save_state()  # before the vote request or grant that follows this call goes out

    def getCurrentTerm(self):
        return self._state.get("term", 0)

    def getVotedForNodeId(self):
        return self._state.get("voted_for")

    def onOneSecondTimer(self):
        if self._state_dirty:
            self._save_state()

    def _save_state(self) -> None:
        # Entries first: a saved commit index must never point past what the disk holds.
        self.sync()
        try:
            _write_state(self._state_path, self._state, self.fsync)
        except OSError as error:
            storage.fatal_io_error(f"writing {self._state_path}", error)
        self._state_dirty = False


# -- file format --------------------------------------------------------------

def _record(entry) -> bytes:
    command, idx, term = entry
    payload = ENTRY.pack(idx, term) + bytes(command)
    return RECORD.pack(len(payload), zlib.crc32(payload)) + payload


def _header(first_index: int) -> bytes:
    return MAGIC + HEADER.pack(first_index, zlib.crc32(MAGIC + struct.pack("<Q", first_index)))


def _layout(entries: list) -> tuple[list, array, int]:
    """(entries, record offsets, file size) of a journal file holding exactly `entries`."""
    starts, offset = array("Q"), HEADER_SIZE
    for entry in entries:
        starts.append(offset)
        offset += RECORD.size + ENTRY.size + len(entry[0])
    return [(bytes(c), i, t) for c, i, t in entries], starts, offset


def _write_journal(path: Path, entries: list, fsync: bool) -> None:
    def write(file):
        file.write(_header(entries[0][1] if entries else 0))
        for entry in entries:
            file.write(_record(entry))
    storage.replace_atomically(path, write, fsync)


def _write_all(fd: int, data: bytearray) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class _Scan(NamedTuple):
    """What a journal file holds: its sound part, and where that part ends."""

    entries: list
    starts: array           # byte offset of each entry's record
    valid: int              # bytes of the sound part (header and records before the first damaged one)
    data: bytes             # the whole file
    damaged: int | None     # index the first damaged record should carry (None: not known)


def _scan(path: Path) -> _Scan:
    """Read the journal at `path` up to its first damaged record (an incomplete record, a
    failed CRC, or an index other than the next one). JournalCorrupt if the header is damaged."""
    data = path.read_bytes()
    if not data.startswith(MAGIC) or len(data) < HEADER_SIZE:
        raise JournalCorrupt(f"{path} is not a Bazar journal (bad header); refusing to start")
    first_index, crc = HEADER.unpack_from(data, len(MAGIC))
    if crc != zlib.crc32(MAGIC + struct.pack("<Q", first_index)):
        raise JournalCorrupt(f"{path}: damaged header; refusing to start")
    entries, starts, offset = [], array("Q"), HEADER_SIZE
    expected = first_index or None   # 0: a journal written empty, its first index not known
    view = memoryview(data)
    while offset < len(data):
        entry = _parse(view, offset, expected)
        if entry is None:
            break
        command, idx, term, end = entry
        entries.append((command, idx, term))
        starts.append(offset)
        expected, offset = idx + 1, end
    return _Scan(entries, starts, offset, data, expected)


def _highest_sound_index(scan: _Scan) -> int | None:
    """The highest index among the sound records after the first damaged one; None if none.

    The damaged record's length field may be damaged too, so the next record
    is searched for at every byte after the damage. A sound record must have
    a plausible length, an index above the last one known, a term no older
    than the last one seen (a Raft log's terms never decrease), and, when the
    damaged record's index is known, no index higher than the bytes in between
    could hold (each record takes at least MIN_RECORD bytes). Only a candidate
    passing those checks has its CRC computed, which keeps the scan cheap. A
    sound record found moves the search to its end, where its successor, if
    sound too, is found at once; damage further on starts the search again.
    """
    view = memoryview(scan.data)
    last_term = scan.entries[-1][2] if scan.entries else 0
    highest = scan.damaged or 0
    anchor = None if scan.damaged is None else (scan.valid, scan.damaged)  # where that index began
    found, position = None, scan.valid + 1
    while position + MIN_RECORD <= len(view):
        most = None if anchor is None else anchor[1] + (position - anchor[0]) // MIN_RECORD
        record = _candidate(view, position, highest + 1, most, last_term)
        if record is None:
            position += 1
            continue
        idx, last_term, position = record
        found = highest = idx
        anchor = (position, idx + 1)
    return found


def _candidate(view: memoryview, offset: int, lowest: int, highest: int | None, min_term: int):
    """(idx, term, end offset) of a sound record at `offset` with lowest <= idx <= highest and a
    term of at least `min_term`; else None. The CRC is computed last, for plausible records only."""
    length, crc = RECORD.unpack_from(view, offset)
    body = offset + RECORD.size
    if length < ENTRY.size or body + length > len(view):
        return None
    idx, term = ENTRY.unpack_from(view, body)
    if idx < lowest or (highest is not None and idx > highest) or term < min_term:
        return None
    if zlib.crc32(view[body:body + length]) != crc:
        return None
    return idx, term, body + length


def _cut(path: Path, size: int, fsync: bool) -> None:
    """Truncate the journal file to `size` bytes, durably with `fsync`."""
    with open(path, "r+b") as file:
        file.truncate(size)
        if fsync:
            os.fsync(file.fileno())
            storage.record_durable(path)


def _parse(view: memoryview, offset: int, expected: int | None):
    """(command, idx, term, end offset) of a sound record at `offset` carrying `expected`; else None."""
    if offset + RECORD.size > len(view):
        return None
    length, crc = RECORD.unpack_from(view, offset)
    body = offset + RECORD.size
    if length < ENTRY.size or length > MAX_RECORD or body + length > len(view):
        return None
    payload = view[body:body + length]
    if zlib.crc32(payload) != crc:
        return None
    idx, term = ENTRY.unpack_from(payload)
    if expected is not None and idx != expected:
        return None
    return bytes(payload[ENTRY.size:]), idx, term, body + length


def _read_state(path: Path) -> dict:
    """The saved term, vote and commit index ({} for a new replica)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    body = data[len(STATE_MAGIC) + 4:]
    if (not data.startswith(STATE_MAGIC) or len(data) < len(STATE_MAGIC) + 4
            or struct.unpack_from("<I", data, len(STATE_MAGIC))[0] != zlib.crc32(body)):
        # Written atomically and durably, so never torn: damage here is the disk's.
        raise JournalCorrupt(f"{path}: damaged Raft state (term and vote); refusing to start. Its vote is "
                             "lost, so it must not rejoin as it is: replace the member (bazar member remove, "
                             "empty its data directory, bazar member add)")
    return json.loads(body)


def _write_state(path: Path, state: dict, fsync: bool) -> None:
    body = json.dumps(state, sort_keys=True).encode()
    storage.replace_atomically(path, lambda f: f.write(STATE_MAGIC + struct.pack("<I", zlib.crc32(body)) + body),
                               fsync)


# -- migration, locking ---------------------------------------------------------

def _is_old_format(path: Path) -> bool:
    try:
        with open(path, "rb") as file:
            return file.read(len(OLD_FORMAT_MAGIC)) == OLD_FORMAT_MAGIC
    except FileNotFoundError:
        return False


def _migrate(path: Path, state_path: Path, fsync: bool) -> None:
    """Convert PySyncObj's FileJournal files (journal.bin + journal.bin.meta) to Bazar's.

    The state file is written first and the journal's rename is the commit
    point: a crash before it leaves the old journal, and the next start
    migrates again; after it, the old meta file is just deleted."""
    old = FileJournal(str(path))
    try:
        entries = [old[i] for i in range(len(old))]
        state = {"term": old.getCurrentTerm(), "voted_for": old.getVotedForNodeId(),
                 "commit_index": old.getRaftCommitIndex()}
    finally:
        old._destroy()
    _write_state(state_path, state, fsync)
    _write_journal(path, entries, fsync)
    log.warning("migrated %s from PySyncObj's journal format: %d entries, term %d", path, len(entries),
                state["term"])


def _lock(path: Path) -> int:
    """Hold an exclusive lock on the data directory; wait for a straggling holder to end.

    The lock lives as long as any process holds the descriptor: a forked
    snapshot writer keeps it until it exits, so its files are never raced."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except OSError as error:
            if error.errno not in (errno.EAGAIN, errno.EACCES) or time.monotonic() > deadline:
                os.close(fd)
                raise JournalLocked(f"{path}: another process still uses this data directory "
                                    f"(waited {LOCK_WAIT_SECONDS:.0f} s); is the replica running twice?") from error
            time.sleep(0.05)


# -- installing it in PySyncObj -------------------------------------------------

def create_journal(journalFile=None):
    """PySyncObj's createJournal, with Bazar's journal for files (memory for non-voting followers)."""
    if journalFile is None:
        return MemoryJournal()
    return DurableJournal(journalFile, fsync=storage.fsync_wanted(journalFile),
                          snapshot=getattr(journalFile, "snapshot", None))


def sync_before_acknowledging(obj: SyncObj) -> None:
    """Put what a follower appended on disk: call it before acknowledging anything (every
    append-entries answer, PySyncObj's and the one `consensus.raft_fixes` sends, does)."""
    sync = getattr(obj._SyncObj__raftLog, "sync", None)
    if sync is not None:
        sync()


def _sync_before_acknowledging(self, node, reset=False, nextNodeIdx=None, success=False):
    """A follower's answer to append-entries: entries on disk first, then the acknowledgement."""
    sync_before_acknowledging(self)
    patching.original(SyncObj, "_SyncObj__sendNextNodeIdx")(
        self, node, reset=reset, nextNodeIdx=nextNodeIdx, success=success)


def _sync_after_sending(self):
    """A leader's append-entries round: send first, then sync, so both fsyncs overlap."""
    patching.original(SyncObj, "_SyncObj__sendAppendEntries")(self)
    sync = getattr(self._SyncObj__raftLog, "sync", None)
    if sync is not None:
        sync()


patching.replace(pysyncobj.syncobj, "createJournal", create_journal,
                 "9ea9e463ae2a0b8bc28887a9cc9ec1f58b2b789c33a2f88973182d69a47d1169",
                 "FileJournal never fsyncs, rewrites itself in place when compacting and has no checksums")
patching.replace(SyncObj, "_SyncObj__sendNextNodeIdx", _sync_before_acknowledging,
                 "9bc1f8789eedbd78afd699031a9170ba1db3d14ab0016f64f4691adb46c4f9d8",
                 "a follower acknowledges appended entries before they are on disk")
patching.replace(SyncObj, "_SyncObj__sendAppendEntries", _sync_after_sending,
                 "c516421ef97baf533636cd73ae23ca0fc5ce91af90f8b850ffddebad2a613afe",
                 "a leader's own fsync would wait for its commit, after the followers' fsyncs: twice the disk time per commit")
