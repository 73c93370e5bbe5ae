"""A short retention really forgets old outcomes, on every replica of both groups."""
from __future__ import annotations

import time

import requests

from tests.integration.probes import buy_until_done, replica_states, stock, wait_converged

RETENTION = 5.0  # seconds; the leaders propose an expire every 0.2 s. (2 s once left too little
# time: CI, 2026-12-07, a first purchase retried on a fresh cluster was forgotten everywhere
# before the check that every replica remembers it.)


def remembered(cluster, key: str) -> dict[str, bool]:
    """Per replica: does it still remember purchase `key` (the catalog's outcome, the order)?"""
    found = {}
    for node, state in replica_states(cluster, "catalog").items():
        found[node] = key in state["state"]["purchases"]
    for node, state in replica_states(cluster, "order").items():
        found[node] = key in state["state"]["orders"]
    return found


def test_outcomes_older_than_the_retention_are_forgotten_everywhere(make_cluster):
    cluster = make_cluster(retention={"outcomes": RETENTION})
    url = cluster.frontend_url
    before = stock(cluster, 1)
    first = buy_until_done(url, 1, "old-order", time.monotonic() + 20)
    assert first.status_code == 200, first.text
    wait_converged(cluster, "catalog")
    wait_converged(cluster, "order")
    assert all(remembered(cluster, "old-order").values())
    # Within the retention, a retry is answered with the first outcome and takes nothing.
    assert buy_until_done(url, 1, "old-order", time.monotonic() + 20).json() == first.json()
    assert stock(cluster, 1) == before - 1

    deadline = time.monotonic() + 20
    while any(remembered(cluster, "old-order").values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert remembered(cluster, "old-order") == {n: False for n in cluster.names if not n.startswith("frontend")}
    catalog, orders = wait_converged(cluster, "catalog"), wait_converged(cluster, "order")
    assert len({s["digest"] for s in catalog.values()}) == 1 and len({s["digest"] for s in orders.values()}) == 1
    assert requests.get(f"{url}/orders/old-order", timeout=5).status_code == 404

    # Forgotten means a retry after the retention is a new purchase.
    again = buy_until_done(url, 1, "old-order", time.monotonic() + 20)
    assert again.status_code == 200 and stock(cluster, 1) == before - 2
