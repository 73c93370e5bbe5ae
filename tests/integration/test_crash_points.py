"""A replica SIGKILLed at either crash point of a log compaction keeps every acknowledged order.

The real library is held at the crash point by test-only hooks
(`crash_hooks/sitecustomize.py`, loaded through PYTHONPATH), the real replica
process is SIGKILLed there and restarted at once, and every order the cluster
acknowledged must still be there. A one-node order group, so that no peer can
hand the lost entries back.

On PySyncObj's own snapshot writer and journal (before Bazar's), these lost
about a third of the orders: the writer outlived its replica, held its port and
renamed its snapshot after the restarted replica had looked at its files; the
in-place journal rewrite, killed half way, left a journal that still began at
the snapshot and silently lacked its tail.
"""
from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

HOOKS = Path(__file__).resolve().parent / "crash_hooks"
BEFORE, DURING = 100, 50        # orders before the crash point is armed, and while the writer is held
HOLD_SECONDS = 6.0         # the longest the snapshot writer is held at its rename


def _buy(url: str, number: int) -> str:
    response = requests.post(f"{url}/purchase/{1 + number % 7}", headers={"Idempotency-Key": f"crash-point-{number}"},
                             timeout=10)
    assert response.status_code == 200, response.text
    return response.json()["order_id"]


def _wait_for(path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"the replica never reached {path.name}"
        time.sleep(0.02)


def _completed_orders(url: str, admin_headers: dict) -> set[str]:
    orders = requests.get(f"{url}/orders", params={"limit": 1000}, timeout=10,
                          headers=admin_headers).json()["orders"]
    return {order["order_id"] for order in orders if order["status"] == "completed"}


@pytest.mark.parametrize("point", ["snapshot-rename", "journal-rewrite"])
def test_a_replica_killed_at_a_compaction_crash_point_keeps_every_acknowledged_order(make_cluster, tmp_path, point):
    cluster = make_cluster(
        catalog=1, order=1,
        # Compactions every 2 s (or past 150 entries), each in the replica's own slot of the period.
        raft={"compaction_entries": 150, "compaction_period": 2},
        env={"PYTHONPATH": str(HOOKS), "BAZAR_CRASH_POINT": point, "BAZAR_CRASH_NODE": "order1",
             "BAZAR_CRASH_DIR": str(tmp_path), "BAZAR_CRASH_HOLD": str(HOLD_SECONDS)})
    url = cluster.frontend_url
    acknowledged = [_buy(url, n) for n in range(BEFORE)]

    (tmp_path / "armed").touch()              # the next compaction of order1 stops at the crash point
    _wait_for(tmp_path / "snapshot-held", timeout=20)
    acknowledged += [_buy(url, n) for n in range(BEFORE, BEFORE + DURING)]  # after the snapshot's index
    if point == "journal-rewrite":
        _wait_for(tmp_path / "at-crash-point", timeout=HOLD_SECONDS + 20)

    cluster.kill("order1")
    cluster.start_process("order1")   # at once: it must be able to bind its ports
    cluster.wait_ready(timeout=60)

    present = _completed_orders(url, cluster.admin_headers)
    missing = [order for order in acknowledged if order not in present]
    assert not missing, f"{len(acknowledged) - len(missing)} of {len(acknowledged)} acknowledged orders present"


def test_a_replica_whose_disk_corrupted_its_journal_refuses_to_start_and_says_why(make_cluster):
    cluster = make_cluster(catalog=1, order=1)
    for n in range(20):
        _buy(cluster.frontend_url, n)
    cluster.stop()                       # every entry committed, and the commit index saved
    journal = cluster.config.data_dir / "order1" / "journal.bin"
    data = bytearray(journal.read_bytes())
    data[len(data) // 2] ^= 0x01         # one flipped bit among durable, committed entries
    journal.write_bytes(bytes(data))

    process = cluster.start_process("order1")
    assert process.wait(timeout=60) != 0
    log = (cluster.log_dir / "order1.log").read_text()
    assert "JournalCorrupt" in log and "damaged record at byte" in log and "Refusing to start" in log
    assert journal.read_bytes() == bytes(data)   # nothing was cut: the operator decides
