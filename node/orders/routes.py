"""HTTP routes of an order replica: purchases (coordinated here) and the order record.

Order reads take `?consistency=local|strong` like catalog reads; the frontend asks
for `strong` (the leader's view, including every acknowledged purchase). An order
still pending in the record, or not in it yet, is shown as the catalog's outcome decides
it (`PurchaseCoordinator.resolved`, `.unrecorded`): a purchase is answered before its
record applies."""
from __future__ import annotations

from flask import Flask, jsonify, request

from bazar.node import validation
from bazar.node.api import Replica, strong_requested
from bazar.node.orders import commands
from bazar.node.orders.purchase import PurchaseCoordinator
from bazar.web import params
from bazar.web.errors import ApiError, json_object


def register(app: Flask, replica: Replica, coordinator: PurchaseCoordinator) -> None:
    @app.post("/purchase")
    def purchase():
        body = json_object(request)
        book_id = validation.book_id(body.get("id"))
        order_id = validation.order_id(body.get("order_id"))
        order = coordinator.purchase(book_id, order_id)
        return jsonify(order)

    @app.post("/purchases")
    def purchases():
        """Several purchases at once (a frontend's batch, web/batching.py): every item is
        checked before anything is proposed; answered, in order, as `PurchaseCoordinator.
        purchase_many` answers each."""
        batch = [(validation.book_id(item.get("id")), validation.order_id(item.get("order_id")))
                 for item in validation.purchase_batch(json_object(request))]
        return jsonify(answers=coordinator.purchase_many(batch))

    @app.post("/records")
    def records():
        """Orders the catalog decided, from the frontend that coordinated their purchases
        (frontend/checkout.py): every item is checked first, then all are committed
        together, in one round. Idempotent: an order already recorded keeps its outcome."""
        body = json_object(request)
        items = body.get("records")
        if not isinstance(items, list) or not 1 <= len(items) <= validation.MAX_RECORDED:
            raise ApiError(400, f"records must be a list of 1 to {validation.MAX_RECORDED} records")
        results = replica.commit_many([commands.record_of(item) for item in items])
        return jsonify(recorded=sum(result is not None for result in results))

    @app.get("/orders")
    def orders():
        limit = params.limit(request.args.get("limit"))
        status = request.args.get("status")
        if status not in (None, "pending", "completed", "failed"):
            raise ApiError(400, "status must be pending, completed or failed")
        # Pending orders may be decided already: read them too, decide them, then pick. The
        # newest orders may not be recorded yet: the catalog keeps those (seconds' worth).
        listing, index = replica.read(lambda m: m.newest(limit, status, with_pending=True),
                                      strong=strong_requested())
        decided = [coordinator.resolved(order) for order in listing]
        shown = {order["order_id"] for order in decided}
        decided = [o for o in coordinator.unrecorded_orders(limit) if o["order_id"] not in shown] + decided
        listing = [order for order in decided if status is None or order["status"] == status][:limit]
        return jsonify(orders=listing, applied_index=index)

    @app.get("/orders/<order_id>")
    def order(order_id: str):
        found, _ = replica.read(lambda m: m.order(order_id), strong=strong_requested())
        if found is None:  # perhaps decided by the catalog and not recorded here yet
            if validation.ORDER_ID.fullmatch(order_id):
                found = coordinator.unrecorded(order_id)
            if found is None:
                raise ApiError(404, "no order with that id")
            return jsonify(found)
        return jsonify(coordinator.resolved(found))
