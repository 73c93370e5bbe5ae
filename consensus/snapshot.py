"""Snapshots that are durable, and a snapshot writer that never outlives its replica.

PySyncObj 0.3.17 writes a snapshot (`Serializer.serialize`) in a forked child
(Bazar sets `useFork`: pickling a large state inline stalls the tick thread
past an election timeout). Its child, though,

- survives a SIGKILL of its parent (a parent-death signal set for the replica
  is not inherited across fork),
- keeps the replica's sockets open, the Raft listening port among them, so a
  replica restarted at once cannot bind until the child is done, and
- renames its snapshot into place whenever it finishes: after the restarted
  replica has already looked at its files, which then disagree, and PySyncObj
  throws away the journal entries after the snapshot (a one-node group lost 50
  of 150 acknowledged orders that way).

It also renames the snapshot, and a snapshot received from the leader
(`setTransmissionData`), without any fsync.

Bazar's writer (`serialize`), in the child right after fork: asks the kernel
for SIGKILL when the parent dies (PR_SET_PDEATHSIG) and exits if the parent is
already gone; points every inherited socket at /dev/null (the ports are the
parent's alone); writes a uniquely named temporary file, fsyncs it, renames
it, fsyncs the directory. The child also inherits the journal's lock on the
data directory (`consensus.journal._lock`), so a restarted replica waits for
a straggler instead of racing it. A received snapshot (`setTransmissionData`)
is written the same way before PySyncObj installs it and acknowledges.

A received snapshot and the replica's own writer: the writer may still run
when the leader's snapshot arrives, and would rename its older snapshot over
the received one afterwards (the file then ended at index 40 after installing
90, and on restart the journal, rebased on 90, no longer matched and was
rebased back). So just before the received snapshot is renamed into place,
the replica's own writer is stopped (`stop_own_writer`: SIGKILL, reaped, its
temporary file removed) and forgotten, so PySyncObj never compacts the log to
the snapshot that never landed; it takes a new one later.
"""
from __future__ import annotations

import ctypes
import gzip
import logging
import os
import signal
import stat

import pysyncobj.pickle as pysyncobj_pickle
from pysyncobj.serializer import Serializer

from bazar.consensus import patching, storage

log = logging.getLogger("bazar.snapshot")

PR_SET_PDEATHSIG = 1
# Resolved now: after fork in a threaded process, the child must not load libraries.
_prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl


def die_with_parent(parent_pid: int) -> None:
    """In a forked child: get SIGKILL when the parent dies; exit now if it already has."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)


def release_sockets() -> None:
    """In a forked child: let go of every inherited socket without closing descriptors
    that Python objects still own (each is pointed at /dev/null instead)."""
    null = os.open(os.devnull, os.O_RDWR)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if fd != null and stat.S_ISSOCK(os.fstat(fd).st_mode):
                os.dup2(null, fd)
        except OSError:
            continue  # the directory listing's own descriptor, already closed
    os.close(null)


def write_snapshot(path: str, data) -> None:
    """Pickle `data` (gzip, as PySyncObj reads it) to `path`, atomically and, unless opted out, durably."""
    def write(file):
        with gzip.GzipFile(fileobj=file, mode="wb") as compressed:
            pysyncobj_pickle.dump(data, compressed)
    storage.replace_atomically(path, write, storage.fsync_wanted(path))


def serialize(self, data, id):
    """Bazar's `Serializer.serialize` for snapshot files (see the module doc); PySyncObj's own
    for in-memory snapshots (non-voting followers keep no files) and custom serializers."""
    configuration_at = getattr(self, "configuration_at", None)   # set by raft_fixes.configure
    if configuration_at is not None and isinstance(data, tuple) and len(data) == 4:
        # (state, last entry, the one before, the cluster): the cluster as of the last entry
        # (Raft §7), not of the log's end, which may count a change the snapshot lacks.
        cluster = configuration_at(data[1][1])
        if cluster is not None:
            data = (data[0], data[1], data[2], cluster)
    file_name = self._Serializer__fileName
    if self._Serializer__pid != 0 or file_name is None or self._Serializer__serializer is not None:
        return patching.original(Serializer, "serialize")(self, data, id)
    self._Serializer__currentID = id
    if not self._Serializer__useFork:
        try:
            write_snapshot(file_name, data)
            self._Serializer__pid = -1  # PySyncObj's "done" mark for in-process writes
        except Exception:
            log.exception("writing snapshot %s failed", file_name)
            self._Serializer__pid = -2
        return
    parent = os.getpid()
    pid = os.fork()
    if pid != 0:
        self._Serializer__pid = pid
        return
    try:  # the child: nothing here may return into the parent's code
        die_with_parent(parent)
        release_sockets()
        write_snapshot(file_name, data)
        code = 0
    except BaseException:
        code = 1
    os._exit(code)


def set_transmission_data(self, data):
    """Bazar's `Serializer.setTransmissionData` for files: a snapshot chunk from the leader.

    Returns True once the last chunk is in place, durably (PySyncObj then
    installs it and acknowledges); False while more is expected or on failure
    (the leader starts the transfer again)."""
    file_name = self._Serializer__fileName
    if file_name is None or data is None:
        return patching.original(Serializer, "setTransmissionData")(self, data)
    chunk, first, last = data
    incoming = self._Serializer__incomingTransmissionFile
    try:
        if first:
            if incoming is not None:
                _discard(incoming)
            incoming = open(storage.unique_temporary_name(file_name), "wb")
            self._Serializer__incomingTransmissionFile = incoming
        elif incoming is None:
            return False
        incoming.write(chunk)
        if not last:
            return False
        self._Serializer__incomingTransmissionFile = None
        incoming.flush()
        fsync = storage.fsync_wanted(file_name)
        if fsync:
            os.fsync(incoming.fileno())
        incoming.close()
        stop_own_writer(self)
        os.replace(incoming.name, file_name)
        if fsync:
            storage.fsync_directory(os.path.dirname(os.path.abspath(file_name)))
            storage.record_durable(file_name)
        return True
    except OSError:
        log.exception("receiving snapshot %s failed; the leader will send it again", file_name)
        if incoming is not None:
            _discard(incoming)
        self._Serializer__incomingTransmissionFile = None
        return False


def stop_own_writer(self) -> None:
    """Before a received snapshot is renamed into place: stop this replica's own writer.

    A forked writer still running would rename its older snapshot over the
    received one later. It is killed (SIGKILL), reaped, and its temporary file
    removed. Whatever the writer's state (running, finished but not reaped, or
    an in-process write's done mark), its pid becomes 0, so PySyncObj's
    `checkSerializing` reports no snapshot and `__tryLogCompaction` never
    compacts the log on the strength of a snapshot the received one replaced."""
    pid = self._Serializer__pid
    self._Serializer__pid = 0
    if pid <= 0:
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # it had finished; reaped next
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
    storage.remove_temporary_files(self._Serializer__fileName, pid)
    log.info("stopped this replica's own snapshot writer (pid %d): a snapshot from the leader replaces it", pid)


def _discard(file) -> None:
    file.close()
    try:
        os.unlink(file.name)
    except FileNotFoundError:
        pass


patching.replace(Serializer, "serialize", serialize,
                 "2309c06a9713bf1fb36309f88a86720b097be27f56b319de7055abbfb01a4425",
                 "its forked snapshot writer outlives a killed replica, holds its port, "
                 "renames late and never fsyncs")
patching.replace(Serializer, "setTransmissionData", set_transmission_data,
                 "562b379bcf6c5b10f9e7a6fe06eda64122f181cae4fc63fd5f1fb2b0a5ee8549",
                 "a snapshot received from the leader is renamed into place without fsync")
