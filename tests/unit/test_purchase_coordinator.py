"""PurchaseCoordinator without a network: what a purchase answers, and how a pending order
is shown to readers, with an in-process order state and a scripted catalog."""
from __future__ import annotations

import json
import time

import pytest

from bazar.node.orders import COMPLETED, FAILED, PENDING, OrderState
from bazar.node.orders import commands
from bazar.node.orders.purchase import PurchaseCoordinator
from bazar.node.wire import to_wire
from bazar.web.client import Reply, Unavailable
from bazar.web.errors import ApiError
from bazar.web.protocol import INDEX_HEADER

OK = {"ok": True, "id": 1, "title": "RPCs for Noobs", "price": 20.5}


class _Config:
    class raft:
        commit_timeout = 1.0


class FakeReplica:
    """Commits apply at once; proposals (`commit_nowait`) wait in `proposed` until applied."""

    config = _Config

    def __init__(self) -> None:
        self.state = OrderState()
        self.proposed: list = []

    def commit(self, command, first=()):
        self.proposed.extend(command for command, _ in first)
        return self.state.apply(to_wire(command))

    def commit_many(self, commands, first=()):
        self.proposed.extend(command for command, _ in first)
        return [self.state.apply(to_wire(command)) for command in commands]

    def commit_nowait(self, command, on_done=None):
        self.proposed.append(command)

    def apply_proposed(self) -> None:
        for command in self.proposed:
            self.state.apply(to_wire(command))
        self.proposed.clear()


class FakeCatalog:
    """Answers as a catalog replica would: `outcomes` by order id, or raises `failure`."""

    def __init__(self) -> None:
        self.outcomes: dict[str, dict] = {}
        self.failure: Exception | None = None
        self.status = None  # force a status (e.g. 503)
        self.calls: list = []

    def _reply(self, order_id: str) -> Reply:
        if self.failure is not None:
            raise self.failure
        if self.status is not None:
            return Reply(self.status, {}, b'{"error": "busy"}')
        if order_id not in self.outcomes:
            return Reply(404, {}, b'{"error": "no purchase applied with that order id"}')
        return Reply(200, {INDEX_HEADER: "9"}, json.dumps(self.outcomes[order_id]).encode())

    def write(self, method, path, body, timeout=None):
        if path == "/purchases":
            self.calls.append(("batch", [item["order_id"] for item in body["purchases"]]))
            if self.failure is not None:
                raise self.failure
            answers = []
            for item in body["purchases"]:
                self.outcomes.setdefault(item["order_id"], OK)
                answers.append({"status": 200, "outcome": self.outcomes[item["order_id"]]})
            return Reply(200, {INDEX_HEADER: "9"}, json.dumps({"answers": answers}).encode())
        self.calls.append(("write", body["order_id"]))
        self.outcomes.setdefault(body["order_id"], OK)
        return self._reply(body["order_id"])

    def read(self, path, timeout=None, prefer_leader=False):
        self.calls.append(("read", path))
        assert "consistency=strong" in path and prefer_leader
        return self._reply(path.split("/")[-1].split("?")[0])


class FakeMetrics:
    class _Timer:
        def observe(self, _seconds):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    stages = {"finish": _Timer(), "begin": _Timer(), "take_stock": _Timer()}

    def stage(self, _name):
        return self._Timer()


@pytest.fixture
def parts():
    replica, catalog = FakeReplica(), FakeCatalog()
    coordinator = PurchaseCoordinator(replica, catalog, FakeMetrics())
    coordinator.finishes.delay = 3600  # queued finishes go with the next begin, or when a test says
    return replica, catalog, coordinator


def test_a_purchase_is_answered_decided_before_its_finish_applies(parts):
    replica, catalog, coordinator = parts
    answer = coordinator.purchase(1, "o1")
    assert answer["status"] == COMPLETED and answer["catalog_index"] == 9
    assert replica.state.order("o1")["status"] == PENDING           # finish only queued
    assert replica.proposed == []
    coordinator.finishes.propose()
    assert replica.proposed == [commands.finish("o1", OK, 9)]
    replica.apply_proposed()
    assert replica.state.order("o1") == answer                       # what it recorded is what it said


def test_a_queued_finish_is_proposed_with_the_next_begin(parts):
    replica, catalog, coordinator = parts
    coordinator.purchase(1, "o1")
    coordinator.purchase(1, "o2")
    assert replica.proposed == [commands.finish("o1", OK, 9)]       # o2's waits for the next one
    replica.apply_proposed()
    assert replica.state.order("o1")["status"] == COMPLETED


def test_a_queued_finish_is_proposed_after_the_delay_when_no_purchase_comes():
    replica, catalog = FakeReplica(), FakeCatalog()
    coordinator = PurchaseCoordinator(replica, catalog, FakeMetrics())
    coordinator.purchase(1, "o1")
    deadline = time.monotonic() + 5
    while not replica.proposed and time.monotonic() < deadline:
        time.sleep(0.01)
    assert replica.proposed == [commands.finish("o1", OK, 9)]


def test_a_pending_order_is_shown_as_the_catalog_decided_it(parts):
    replica, catalog, coordinator = parts
    coordinator.purchase(1, "o1")
    coordinator.finishes = type(coordinator.finishes)(replica, 3600)  # its finish is lost (the coordinator died)
    shown = coordinator.resolved(replica.state.order("o1"))
    assert shown["status"] == COMPLETED and shown["title"] == OK["title"]
    coordinator.finishes.propose()
    assert replica.proposed == [commands.finish("o1", OK, 9)]       # and the record is caught up


def test_a_pending_order_the_catalog_never_applied_stays_pending(parts):
    replica, catalog, coordinator = parts
    order = replica.commit(commands.begin(1, "o2", 1.0))["order"]
    assert coordinator.resolved(order) == order
    assert replica.proposed == []


def test_an_order_id_the_catalog_knows_for_another_book_is_shown_failed(parts):
    replica, catalog, coordinator = parts
    order = replica.commit(commands.begin(2, "o3", 1.0))["order"]
    catalog.outcomes["o3"] = OK  # for book 1
    shown = coordinator.resolved(order)
    assert shown["status"] == FAILED and shown["error"] == "conflict"


@pytest.mark.parametrize("failure, status", [(Unavailable("down"), None), (None, 503)])
def test_a_pending_order_the_catalog_cannot_tell_about_is_a_503_not_pending(parts, failure, status):
    replica, catalog, coordinator = parts
    order = replica.commit(commands.begin(1, "o4", 1.0))["order"]
    catalog.failure, catalog.status = failure, status
    with pytest.raises(ApiError) as raised:
        coordinator.resolved(order)
    assert raised.value.status == 503


def test_a_decided_order_is_shown_as_recorded_without_asking_the_catalog(parts):
    replica, catalog, coordinator = parts
    coordinator.purchase(1, "o5")
    coordinator.finishes.propose()
    replica.apply_proposed()
    calls = len(catalog.calls)
    assert coordinator.resolved(replica.state.order("o5"))["status"] == COMPLETED
    assert len(catalog.calls) == calls


def test_a_batch_commits_its_begins_together_and_asks_the_catalog_once(parts):
    replica, catalog, coordinator = parts
    coordinator.purchase(2, "taken-for-book-2")
    catalog.calls.clear()
    answers = coordinator.purchase_many([(1, "b1"), (1, "b2"), (1, "taken-for-book-2")])
    assert [a["status"] for a in answers] == [200, 200, 422]
    assert [a["order"]["status"] for a in answers[:2]] == [COMPLETED, COMPLETED]
    assert catalog.calls == [("batch", ["b1", "b2"])]               # one call, for the two begun
    coordinator.finishes.propose()
    replica.apply_proposed()
    assert replica.state.order("b1")["status"] == COMPLETED
    again = coordinator.purchase_many([(1, "b1"), (1, "b2")])        # retried: first outcomes, no call
    assert [a["order"] for a in again] == [replica.state.order("b1"), replica.state.order("b2")]
    assert catalog.calls == [("batch", ["b1", "b2"])]


def test_a_batch_the_catalog_cannot_take_leaves_its_orders_pending(parts):
    replica, catalog, coordinator = parts
    catalog.failure = Unavailable("no catalog replica")
    answers = coordinator.purchase_many([(1, "p1"), (1, "p2")])
    assert [(a["status"], a["order"]["status"]) for a in answers] == [(200, PENDING), (200, PENDING)]
    assert replica.proposed == []                                   # no finish: the sweeper decides
