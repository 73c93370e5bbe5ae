"""Feed a Raft log into a plain state machine, and tell listeners what changed."""
from __future__ import annotations

import threading
from typing import Any, Protocol

from pysyncobj import SyncObjConsumer, replicated


class StateMachine(Protocol):
    """What a replicated service implements: deterministic and free of I/O."""

    def apply(self, command: dict) -> Any: ...
    def snapshot(self) -> dict: ...
    def restore(self, snapshot: dict) -> None: ...


class ApplyListener(Protocol):
    """Told, on PySyncObj's tick thread, about every applied entry.

    Listeners must return quickly and must never wait for another commit
    (a blocking write from the tick thread deadlocks it).
    """

    def on_applied(self, index: int, command: dict, result: Any) -> None: ...
    def on_reset(self, index: int) -> None: ...


class ReplicatedState(SyncObjConsumer):
    """A state machine whose only writer is the committed log.

    Readers on other threads take `lock` (or call `read`) so that they never see
    a command half applied.
    """

    def __init__(self, machine: StateMachine) -> None:
        super().__init__()
        self.machine = machine
        self.lock = threading.RLock()
        self.applied = threading.Condition(self.lock)
        self.applied_index = 0
        self._listeners: list[ApplyListener] = []

    def add_listener(self, listener: ApplyListener) -> None:
        self._listeners.append(listener)

    def read(self, query, *args):
        """Run `query(machine, *args)` against a consistent state; return (result, index)."""
        with self.lock:
            return query(self.machine, *args), self.applied_index

    def wait_for(self, index: int, timeout: float) -> bool:
        """Block until entry `index` has been applied here; False on timeout."""
        with self.applied:
            return self.applied.wait_for(lambda: self.applied_index >= index, timeout)

    @replicated
    def apply(self, command: dict) -> Any:
        """The one replicated method: every command goes through here, in log order."""
        with self.lock:
            result = self.machine.apply(command)
            # PySyncObj bumps raftLastApplied right after this returns.
            self.applied_index = self._syncObj.raftLastApplied + 1
            index = self.applied_index
            self.applied.notify_all()
        for listener in self._listeners:
            listener.on_applied(index, command, result)
        return result

    # PySyncObj calls these for log compaction and when it installs a snapshot
    # (on restart from the dump file, or when a lagging member is sent one).
    def _serialize(self) -> "PlainSnapshot":
        # Not a copy: PySyncObj pickles this in a forked child (useFork), whose memory is a
        # frozen copy, so the state is turned into plain data there, off the tick thread.
        return PlainSnapshot(self.machine, self.applied_index)

    def _deserialize(self, data: dict) -> None:
        snapshot, index = read_snapshot(data)
        with self.lock:
            self.machine.restore(snapshot)
            self.applied_index = index
            self.applied.notify_all()
        for listener in self._listeners:
            listener.on_reset(index)


# -- the snapshot format -------------------------------------------------------------

SNAPSHOT_FORMAT = 1


class SnapshotFormatError(ValueError):
    """A snapshot this version cannot read (written by a newer Bazar); not retryable."""


class PlainSnapshot:
    """A state machine's snapshot that pickles as plain, versioned data.

    `pickle` stores it as a call to the builtin `dict` with
    {"format", "index", "state"}: no class of Bazar's is named in the file, so
    renaming or moving a module never makes a snapshot unreadable. The state is
    taken (`machine.snapshot()`) only when it is pickled, which is in PySyncObj's
    forked child when the snapshot goes to a file.
    """

    def __init__(self, machine: StateMachine, index: int) -> None:
        self.machine = machine
        self.index = index

    def __reduce__(self):
        return (dict, ({"format": SNAPSHOT_FORMAT, "index": self.index,
                        "state": self.machine.snapshot()},))


def read_snapshot(data: dict) -> tuple[dict, int]:
    """(state, index) from any snapshot Bazar has written.

    Format 1 is plain data. Snapshots from before formats were versioned hold the
    pickled machine itself ({"machine", "index"}); they are still read, as long as
    the class they name can be imported.
    """
    if isinstance(data, PlainSnapshot):  # not pickled at all (an in-process hand-over)
        data = data.__reduce__()[1][0]
    if "format" in data:
        if data["format"] > SNAPSHOT_FORMAT:
            raise SnapshotFormatError(
                f"snapshot format {data['format']} is newer than this Bazar reads ({SNAPSHOT_FORMAT}); "
                f"upgrade Bazar before loading it")
        return data["state"], data["index"]
    machine = data["machine"]
    return (machine.snapshot() if hasattr(machine, "snapshot") else machine), data["index"]
