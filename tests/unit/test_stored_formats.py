"""What one version of Bazar leaves on disk, the next one reads.

tests/fixtures/format1*/ hold a catalog and an order replica's data directory as
Bazar wrote them (see tests/fixtures/write_data_dirs.py for which version wrote which):
a snapshot, the journal entries after it and the Raft state. Each must load into
a replica of today's code with exactly the state (and, where the fixture pins one,
the membership directory) it held. And nothing Bazar stores may need one of Bazar's
own classes to be read back: a class or module renamed in an upgrade must never make
a data directory unreadable.
"""
from __future__ import annotations

import _compat_pickle
import gzip
import io
import json
import pickle
import shutil
import time
from pathlib import Path

import pytest

from bazar.cluster.config import RaftConfig
from bazar.consensus.directory import ADD, DIRECTORY_FORMAT, REMOVE, Directory
from bazar.consensus.journal import DurableJournal
from bazar.consensus.member import RaftMember
from bazar.consensus.settings import syncobj_conf
from bazar.consensus.state import ReplicatedState, SnapshotFormatError
from bazar.local.cluster import free_ports
from bazar.node.api import digest
from bazar.node.catalog import CatalogState
from bazar.node.orders import OrderState
from bazar.node.wire import COMMAND_FORMAT, FORMAT_KEY
from tests.fixtures import write_data_dirs

FIXTURES = Path(__file__).parent.parent / "fixtures"
STORED = sorted(p for p in FIXTURES.iterdir() if p.is_dir() and p.name.startswith("format"))
MACHINES = {"catalog1": ("catalog", CatalogState), "order1": ("order", OrderState)}
# Everything a stored pickle may name: builtins, and PySyncObj's own node class (PySyncObj
# puts the group's members in its snapshot). No module of Bazar's.
ALLOWED = {("builtins", "dict"), ("builtins", "set"), ("builtins", "list"), ("builtins", "tuple"),
           ("_codecs", "encode"), ("pysyncobj.node", "TCPNode")}


class NoBazarUnpickler(pickle.Unpickler):
    """Loads only what ALLOWED names; any other global (a class of Bazar's above all) fails."""

    def find_class(self, module, name):
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)  # protocol 2 says __builtin__
        if (module, name) not in ALLOWED:
            raise pickle.UnpicklingError(f"stored data names {module}.{name}")
        return super().find_class(module, name)


def restricted_loads(data: bytes):
    return NoBazarUnpickler(io.BytesIO(data)).load()


def stored_pickles(data_dir: Path) -> list:
    """The snapshot and every journal entry's command in `data_dir`, each unpickled restrictedly."""
    loaded = [restricted_loads(gzip.decompress((data_dir / "snapshot.bin").read_bytes()))]
    journal = DurableJournal(data_dir / "journal.bin", fsync=False)
    try:
        entries = [journal[i] for i in range(len(journal))]
    finally:
        journal._destroy()
    loaded += [restricted_loads(command[1:]) for command, _, _ in entries]
    return loaded


def test_the_restricted_unpickler_refuses_a_class_of_bazars():
    """The check below can fail: a pickled Bazar object is refused."""
    with pytest.raises(pickle.UnpicklingError, match="bazar.node.catalog.state.CatalogState"):
        restricted_loads(pickle.dumps(CatalogState()))


@pytest.mark.parametrize("stored", STORED, ids=lambda p: p.name)
@pytest.mark.parametrize("replica", sorted(MACHINES))
def test_a_stored_data_dir_loads_with_the_state_it_held(stored, replica, tmp_path):
    group, machine = MACHINES[replica]
    expected = json.loads((stored / "expected_views.json").read_text())[group]
    data_dir = tmp_path / replica
    shutil.copytree(stored / replica, data_dir)
    address = f"127.0.0.1:{free_ports(1)[0]}"
    state = ReplicatedState(machine())
    member = RaftMember(address, [address], state,
                        syncobj_conf(RaftConfig(), data_dir, None, bind_address=address, group_size=1))
    try:
        last = max(index for _, index, _ in _journal_entries(stored / replica))
        _wait_applied(member, last)
        view, snapshot = state.read(lambda m: (m.view(), m.snapshot()))[0]
        assert {key: view[key] for key in expected} == expected
        digests = stored / "expected_digests.json"
        if digests.exists():  # the whole state, the outcomes' stamps and the log's clock included
            assert digest(snapshot) == json.loads(digests.read_text())[group]
        directories = stored / "expected_directories.json"
        if directories.exists():  # the members recorded before the snapshot and after it
            assert member.directory.view() == json.loads(directories.read_text())[group]
    finally:
        member.close()
        member.syncobj._SyncObj__thread.join(10)


@pytest.mark.parametrize("stored", STORED, ids=lambda p: p.name)
@pytest.mark.parametrize("replica", sorted(MACHINES))
def test_stored_data_needs_no_class_of_bazars(stored, replica):
    loaded = stored_pickles(stored / replica)
    assert loaded[0][0][1]["format"] >= 1 and len(loaded) > 1


def test_what_this_version_writes_needs_no_class_of_bazars(tmp_path):
    """Plain, versioned data all through: the state's and the directory's snapshot parts,
    every command (with its format) and every directory record."""
    write_data_dirs.main(str(tmp_path))
    for replica in MACHINES:
        loaded = stored_pickles(tmp_path / replica)
        snapshot, directory = loaded[0][0][1], loaded[0][0][2]
        assert snapshot["format"] >= 1 and snapshot["state"]
        assert directory["format"] == DIRECTORY_FORMAT and directory["members"]
        entries = [command[1][0] for command in loaded[1:]]
        assert all(isinstance(entry, dict) for entry in entries)
        records = [entry for entry in entries if FORMAT_KEY not in entry]
        assert records and all(record["op"] in (ADD, REMOVE) for record in records)
        assert all(entry[FORMAT_KEY] == COMMAND_FORMAT for entry in entries if entry not in records)


def test_a_directory_part_written_before_it_was_versioned_still_loads():
    directory = Directory({})
    directory._deserialize({"members": {"catalog4": {"raft": "10.0.0.4:7101", "http": "http://10.0.0.4:8101"}},
                            "changed_index": 7})
    assert directory.view() == {"members": [{"id": "catalog4", "raft": "10.0.0.4:7101",
                                             "http": "http://10.0.0.4:8101"}], "changed_index": 7}
    assert directory._serialize()["format"] == DIRECTORY_FORMAT


def test_a_directory_part_from_a_newer_bazar_is_refused_and_changes_nothing():
    directory = Directory({"catalog1": {"raft": "10.0.0.1:7101", "http": "http://10.0.0.1:8101"}})
    before = directory.view()
    with pytest.raises(SnapshotFormatError, match=f"directory format {DIRECTORY_FORMAT + 1} is newer"):
        directory._deserialize({"format": DIRECTORY_FORMAT + 1, "members": {}, "changed_index": 9})
    assert directory.view() == before


def _wait_applied(member: RaftMember, index: int, timeout: float = 15) -> None:
    """Until `member` has applied log entry `index`, whichever consumer's it is (the last
    one may be a directory record, which the state never sees)."""
    deadline = time.monotonic() + timeout
    while member.syncobj.raftLastApplied < index:
        assert time.monotonic() < deadline, f"entry {index} was not applied in {timeout} s"
        time.sleep(0.02)


def _journal_entries(data_dir: Path) -> list:
    journal = DurableJournal(data_dir / "journal.bin", fsync=False)
    try:
        return [journal[i] for i in range(len(journal))]
    finally:
        journal._destroy()
