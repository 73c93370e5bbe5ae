"""PurchaseCoordinator without a network: what a purchase answers, and how a pending order
is shown to readers, with an in-process order state and a scripted catalog."""
from __future__ import annotations

import json
import time

import pytest

from bazar.node.orders import COMPLETED, FAILED, PENDING, OrderState
from bazar.node.orders import commands
from bazar.node.orders import purchase
from bazar.node.orders.purchase import PurchaseCoordinator
from bazar.node.wire import to_wire
from bazar.web.client import Reply, Unavailable
from bazar.web.errors import ApiError
from bazar.web.protocol import INDEX_HEADER

OK = {"ok": True, "id": 1, "title": "RPCs for Noobs", "price": 20.5}


class _Config:
    class raft:
        commit_timeout = 1.0


class FakeState:
    """The replicated state's read, over an in-process order state machine."""

    def __init__(self) -> None:
        self.machine = OrderState()

    def read(self, query):
        return query(self.machine), 0

    def order(self, order_id):
        return self.machine.order(order_id)


class FakeReplica:
    """Commits apply at once (counted in `committed`); proposals nobody waits for
    (`commit_nowait_many`) wait in `proposed` until applied."""

    config = _Config

    max_lag = 1.0

    class member:
        is_leader = True

        @staticmethod
        def in_touch(_lag):
            return True

    def __init__(self) -> None:
        self.state = FakeState()
        self.proposed: list = []
        self.committed: list = []

    def commit(self, command, first=()):
        return self.commit_many([command], first)[0]

    def commit_many(self, commands, first=()):
        self.proposed.extend(command for command, _ in first)
        self.committed.extend(commands)
        return [self.state.machine.apply(to_wire(command)) for command in commands]

    def commit_nowait_many(self, pairs):
        self.proposed.extend(command for command, _ in pairs)

    def apply_proposed(self) -> None:
        for command in self.proposed:
            self.state.machine.apply(to_wire(command))
        self.proposed.clear()


class FakeCatalog:
    """Answers as a catalog replica would: `outcomes` by order id (a purchase asked with
    `created_at` is kept in `unrecorded` as the catalog keeps it), or raises `failure`."""

    def __init__(self) -> None:
        self.outcomes: dict[str, dict] = {}
        self.unrecorded: dict[str, dict] = {}
        self.failure: Exception | None = None
        self.status = None  # force a status (e.g. 503)
        self.calls: list = []

    def _apply(self, item: dict) -> dict:
        if item["order_id"] in self.outcomes:
            known = self.outcomes[item["order_id"]]
            return {"status": 422} if known.get("id") != item["id"] else {"status": 200, "outcome": known}
        self.outcomes[item["order_id"]] = dict(OK, id=item["id"])
        if "created_at" in item:
            self.unrecorded[item["order_id"]] = {"id": item["id"], "created_at": item["created_at"]}
        return {"status": 200, "outcome": self.outcomes[item["order_id"]]}

    def _reply(self, order_id: str) -> Reply:
        if self.failure is not None:
            raise self.failure
        if self.status is not None:
            return Reply(self.status, {}, b'{"error": "busy"}')
        if order_id not in self.outcomes:
            return Reply(404, {}, b'{"error": "no purchase applied with that order id"}')
        outcome = dict(self.outcomes[order_id])
        if order_id in self.unrecorded:
            outcome.update(created_at=self.unrecorded[order_id]["created_at"], unrecorded=True)
        return Reply(200, {INDEX_HEADER: "9"}, json.dumps(outcome).encode())

    def write(self, method, path, body, timeout=None):
        if path == "/purchases":
            self.calls.append(("batch", [item["order_id"] for item in body["purchases"]]))
            if self.failure is not None:
                raise self.failure
            answers = [self._apply(item) for item in body["purchases"]]
            return Reply(200, {INDEX_HEADER: "9"}, json.dumps({"answers": answers}).encode())
        self.calls.append(("write", body["order_id"], "created_at" in body))
        if self.failure is not None:
            raise self.failure
        answer = self._apply(body)
        if answer["status"] == 422:
            return Reply(422, {}, b'{"error": "conflict"}')
        return Reply(200, {INDEX_HEADER: "9"}, json.dumps(answer["outcome"]).encode())

    def read(self, path, timeout=None, prefer_leader=False):
        self.calls.append(("read", path))
        assert prefer_leader
        if path.startswith("/unrecorded"):
            listing = [{"order_id": o, **entry, "outcome": self.outcomes[o]} for o, entry in self.unrecorded.items()]
            return Reply(200, {INDEX_HEADER: "9"}, json.dumps({"purchases": listing}).encode())
        assert "consistency=strong" in path
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
    coordinator.records.delay = 3600  # queued records are proposed when a test says
    return replica, catalog, coordinator


def _without_seq(order: dict) -> dict:
    return {k: v for k, v in order.items() if k != "seq"}


def test_a_purchase_is_answered_once_the_catalog_decided_it_with_no_commit_of_its_own(parts):
    replica, catalog, coordinator = parts
    answer = coordinator.purchase(1, "o1")
    assert answer["status"] == COMPLETED and answer["catalog_index"] == 9
    assert replica.committed == []                                  # nothing waited for in this group
    assert catalog.calls == [("write", "o1", True)]                 # asked to keep it until recorded
    assert replica.state.order("o1") is None and replica.proposed == []   # its record only queued
    coordinator.records.propose()
    assert replica.proposed == [commands.record(1, "o1", answer["created_at"], catalog.outcomes["o1"], 9)]
    replica.apply_proposed()
    assert _without_seq(replica.state.order("o1")) == _without_seq(answer)  # recorded what it said


def test_queued_records_are_proposed_together_after_the_delay():
    replica, catalog = FakeReplica(), FakeCatalog()
    coordinator = PurchaseCoordinator(replica, catalog, FakeMetrics())
    coordinator.purchase(1, "o1")
    coordinator.purchase(1, "o2")
    deadline = time.monotonic() + 5
    while len(replica.proposed) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [c.order_id for c in replica.proposed] == ["o1", "o2"]


def test_an_order_not_recorded_yet_is_shown_as_the_catalog_decided_it(parts):
    replica, catalog, coordinator = parts
    answer = coordinator.purchase(1, "o1")
    coordinator.records = type(coordinator.records)(replica, 3600)  # its record is lost (the coordinator died)
    shown = coordinator.unrecorded("o1")
    assert _without_seq(shown) == _without_seq(answer)
    coordinator.records.propose()
    assert [c.order_id for c in replica.proposed] == ["o1"]         # and the record is caught up
    assert coordinator.unrecorded("nobody-bought-this") is None


def test_an_order_the_catalog_cannot_tell_about_is_a_503(parts):
    replica, catalog, coordinator = parts
    catalog.failure = Unavailable("down")
    with pytest.raises(ApiError) as raised:
        coordinator.unrecorded("o9")
    assert raised.value.status == 503


def test_a_pending_order_is_shown_as_the_catalog_decided_it(parts):
    replica, catalog, coordinator = parts
    order = replica.commit(commands.begin(1, "o1", 1.0))["order"]
    catalog.outcomes["o1"] = OK
    shown = coordinator.resolved(order)
    assert shown["status"] == COMPLETED and shown["title"] == OK["title"]
    coordinator.records.propose()
    assert replica.proposed == [commands.record(1, "o1", 1.0, OK, 9)]   # and the record is caught up


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


def test_a_decided_order_is_answered_as_recorded_without_asking_the_catalog(parts):
    replica, catalog, coordinator = parts
    first = coordinator.purchase(1, "o5")
    coordinator.records.propose()
    replica.apply_proposed()
    calls = len(catalog.calls)
    assert coordinator.resolved(replica.state.order("o5"))["status"] == COMPLETED
    assert _without_seq(coordinator.purchase(1, "o5")) == _without_seq(first)   # a retry
    assert len(catalog.calls) == calls
    with pytest.raises(ApiError) as raised:                          # the same key for another book
        coordinator.purchase(2, "o5")
    assert raised.value.status == 422 and len(catalog.calls) == calls


def test_a_batch_asks_the_catalog_once_and_proposes_its_records_together(parts):
    replica, catalog, coordinator = parts
    coordinator.purchase(2, "taken-for-book-2")
    coordinator.records.propose()
    replica.apply_proposed()
    catalog.calls.clear()
    answers = coordinator.purchase_many([(1, "b1"), (1, "b2"), (1, "taken-for-book-2")])
    assert [a["status"] for a in answers] == [200, 200, 422]
    assert [a["order"]["status"] for a in answers[:2]] == [COMPLETED, COMPLETED]
    assert catalog.calls == [("batch", ["b1", "b2"])]               # one call, for the two new ones
    assert replica.committed == []
    coordinator.records.propose()
    replica.apply_proposed()
    assert replica.state.order("b1")["status"] == COMPLETED
    again = coordinator.purchase_many([(1, "b1"), (1, "b2")])        # retried: first outcomes, no call
    assert [a["order"] for a in again] == [replica.state.order("b1"), replica.state.order("b2")]
    assert catalog.calls == [("batch", ["b1", "b2"])]


def test_an_order_id_the_catalog_knows_for_another_book_is_refused_and_not_recorded(parts):
    replica, catalog, coordinator = parts
    catalog.outcomes["used"] = dict(OK, id=2)
    with pytest.raises(ApiError) as raised:
        coordinator.purchase(1, "used")
    assert raised.value.status == 422
    coordinator.records.propose()
    assert replica.proposed == [] and replica.committed == []


def test_a_replica_that_is_not_the_leader_coordinates_nothing(parts, monkeypatch):
    monkeypatch.setattr(purchase, "LEADING_WAIT", 0.05)
    replica, catalog, coordinator = parts
    for leads, in_touch in ((False, True), (True, False)):
        replica.member = type("member", (), {"is_leader": leads, "in_touch": staticmethod(lambda _: in_touch)})
        with pytest.raises(ApiError) as raised:
            coordinator.purchase(1, "o1")
        assert raised.value.status == 503 and catalog.calls == [] and replica.committed == []


def test_a_leader_just_elected_is_waited_for_until_in_touch(parts):
    replica, catalog, coordinator = parts
    became = time.monotonic() + 0.2   # its first entry commits a moment after the election
    replica.member = type("member", (), {"is_leader": True,
                                         "in_touch": staticmethod(lambda _: time.monotonic() > became)})
    assert coordinator.purchase(1, "o1")["status"] == COMPLETED


def test_a_batch_the_catalog_cannot_take_is_recorded_pending_for_the_sweeper(parts):
    replica, catalog, coordinator = parts
    catalog.failure = Unavailable("no catalog replica")
    answers = coordinator.purchase_many([(1, "p1"), (1, "p2")])
    assert [(a["status"], a["order"]["status"]) for a in answers] == [(200, PENDING), (200, PENDING)]
    assert [c.OP for c in replica.committed] == ["begin", "begin"]   # the recovery loop decides them
    assert replica.state.order("p1")["status"] == PENDING


def test_unrecorded_purchases_are_recorded_and_named_once_committed(parts):
    replica, catalog, coordinator = parts
    coordinator.purchase(1, "mine")                                  # its record applies (below)
    coordinator.records.propose()
    replica.apply_proposed()
    coordinator.purchase(1, "orphan")                                # its coordinator "dies"
    coordinator.records.take()
    listing = json.loads(catalog.read("/unrecorded", prefer_leader=True).body)["purchases"]
    recorded, recorded_now = coordinator.record_unrecorded(listing, 9)
    assert sorted(recorded) == ["mine", "orphan"] and recorded_now == 1
    assert [c.order_id for c in replica.committed] == ["orphan"]    # waited for, before it is named
    assert replica.state.order("orphan")["status"] == COMPLETED
