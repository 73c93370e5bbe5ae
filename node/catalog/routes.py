"""HTTP routes of a catalog replica.

Reads are answered from this replica's applied state (`consistency=local`,
the default; refused while the replica is out of touch with its leader) or,
on the leader only, at a read index confirmed by a heartbeat round
(`consistency=strong`, linearizable, nothing appended to the log; see
`Replica.read_strong`). Every answer carries `X-Bazar-Index`, the log index
it reflects, which the frontend's cache uses to refuse stale fills.
"""
from __future__ import annotations

from flask import Flask, jsonify, request

from bazar.node import validation
from bazar.node.api import Replica, strong_requested
from bazar.node.catalog import commands
from bazar.web import params
from bazar.web.errors import ApiError, json_body, json_object, unavailable
from bazar.web.protocol import INDEX_HEADER

MIN_INDEX_WAIT = 0.3  # seconds a read may wait for this replica to catch up


def register(app: Flask, replica: Replica) -> None:
    @app.get("/books/<raw_id>")
    def info(raw_id: str):
        book_id = commands.book_id(raw_id)
        strong = strong_requested()
        _wait_for_min_index(replica)
        book, index = replica.read(lambda m: m.book(book_id), strong=strong)
        if book is None:
            raise ApiError(404, f"no book with id {book_id}")
        return _with_index(jsonify(book), index)

    @app.get("/search/<path:raw_topic>")
    def search(raw_topic: str):
        topic = params.topic(raw_topic)
        strong = strong_requested()
        _wait_for_min_index(replica)
        items, index = replica.read(lambda m: m.search(topic), strong=strong)
        return _with_index(jsonify(topic=topic, items=items), index)

    @app.get("/books")
    def books():
        listing, index = replica.read_local(lambda m: [m.book(i) for i in sorted(m.books)])
        return _with_index(jsonify(books=listing), index)

    @app.get("/topics")
    def topics():
        _wait_for_min_index(replica)
        listing, index = replica.read_local(lambda m: m.topics())
        return _with_index(jsonify(topics=listing), index)

    @app.post("/books")
    def add_book():
        command = commands.add_book(json_body(request), request.headers.get("Idempotency-Key"))
        result = _refuse_conflict(replica.commit(command))
        return _with_index(jsonify(result["book"]), replica.state.applied_index), 201

    @app.put("/books/<raw_id>")
    def update_book(raw_id: str):
        command = commands.update_book(raw_id, json_body(request),
                                       request.headers.get("Idempotency-Key"))
        result = _refuse_conflict(replica.commit(command))
        if "book" not in result:
            raise ApiError(404, f"no book with id {command.id}")
        return _with_index(jsonify(result["book"]), replica.state.applied_index)

    @app.post("/purchase")
    def purchase():
        """Take one copy for an order (order replicas call this; idempotent per order id)."""
        body = json_object(request)
        if not body.get("order_id"):
            raise ApiError(400, "order_id is required")
        command = commands.purchase(body.get("id"), body["order_id"], body.get("created_at"))
        outcome = _refuse_conflict(replica.commit(command))
        return _with_index(jsonify(outcome), replica.state.applied_index)

    @app.post("/purchases")
    def purchases():
        """Take copies for several orders at once (an order leader's batch of the purchases
        that arrived while its previous call was in flight, node/orders/purchase.py): every
        item is checked before anything is proposed, then all are committed together, in one
        round. The answer lists, in order, each item's outcome as `POST /purchase` would
        answer it: {"status": 200, "outcome": ...}, 422 (the order id is known for another
        book) or 503 (not confirmed in time: it may still apply; asking again is safe)."""
        batch = []
        for item in validation.purchase_batch(json_object(request)):
            if not item.get("order_id"):
                raise ApiError(400, "every purchase needs an id and an order_id")
            batch.append(commands.purchase(item.get("id"), item["order_id"], item.get("created_at")))
        answers = []
        for outcome in replica.commit_many(batch):
            if outcome is None:
                answers.append({"status": 503})
            elif outcome.get("error") == "conflict":
                answers.append({"status": 422})
            else:
                answers.append({"status": 200, "outcome": outcome})
        return _with_index(jsonify(answers=answers), replica.state.applied_index)

    @app.get("/purchases/<order_id>")
    def purchase_outcome(order_id: str):
        """The outcome remembered for an order id (404: never applied, or forgotten after the
        retention). Order replicas ask with `consistency=strong` to decide an order whose
        `finish` has not applied: that read includes every purchase acknowledged before it."""
        (outcome, unrecorded), index = replica.read(
            lambda m: (m.purchase_outcome(order_id), m.unrecorded_order(order_id)), strong=strong_requested())
        if outcome is None and unrecorded is not None:
            outcome = unrecorded["outcome"]  # forgotten for retries, still kept for the order group
        if outcome is None:
            raise ApiError(404, "no purchase applied with that order id")
        if unrecorded is not None:  # what an order replica needs to show an order it has not recorded
            outcome = dict(outcome, created_at=unrecorded["created_at"], unrecorded=True)
        return _with_index(jsonify(outcome), index)

    @app.get("/unrecorded")
    def unrecorded():
        """Purchases the order group has still to record (its leader's sweep asks, then
        records them and says so with `POST /recorded`), created before `?before=` (seconds
        since the epoch, default now), oldest first, at most `?limit=` (default and most
        MAX_RECORDED); `?newest=1`: newest first (an order listing). Answered from this
        replica's applied state: a purchase it has not applied yet is found by a later sweep."""
        before = validation.timestamp(_number(request.args.get("before"), "before")) \
            if request.args.get("before") is not None else float("inf")
        limit = params.limit(request.args.get("limit"), default=commands.MAX_RECORDED,
                             maximum=commands.MAX_RECORDED)
        newest = request.args.get("newest") == "1"
        listing, index = replica.read_local(lambda m: m.unrecorded_before(before, limit, newest))
        return _with_index(jsonify(purchases=listing), index)

    @app.post("/recorded")
    def recorded():
        """The order group has recorded these orders (`{"order_ids": [...]}`): the catalog
        stops keeping them as unrecorded. Idempotent; unknown ids change nothing."""
        result = replica.commit(commands.recorded(json_object(request).get("order_ids")))
        return _with_index(jsonify(result), replica.state.applied_index)


def _number(raw: str, name: str) -> float:
    """A query parameter that must be a number; 400 otherwise."""
    try:
        return float(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be a number") from None


def _wait_for_min_index(replica: Replica) -> None:
    """Honour `?min_index=N`: answer only once this replica has applied entry N.

    The frontend asks for the index of the last change it knows of, so a lagging
    replica never hands it an answer older than a write it has already seen.
    """
    index = params.min_index(request.args.get("min_index"))
    if index is not None and not replica.member.wait_applied(index, MIN_INDEX_WAIT):
        raise unavailable(f"this replica has not applied entry {index} yet")


def _refuse_conflict(result: dict) -> dict:
    """422 for an id first used for another book or operation (the state machine changed
    nothing); the remembered result belongs to that other request and is not shown."""
    if result.get("error") == "conflict":
        raise ApiError(422, "this Idempotency-Key (or order id) was already used for another "
                            "book or operation")
    return result


def _with_index(response, index: int):
    response.headers[INDEX_HEADER] = str(index)
    return response
