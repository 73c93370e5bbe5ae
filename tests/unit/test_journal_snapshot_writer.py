"""The forked snapshot writer never outlives its replica nor holds its ports; acks wait for the disk."""
from __future__ import annotations

import os
import signal
import socket
import time

from pysyncobj.serializer import Serializer
from pysyncobj.syncobj import SyncObj

from bazar import consensus  # noqa: F401  installs the corrections
from bazar.consensus import journal as journal_module
from bazar.consensus import snapshot
from bazar.consensus.storage import StoragePath


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rpartition(")")[2].split()[0] != "Z"


def _wait_until_dead(pid: int, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_the_writer_gives_up_the_listening_port_it_inherited():
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    ready_read, ready_write = os.pipe()
    child = os.fork()
    if child == 0:  # a snapshot writer: releases its sockets, then works for a long time
        snapshot.release_sockets()
        os.write(ready_write, b"x")
        time.sleep(60)
        os._exit(0)
    try:
        os.read(ready_read, 1)
        listener.close()
        # The port is free although the child still has every descriptor it inherited.
        again = socket.create_server(("127.0.0.1", port))
        again.close()
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)
        os.close(ready_read)
        os.close(ready_write)


def test_the_writer_dies_with_its_replica(tmp_path):
    pid_read, pid_write = os.pipe()
    replica = os.fork()
    if replica == 0:  # the replica: starts a writer, then is SIGKILLed
        me = os.getpid()  # taken before the fork, as the real writer's parent does: the child's
        writer = os.fork()  # own getppid() is already the reaper's if the replica died first
        if writer == 0:
            snapshot.die_with_parent(me)
            time.sleep(60)
            os._exit(0)
        os.write(pid_write, str(writer).encode())
        time.sleep(60)
        os._exit(0)
    writer = int(os.read(pid_read, 32))
    try:
        os.kill(replica, signal.SIGKILL)
        os.waitpid(replica, 0)
        assert _wait_until_dead(writer), "the snapshot writer outlived its replica"
    finally:
        if _alive(writer):
            os.kill(writer, signal.SIGKILL)
        os.close(pid_read)
        os.close(pid_write)


def test_a_writer_whose_replica_is_already_gone_exits_at_once():
    child = os.fork()
    if child == 0:
        snapshot.die_with_parent(parent_pid=os.getppid() + 1_000_000)  # "not my parent any more"
        os._exit(0)
    _, status = os.waitpid(child, 0)
    assert os.WEXITSTATUS(status) == 1


def test_a_forked_snapshot_is_written_durably_under_its_own_name(tmp_path):
    path = StoragePath(tmp_path / "snapshot.bin")
    serializer = Serializer(path, 1024, True, None, None, None)
    serializer.serialize(({"state": 1}, (b"x", 5, 1), (b"y", 4, 1), set()), 4)
    deadline = time.monotonic() + 30
    while serializer.checkSerializing()[0] == 1:  # SERIALIZER_STATE.SERIALIZING
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert serializer.deserialize() == ({"state": 1}, (b"x", 5, 1), (b"y", 4, 1), set())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snapshot.bin"]  # no temporary file left


def test_a_received_snapshot_is_in_place_only_after_the_last_chunk(tmp_path):
    path = StoragePath(tmp_path / "snapshot.bin")
    serializer = Serializer(path, 1024, True, None, None, None)
    assert serializer.setTransmissionData((b"abc", True, False)) is False
    assert not (tmp_path / "snapshot.bin").exists()
    assert serializer.setTransmissionData((b"def", False, False)) is False
    assert serializer.setTransmissionData((b"", False, True)) is True
    assert (tmp_path / "snapshot.bin").read_bytes() == b"abcdef"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snapshot.bin"]
    assert serializer.setTransmissionData((b"orphan", False, True)) is False  # no transfer under way


class _HeldBack:
    """Pickling it waits for a byte on `fd`: holds a forked snapshot writer back mid-write."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __reduce__(self):
        os.read(self.fd, 1)
        return (str, ("written late",))


def _snapshot_bytes(data) -> bytes:
    """A snapshot file's content, as a leader sends it."""
    import gzip
    import io
    import pickle
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb") as compressed:
        pickle.dump(data, compressed)
    return buffer.getvalue()


def test_a_received_snapshot_is_not_overwritten_by_the_replicas_own_writer_finishing_later(tmp_path):
    """The replica's own writer (a snapshot at 40) is still pickling when the leader's snapshot
    at 90 is installed: once the writer would have finished, the file must still hold 90, and
    PySyncObj must not be told a snapshot at 40 succeeded (it would compact the log to it)."""
    from pysyncobj.config import SERIALIZER_STATE

    path = StoragePath(tmp_path / "snapshot.bin")
    serializer = Serializer(path, 1024, True, None, None, None)
    release_read, release_write = os.pipe()
    try:
        serializer.serialize(({"late": _HeldBack(release_read)}, (b"x", 40, 1), (b"y", 39, 1), set()), 39)
        writer = serializer._Serializer__pid
        assert writer > 0
        received = _snapshot_bytes(({"state": 90}, (b"a", 90, 2), (b"b", 89, 2), set()))
        assert serializer.setTransmissionData((received, True, False)) is False
        assert serializer.setTransmissionData((b"", False, True)) is True
        os.write(release_write, b"x")   # the writer, if it still runs, may finish now
        try:
            os.waitpid(writer, 0)
        except ChildProcessError:
            pass                        # reaped already, by the install
    finally:
        os.close(release_read)
        os.close(release_write)
    assert serializer.deserialize() == ({"state": 90}, (b"a", 90, 2), (b"b", 89, 2), set())
    assert serializer.checkSerializing() == (SERIALIZER_STATE.NOT_SERIALIZING, None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snapshot.bin"]   # its temporary file too


class _Recording:
    """Stands in for a follower's journal and transport, recording the order of events."""

    def __init__(self):
        self.events: list[str] = []

    def sync(self):
        self.events.append("sync")

    def send(self, node, message):
        self.events.append(f"send {message['type']}")


def test_a_follower_syncs_its_journal_before_acknowledging():
    recording = _Recording()
    follower = object.__new__(SyncObj)
    follower._SyncObj__raftLog = recording
    follower._SyncObj__transport = recording
    follower._SyncObj__sendNextNodeIdx("leader", nextNodeIdx=8, success=True)
    assert recording.events == ["sync", "send next_node_idx"]
    assert SyncObj._SyncObj__sendNextNodeIdx is journal_module._sync_before_acknowledging
