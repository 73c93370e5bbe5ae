"""Exactly-once purchases across the order group and the catalog group.

    1. order group:   begin(order id, book)   -> the order is recorded "pending"
    2. catalog group: purchase(order id, book) -> one copy taken, or refused
    3. order group:   finish(order id, outcome) -> "completed" or "failed"

Every step is idempotent per order id: the catalog remembers the outcome of
each order id it applied, and the order group keeps the first outcome. So a
client retry, a duplicate request, or a second coordinator (the recovery loop
finishing an order whose coordinator died) all converge on one outcome, and
stock is taken at most once. Stock is never taken before step 1 committed, so
no stock is taken without an order.
"""
from __future__ import annotations

import logging
import time

from bazar.node.api import Replica
from bazar.node.orders import commands
from bazar.node.orders.state import PENDING
from bazar.web.client import GroupClient, Refused, Unavailable
from bazar.web.errors import ApiError
from bazar.web.metrics import OrderMetrics
from bazar.web.protocol import INDEX_HEADER

log = logging.getLogger("bazar.purchase")


class PurchaseCoordinator:
    """Runs the three steps above from an order replica."""

    def __init__(self, replica: Replica, catalog: GroupClient, metrics: OrderMetrics) -> None:
        self.replica = replica
        self.catalog = catalog
        self.metrics = metrics  # each step's duration: the per-stage breakdown of a purchase

    def purchase(self, book_id: int, order_id: str) -> dict:
        """Buy one copy of `book_id` as order `order_id`; return the order, decided or pending."""
        with self.metrics.stage("begin"):
            begun = self.replica.commit(commands.begin(book_id, order_id, time.time()))
        if begun.get("error") == "conflict":
            raise ApiError(422, "this Idempotency-Key was already used to buy another book")
        order = begun["order"]
        if order["status"] != PENDING:
            return order  # a retry of a purchase already decided
        return self.finish(order)

    def finish(self, order: dict) -> dict:
        """Take stock for a pending order and record the outcome; the order stays pending if
        the catalog cannot be reached (the recovery loop finishes it later)."""
        with self.metrics.stage("take_stock"):
            taken = self._take_stock(order)
        if taken is None:
            return order
        outcome, catalog_index = taken
        with self.metrics.stage("finish"):
            finished = self.replica.commit(commands.finish(order["order_id"], outcome, catalog_index))
        return finished["order"]

    def _take_stock(self, order: dict) -> tuple[dict, int] | None:
        """The catalog's outcome for this order and the catalog index it was applied at."""
        try:
            response = self.catalog.write("POST", "/purchase",
                                          {"id": order["id"], "order_id": order["order_id"]},
                                          timeout=self.replica.config.raft.commit_timeout)
        except Unavailable:
            log.warning("order %s: no catalog replica reachable; left pending", order["order_id"])
            return None
        except Refused:  # logged by the client; the recovery loop tries again later
            return None
        if response.status_code == 422:
            # The catalog already applied this order id for another book, so it will never
            # take stock for this order: a definite failure, not something to retry.
            log.warning("order %s: the catalog knows this order id for another book", order["order_id"])
            return {"ok": False, "error": "conflict", "id": order["id"]}, 0
        if response.status_code != 200:
            log.warning("order %s: catalog answered %s; left pending", order["order_id"],
                        response.status_code)
            return None
        return response.json(), int(response.headers.get(INDEX_HEADER, 0))
