"""Test-only crash points, loaded (through PYTHONPATH) into the processes of
tests/integration/test_crash_points.py; inert unless $BAZAR_CRASH_POINT is set.

They hold the real library at the two points where a crash used to lose
acknowledged writes, so that the test can SIGKILL the replica right there:

- `snapshot-rename`: the forked snapshot writer, about to rename its finished
  snapshot into place (any implementation renames it with os.rename/os.replace);
- `journal-rewrite`: the replica truncating its journal after a snapshot, half
  way through. PySyncObj's FileJournal rewrites itself in place (clear, then add
  each kept entry), so it is held after half the entries; Bazar's journal writes
  a new file and renames it, so it is held at that rename. The snapshot writer is
  held first as well, for a few seconds, so that the journal has many entries
  after the snapshot by then.

Environment: BAZAR_CRASH_POINT (one of the above), BAZAR_CRASH_NODE (the replica
id to act in), BAZAR_CRASH_DIR (the test creates `armed` there when it is
ready; the hook creates `snapshot-held` and `at-crash-point` when it gets
there, once each), BAZAR_CRASH_HOLD (the longest the snapshot writer is held).
"""
import os
import sys
import time

_POINT = os.environ.get("BAZAR_CRASH_POINT")

if _POINT and os.environ.get("BAZAR_CRASH_NODE") in sys.argv:
    _DIR = os.environ["BAZAR_CRASH_DIR"]
    _HOLD = float(os.environ.get("BAZAR_CRASH_HOLD", "5"))
    _MAIN = os.getpid()

    def _armed() -> bool:
        return os.path.exists(os.path.join(_DIR, "armed"))

    def _first(mark: str) -> bool:
        """Create `mark` and return True, unless it already exists."""
        try:
            os.close(os.open(os.path.join(_DIR, mark), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return True
        except FileExistsError:
            return False

    def _at_rename(destination) -> None:
        name = os.path.basename(os.fspath(destination))
        if not _armed():
            return
        if name == "snapshot.bin" and os.getpid() != _MAIN and _first("snapshot-held"):
            # The snapshot writer, finished but not yet renamed. If its replica is killed
            # meanwhile and it lives on, it renames at the worst moment: once the restarted
            # replica holds its journal open, i.e. after whatever it checks on start.
            _hold_until_restarted(os.path.join(os.path.dirname(os.path.abspath(destination)), "journal.bin"))
        elif (name == "journal.bin" and _POINT == "journal-rewrite" and os.getpid() == _MAIN
              and os.path.exists(os.path.join(_DIR, "snapshot-held")) and _first("at-crash-point")):
            time.sleep(3600)             # the replica, mid-compaction: the test kills it here

    def _hold_until_restarted(journal: str) -> None:
        parent, deadline = os.getppid(), time.monotonic() + _HOLD
        while time.monotonic() < deadline:
            if os.getppid() != parent and any(_holds(pid, journal) for pid in _replicas()):
                return
            time.sleep(0.001)

    def _replicas() -> list[str]:
        """Other processes running a replica of this name (on this machine, any cluster's)."""
        found = []
        for pid in os.listdir("/proc"):
            if pid.isdigit() and int(pid) != os.getpid():
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as file:
                        if os.environ["BAZAR_CRASH_NODE"].encode() in file.read().split(b"\0"):
                            found.append(pid)
                except OSError:
                    continue
        return found

    def _holds(pid: str, path: str) -> bool:
        try:
            return any(os.readlink(f"/proc/{pid}/fd/{fd}") == path for fd in os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            return False

    def _held(rename):
        def held(source, destination, *args, **kwargs):
            _at_rename(destination)
            return rename(source, destination, *args, **kwargs)
        return held

    os.rename = _held(os.rename)
    os.replace = _held(os.replace)

    if _POINT == "journal-rewrite":
        from pysyncobj.journal import FileJournal

        _delete_entries_to = FileJournal.deleteEntriesTo

        def _delete_entries_to_half_way(self, entryTo):
            if not (_armed() and os.path.exists(os.path.join(_DIR, "snapshot-held"))):
                return _delete_entries_to(self, entryTo)
            kept = self[entryTo:]
            self.clear()
            for entry in kept[:len(kept) // 2]:
                self.add(*entry)
            if _first("at-crash-point"):
                time.sleep(3600)
            for entry in kept[len(kept) // 2:]:
                self.add(*entry)

        FileJournal.deleteEntriesTo = _delete_entries_to_half_way
