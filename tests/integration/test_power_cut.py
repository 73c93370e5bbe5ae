"""A power cut of the whole cluster loses no acknowledged purchase, with fsync on.

Stand-in for a power cut: the replicas run in storage's test mode
($BAZAR_TEST_POWER_CUT_DIR), in which every fsync and every durable rename
also copies what just became durable aside. The test SIGKILLs every process at
once while clients are buying, then puts back exactly that (`consensus.storage.power_cut`): what was
written but never synced is gone (half of an unsynced journal tail is kept, as
a torn write), renames that were never made durable are undone. Then the
cluster restarts, and every purchase answered 200 must be there, with its copy
taken from the stock.

With `raft.fsync: false` the same cut loses acknowledged purchases: the
simulation is real, and this is what the opt-out accepts.
"""
from __future__ import annotations

import itertools
import os
import signal
import threading
import time

import requests

from bazar.consensus.storage import POWER_CUT_ENV, power_cut

PURCHASES = 80          # acknowledged before the cut
CLIENTS = 4
BOOKS = range(1, 8)


def _stock(url: str, book: int) -> int:
    return requests.get(f"{url}/info/{book}", params={"consistency": "strong"}, timeout=10).json()["stock"]


def _buy_and_cut_the_power(make_cluster, tmp_path, fsync: bool):
    """Start a 3+3 cluster, buy from several clients and cut the power while they do; restart.

    Returns (cluster, acknowledged purchases, stock before)."""
    shadow = tmp_path / "durable"
    cluster = make_cluster(raft={"fsync": fsync, "compaction_entries": 40, "compaction_period": 1.5},
                           env={POWER_CUT_ENV: str(shadow)})
    url = cluster.frontend_url
    stock_before = {book: _stock(url, book) for book in BOOKS}
    acknowledged: list[dict] = []
    cut = threading.Event()

    def client(number: int) -> None:
        with requests.Session() as session:
            for i in itertools.count():
                if cut.is_set():
                    return
                try:
                    response = session.post(f"{url}/purchase/{BOOKS[(number + i) % len(BOOKS)]}",
                                            headers={"Idempotency-Key": f"power-cut-{number}-{i}"}, timeout=10)
                except requests.RequestException:
                    return      # the power is out
                if response.status_code == 200:
                    acknowledged.append(response.json())

    clients = [threading.Thread(target=client, args=(n,)) for n in range(CLIENTS)]
    for thread in clients:
        thread.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < PURCHASES and time.monotonic() < deadline:
        time.sleep(0.01)
    processes = list(cluster.processes.values())
    for process in processes:           # every process at once, in the middle of the purchases
        os.kill(process.pid, signal.SIGKILL)
    cut.set()
    for process in processes:
        process.wait()
    for thread in clients:
        thread.join()
    assert len(acknowledged) >= PURCHASES
    data_dirs = [cluster.config.data_dir / node.id for node in cluster.config.catalog + cluster.config.order]
    power_cut(shadow, data_dirs, torn_bytes=64)

    for name in cluster.names:
        cluster.start_process(name)
    cluster.wait_ready(timeout=60)
    return cluster, list(acknowledged), stock_before


def _missing(url: str, acknowledged: list[dict]) -> list[str]:
    missing = []
    for order in acknowledged:
        found = requests.get(f"{url}/orders/{order['order_id']}", timeout=10)
        if found.status_code != 200 or found.json()["status"] != "completed":
            missing.append(order["order_id"])
    return missing


def test_a_power_cut_of_the_whole_cluster_loses_no_acknowledged_purchase(make_cluster, tmp_path):
    cluster, acknowledged, stock_before = _buy_and_cut_the_power(make_cluster, tmp_path, fsync=True)
    url = cluster.frontend_url
    assert _missing(url, acknowledged) == []
    for book in BOOKS:
        bought = sum(1 for order in acknowledged if order["id"] == book)
        # Every acknowledged copy is still taken (purchases cut mid-flight may have taken one more).
        assert stock_before[book] - bought - CLIENTS <= _stock(url, book) <= stock_before[book] - bought
    # The restarted cluster takes writes, and a retried purchase is still the same single order.
    first = acknowledged[0]
    again = requests.post(f"{url}/purchase/{first['id']}", headers={"Idempotency-Key": first["order_id"]},
                          timeout=10)
    assert again.status_code == 200 and again.json() == first


def test_without_fsync_the_same_power_cut_loses_acknowledged_purchases(make_cluster, tmp_path):
    cluster, acknowledged, _ = _buy_and_cut_the_power(make_cluster, tmp_path, fsync=False)
    deadline = time.monotonic() + 10
    while not cluster.leader("order") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(_missing(cluster.frontend_url, acknowledged)) > 0
