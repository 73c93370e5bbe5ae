"""What one version of Bazar leaves on disk, the next one reads.

tests/fixtures/format1*/ hold a catalog and an order replica's data directory as
Bazar wrote them (see tests/fixtures/write_data_dirs.py for which version wrote which):
a snapshot, the journal entries after it and the Raft state. Each must load into
a replica of today's code with exactly the state it held. And nothing Bazar
stores may need one of Bazar's own classes to be read back: a class or module
renamed in an upgrade must never make a data directory unreadable.
"""
from __future__ import annotations

import _compat_pickle
import gzip
import io
import json
import pickle
import shutil
from pathlib import Path

import pytest

from bazar.cluster.config import RaftConfig
from bazar.cluster.local import free_ports
from bazar.consensus.journal import DurableJournal
from bazar.consensus.member import RaftMember
from bazar.consensus.settings import syncobj_conf
from bazar.consensus.state import ReplicatedState
from bazar.node.api import digest
from bazar.node.catalog import CatalogState
from bazar.node.orders import OrderState
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
        assert member.wait_applied(last, timeout=15) is True
        view, snapshot = state.read(lambda m: (m.view(), m.snapshot()))[0]
        assert {key: view[key] for key in expected} == expected
        digests = stored / "expected_digests.json"
        if digests.exists():  # the whole state, the outcomes' stamps and the log's clock included
            assert digest(snapshot) == json.loads(digests.read_text())[group]
    finally:
        member.close()
        member.syncobj._SyncObj__thread.join(10)


@pytest.mark.parametrize("stored", STORED, ids=lambda p: p.name)
@pytest.mark.parametrize("replica", sorted(MACHINES))
def test_stored_data_needs_no_class_of_bazars(stored, replica):
    loaded = stored_pickles(stored / replica)
    assert loaded[0][0][1]["format"] >= 1 and len(loaded) > 1


def test_what_this_version_writes_needs_no_class_of_bazars(tmp_path):
    write_data_dirs.main(str(tmp_path))
    for replica in MACHINES:
        loaded = stored_pickles(tmp_path / replica)
        snapshot = loaded[0][0][1]
        assert snapshot["format"] >= 1 and snapshot["state"]
        assert all(isinstance(command[1][0], dict) for command in loaded[1:])


def _journal_entries(data_dir: Path) -> list:
    journal = DurableJournal(data_dir / "journal.bin", fsync=False)
    try:
        return [journal[i] for i in range(len(journal))]
    finally:
        journal._destroy()
