"""Backup files are checked through before a restore writes anything; a restored data
directory starts a replica with exactly the state backed up (node/backup.py,
consensus/restore.py). The whole path against real clusters: tests/integration/test_backup.py."""
from __future__ import annotations

import copy
import json

import pytest

from bazar.cluster.config import ConfigError, RaftConfig, parse
from bazar.consensus import write_data_dir
from bazar.consensus.member import RaftMember
from bazar.consensus.settings import syncobj_conf
from bazar.consensus.state import ReplicatedState
from bazar.local.cluster import free_ports
from bazar.node import backup
from bazar.node.api import digest, to_json
from bazar.node.catalog import CatalogState
from bazar.node.orders import OrderState

SECRET = "the backed-up cluster's secret, 32 bytes or more"
BOOKS = [{"title": "A", "topic": "t", "price": 10.0, "stock": 5}, {"title": "B", "topic": "u", "price": 2.5, "stock": 1}]


def catalog_state() -> CatalogState:
    state = CatalogState()
    for command in [{"op": "seed", "books": copy.deepcopy(BOOKS)}, {"op": "expire", "now": 50.0, "cutoff": 0.0},
                    {"op": "purchase", "id": 1, "order_id": "o1"}, {"op": "purchase", "id": 2, "order_id": "o2"},
                    {"op": "purchase", "id": 2, "order_id": "o3"},
                    {"op": "update_book", "id": 1, "price": 4.0, "request_id": "r1"}]:
        state.apply(command)
    return state


def order_state() -> OrderState:
    state = OrderState()
    state.apply({"op": "begin", "order_id": "o1", "id": 1, "created_at": 1.0})
    state.apply({"op": "finish", "order_id": "o1", "outcome": {"ok": True, "id": 1, "title": "A", "price": 10.0}})
    state.apply({"op": "begin", "order_id": "o4", "id": 2, "created_at": 2.0})
    return state


def a_backup(secret: str | None = SECRET, version: int = backup.BACKUP_FORMAT) -> dict:
    """A backup of `catalog_state` and `order_state`, signed under `secret` (none: unsigned)."""
    groups = {}
    for group, machine, index in (("catalog", catalog_state(), 40), ("order", order_state(), 31)):
        snapshot = machine.snapshot()
        groups[group] = {"index": index, "term": 3, "snapshot_format": 1, "digest": digest(snapshot),
                         "state": to_json(snapshot)}
    body = {"bazar_backup": version, "taken_at": "2026-12-03T12:00:00+00:00", "groups": groups}
    return backup.seal(body, secret)


def saved(tmp_path, content) -> str:
    path = tmp_path / "backup.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_a_sound_backup_reads_back_as_written(tmp_path):
    written = a_backup()
    backup.write(written, tmp_path / "b.json")
    assert backup.read(tmp_path / "b.json", SECRET) == written
    assert not (tmp_path / "b.json.partial").exists()


def _edit(change):
    edited = a_backup()
    change(edited)
    return edited


def _unsealed(backup_: dict) -> dict:
    return {k: v for k, v in backup_.items() if k not in ("sha256", "mac", "key_id")}


def _resealed(change):
    """A backup edited and signed again with the cluster's secret: only the deeper checks
    can catch it (a bug in whoever holds the key, not a forger)."""
    return backup.seal(_unsealed(_edit(change)), SECRET)


def _forged(change, keep_signature: bool = True):
    """A backup edited by someone without the key, who recomputed its checksum."""
    edited = _edit(change)
    if not keep_signature:
        edited = {k: v for k, v in edited.items() if k not in ("mac", "key_id")}
    edited["sha256"] = backup._checksum({k: v for k, v in edited.items() if k != "sha256"})
    return edited


@pytest.mark.parametrize("content, message", [
    (json.dumps(a_backup())[:-40], "not JSON: truncated or corrupt"),
    ("", "not JSON"),
    ([1, 2], "no format version"),
    (_edit(lambda b: b["groups"]["catalog"]["state"]["books"]["1"].update(stock=99)), "checksum does not match"),
    (_edit(lambda b: b.update(bazar_backup=3)), "backup format 3, newer than this Bazar reads"),
    (_resealed(lambda b: b["groups"]["catalog"]["state"]["books"]["1"].update(stock=99)),
     "catalog state does not match its digest"),
    (_resealed(lambda b: b["groups"].pop("order")), "does not hold both groups"),
    (_resealed(lambda b: b["groups"]["order"].update(snapshot_format=7)), "snapshot format 7, newer"),
    (_resealed(lambda b: b["groups"]["order"].update(index="x")), "index and term are missing"),
])
def test_a_bad_backup_is_refused_with_a_clear_message(tmp_path, content, message):
    with pytest.raises(backup.BackupError, match=message):
        backup.read(saved(tmp_path, content), SECRET)


@pytest.mark.parametrize("content, message", [
    (_forged(lambda b: b["groups"]["catalog"]["state"]["books"]["1"].update(price=0.01)), "altered or forged"),
    (_forged(lambda b: b["groups"]["order"].update(index=10 ** 6)), "altered or forged"),
    (_forged(lambda b: b.update(taken_at="2030-01-01T00:00:00+00:00")), "altered or forged"),
    (_forged(lambda b: b.update(key_id=backup.key_id("another secret"))), "another cluster secret"),
    (a_backup(secret="another cluster's secret, made up by whoever wrote this file"), "another cluster secret"),
    (_forged(lambda b: b["groups"]["catalog"]["state"]["books"]["1"].update(price=0.01), keep_signature=False),
     "not signed.*--unsigned"),
    (a_backup(secret=None, version=1), "not signed.*--unsigned"),
])
def test_a_backup_not_signed_by_this_cluster_is_refused(tmp_path, content, message):
    """Whoever can write the backup file but holds no secret cannot choose what a restore
    writes: not the state, not its index, not even the date."""
    with pytest.raises(backup.BackupError, match=message):
        backup.read(saved(tmp_path, content), SECRET)


def test_a_signed_backup_read_without_a_secret_says_which_is_needed(tmp_path):
    with pytest.raises(backup.BackupError, match="none is given.*BAZAR_SECRET"):
        backup.read(saved(tmp_path, a_backup()), None)


def test_an_unsigned_backup_is_read_only_when_the_operator_vouches_for_it(tmp_path):
    """An older Bazar's backup (format 1, no signature) restores with --unsigned."""
    old = a_backup(secret=None, version=1)
    assert backup.read(saved(tmp_path, old), SECRET, unsigned=True) == old
    # --unsigned lets through a backup with no signature, never one with a wrong one.
    with pytest.raises(backup.BackupError, match="altered or forged"):
        backup.read(saved(tmp_path, _forged(lambda b: b.update(taken_at="x"))), SECRET, unsigned=True)


def test_a_state_that_no_machine_loads_is_refused(tmp_path):
    def break_it(b):
        b["groups"]["order"]["state"] = {"version": 2, "nothing": 1}
        b["groups"]["order"]["digest"] = digest(b["groups"]["order"]["state"])
    with pytest.raises(backup.BackupError, match="order state is not one this Bazar can load"):
        backup.read(saved(tmp_path, _resealed(break_it)), SECRET)


def _config(tmp_path):
    ports = iter(free_ports(9))
    doc = {"data_dir": str(tmp_path / "data"),
           "catalog": [{"id": f"catalog{i}", "raft": f"127.0.0.1:{next(ports)}", "http": f"127.0.0.1:{next(ports)}"}
                       for i in (1, 2, 3)],
           "order": [{"id": "order1", "raft": f"127.0.0.1:{next(ports)}", "http": f"127.0.0.1:{next(ports)}"}],
           "frontends": [{"id": "frontend1", "http": f"127.0.0.1:{next(ports)}"}], "raft": {"fsync": False}}
    return parse(doc, tmp_path / "cluster.yaml")


def test_restore_refuses_when_any_data_directory_holds_anything_and_writes_nothing(tmp_path):
    config = _config(tmp_path)
    (config.data_dir / "order1").mkdir(parents=True)
    (config.data_dir / "order1" / "journal.bin").write_bytes(b"someone's data")
    with pytest.raises(backup.BackupError, match="empty data directories only.*order1"):
        backup.restore(config, a_backup())
    assert sorted(p.name for p in config.data_dir.iterdir()) == ["order1"]
    assert (config.data_dir / "order1" / "journal.bin").read_bytes() == b"someone's data"


@pytest.mark.parametrize("group, machine, original", [("catalog", CatalogState, catalog_state),
                                                     ("order", OrderState, order_state)])
def test_a_restored_data_dir_starts_a_replica_with_the_state_and_goes_on_from_its_index(
        tmp_path, group, machine, original):
    part = a_backup()["groups"][group]
    address = f"127.0.0.1:{free_ports(1)[0]}"
    data_dir = tmp_path / "replica"
    write_data_dir(data_dir, part["state"], index=part["index"], term=part["term"], members=[address])
    state = ReplicatedState(machine())
    member = RaftMember(address, [address], state,
                        syncobj_conf(RaftConfig(), data_dir, None, bind_address=address, group_size=1))
    try:
        assert member.wait_applied(part["index"], timeout=15) is True
        snapshot, index = state.read(lambda m: m.snapshot())
        assert index == part["index"] and digest(snapshot) == part["digest"]
        assert snapshot == original().snapshot()  # typed again: int book ids, tuples, not JSON's forms
        assert member.submit({"op": "expire", "now": 60.0, "cutoff": 0.0}, timeout=15)["ok"] is True
        assert state.applied_index > part["index"] and member.status()["term"] > part["term"]
    finally:
        member.close()
        member.syncobj._SyncObj__thread.join(10)


def test_restore_fills_every_replicas_data_directory(tmp_path):
    config = _config(tmp_path)
    written = backup.restore(config, a_backup())
    assert sorted(p.name for p in written) == ["catalog1", "catalog2", "catalog3", "order1"]
    for path in written:
        assert sorted(p.name for p in path.iterdir()) == ["journal.bin", "journal.bin.lock", "journal.bin.state",
                                                          "snapshot.bin"]
    assert not any(p.name.endswith(".restoring") for p in config.data_dir.iterdir())


def test_restore_of_named_replicas_fills_only_theirs(tmp_path):
    """On a machine that runs some of the replicas, only their directories are filled."""
    config = _config(tmp_path)
    written = backup.restore(config, a_backup(), ["catalog2", "order1"])
    assert sorted(p.name for p in config.data_dir.iterdir()) == ["catalog2", "order1"] == [p.name for p in written]
    with pytest.raises(ConfigError, match="no replica named 'catalog9'"):
        backup.restore(config, a_backup(), ["catalog9"])
