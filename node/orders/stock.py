"""Asking the catalog to take stock for orders: `POST /purchase`, or `POST /purchases` for
several, as both purchase coordinators do it (an order leader's, node/orders/purchase.py,
and a frontend's, frontend/checkout.py).

Per order the answer is (the catalog's outcome, the catalog index it was applied at), or
None when it is not known (no catalog replica answered, or it did not confirm in time: it
may still apply). An order id the catalog knows for another book is a definite failure,
(failure "conflict", 0): the catalog never takes stock for this order.
"""
from __future__ import annotations

import logging

from bazar.node.orders.state import PENDING
from bazar.node.results import failure
from bazar.web.client import GroupClient, Refused, Unavailable
from bazar.web.protocol import INDEX_HEADER

log = logging.getLogger("bazar.purchase")


class StockTaker:
    """Calls to the catalog group for orders, each waiting up to `timeout` for the commit."""

    def __init__(self, catalog: GroupClient, timeout: float) -> None:
        self.catalog = catalog
        self.timeout = timeout

    def many(self, orders: list[dict]) -> list[tuple[dict, int] | None] | None:
        """One `POST /purchases` for `orders`: each order's outcome as `one`
        gives it; None if the catalog cannot take batches (a replica of an older version:
        the caller asks one by one)."""
        body = {"purchases": [catalog_item(o) for o in orders]}
        try:
            response = self.catalog.write("POST", "/purchases", body,
                                          timeout=self.timeout)
        except Unavailable:
            log.warning("%d orders: no catalog replica reachable; outcome not known", len(orders))
            return [None] * len(orders)
        except Refused:
            return [None] * len(orders)
        if response.status_code in (404, 405):
            return None
        answers = response.json().get("answers") if response.status_code == 200 else None
        if not isinstance(answers, list) or len(answers) != len(orders):
            log.warning("%d orders: catalog answered %s; outcome not known", len(orders), response.status_code)
            return [None] * len(orders)
        index = int(response.headers.get(INDEX_HEADER, 0))
        results: list[tuple[dict, int] | None] = []
        for order, answer in zip(orders, answers):
            if answer.get("status") == 200:
                results.append((answer["outcome"], index))
            elif answer.get("status") == 422:
                log.warning("order %s: the catalog knows this order id for another book", order["order_id"])
                results.append((failure("conflict", id=order["id"]), 0))
            else:
                results.append(None)
        return results

    def one(self, order: dict) -> tuple[dict, int] | None:
        """`POST /purchase` for one order: its outcome and the catalog index it was applied at."""
        try:
            response = self.catalog.write("POST", "/purchase", catalog_item(order),
                                          timeout=self.timeout)
        except Unavailable:
            log.warning("order %s: no catalog replica reachable; outcome not known", order["order_id"])
            return None
        except Refused:  # logged by the client
            return None
        if response.status_code == 422:
            # The catalog already applied this order id for another book, so it will never
            # take stock for this order: a definite failure, not something to retry.
            log.warning("order %s: the catalog knows this order id for another book", order["order_id"])
            return failure("conflict", id=order["id"]), 0
        if response.status_code != 200:
            log.warning("order %s: catalog answered %s; outcome not known", order["order_id"],
                        response.status_code)
            return None
        return response.json(), int(response.headers.get(INDEX_HEADER, 0))


def new_order(book: int, order_id: str, created_at: float) -> dict:
    """An order the order group has no record of yet, as `begin` would record it (no `seq`)."""
    return {"order_id": order_id, "id": book, "status": PENDING, "title": None, "price": None,
            "error": None, "catalog_index": None, "created_at": created_at, "seq": None}


def catalog_item(order: dict) -> dict:
    """What the catalog is asked to apply for `order`: with `created_at` when the order group
    has no record of it, so that the catalog keeps it until the order group has one."""
    item = {"id": order["id"], "order_id": order["order_id"]}
    if order["seq"] is None:
        item["created_at"] = order["created_at"]
    return item
