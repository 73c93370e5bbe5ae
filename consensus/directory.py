"""Who belongs to a group and where to reach them, learned from the log.

PySyncObj's dynamic membership decides who votes: a change is a MEMBERSHIP entry
in the log, in force on each member as soon as it is appended there (Raft's
single-server change), and every snapshot carries the group's Raft addresses.
Bazar's processes also need each member's id and HTTP address (clients send
requests there, replicas name their leader by it), so every change is first
recorded in the log by the `Directory`, a second consumer of the same log: every
member, the frontend's non-voting follower included, applies the same records in
the same order, and its snapshot is plain, versioned data carried in PySyncObj's
snapshot (`DIRECTORY_FORMAT`, read like the state's, consensus/state.py).

`cluster.yaml` is only the starting membership: a process started with an older
file learns later members from the log (or from a snapshot), never from its file.
"""
from __future__ import annotations

import threading

from pysyncobj import SyncObjConsumer, replicated

from bazar.consensus.state import SnapshotFormatError

ADD, REMOVE = "add", "remove"
# The layout of the directory's part of a snapshot. Parts written before it was
# versioned have no "format" and the same layout: format 1.
DIRECTORY_FORMAT = 1


class Directory(SyncObjConsumer):
    """The members of one group by id, each with its Raft and HTTP address.

    `changed_index` is the log index of the last change applied (0: none yet, the
    members are the cluster file's); replicas send it with every answer, so clients
    notice a change and fetch the new list (see web/client.py).
    """

    def __init__(self, members: dict[str, dict]) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.members = {node_id: dict(addresses) for node_id, addresses in members.items()}
        self.changed_index = 0

    @replicated
    def record(self, change: dict) -> None:
        """Apply one change, {"op": "add", "id", "raft", "http"} or {"op": "remove", "id"}.
        Idempotent: a retried change leaves the same directory."""
        with self._lock:
            if change["op"] == ADD:
                self.members[change["id"]] = {"raft": change["raft"], "http": change["http"]}
            elif change["op"] == REMOVE:
                self.members.pop(change["id"], None)
            # PySyncObj bumps raftLastApplied right after this returns.
            self.changed_index = self._syncObj.raftLastApplied + 1

    def view(self) -> dict:
        """{"members": [{"id", "raft", "http"}], "changed_index"}: plain data, for HTTP."""
        with self._lock:
            return {"members": [{"id": node_id, **addresses} for node_id, addresses in sorted(self.members.items())],
                    "changed_index": self.changed_index}

    def http_of(self, raft_address: str) -> str | None:
        """The HTTP base URL of the member with this Raft address, if it is one."""
        with self._lock:
            for addresses in self.members.values():
                if addresses["raft"] == raft_address:
                    return addresses["http"]
        return None

    def get(self, node_id: str) -> dict | None:
        with self._lock:
            found = self.members.get(node_id)
            return None if found is None else dict(found)

    # PySyncObj calls these for log compaction and to install a snapshot: plain data only.
    def _serialize(self) -> dict:
        with self._lock:
            return {"format": DIRECTORY_FORMAT, "members": {k: dict(v) for k, v in self.members.items()},
                    "changed_index": self.changed_index}

    def _deserialize(self, data: dict) -> None:
        """Install the directory's part of a snapshot of any format so far; one written by
        a newer Bazar is refused before anything changes (its layout may mean otherwise)."""
        written = data.get("format", 1)
        if written > DIRECTORY_FORMAT:
            raise SnapshotFormatError(
                f"membership directory format {written} is newer than this Bazar reads "
                f"({DIRECTORY_FORMAT}); upgrade Bazar before loading it")
        with self._lock:
            self.members = {k: dict(v) for k, v in data["members"].items()}
            self.changed_index = data["changed_index"]
