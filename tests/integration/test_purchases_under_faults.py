"""Purchases stay exactly-once under concurrency, crashes, failover and full restarts."""
from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.integration.probes import buy_until_done, replica_states, set_stock, stock, wait_converged


def test_concurrent_buys_of_a_low_stock_item_never_oversell(make_cluster):
    cluster = make_cluster()
    url = cluster.frontend_url
    set_stock(cluster, 1, 5)
    barrier = threading.Barrier(25)

    def buy(_):
        barrier.wait()
        return requests.post(f"{url}/purchase/1", timeout=15).status_code

    with ThreadPoolExecutor(25) as pool:
        codes = list(pool.map(buy, range(25)))
    assert codes.count(200) == 5, codes
    assert codes.count(409) == 20, codes
    catalogs = wait_converged(cluster, "catalog")
    for state in catalogs.values():
        assert state["state"]["books"]["1"]["stock"] == 0
    orders = wait_converged(cluster, "order")
    for state in orders.values():
        by_status = [o["status"] for o in state["state"]["orders"].values() if o["id"] == 1]
        assert by_status.count("completed") == 5


def test_purchases_continue_after_the_catalog_leader_is_killed(make_cluster):
    cluster = make_cluster()
    url = cluster.frontend_url
    set_stock(cluster, 2, 1000)
    leader = cluster.leader("catalog")
    assert leader is not None
    cluster.kill(leader)
    killed_at = time.monotonic()
    response = buy_until_done(url, 2, "after-catalog-kill", deadline=killed_at + 20)
    assert response.status_code == 200, response.text
    new_leader = cluster.leader("catalog")
    assert new_leader not in (None, leader)
    for i in range(10):
        assert buy_until_done(url, 2, f"later-{i}", time.monotonic() + 10).status_code == 200
    cluster.start_process(leader)  # the old leader comes back and catches up
    states = wait_converged(cluster, "catalog", timeout=20)
    assert leader in states
    assert states[leader]["state"]["books"]["2"]["stock"] == 1000 - 11


def test_purchases_continue_after_the_order_leader_is_killed(make_cluster):
    cluster = make_cluster()
    url = cluster.frontend_url
    leader = cluster.leader("order")
    before = stock(cluster, 3)
    cluster.kill(leader)
    for i in range(5):
        response = buy_until_done(url, 3, f"order-kill-{i}", time.monotonic() + 20)
        assert response.status_code == 200, response.text
    assert stock(cluster, 3) == before - 5
    cluster.start_process(leader)
    states = wait_converged(cluster, "order", timeout=20)
    for state in states.values():
        assert {f"order-kill-{i}" for i in range(5)} <= set(state["state"]["orders"])


def test_no_acknowledged_purchase_is_lost_when_every_process_is_killed(make_cluster):
    # Compact the log every 20 entries, so the restart must recover from snapshot + journal.
    cluster = make_cluster(raft={"compaction_entries": 20, "compaction_period": 1.5})
    url = cluster.frontend_url
    acknowledged = []
    for i in range(60):
        response = requests.post(f"{url}/purchase/{1 + i % 7}", headers={"Idempotency-Key": f"crash-{i}"})
        assert response.status_code == 200
        acknowledged.append(response.json())
    stock_before = {b: stock(cluster, b) for b in range(1, 8)}
    deadline = time.monotonic() + 10  # each replica compacts in its own time slot
    snapshots = [cluster.config.data_dir / n.id / "snapshot.bin" for n in cluster.config.catalog + cluster.config.order]
    while not all(p.exists() for p in snapshots) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert all(p.exists() for p in snapshots), "the log was never compacted"

    for name in cluster.names:
        cluster.kill(name)
    for name in cluster.names:
        cluster.start_process(name)
    cluster.wait_ready(timeout=60)

    for order in acknowledged:
        found = requests.get(f"{url}/orders/{order['order_id']}").json()
        assert found["status"] == "completed" and found["id"] == order["id"]
    assert {b: stock(cluster, b) for b in range(1, 8)} == stock_before
    # The cluster still takes writes after the restart, and retries stay exactly-once.
    again = requests.post(f"{url}/purchase/1", headers={"Idempotency-Key": "crash-0"})
    assert again.json() == acknowledged[0]
    assert stock(cluster, 1) == stock_before[1]


def test_without_the_catalogs_quorum_a_purchase_is_refused_with_retry_after(make_cluster):
    # A purchase is decided by the catalog group's commit: without its majority, none is.
    cluster = make_cluster()
    url = cluster.frontend_url
    before = stock(cluster, 4)
    catalog_nodes = [n.id for n in cluster.config.catalog]
    for name in catalog_nodes[:2]:
        cluster.kill(name)
    started = time.monotonic()
    response = requests.post(f"{url}/purchase/4", headers={"Idempotency-Key": "no-quorum"}, timeout=30)
    assert response.status_code == 503
    assert "Retry-After" in response.headers
    assert "error" in response.json()
    assert time.monotonic() - started < 10
    deadline = time.monotonic() + 10
    while requests.get(f"{url}/readyz").status_code != 503 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert requests.get(f"{url}/readyz").status_code == 503
    for name in catalog_nodes[:2]:
        cluster.start_process(name)
    cluster.wait_ready(timeout=30)
    retried = buy_until_done(url, 4, "no-quorum", time.monotonic() + 20)
    assert retried.status_code == 200
    assert stock(cluster, 4) == before - 1
    assert buy_until_done(url, 4, "no-quorum", time.monotonic() + 20).json() == retried.json()
    assert stock(cluster, 4) == before - 1


def test_without_the_order_groups_quorum_purchases_go_on_and_are_recorded_when_it_is_back(make_cluster):
    # The order group records purchases after their answer: while it cannot (no majority),
    # the catalog keeps them, every read of one asks the catalog, and once the group is
    # back each is recorded once.
    cluster = make_cluster()
    url = cluster.frontend_url
    before = stock(cluster, 4)
    order_nodes = [n.id for n in cluster.config.order]
    for name in order_nodes[:2]:
        cluster.kill(name)
    answers = [buy_until_done(url, 4, f"orders-down-{i}", time.monotonic() + 20) for i in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 200], [a.text for a in answers]
    assert stock(cluster, 4) == before - 3
    for name in order_nodes[:2]:
        cluster.start_process(name)
    cluster.wait_ready(timeout=30)
    for i, answer in enumerate(answers):
        deadline = time.monotonic() + 20
        read = requests.get(f"{url}/orders/orders-down-{i}", timeout=10)
        while read.status_code == 503 and time.monotonic() < deadline:  # the group settling
            time.sleep(0.3)
            read = requests.get(f"{url}/orders/orders-down-{i}", timeout=10)
        assert read.status_code == 200 and read.json()["status"] == "completed", read.text
    deadline, states = time.monotonic() + 30, {}
    while time.monotonic() < deadline:
        states = wait_converged(cluster, "order", timeout=30)
        if all(f"orders-down-{i}" in s["state"]["orders"] for s in states.values() for i in range(3)):
            break
        time.sleep(0.5)
    for state in states.values():
        for i in range(3):
            assert state["state"]["orders"][f"orders-down-{i}"]["status"] == "completed"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(s["state"].get("unrecorded")
                                              for s in replica_states(cluster, "catalog").values()):
        time.sleep(0.5)
    assert not any(s["state"].get("unrecorded") for s in replica_states(cluster, "catalog").values())
    assert stock(cluster, 4) == before - 3


def test_an_order_left_pending_by_a_dead_catalog_is_finished_without_the_client(make_cluster):
    cluster = make_cluster()
    url = cluster.frontend_url
    before = stock(cluster, 6)
    for node in cluster.config.catalog:
        cluster.kill(node.id)
    # The frontend checks the book exists first; go straight to the order leader instead,
    # as a frontend that had already checked would.
    order_url = cluster.config.node(cluster.leader("order")).http.url
    response = requests.post(f"{order_url}/purchase", json={"id": 6, "order_id": "orphan-1"}, timeout=30,
                             auth=cluster.peer_auth)
    assert response.status_code in (200, 503)
    if response.status_code == 200:
        assert response.json()["status"] == "pending"
    for node in cluster.config.catalog:
        cluster.start_process(node.id)
    cluster.wait_ready(timeout=30)
    deadline = time.monotonic() + 30
    status = None
    while time.monotonic() < deadline:
        status = requests.get(f"{url}/orders/orphan-1").json().get("status")
        if status == "completed":
            break
        time.sleep(0.3)
    assert status == "completed"
    assert stock(cluster, 6) == before - 1
    catalogs = wait_converged(cluster, "catalog")
    assert all(s["state"]["purchases"]["orphan-1"]["took_stock"] is True for s in catalogs.values())


COORDINATOR_HOOKS = Path(__file__).resolve().parent / "coordinator_hooks"


def test_an_order_reads_completed_right_after_the_answer_while_its_finish_is_held_back(make_cluster):
    # Read-your-writes: a purchase is answered once the catalog has committed, before its
    # `record` applies; here `record` never applies at all (nor does the recovery loop
    # record it), so every read below can only be right by asking the catalog.
    cluster = make_cluster(env={"PYTHONPATH": str(COORDINATOR_HOOKS), "BAZAR_HOLD_FINISH": "held-"})
    url = cluster.frontend_url
    before = stock(cluster, 5)
    answer = requests.post(f"{url}/purchase/5", headers={"Idempotency-Key": "held-1"}, timeout=10)
    assert answer.status_code == 200, answer.text
    read = requests.get(f"{url}/orders/held-1", timeout=10)
    assert read.status_code == 200, read.text
    assert read.json()["status"] == "completed"
    assert {k: read.json()[k] for k in ("order_id", "id", "title", "price")} == answer.json()
    listed = requests.get(f"{url}/orders?limit=5", headers=cluster.admin_headers, timeout=10).json()["orders"]
    assert [o["status"] for o in listed if o["order_id"] == "held-1"] == ["completed"]
    completed = requests.get(f"{url}/orders?limit=5&status=completed", headers=cluster.admin_headers,
                             timeout=10).json()["orders"]
    assert "held-1" in {o["order_id"] for o in completed}
    # The order group has no record of it anywhere: the answers above came from the catalog,
    # which keeps it until the order group has one.
    for state in replica_states(cluster, "order").values():
        assert "held-1" not in state["state"]["orders"]
    for state in replica_states(cluster, "catalog").values():
        assert state["state"]["unrecorded"]["held-1"]["outcome"]["ok"] is True
    # A retry answers the same order and takes no more stock.
    again = requests.post(f"{url}/purchase/5", headers={"Idempotency-Key": "held-1"}, timeout=10)
    assert again.json() == answer.json()
    assert stock(cluster, 5) == before - 1


def test_a_coordinator_killed_after_the_catalog_commit_and_before_finish(make_cluster, tmp_path):
    cluster = make_cluster(env={"PYTHONPATH": str(COORDINATOR_HOOKS), "BAZAR_DIE_BEFORE_FINISH": "die-",
                                "BAZAR_HOOK_DIR": str(tmp_path)})
    url = cluster.frontend_url
    before = stock(cluster, 6)
    leader = cluster.leader("order")
    leader_url = cluster.config.node(leader).http.url
    # Straight to the order leader (as the frontend does), so that no retry hides the crash.
    with pytest.raises(requests.ConnectionError):
        requests.post(f"{leader_url}/purchase", json={"id": 6, "order_id": "die-1"}, timeout=30,
                      auth=cluster.peer_auth)
    assert (tmp_path / "died-die-1").exists()
    cluster.processes[leader].wait(timeout=10)  # it killed itself (or this raises)
    # The stock was taken; the order is shown completed as soon as the group has a leader.
    deadline, read = time.monotonic() + 30, None
    while time.monotonic() < deadline:
        read = requests.get(f"{url}/orders/die-1", timeout=10)
        if read.status_code == 200:
            break
        time.sleep(0.2)
    assert read is not None and read.status_code == 200, read.text if read is not None else None
    assert read.json()["status"] == "completed"
    assert stock(cluster, 6) == before - 1
    # A retry by the buyer changes nothing, and the record catches up on every replica.
    assert buy_until_done(url, 6, "die-1", time.monotonic() + 20).status_code == 200
    cluster.start_process(leader)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        states = wait_converged(cluster, "order", timeout=30)
        if all(s["state"]["orders"]["die-1"]["status"] == "completed" for s in states.values()):
            break
        time.sleep(0.3)
    assert leader in states
    assert all(s["state"]["orders"]["die-1"]["status"] == "completed" for s in states.values())
    assert stock(cluster, 6) == before - 1
    catalogs = wait_converged(cluster, "catalog")
    assert all(s["state"]["purchases"]["die-1"]["took_stock"] is True for s in catalogs.values())
