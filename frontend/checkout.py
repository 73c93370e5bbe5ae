"""A purchase, coordinated by the frontend that took it: one commit before the answer.

    1. catalog group: purchase(order id, book, created_at) -> one copy taken, or refused;
                      the catalog keeps it as unrecorded          (the buyer waits for this)
    2. order group:   record(order id, book, outcome)        -> sent after the answer
    3. catalog group: recorded(order ids)                    -> the order leader's sweep

The protocol is the one an order replica coordinates (node/orders/purchase.py, whose
docstring says why no order is lost): the catalog decides the order once per order id,
and keeps it until the order group has recorded it, so the order group may learn of it
after the answer, from this frontend (`RecordSender`, within RECORD_DELAY) or, if this
frontend dies first, from the order leader's sweep. Asking the catalog directly saves the
hop through the order leader: a purchase is two HTTP requests served and one commit.

What the buyer gets:
- the order as the catalog decided it (completed, or failed: out of stock, no such book);
- 422 if the order id is known to the catalog for another book;
- 503 if the catalog did not say in time: the purchase may still apply (and would then be
  recorded like any other), so the same Idempotency-Key asked again learns its outcome.

A retry of an order this frontend's catalog follower has already applied is answered from
the follower's state, with no commit. Under load, the calls to the catalog are batched the
way group commit batches rounds (`web/batching.py`), and so are the records.
"""
from __future__ import annotations

import logging
import time

from bazar.frontend.follower import CatalogFollower
from bazar.node.orders.state import settle
from bazar.node.orders.stock import StockTaker, new_order
from bazar.node.validation import MAX_PURCHASES, MAX_RECORDED
from bazar.web import logs
from bazar.web.batching import Batcher, Gatherer
from bazar.web.client import GroupClient, Refused, Unavailable
from bazar.web.errors import ApiError, unavailable

log = logging.getLogger("bazar.purchase")

# The longest a decided order's record waits for others to go with it to the order leader.
# Reads of the order meanwhile ask the catalog (one strong read), so it is kept short; but
# nobody waits for it, and the longer it is, the more records share one round of the order
# group (bench/results/where-the-time-goes.md, seventh session).
RECORD_DELAY = 0.1


class Checkout:
    """Purchases through the catalog group, their records sent on to the order group."""

    def __init__(self, catalog: GroupClient, orders: GroupClient, follower: CatalogFollower,
                 commit_timeout: float) -> None:
        self.follower = follower
        self.taker = StockTaker(catalog, commit_timeout)
        self.stock = Batcher(self.taker.one, self.taker.many, MAX_PURCHASES)
        self.records = RecordSender(orders, RECORD_DELAY, commit_timeout)
        # Each step's duration (web/metrics.py purchase_stages), once the app has metrics.
        self.stages: dict | None = None
        self.records.timer = self   # times the "finish" stage: from a record's adding to its commit

    def buy(self, book_id: int, order_id: str) -> tuple[dict, int]:
        """The order `order_id` for book `book_id` as the catalog decided it, and the catalog
        index it was applied at (0: answered from this frontend's follower, which has applied
        it); 422 or 503 as the module docstring says."""
        remembered = self._remembered(book_id, order_id)
        if remembered is not None:
            return remembered, 0
        order = new_order(book_id, order_id, round(time.time(), 3))
        started = time.perf_counter()
        try:
            taken = self.stock.call(order)
        except Exception:   # as when no catalog replica answers: the outcome is not known
            log.exception("order %s: could not ask the catalog", order_id)
            taken = None
        self.observe("take_stock", time.perf_counter() - started)
        if taken is None:
            raise unavailable("the catalog did not confirm the purchase in time; it may still be "
                              "applied: retry with the same Idempotency-Key to learn its outcome")
        outcome, index = taken
        if outcome.get("error") == "conflict":
            raise ApiError(422, "this Idempotency-Key was already used to buy another book")
        if outcome.get("error") != "not_found":  # no such book: no order to keep, none kept
            self.records.add({"order_id": order_id, "id": book_id, "created_at": order["created_at"],
                              "outcome": outcome, "catalog_index": index})
        return settle(order, outcome, index), index

    def observe(self, stage: str, seconds: float, count: int = 1) -> None:
        """Count `count` purchases through `stage`, each taking `seconds`."""
        if self.stages is not None:
            for _ in range(count):
                self.stages[stage].observe(seconds)

    def _remembered(self, book_id: int, order_id: str) -> dict | None:
        """The order as decided, if this frontend's follower has applied its purchase (a
        retry); None otherwise, or while the follower may be behind its leader."""
        if not self.follower.caught_up():
            return None
        outcome, index = self.follower.state.read(lambda m: m.purchase_outcome(order_id))
        if outcome is None:
            return None
        if outcome.get("id") != book_id:
            raise ApiError(422, "this Idempotency-Key was already used to buy another book")
        return settle(new_order(book_id, order_id, None), outcome, index)


class RecordSender(Gatherer):
    """Records of decided orders, sent to the order group together (`POST /records`, one
    round there) `delay` seconds after the first of them was added, by a daemon thread.

    Nothing waits for them, and losing them loses nothing: the catalog keeps every purchase
    until the order group has recorded it, and the order leader's sweep records what never
    arrived (a frontend that died, an order group without a leader for a while)."""

    def __init__(self, orders: GroupClient, delay: float, timeout: float) -> None:
        super().__init__(delay, "record-sender")
        self.orders = orders
        self.timeout = timeout
        self.timer = None  # an object with `observe(stage, seconds)`

    def add(self, record: dict) -> None:
        """Queue `record` (as `POST /records` takes it), with the request id of its purchase."""
        super().add((record, logs.current_request_id(), time.perf_counter()))

    def send(self) -> None:
        """Send every queued record now."""
        self.flush_now()

    def flush(self, items: list) -> None:
        """Send `items` in batches of at most MAX_RECORDED."""
        for start in range(0, len(items), MAX_RECORDED):
            batch = items[start:start + MAX_RECORDED]
            # Sent under the first purchase's request id: its trace reaches the order group.
            token = logs.begin_request(batch[0][1])
            try:
                response = self.orders.write("POST", "/records", {"records": [r for r, _, _ in batch]},
                                             timeout=self.timeout)
                if response.status_code == 200 and self.timer is not None:
                    now = time.perf_counter()
                    for _, _, added in batch:
                        self.timer.observe("finish", now - added)
                if response.status_code != 200:
                    log.warning("%d records: the order group answered %s; its sweep will record them",
                                len(batch), response.status_code)
            except (Unavailable, Refused):
                log.warning("%d records: no order replica took them; its sweep will record them", len(batch))
            finally:
                logs.end_request(token)
