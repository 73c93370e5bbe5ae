"""An upgrade keeps its data: a replica's PySyncObj-format files are migrated on its first start."""
from __future__ import annotations

import copy

import pysyncobj.syncobj

from bazar.consensus import journal as journal_module
from bazar.consensus import patching
from bazar.local.cluster import free_ports
from tests.unit.test_replicated_state import BOOKS, _member, _shut_down, members  # noqa: F401  (fixture)


def test_a_data_dir_written_by_pysyncobjs_journal_opens_with_every_entry_and_the_raft_state(
        tmp_path, members, monkeypatch):  # noqa: F811
    address = f"127.0.0.1:{free_ports(1)[0]}"
    data_dir = tmp_path / "catalog1"
    # Before the upgrade: PySyncObj's own FileJournal writes journal.bin and journal.bin.meta.
    monkeypatch.setattr(pysyncobj.syncobj, "createJournal", patching.original(pysyncobj.syncobj, "createJournal"))
    old, old_state, _ = _member(address, data_dir, members)
    assert old.submit({"op": "seed", "books": copy.deepcopy(BOOKS)}, timeout=15) == {"ok": True, "seeded": True}
    assert old.submit({"op": "purchase", "id": 1, "order_id": "o1"}, timeout=5)["ok"] is True
    before, last_index = old_state.read(lambda m: m.snapshot())
    term = old.status()["term"]
    _shut_down(old)
    assert (data_dir / "journal.bin").read_bytes().startswith(journal_module.OLD_FORMAT_MAGIC)
    assert (data_dir / "journal.bin.meta").exists()
    monkeypatch.undo()

    new, new_state, _ = _member(address, data_dir, members)
    assert new.wait_applied(last_index, timeout=15) is True
    assert new_state.read(lambda m: m.snapshot())[0] == before
    assert new.status()["term"] >= term
    assert new.submit({"op": "purchase", "id": 1, "order_id": "o1"}, timeout=15)["ok"] is True  # remembered
    assert new.submit({"op": "purchase", "id": 1, "order_id": "o2"}, timeout=5)["error"] == "out_of_stock"
    assert (data_dir / "journal.bin").read_bytes().startswith(journal_module.MAGIC)
    assert not (data_dir / "journal.bin.meta").exists()
