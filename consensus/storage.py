"""Durable files: what the journal, the Raft state file and the snapshot writer share.

A write is *durable* once it survives a power cut, not only a crash of the
process. On Linux that takes `fsync` of the file (its data) and, for a file
that was just created or renamed into place, `fsync` of its directory (the
name). `replace_atomically` is the one way Bazar puts a whole file in place:
write a unique temporary file next to it, fsync it, rename it over the old
one, fsync the directory. A crash at any point leaves either the old file or
the new one under the name, never a mix, plus at most a temporary file that
`remove_temporary_files` deletes on the next start.

`StoragePath` carries a file name together with the replica's storage choices
(fsync on or off, where the snapshot is) through PySyncObj's configuration,
whose `createJournal(conf.journalFile)` and `Serializer(conf.fullDumpFile, ...)`
calls take a plain string.

How writes fail: an `OSError` from write or fsync means the kernel may already
have dropped the data it could not write (a later fsync can report success
for pages it lost), so the only safe reaction is to stop the process and start
again from what is on disk: callers let the error propagate or, where an
answer would otherwise go out, call `fatal_io_error`.

Test mode (power-cut simulation): when `$BAZAR_TEST_POWER_CUT_DIR` is set, every
durability point also copies what just became durable into that directory,
mirroring absolute paths. A test stands in for a power cut by SIGKILLing every
process and then putting exactly those copies back (`tests/integration/test_power_cut.py`).
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Callable

log = logging.getLogger("bazar.storage")

POWER_CUT_ENV = "BAZAR_TEST_POWER_CUT_DIR"
TEMPORARY_MARK = ".tmp-"


class StoragePath(str):
    """A file name (it *is* the str PySyncObj gets) that also says how to store the file.

    `fsync`: make writes durable before anything depends on them (off: a power
    cut can lose acknowledged writes; a process crash still loses nothing).
    `snapshot`: for a journal, the snapshot file it is compacted against.
    """

    fsync: bool
    snapshot: str | None

    def __new__(cls, path: str | os.PathLike, fsync: bool = True, snapshot: str | os.PathLike | None = None):
        value = super().__new__(cls, os.fspath(path))
        value.fsync = fsync
        value.snapshot = None if snapshot is None else os.fspath(snapshot)
        return value


def fsync_wanted(path: str) -> bool:
    """The fsync choice a path carries; a plain string (a file Bazar did not name) means on."""
    return getattr(path, "fsync", True)


def fsync_directory(directory: str | os.PathLike) -> None:
    """Make the names in `directory` (a file just created, renamed or removed) durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_atomically(path: str | os.PathLike, write: Callable, fsync: bool = True) -> None:
    """Put a new file at `path`: `write(file)` fills a temporary file, which then replaces `path`.

    With `fsync`, the data is durable before the rename and the rename is durable
    before this returns. Raises OSError (the temporary file is removed) when any step fails.
    """
    path = Path(path)
    # The name carries the writer's pid, so a writer that is stopped can be cleaned up after.
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f"{path.name}{TEMPORARY_MARK}{os.getpid()}-")
    try:
        with os.fdopen(fd, "wb") as file:
            write(file)
            file.flush()
            if fsync:
                os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    if fsync:
        fsync_directory(path.parent)
        record_durable(path)


def unique_temporary_name(path: str | os.PathLike) -> str:
    """A temporary name next to `path` that `remove_temporary_files(path)` will clean up."""
    return f"{os.fspath(path)}{TEMPORARY_MARK}{os.getpid()}-{os.urandom(4).hex()}"


def remove_temporary_files(path: str | os.PathLike, pid: int | None = None) -> list[Path]:
    """Delete what interrupted writes of `path` left behind (with `pid`: only what that
    process's writes left); return what was deleted.

    Only safe while nothing else can be writing `path` (the journal holds the
    data directory's lock when it calls this; with `pid`, that process is dead)."""
    path = Path(path)
    removed = []
    if pid is not None:
        candidates = list(path.parent.glob(f"{path.name}{TEMPORARY_MARK}{pid}-*"))
    else:  # ours (unique names), and PySyncObj's fixed names for a snapshot being written or received
        candidates = list(path.parent.glob(path.name + TEMPORARY_MARK + "*")) + [
            path.with_name(path.name + ".tmp"), path.with_name(path.name + ".1.tmp")]
    for leftover in candidates:
        if leftover.exists():
            leftover.unlink()
            removed.append(leftover)
    return removed


def fatal_io_error(what: str, error: BaseException) -> None:
    """Stop the process at once: a failed write or fsync may have lost data the kernel held.

    Retrying is not safe (after a failed fsync, Linux may report the next one as a
    success for pages it dropped), and carrying on could acknowledge a write that
    is not on disk. The process exits with status 75 so a supervisor restarts it
    from what its disk really holds."""
    log.critical("stopping: %s failed (%s); restarting from disk is the only safe recovery", what, error)
    logging.shutdown()
    os._exit(75)


# -- test mode: what a power cut would leave ---------------------------------

def record_durable(path: str | os.PathLike, length: int | None = None) -> None:
    """In test mode, remember the first `length` bytes (default all) of `path` as durable."""
    root = os.environ.get(POWER_CUT_ENV)
    if not root:
        return
    source = Path(path).resolve()
    with open(source, "rb") as file:
        content = file.read() if length is None else file.read(length)
    shadow = Path(root) / source.relative_to(source.anchor)
    shadow.parent.mkdir(parents=True, exist_ok=True)
    temporary = shadow.with_name(shadow.name + TEMPORARY_MARK + str(os.getpid()))
    temporary.write_bytes(content)
    os.replace(temporary, shadow)  # a SIGKILL mid-copy must not leave a torn record either


def not_yet_durable(root: str | os.PathLike, data_dirs: list[Path]) -> dict[str, int]:
    """In test mode, how many bytes each file in `data_dirs` holds beyond what was made
    durable: a whole file for one never made durable (a temporary file being written).
    Looks at sizes only and changes nothing; while the processes writing these files
    are stopped (SIGSTOP), it is what `power_cut` with no torn bytes would drop now."""
    root = Path(root)
    pending: dict[str, int] = {}
    for directory in data_dirs:
        for current in sorted(Path(directory).glob("*")):
            try:
                if not current.is_file():
                    continue
                size = current.stat().st_size
            except FileNotFoundError:  # renamed or removed as we looked
                continue
            shadow = root / current.resolve().relative_to(current.resolve().anchor)
            try:
                durable = shadow.stat().st_size if TEMPORARY_MARK not in shadow.name else None
            except FileNotFoundError:
                durable = None
            excess = size if durable is None else max(0, size - durable)
            if excess:
                pending[str(current)] = excess
    return pending


def power_cut(root: str | os.PathLike, data_dirs: list[Path], torn_bytes: int = 0) -> dict[str, int]:
    """Make `data_dirs` hold only what was durable (test mode), as after a power cut.

    Every process using them must already be dead. Each file is replaced by its
    durable copy under `root` (or removed if it never became durable); with
    `torn_bytes`, up to that many of the bytes a file had beyond its durable
    length are kept, as a torn write would. Returns the bytes lost per file."""
    root = Path(root)
    lost: dict[str, int] = {}
    for directory in data_dirs:
        for current in sorted(Path(directory).glob("*")):
            if not current.is_file():
                continue
            shadow = root / current.resolve().relative_to(current.resolve().anchor)
            data = current.read_bytes()
            durable = shadow.read_bytes() if shadow.exists() and TEMPORARY_MARK not in shadow.name else None
            if durable is None:
                current.unlink()
                lost[str(current)] = len(data)
                continue
            keep = durable
            if torn_bytes and data.startswith(durable) and len(data) > len(durable):
                keep = data[:len(durable) + min(torn_bytes, (len(data) - len(durable)) // 2)]
            current.write_bytes(keep)
            lost[str(current)] = len(data) - len(keep)
        # Durable files whose removal (or rename away) never became durable come back.
        resolved = Path(directory).resolve()
        for shadow in sorted((root / resolved.relative_to(resolved.anchor)).glob("*")):
            target = resolved / shadow.name
            if shadow.is_file() and TEMPORARY_MARK not in shadow.name and not target.exists():
                target.write_bytes(shadow.read_bytes())
    return lost
