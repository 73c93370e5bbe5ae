"""`bazar backup` under load, `bazar restore` into a fresh set of data directories, and
the refusals: against real clusters, through the `bazar` command."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from bazar.local.cluster import LocalCluster, write_config
from bazar.node.api import digest
from tests.integration.probes import replica_states, wait_converged

ROOT = Path(__file__).resolve().parents[2]


def bazar(config: Path, *args: str, secret: str | None = None) -> subprocess.CompletedProcess:
    """Run `bazar` on the cluster file `config`, with the cluster secret `secret` if given
    (else the one the file's data directory holds)."""
    env = {**os.environ, "BAZAR_SECRET": secret} if secret else None
    return subprocess.run([sys.executable, "-m", "bazar", "--config", str(config), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=90, env=env)


class Load:
    """Buyers and an admin restocking, until stopped; remembers every acknowledged purchase."""

    def __init__(self, url: str, admin_headers: dict, buyers: int = 4) -> None:
        self.url = url
        self.admin_headers = admin_headers  # restocking is an admin write
        self.acknowledged: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._buy, args=(i,)) for i in range(buyers)]
        self._threads.append(threading.Thread(target=self._restock))

    def __enter__(self) -> "Load":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _buy(self, client: int) -> None:
        session, number = requests.Session(), 0
        while not self._stop.is_set():
            number += 1
            key = f"load-{client}-{number}"
            try:
                answer = session.post(f"{self.url}/purchase/{number % 7 + 1}", headers={"Idempotency-Key": key},
                                      timeout=5)
            except requests.RequestException:
                continue
            if answer.status_code in (200, 409):
                self.acknowledged.append(key)

    def _restock(self) -> None:
        while not self._stop.wait(0.1):
            try:
                requests.put(f"{self.url}/books/3", json={"restock": 1}, timeout=5, headers=self.admin_headers)
            except requests.RequestException:
                pass


@pytest.fixture(scope="module")
def backed_up(tmp_path_factory):
    """A backup file taken by `bazar backup` from a 3+3 cluster under load, what the load had
    acknowledged before the backup began, what `bazar backup` said, and the cluster's secret
    (the backup is signed with it: each test's fresh cluster has a secret of its own)."""
    directory = tmp_path_factory.mktemp("source")
    cluster = LocalCluster(write_config(directory), log_dir=directory / "logs")
    file = directory / "store.backup"
    try:
        cluster.start(timeout=60)
        with Load(cluster.frontend_url, cluster.admin_headers) as load:
            time.sleep(2)
            before = list(load.acknowledged)
            taken = bazar(cluster.config_path, "backup", str(file))
            time.sleep(1)
        assert taken.returncode == 0, taken.stderr
        assert len(load.acknowledged) > len(before) > 20  # the backup ran while purchases went on
        yield file, before, taken.stdout, cluster.secret
    finally:
        cluster.stop()


def fresh_cluster(make_cluster, **sections) -> LocalCluster:
    # Pending orders and unrecorded purchases in a backup are finished and recorded by the
    # order leader's sweeper after commit_timeout + 1 s; a long commit timeout keeps the
    # restored state as it was backed up for long enough to compare it.
    return make_cluster(start=False, raft={"commit_timeout": 60.0}, **sections)


def test_a_backup_under_load_restores_to_exactly_that_state(backed_up, make_cluster):
    file, acknowledged, said, secret = backed_up
    backup = json.loads(file.read_text())
    assert backup["bazar_backup"] == 2 and set(backup["groups"]) == {"catalog", "order"}
    assert "catalog at index" in said and "order at index" in said
    # Read at a committed index on the leader: every purchase acknowledged before is in it.
    assert set(acknowledged) <= set(backup["groups"]["catalog"]["state"]["purchases"])
    # Each is recorded in the order group, or kept by the catalog until it is (its record
    # follows the answer: node/orders/purchase.py).
    assert set(acknowledged) <= (set(backup["groups"]["order"]["state"]["orders"])
                                 | set(backup["groups"]["catalog"]["state"].get("unrecorded", {})))

    target = fresh_cluster(make_cluster)
    # Restored with the secret it was signed under; the cluster then runs with its own.
    restored = bazar(target.config_path, "restore", str(file), secret=secret)
    assert restored.returncode == 0, restored.stderr
    target.start(timeout=60)
    for group in ("catalog", "order"):
        part = backup["groups"][group]
        states = wait_converged(target, group)
        assert len(states) == 3
        for state in states.values():
            assert state["digest"] == part["digest"]
            assert state["applied_index"] >= part["index"]
    # Served as it was: a book's stock through the restored frontend.
    books = backup["groups"]["catalog"]["state"]["books"]
    info = requests.get(f"{target.frontend_url}/info/3?consistency=strong", timeout=10).json()
    assert info["stock"] == books["3"]["stock"]
    # And the restored store goes on: a retried purchase is remembered, a new one sells.
    key = acknowledged[0]
    first = backup["groups"]["catalog"]["state"]["purchases"][key]
    retried = requests.post(f"{target.frontend_url}/purchase/{first[0]}", headers={"Idempotency-Key": key},
                            timeout=10)
    assert retried.status_code in (200, 409)
    assert replica_states(target, "catalog")["catalog1"]["state"]["books"][str(first[0])]["stock"] \
        == books[str(first[0])]["stock"]
    restocked = requests.put(f"{target.frontend_url}/books/3", json={"restock": 1}, timeout=10,
                             headers=target.admin_headers)
    assert restocked.status_code == 200, restocked.text  # the load may have sold it out
    assert requests.post(f"{target.frontend_url}/purchase/3", timeout=10).status_code == 200


def test_restore_refuses_data_directories_that_hold_anything(backed_up, make_cluster):
    file, _, _, secret = backed_up
    target = fresh_cluster(make_cluster)
    assert bazar(target.config_path, "restore", str(file), secret=secret).returncode == 0
    journal = target.config.data_dir / "catalog2" / "journal.bin"
    before = journal.read_bytes()
    again = bazar(target.config_path, "restore", str(file), secret=secret)
    assert again.returncode == 1
    assert "fills empty data directories only" in again.stderr and "nothing was written" in again.stderr
    assert journal.read_bytes() == before


def _forged(text: str, unsign: bool = False) -> str:
    """The backup `text` as someone without the cluster secret would change it: every book
    at 0.01, the state's digest and the checksum computed again (and with `unsign`, the
    signature dropped)."""
    backup = json.loads(text)
    catalog = backup["groups"]["catalog"]
    for book in catalog["state"]["books"].values():
        book["price"] = 0.01
    catalog["digest"] = digest(catalog["state"])
    body = {k: v for k, v in backup.items() if k != "sha256" and not (unsign and k in ("mac", "key_id"))}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return json.dumps({**body, "sha256": hashlib.sha256(canonical).hexdigest()})


@pytest.mark.parametrize("damage, message, options, own_secret", [
    (lambda text: text[: len(text) // 2], "not JSON: truncated or corrupt", (), False),
    (lambda text: text.replace('"stock":', '"stock":1', 1), "checksum does not match", (), False),
    (lambda text: text.replace('"bazar_backup":2', '"bazar_backup":3'), "newer than this Bazar reads", (), False),
    (_forged, "has been altered or forged", (), False),
    (_forged, "has been altered or forged", ("--unsigned",), False),
    (lambda text: _forged(text, unsign=True), "is not signed", (), False),
    (lambda text: text, "signed under another cluster secret", (), True),
])
def test_restore_refuses_a_damaged_forged_or_newer_backup_and_writes_nothing(backed_up, make_cluster, tmp_path,
                                                                              damage, message, options, own_secret):
    """Forged: changed by someone without the cluster secret, checksum and all. Own secret:
    a sound backup restored with another secret than the one it was taken under (the fresh
    cluster's own)."""
    file, _, _, secret = backed_up
    damaged = tmp_path / "damaged.backup"
    damaged.write_text(damage(file.read_text()))
    target = fresh_cluster(make_cluster)
    refused = bazar(target.config_path, "restore", str(damaged), *options, secret=None if own_secret else secret)
    assert refused.returncode == 1
    assert message in refused.stderr and "nothing was written" in refused.stderr
    # Nothing written: no replica directory (the data directory holds only the cluster's
    # generated secret and admin token, which LocalCluster made before any restore).
    written = {p.name for p in target.config.data_dir.iterdir()} if target.config.data_dir.exists() else set()
    assert written - {"secret", "admin-token"} == set(), written


def test_backup_without_a_leader_says_so(make_cluster, tmp_path):
    """And says so soon: with no majority of the group running, no leader is coming, and
    `bazar backup` used to wait out the 30 s it gives an election before saying so."""
    cluster = make_cluster(catalog=1, order=1)
    cluster.kill("order1")
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "bazar", "--config", str(cluster.config_path), "backup",
                           str(tmp_path / "x.backup")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    took = time.monotonic() - started
    assert done.returncode == 1 and "order group has no leader" in done.stderr
    assert took < 15, f"bazar backup took {took:.0f} s to say the order group has no leader"
    assert "0 of its 1 replicas answer" in done.stderr, done.stderr
    assert not (tmp_path / "x.backup").exists()
