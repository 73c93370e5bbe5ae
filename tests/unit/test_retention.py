"""Outcomes are forgotten after the retention, as the log decides (node/retention.py).

The state machines never read a clock: only `expire` commands move the log's clock
and name the cutoff, so a replay of one log forgets the same outcomes everywhere.
Checked against a model (hypothesis), like the state machines' other properties.
"""
from __future__ import annotations

import copy
import json

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from bazar.cluster.config import ConfigError, RetentionConfig, parse
from bazar.node import retention
from bazar.node.catalog import CatalogState
from bazar.node.orders import OrderState
from bazar.node.wire import to_wire

BOOKS = [{"title": "A", "topic": "t", "price": 10.0, "stock": 100},
         {"title": "B", "topic": "t", "price": 2.5, "stock": 100}]


def expire(now: float, cutoff: float) -> dict:
    return {"op": "expire", "now": now, "cutoff": cutoff}


def seeded() -> CatalogState:
    state = CatalogState()
    state.apply({"op": "seed", "books": copy.deepcopy(BOOKS)})
    return state


def finished_order(state: OrderState, order: str, book: int = 1) -> None:
    state.apply({"op": "begin", "order_id": order, "id": book, "created_at": 1.0})
    state.apply({"op": "finish", "order_id": order, "catalog_index": 3,
                 "outcome": {"ok": True, "id": book, "title": "A", "price": 10.0}})


# -- the command a leader proposes ---------------------------------------------------

def test_a_leaders_cutoff_keeps_outcomes_at_least_the_retention():
    command = retention.expire(now=10_000.0, retention=600.0)
    assert command.now == 10_000.0
    assert command.cutoff == 10_000.0 - 600.0 - retention.expire_every(600.0)
    assert retention.expire_every(600.0) == 60.0 and retention.expire_every(30.0) == 3.0
    assert to_wire(command) == {"op": "expire", "v": 1, "now": 10_000.0, "cutoff": command.cutoff}


@pytest.mark.parametrize("machine", [seeded, OrderState])
@pytest.mark.parametrize("bad", [{"now": "1", "cutoff": 0.0}, {"now": 1.0}, {"now": True, "cutoff": 0.0},
                                 {"now": float("nan"), "cutoff": 0.0}, {"now": 1.0, "cutoff": float("inf")},
                                 {"now": 1.0, "cutoff": 0.0, "extra": 1}])
def test_a_malformed_expire_changes_nothing(machine, bad):
    state = machine()
    state.apply({"op": "purchase", "id": 1, "order_id": "o1"})
    before = state.snapshot()
    assert state.apply({"op": "expire", **bad}) == {"ok": False, "error": "malformed command"}
    assert state.snapshot() == before


# -- catalog ----------------------------------------------------------------------

def test_a_purchase_is_remembered_until_its_cutoff_then_a_retry_is_a_new_purchase():
    state = seeded()
    state.apply(expire(100.0, 0.0))                    # the log's clock: 100
    first = state.apply({"op": "purchase", "id": 1, "order_id": "o1"})
    assert state.apply(expire(200.0, 100.0)) == {"ok": True, "expired": 0}   # stamped 100, not before 100
    assert state.apply({"op": "purchase", "id": 1, "order_id": "o1"}) == first
    assert state.book(1)["stock"] == 99
    assert state.apply(expire(300.0, 100.5)) == {"ok": True, "expired": 1}
    assert state.purchase_outcome("o1") is None
    assert state.apply({"op": "purchase", "id": 1, "order_id": "o1"})["ok"] is True
    assert state.book(1)["stock"] == 98


def test_admin_results_expire_and_books_never_do():
    state = seeded()
    state.apply(expire(10.0, 0.0))
    state.apply({"op": "update_book", "id": 2, "restock": 5, "request_id": "r1"})
    state.apply(expire(20.0, 15.0))
    assert "r1" not in state.requests and state.book(2)["stock"] == 105
    assert state.apply({"op": "update_book", "id": 2, "restock": 5, "request_id": "r1"})["book"]["stock"] == 110
    assert sorted(state.books) == [1, 2]


def test_outcomes_recorded_before_the_first_expire_get_its_clock():
    """Before any expire (a fresh group, or a snapshot from before retention) the log has no
    clock: such outcomes are kept a full retention from the first expire on."""
    state = seeded()
    state.apply({"op": "purchase", "id": 1, "order_id": "early"})
    assert state.apply(expire(1000.0, 999.0))["expired"] == 0
    assert state.purchase_outcome("early")["ok"] is True
    assert state.apply(expire(2000.0, 1000.5))["expired"] == 1


def test_a_leader_with_a_clock_behind_never_moves_the_logs_clock_back():
    state = seeded()
    state.apply(expire(500.0, 0.0))
    state.apply(expire(400.0, 0.0))   # a new leader whose clock is behind
    assert state.clock == 500.0
    state.apply({"op": "purchase", "id": 1, "order_id": "o1"})
    assert state.snapshot()["stamps"]["purchases"] == [["o1", 500.0]]


def test_a_format_1_snapshot_restores_with_its_outcomes_kept_a_full_retention():
    old = {"books": {1: {"id": 1, "title": "A", "topic": "t", "price": 10.0, "stock": 1}},
           "next_id": 2, "seeded": True, "purchases": {"o1": (1, True, 10.0)},
           "requests": {"r1": {"op": "update_book", "id": 1, "result": {"ok": True}}}}
    state = CatalogState()
    state.restore(old)
    assert state.apply(expire(50.0, 49.0))["expired"] == 0
    assert state.apply({"op": "purchase", "id": 1, "order_id": "o1"})["ok"] is True  # remembered
    assert state.apply(expire(99.0, 50.5))["expired"] == 2
    assert state.purchases == {} and state.requests == {}


def test_a_snapshot_survives_json_with_everything_it_remembers():
    """Backups carry snapshots as JSON: book ids become strings, tuples lists."""
    state = seeded()
    state.apply(expire(10.0, 0.0))
    state.apply({"op": "purchase", "id": 2, "order_id": "o1"})
    state.apply({"op": "update_book", "id": 1, "price": 3.0, "request_id": "r1"})
    copied = CatalogState()
    copied.restore(json.loads(json.dumps(state.snapshot())))
    assert copied.snapshot() == state.snapshot()
    orders = OrderState()
    orders.apply(expire(10.0, 0.0))
    finished_order(orders, "o1")
    orders.apply({"op": "begin", "order_id": "o2", "id": 1, "created_at": 2.0})
    orders_copy = OrderState()
    orders_copy.restore(json.loads(json.dumps(orders.snapshot())))
    assert orders_copy.snapshot() == orders.snapshot() and orders_copy.pending_ids == {"o2"}


# -- orders -----------------------------------------------------------------------

def test_finished_orders_expire_and_pending_ones_stay_until_finished():
    state = OrderState()
    state.apply(expire(10.0, 0.0))
    finished_order(state, "done")
    state.apply({"op": "begin", "order_id": "waiting", "id": 1, "created_at": 1.0})
    state.apply(expire(20.0, 15.0))
    assert state.order("done") is None and state.order("waiting")["status"] == "pending"
    state.apply({"op": "finish", "order_id": "waiting", "outcome": {"ok": False, "error": "out_of_stock"}})
    assert state.apply(expire(30.0, 20.0))["expired"] == 0   # stamped 20 when finished
    assert state.apply(expire(40.0, 25.0))["expired"] == 1
    assert state.orders == {}


def test_order_sequence_numbers_never_repeat_after_expiry():
    state = OrderState()
    state.apply(expire(10.0, 0.0))
    finished_order(state, "a")
    finished_order(state, "b")
    state.apply(expire(20.0, 15.0))
    finished_order(state, "c")
    assert state.order("c")["seq"] == 3


def test_a_format_1_order_snapshot_restores_its_sequence_and_stamps():
    state = OrderState()
    state.restore({"orders": {"a": {"order_id": "a", "id": 1, "status": "completed", "title": "A",
                                    "price": 1.0, "error": None, "catalog_index": 3, "created_at": 1.0,
                                    "seq": 1}}})
    assert state.next_seq == 2 and state.finished.pairs() == [["a", None]]
    state.apply(expire(5.0, 4.0))
    assert state.order("a") is not None
    state.apply(expire(9.0, 6.0))
    assert state.order("a") is None


# -- configuration --------------------------------------------------------------------

MINIMAL = {"catalog": [{"id": "c1", "raft": "127.0.0.1:7101", "http": "127.0.0.1:8101"}],
           "order": [{"id": "o1", "raft": "127.0.0.1:7201", "http": "127.0.0.1:8201"}],
           "frontends": [{"id": "f1", "http": "127.0.0.1:8000"}]}


def test_retention_defaults_to_a_day_and_is_read_from_cluster_yaml(tmp_path):
    assert parse(MINIMAL, tmp_path / "c.yaml").retention == RetentionConfig(outcomes=86400.0)
    assert parse({**MINIMAL, "retention": {"outcomes": 30}}, tmp_path / "c.yaml").retention.outcomes == 30.0


@pytest.mark.parametrize("raw, message", [({"outcomes": 0}, "retention.outcomes"),
                                          ({"outcomes": "1h"}, "retention.outcomes"),
                                          ({"outcomes": float("inf")}, "retention.outcomes: expected a finite"),
                                          ({"keep": 3}, "retention.keep"), (5, "retention")])
def test_a_bad_retention_names_its_key(tmp_path, raw, message):
    with pytest.raises(ConfigError, match=message):
        parse({**MINIMAL, "retention": raw}, tmp_path / "c.yaml")


# -- the property: the model forgets what the machines forget -------------------------------

ORDER_IDS = st.sampled_from([f"o{i}" for i in range(8)])


class RetentionMachine(RuleBasedStateMachine):
    """Purchases, admin writes, orders and expires with leaders' clocks that may go back,
    against a model that stamps each outcome with the newest clock seen."""

    def __init__(self) -> None:
        super().__init__()
        self.catalog, self.orders = seeded(), OrderState()
        self.catalog_log: list[dict] = []
        self.order_log: list[dict] = []
        self.clock: float | None = None
        self.remembered: dict[str, float | None] = {}     # catalog purchases: order id -> stamp
        self.requests: dict[str, float | None] = {}
        self.finished: dict[str, float | None] = {}
        self.pending: set[str] = set()
        self.counter = 0

    def _catalog(self, command: dict) -> dict:
        self.catalog_log.append(copy.deepcopy(command))
        return self.catalog.apply(command)

    def _order(self, command: dict) -> dict:
        self.order_log.append(copy.deepcopy(command))
        return self.orders.apply(command)

    @rule(order=ORDER_IDS)
    def purchase(self, order):
        self._catalog({"op": "purchase", "id": 1, "order_id": order})
        self.remembered.setdefault(order, self.clock)

    @rule()
    def admin_write(self):
        self.counter += 1
        self._catalog({"op": "update_book", "id": 2, "restock": 1, "request_id": f"r{self.counter}"})
        self.requests[f"r{self.counter}"] = self.clock

    @rule(order=ORDER_IDS, finish=st.booleans())
    def order(self, order, finish):
        self._order({"op": "begin", "order_id": order, "id": 1, "created_at": 1.0})
        if order not in self.finished:
            self.pending.add(order)
        if finish:
            self._order({"op": "finish", "order_id": order, "outcome": {"ok": False, "error": "out_of_stock"}})
            if order in self.pending:
                self.pending.discard(order)
                self.finished[order] = self.clock

    @rule(now=st.integers(0, 100), keep=st.integers(0, 30))
    def expire(self, now, keep):
        command = expire(float(now), float(now - keep))
        self._catalog(command)
        self._order(command)
        self.clock = float(now) if self.clock is None else max(self.clock, float(now))
        for stamps in (self.remembered, self.requests, self.finished):
            for key, at in list(stamps.items()):
                if at is None:
                    stamps[key] = self.clock
                elif at < now - keep:
                    del stamps[key]

    @rule()
    def snapshot_and_restore_through_json(self):
        for name in ("catalog", "orders"):
            fresh = type(getattr(self, name))()
            fresh.restore(json.loads(json.dumps(getattr(self, name).snapshot())))
            setattr(self, name, fresh)

    @invariant()
    def the_machines_remember_what_the_model_does(self):
        assert set(self.catalog.purchases) == set(self.remembered)
        assert set(self.catalog.requests) == set(self.requests)
        assert set(self.orders.orders) == set(self.finished) | self.pending
        assert {i for i, o in self.orders.orders.items() if o["status"] == "pending"} == self.pending
        assert len(self.catalog.purchase_stamps) == len(self.remembered)
        assert len(self.orders.finished) == len(self.finished)

    @invariant()
    def a_replay_of_the_log_gives_the_same_state(self):
        for log, machine, state in ((self.catalog_log, seeded, self.catalog), (self.order_log, OrderState, self.orders)):
            replay = machine()
            for command in log:
                replay.apply(copy.deepcopy(command))
            assert json.dumps(replay.snapshot(), sort_keys=True) == json.dumps(state.snapshot(), sort_keys=True)


RetentionMachine.TestCase.settings = settings(max_examples=80, stateful_step_count=40, deadline=None,
                                              suppress_health_check=[HealthCheck.too_slow])
TestRetentionMachine = RetentionMachine.TestCase


# -- the leader's proposer -------------------------------------------------------------

class FakeMember:
    def __init__(self, leader: bool) -> None:
        self.is_leader = leader
        self.submitted: list[dict] = []

    def submit(self, command: dict, timeout: float) -> dict:
        self.submitted.append(command)
        return {"ok": True, "expired": 0}


def test_only_the_leader_proposes_and_its_cutoff_is_its_clock_minus_retention_and_a_period():
    follower, leader = FakeMember(False), FakeMember(True)
    assert retention.ExpiryProposer(follower, 600.0, commit_timeout=3.0).propose() is None
    assert follower.submitted == []
    assert retention.ExpiryProposer(leader, 600.0, commit_timeout=3.0).propose() == {"ok": True, "expired": 0}
    [command] = leader.submitted
    assert command["op"] == "expire" and command["cutoff"] == pytest.approx(command["now"] - 660.0)
