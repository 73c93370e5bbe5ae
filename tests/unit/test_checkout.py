"""frontend/checkout.py without a network: what a purchase answers, what it asks of the
catalog, and the records it sends on, with scripted catalog and order clients."""
from __future__ import annotations

import json

import pytest

from bazar.frontend.checkout import Checkout
from bazar.node.catalog import CatalogState
from bazar.node.orders import commands
from bazar.web.client import Reply, Unavailable
from bazar.web.errors import ApiError, BadRequest
from bazar.web.protocol import INDEX_HEADER


class FakeCatalog:
    """A one-replica catalog: applies what it is asked, as the routes would."""

    def __init__(self) -> None:
        self.state = CatalogState()
        self.state.apply({"op": "seed", "books": [{"title": "T", "topic": "t", "price": 3.0, "stock": 1}]})
        self.calls: list = []
        self.down = False

    def write(self, method, path, body, timeout=None):
        self.calls.append((path, body))
        if self.down:
            raise Unavailable("no catalog replica")
        items = body["purchases"] if path == "/purchases" else [body]
        answers = []
        for item in items:
            outcome = self.state.apply({"op": "purchase", **item})
            answers.append({"status": 422} if outcome.get("error") == "conflict" else
                           {"status": 200, "outcome": outcome})
        if path == "/purchases":
            return Reply(200, {INDEX_HEADER: "7"}, json.dumps({"answers": answers}).encode())
        if answers[0]["status"] == 422:
            return Reply(422, {}, b'{"error": "conflict"}')
        return Reply(200, {INDEX_HEADER: "7"}, json.dumps(answers[0]["outcome"]).encode())


class FakeOrders:
    def __init__(self) -> None:
        self.sent: list = []
        self.down = False

    def write(self, method, path, body, timeout=None):
        if self.down:
            raise Unavailable("no order replica")
        self.sent.append((path, body))
        return Reply(200, {}, b'{"recorded": 1}')


class FakeFollower:
    """This frontend's follower of the catalog: the same state, or behind it."""

    def __init__(self, catalog: FakeCatalog) -> None:
        self.catalog = catalog
        self.in_touch = True

    def caught_up(self) -> bool:
        return self.in_touch

    @property
    def state(self):
        catalog = self.catalog

        class _State:
            @staticmethod
            def read(query):
                return query(catalog.state), 7
        return _State


@pytest.fixture
def parts():
    catalog, orders = FakeCatalog(), FakeOrders()
    checkout = Checkout(catalog, orders, FakeFollower(catalog), commit_timeout=1.0)
    checkout.records.delay = 3600  # sent when a test says
    return catalog, orders, checkout


def test_a_purchase_is_one_catalog_call_kept_until_recorded_and_its_record_follows(parts):
    catalog, orders, checkout = parts
    order, index = checkout.buy(1, "k1")
    assert (order["status"], order["title"], index) == ("completed", "T", 7)
    assert catalog.calls == [("/purchase", {"id": 1, "order_id": "k1", "created_at": order["created_at"]})]
    assert list(catalog.state.unrecorded) == ["k1"]         # kept until the order group has it
    assert orders.sent == []                                # nothing waited for in the order group
    checkout.records.send()
    (path, body), = orders.sent
    assert path == "/records" and [r["order_id"] for r in body["records"]] == ["k1"]
    assert commands.record_of(body["records"][0]).outcome == catalog.state.purchase_outcome("k1")


def test_a_retry_the_follower_has_applied_is_answered_from_it_without_a_call(parts):
    catalog, orders, checkout = parts
    first, _ = checkout.buy(1, "k1")
    calls = len(catalog.calls)
    again, index = checkout.buy(1, "k1")
    assert (again["status"], again["title"], index) == (first["status"], first["title"], 0)
    with pytest.raises(ApiError) as raised:
        checkout.buy(2, "k1")                               # the same key for another book
    assert raised.value.status == 422
    assert len(catalog.calls) == calls
    checkout.records.send()
    assert len(orders.sent) == 1 and len(orders.sent[0][1]["records"]) == 1   # recorded once


def test_a_retry_the_follower_has_not_applied_asks_the_catalog_which_answers_the_first_outcome(parts):
    catalog, orders, checkout = parts
    checkout.follower.in_touch = False
    first, _ = checkout.buy(1, "k1")
    again, _ = checkout.buy(1, "k1")
    assert again["status"] == first["status"] == "completed"
    assert catalog.state.books[1]["stock"] == 0                # taken once
    with pytest.raises(ApiError) as raised:
        checkout.buy(2, "k1")
    assert raised.value.status == 422


def test_out_of_stock_is_recorded_failed_and_an_unknown_book_is_not_recorded(parts):
    catalog, orders, checkout = parts
    checkout.buy(1, "k1")
    sold_out, _ = checkout.buy(1, "k2")
    missing, _ = checkout.buy(9, "k3")
    assert (sold_out["status"], sold_out["error"]) == ("failed", "out_of_stock")
    assert (missing["status"], missing["error"]) == ("failed", "not_found")
    checkout.records.send()
    assert [r["order_id"] for r in orders.sent[0][1]["records"]] == ["k1", "k2"]


def test_when_the_catalog_cannot_say_the_answer_is_503_and_nothing_is_recorded(parts):
    catalog, orders, checkout = parts
    catalog.down = True
    with pytest.raises(ApiError) as raised:
        checkout.buy(1, "k1")
    assert raised.value.status == 503
    checkout.records.send()
    assert orders.sent == []


def test_records_the_order_group_cannot_take_are_left_to_its_sweep(parts):
    catalog, orders, checkout = parts
    checkout.buy(1, "k1")
    orders.down = True
    checkout.records.send()                                 # logged, not raised
    assert orders.sent == [] and list(catalog.state.unrecorded) == ["k1"]


@pytest.mark.parametrize("item", [
    None, {}, {"order_id": "", "id": 1, "created_at": 1.0, "outcome": {"ok": True}, "catalog_index": 1},
    {"order_id": "k", "id": 1, "created_at": 1.0, "outcome": {"ok": "yes"}, "catalog_index": 1},
    {"order_id": "k", "id": 1, "created_at": 1.0, "outcome": {"ok": True}, "catalog_index": -1},
    {"order_id": "k", "id": 0, "created_at": 1.0, "outcome": {"ok": True}, "catalog_index": 1},
    {"order_id": "k", "id": 1, "created_at": "now", "outcome": {"ok": True}, "catalog_index": 1},
    {"order_id": "k k", "id": 1, "created_at": 1.0, "outcome": {"ok": True}, "catalog_index": 1},
])
def test_a_record_that_is_not_one_is_refused(item):
    with pytest.raises(BadRequest):
        commands.record_of(item)
