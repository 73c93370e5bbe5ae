"""Batcher (web/batching.py): group commit for the calls every purchase makes (frontend to
order leader, order leader to catalog), with scripted senders and real threads."""
from __future__ import annotations

import threading
import time

from bazar.web.batching import Batcher, Gatherer


class Catalog:
    """Records every call; each takes `delay` seconds; a call can be held until released."""

    def __init__(self, delay: float = 0.0, batches: bool = True) -> None:
        self.delay, self.batches = delay, batches
        self.calls: list[list[str]] = []
        self.hold = threading.Event()
        self.hold.set()
        self.lock = threading.Lock()

    def one(self, order):
        with self.lock:
            self.calls.append([order["order_id"]])
        self.hold.wait(5)
        time.sleep(self.delay)
        return ({"ok": True, "order_id": order["order_id"]}, len(self.calls))

    def many(self, orders):
        if not self.batches:
            return None
        with self.lock:
            self.calls.append([o["order_id"] for o in orders])
        self.hold.wait(5)
        time.sleep(self.delay)
        return [({"ok": True, "order_id": o["order_id"]}, len(self.calls)) for o in orders]


def _take_all(taker: Batcher, ids: list[str]) -> dict:
    results: dict = {}

    def take(order_id: str) -> None:
        try:
            results[order_id] = taker.call({"id": 1, "order_id": order_id})
        except Exception as error:
            results[order_id] = error

    threads = [threading.Thread(target=take, args=(i,)) for i in ids]
    for thread in threads:
        thread.start()
        time.sleep(0.005)
    return results, threads


def _while_the_first_call_is_held(catalog: Catalog, ids: list[str], max_batch: int = 64) -> dict:
    """Requests `ids`, one after another, while the first call is held in flight; then
    release it and wait for every request: their results (or exceptions)."""
    catalog.hold.clear()
    results, threads = _take_all(Batcher(catalog.one, catalog.many, max_batch), ids)
    time.sleep(0.05)
    catalog.hold.set()
    for thread in threads:
        thread.join(5)
    assert not any(thread.is_alive() for thread in threads), "a request was left waiting"
    return results


def test_a_lone_order_goes_at_once_as_a_single_purchase():
    catalog = Catalog()
    taker = Batcher(catalog.one, catalog.many, 64)
    outcome, _ = taker.call({"id": 1, "order_id": "a"})
    assert outcome == {"ok": True, "order_id": "a"} and catalog.calls == [["a"]]


def test_orders_arriving_during_a_call_share_the_next_one_and_each_gets_its_own_outcome():
    catalog = Catalog()
    catalog.hold.clear()                          # the first call stays in flight
    taker = Batcher(catalog.one, catalog.many, 64)
    results, threads = _take_all(taker, ["a", "b", "c", "d"])
    time.sleep(0.05)
    assert catalog.calls == [["a"]]              # b, c and d wait for it
    catalog.hold.set()
    for thread in threads:
        thread.join(5)
    assert catalog.calls == [["a"], ["b", "c", "d"]]
    assert {k: v[0]["order_id"] for k, v in results.items()} == {"a": "a", "b": "b", "c": "c", "d": "d"}


def test_a_catalog_without_batches_is_asked_one_by_one():
    catalog = Catalog(batches=False)
    results = _while_the_first_call_is_held(catalog, ["a", "b", "c"])
    assert sorted(sum(catalog.calls, [])) == ["a", "b", "c"] and len(results) == 3
    assert all(results[k][0]["order_id"] == k for k in results)


def test_a_failing_call_is_raised_in_each_of_its_threads_and_the_next_ones_still_go():
    calls = []
    release = threading.Event()

    def one(order):
        calls.append(order["order_id"])
        release.wait(5)
        if order["order_id"] == "a":
            raise RuntimeError("connection reset")
        return ({"ok": True}, 1)

    def many(orders):
        calls.append([o["order_id"] for o in orders])
        raise RuntimeError("connection reset")

    taker = Batcher(one, many, 64)
    results, threads = _take_all(taker, ["a", "b", "c"])
    time.sleep(0.05)
    release.set()
    for thread in threads:
        thread.join(5)
    assert not any(t.is_alive() for t in threads), "an order was left waiting"
    assert {k: str(v) for k, v in results.items()} == {k: "connection reset" for k in "abc"}
    assert taker.call({"id": 1, "order_id": "d"}) == ({"ok": True}, 1)   # not stuck in flight


def test_many_threads_each_get_exactly_their_own_outcome():
    catalog = Catalog(delay=0.002)
    taker = Batcher(catalog.one, catalog.many, 64)
    ids = [f"o{i}" for i in range(200)]
    results: dict = {}

    def worker(chunk):
        for order_id in chunk:
            results[order_id] = taker.call({"id": 1, "order_id": order_id})

    threads = [threading.Thread(target=worker, args=(ids[i::16],)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(results) == sorted(ids)
    assert not any(isinstance(r, Exception) for r in results.values())
    assert all(results[k][0]["order_id"] == k for k in ids)
    assert sorted(sum(catalog.calls, [])) == sorted(ids)            # each asked exactly once
    assert len(catalog.calls) < len(ids) / 2                       # and mostly in batches


def test_a_batch_with_the_wrong_number_of_results_fails_every_thread_of_it():
    catalog = Catalog()
    catalog.many = lambda orders: [({"ok": True}, 1)]          # one result for several orders
    results = _while_the_first_call_is_held(catalog, ["a", "b", "c"])
    assert results["a"][0]["order_id"] == "a"
    assert isinstance(results["b"], ValueError) and isinstance(results["c"], ValueError)


def test_no_batch_is_larger_than_its_limit():
    catalog = Catalog()
    results = _while_the_first_call_is_held(catalog, [f"o{i}" for i in range(8)], max_batch=3)
    assert len(results) == 8 and max(len(call) for call in catalog.calls) == 3


# -- Gatherer: items nobody waits for, handed over together --------------------------

class _Collect(Gatherer):
    def __init__(self, delay: float, fail_first: bool = False) -> None:
        super().__init__(delay, "test-gatherer")
        self.flushed: list[list] = []
        self.fail_first = fail_first
        self.flushed_any = threading.Event()

    def flush(self, items: list) -> None:
        if self.fail_first:
            self.fail_first = False
            raise RuntimeError("the other side is down")
        self.flushed.append(items)
        self.flushed_any.set()


def test_items_added_within_the_delay_are_handed_over_together_in_order():
    gatherer = _Collect(0.2)
    for item in range(5):
        gatherer.add(item)
    assert gatherer.flushed_any.wait(5)
    assert gatherer.flushed == [[0, 1, 2, 3, 4]]
    assert gatherer.take() == []


def test_take_hands_the_waiting_items_to_the_caller_and_a_failed_flush_keeps_the_thread():
    gatherer = _Collect(3600)
    gatherer.add("a")
    assert gatherer.take() == ["a"] and gatherer.flushed == []
    failing = _Collect(0.05, fail_first=True)
    failing.add(1)                      # lost with the failed flush (what it held is recovered elsewhere)
    deadline = time.monotonic() + 5
    while failing.fail_first and time.monotonic() < deadline:
        time.sleep(0.01)
    failing.add(2)
    assert failing.flushed_any.wait(5)
    assert failing.flushed == [[2]]
