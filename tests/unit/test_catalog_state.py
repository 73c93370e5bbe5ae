"""CatalogState: the deterministic catalog state machine, without any network."""
from __future__ import annotations

import copy

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from bazar.node.catalog import CatalogState, commands, keys_changed
from bazar.node.catalog.commands import info_key, search_key, to_wire, topics_key

BOOKS = [
    {"title": "How to get a good grade in 677 in 20 minutes a day", "topic": "distributed systems",
     "price": 10.0, "stock": 2},
    {"title": "RPCs for Noobs", "topic": "distributed systems", "price": 20.5, "stock": 0},
    {"title": "Xen and the Art of Surviving Undergraduate School", "topic": "undergraduate school",
     "price": 5.0, "stock": 5},
]


def seeded() -> CatalogState:
    state = CatalogState()
    assert state.apply({"op": "seed", "books": copy.deepcopy(BOOKS)}) == {"ok": True, "seeded": True}
    return state


def buy(state: CatalogState, book: int, order: str) -> dict:
    return state.apply({"op": "purchase", "id": book, "order_id": order})


# -- seeding -------------------------------------------------------------------


def test_seed_loads_books_with_consecutive_ids():
    state = seeded()
    assert sorted(state.books) == [1, 2, 3]
    assert state.book(1) == {"id": 1, **BOOKS[0]}
    assert state.book(2)["stock"] == 0
    assert state.next_id == 4
    assert state.seeded is True


def test_second_seed_is_a_no_op():
    state = seeded()
    buy(state, 1, "o1")
    before = state.snapshot()
    assert state.apply({"op": "seed", "books": [{"title": "X", "topic": "y", "price": 1.0, "stock": 9}]}) \
        == {"ok": True, "seeded": False}
    assert state.snapshot() == before
    assert state.book(4) is None
    assert state.book(1)["stock"] == 1


def test_queries_search_topics_and_copies():
    state = seeded()
    assert state.search("Distributed SYSTEMS") == [
        {"id": 1, "title": BOOKS[0]["title"]}, {"id": 2, "title": BOOKS[1]["title"]}]
    assert state.search("nothing") == []
    assert state.topics() == ["distributed systems", "undergraduate school"]
    copy_of_book = state.book(1)
    copy_of_book["stock"] = 999
    assert state.book(1)["stock"] == 2
    assert state.book(99) is None


# -- add / update --------------------------------------------------------------


def test_add_book_takes_next_id():
    state = seeded()
    result = state.apply(commands.add_book({"title": " New ", "topic": "t", "price": 3, "stock": 4},
                                           "add-1"))
    assert result == {"ok": True, "book": {"id": 4, "title": "New", "topic": "t", "price": 3.0, "stock": 4}}
    assert state.book(4) == result["book"]
    assert state.next_id == 5


def test_update_price():
    state = seeded()
    result = state.apply(commands.update_book(1, {"price": 12.345}))
    assert result["book"]["price"] == 12.35
    assert state.book(1)["price"] == 12.35
    assert state.book(1)["stock"] == 2


def test_update_absolute_stock():
    state = seeded()
    assert state.apply(commands.update_book(3, {"stock": 1}))["book"]["stock"] == 1
    assert state.apply(commands.update_book(3, {"stock": 0}))["book"]["stock"] == 0
    assert state.book(3)["stock"] == 0


def test_restock_adds():
    state = seeded()
    assert state.apply(commands.update_book(1, {"restock": 3}))["book"]["stock"] == 5
    assert state.apply(commands.update_book(1, {"restock": 1}))["book"]["stock"] == 6


def test_stock_then_restock_in_one_command():
    state = seeded()
    result = state.apply(commands.update_book(1, {"stock": 10, "restock": 2, "price": 1}))
    assert result["book"] == {**state.book(1), "stock": 12, "price": 1.0}


def test_update_unknown_book():
    state = seeded()
    before = state.snapshot()["books"]
    assert state.apply(commands.update_book(42, {"stock": 3}, "req-x")) == {"ok": False, "error": "not_found"}
    assert state.snapshot()["books"] == before


# -- purchases -----------------------------------------------------------------


def test_purchase_decrements_only_while_stock_positive():
    state = seeded()
    assert buy(state, 1, "a") == {"ok": True, "id": 1, "title": BOOKS[0]["title"], "price": 10.0}
    assert state.book(1)["stock"] == 1
    assert buy(state, 1, "b")["ok"] is True
    assert state.book(1)["stock"] == 0
    assert buy(state, 1, "c") == {"ok": False, "error": "out_of_stock", "id": 1}
    assert state.book(1)["stock"] == 0
    assert buy(state, 2, "d") == {"ok": False, "error": "out_of_stock", "id": 2}
    assert state.book(2)["stock"] == 0


def test_purchase_of_unknown_book():
    state = seeded()
    before = state.snapshot()
    assert buy(state, 99, "z") == {"ok": False, "error": "not_found", "id": 99}
    assert state.snapshot() == before
    assert state.purchase_outcome("z") is None


def test_same_order_id_twice_returns_first_outcome_and_takes_stock_once():
    state = seeded()
    first = buy(state, 1, "dup")
    assert first["ok"] is True
    state.apply(commands.update_book(1, {"price": 99}))
    second = buy(state, 1, "dup")
    assert second == first  # price paid is the first one, not the new price
    assert state.book(1)["stock"] == 1
    assert state.purchase_outcome("dup") == first


def test_refused_order_stays_refused_after_restock():
    state = seeded()
    assert buy(state, 2, "early")["error"] == "out_of_stock"
    state.apply(commands.update_book(2, {"restock": 5}))
    assert buy(state, 2, "early") == {"ok": False, "error": "out_of_stock", "id": 2}
    assert state.book(2)["stock"] == 5


def test_order_id_reused_for_another_book_is_a_conflict_and_changes_nothing():
    state = seeded()
    first = buy(state, 1, "k")
    before = state.snapshot()
    assert buy(state, 3, "k") == {"ok": False, "error": "conflict", "id": 3}
    assert state.snapshot() == before
    assert buy(state, 1, "k") == first  # the real retry still gets its outcome


# -- admin idempotency ---------------------------------------------------------


def test_admin_replay_returns_first_result_and_does_not_restock_twice():
    state = seeded()
    command = commands.update_book(1, {"restock": 4}, "restock-1")
    first = state.apply(command)
    assert first["book"]["stock"] == 6
    again = state.apply(to_wire(command))  # the retry, as the log holds it
    assert again == first
    assert state.book(1)["stock"] == 6


def test_admin_replay_of_add_book_adds_once():
    state = seeded()
    command = commands.add_book({"title": "T", "topic": "x", "price": 1, "stock": 1}, "add-once")
    first = state.apply(command)
    assert state.apply(copy.deepcopy(command)) == first
    assert sorted(state.books) == [1, 2, 3, 4]
    assert state.next_id == 5


def test_admin_replay_returns_first_result_even_after_later_changes():
    state = seeded()
    command = commands.update_book(3, {"stock": 7}, "set-7")
    first = state.apply(command)
    buy(state, 3, "p1")
    assert state.apply(command) == first
    assert first["book"]["stock"] == 7
    assert state.book(3)["stock"] == 6  # the replay did not set stock back to 7


def test_admin_request_id_reused_for_another_book_or_operation_is_a_conflict():
    state = seeded()
    first = state.apply(commands.update_book(1, {"restock": 4}, "admin-1"))
    before = state.snapshot()
    assert state.apply(commands.update_book(2, {"restock": 4}, "admin-1")) == {"ok": False, "error": "conflict"}
    assert state.apply(commands.add_book({"title": "T", "topic": "x", "price": 1, "stock": 1},
                                         "admin-1")) == {"ok": False, "error": "conflict"}
    assert state.snapshot() == before
    assert state.apply(commands.update_book(1, {"restock": 4}, "admin-1")) == first


def test_requests_remembered_by_an_older_snapshot_still_replay():
    """Snapshots written before requests were tied to an operation hold bare results."""
    state = seeded()
    snap = state.snapshot()
    snap["requests"] = {"old": {"book": {"id": 1, "title": "x", "topic": "y", "price": 1.0, "stock": 9}}}
    state.restore(snap)
    replay = state.apply(commands.update_book(1, {"restock": 4}, "old"))
    assert replay["book"]["stock"] == 9
    assert state.book(1)["stock"] == 2


# -- unknown op ----------------------------------------------------------------


@pytest.mark.parametrize("command", [{"op": "drop_table"}, {}, {"op": None}, {"op": "seed_"},
                                     {"op": "unknown", "request_id": "r1"}])
def test_unknown_op(command):
    state = seeded()
    before = state.snapshot()
    assert state.apply(command) == {"ok": False, "error": "unknown command"}
    assert state.snapshot() == before


# -- snapshots -----------------------------------------------------------------


def test_snapshot_restore_round_trip():
    state = seeded()
    buy(state, 1, "a")
    buy(state, 2, "b")
    state.apply(commands.update_book(3, {"restock": 2}, "r1"))
    state.apply(commands.add_book({"title": "N", "topic": "t", "price": 2, "stock": 1}, "r2"))
    snap = state.snapshot()

    restored = CatalogState()
    restored.restore(copy.deepcopy(snap))
    assert restored.snapshot() == snap
    assert restored.books == state.books and restored.next_id == 5 and restored.seeded

    # Equal future behaviour, on the same commands.
    future = [
        {"op": "purchase", "id": 1, "order_id": "a"},          # replay: first outcome
        {"op": "purchase", "id": 1, "order_id": "c"},          # takes the last copy
        {"op": "purchase", "id": 1, "order_id": "d"},          # out of stock
        {"op": "purchase", "id": 4, "order_id": "e"},
        commands.update_book(3, {"restock": 2}, "r1"),         # replayed admin write
        commands.add_book({"title": "M", "topic": "t", "price": 1, "stock": 0}, "r3"),
        {"op": "seed", "books": BOOKS},
    ]
    for command in future:
        assert restored.apply(copy.deepcopy(command)) == state.apply(copy.deepcopy(command))
    assert restored.snapshot() == state.snapshot()
    assert restored.book(1)["stock"] == 0
    assert restored.book(3)["stock"] == 7
    assert restored.book(5)["title"] == "M"
    assert restored.book(4)["stock"] == 0


def test_snapshot_is_independent_of_later_changes():
    state = seeded()
    snap = state.snapshot()
    buy(state, 1, "a")
    state.apply(commands.update_book(3, {"price": 1}, "p"))
    assert snap["books"][1]["stock"] == 2
    assert snap["books"][3]["price"] == 5.0
    assert "a" not in snap["purchases"]
    assert "p" not in snap["requests"]


def test_restore_is_independent_of_the_snapshot_object():
    state = seeded()
    snap = state.snapshot()
    other = CatalogState()
    other.restore(snap)
    buy(other, 1, "x")
    assert snap["books"][1]["stock"] == 2
    assert state.book(1)["stock"] == 2


# -- keys_changed: the one invalidation table ----------------------------------


def test_keys_changed_names_exactly_the_reads_a_command_changed():
    state = seeded()
    seed = {"op": "seed", "books": BOOKS}
    assert keys_changed(seed, {"ok": True, "seeded": True}) is None  # anything may have changed
    assert keys_changed(seed, state.apply(seed)) == []

    ok = {"op": "purchase", "id": 1, "order_id": "o"}
    assert keys_changed(ok, state.apply(ok)) == [info_key(1)]
    refused = {"op": "purchase", "id": 2, "order_id": "o2"}
    assert keys_changed(refused, state.apply(refused)) == []
    missing = {"op": "purchase", "id": 9, "order_id": "o3"}
    assert keys_changed(missing, state.apply(missing)) == []

    update = to_wire(commands.update_book(3, {"price": 4}))
    assert keys_changed(update, state.apply(update)) == [info_key(3)]
    update_missing = to_wire(commands.update_book(30, {"price": 4}))
    assert keys_changed(update_missing, state.apply(update_missing)) == []
    add = to_wire(commands.add_book({"title": "a", "topic": "Bee", "price": 1, "stock": 1}))
    assert keys_changed(add, state.apply(add)) == [info_key(4), search_key("bee"), topics_key()]

    read = {"op": "read", "id": 1}
    assert keys_changed(read, state.apply(read)) == []
    assert keys_changed({"op": "nope"}, {"ok": False, "error": "unknown command"}) == []


def test_read_through_log_changes_nothing():
    state = seeded()
    before = state.snapshot()
    assert state.apply({"op": "read", "id": 2}) == {"ok": True, "book": state.book(2)}
    assert state.apply({"op": "read", "id": 20}) == {"ok": False, "error": "not_found"}
    assert state.apply({"op": "read", "topic": "UNDERGRADUATE school"}) == {
        "ok": True, "items": [{"id": 3, "title": BOOKS[2]["title"]}]}
    assert state.snapshot() == before


# -- stateful property test ----------------------------------------------------

BOOK_IDS = st.sampled_from([1, 2, 3, 4])  # 4 does not exist
ORDER_IDS = st.sampled_from([f"o{i}" for i in range(6)])


class CatalogMachine(RuleBasedStateMachine):
    """Random command sequences against a dict-of-stock model."""

    def __init__(self) -> None:
        super().__init__()
        self.state = CatalogState()
        seed = {"op": "seed", "books": copy.deepcopy(BOOKS)}
        self.log: list[dict] = []
        self._apply(seed)
        self.stock = {1: 2, 2: 0, 3: 5}
        self.price = {1: 10.0, 2: 20.5, 3: 5.0}
        self.orders: dict[str, tuple[int, bool, float]] = {}  # order id -> (book, took, price)
        self.admin: list[dict] = []
        self.counter = 0

    def _apply(self, command: dict) -> dict:
        self.log.append(copy.deepcopy(command))
        return self.state.apply(command)

    def _request_id(self) -> str:
        self.counter += 1
        return f"req-{self.counter}"

    @rule(book=BOOK_IDS, order=ORDER_IDS)
    def purchase(self, book, order):
        result = self._apply({"op": "purchase", "id": book, "order_id": order})
        if order in self.orders and self.orders[order][0] != book:
            expected = {"ok": False, "error": "conflict", "id": book}  # the id names another book
        elif order in self.orders:
            first_book, took, price = self.orders[order]
            expected = ({"ok": True, "id": first_book, "title": BOOKS[first_book - 1]["title"], "price": price}
                        if took else {"ok": False, "error": "out_of_stock", "id": first_book})
        elif book not in self.stock:
            expected = {"ok": False, "error": "not_found", "id": book}
        else:
            took = self.stock[book] > 0
            if took:
                self.stock[book] -= 1
            self.orders[order] = (book, took, self.price[book])
            expected = ({"ok": True, "id": book, "title": BOOKS[book - 1]["title"], "price": self.price[book]}
                        if took else {"ok": False, "error": "out_of_stock", "id": book})
        assert result == expected

    @rule(book=BOOK_IDS, amount=st.integers(1, 3))
    def restock(self, book, amount):
        command = commands.update_book(book, {"restock": amount}, self._request_id())
        self.admin.append(command)
        result = self._apply(command)
        if book in self.stock:
            self.stock[book] += amount
            assert result["book"]["stock"] == self.stock[book]
        else:
            assert result == {"ok": False, "error": "not_found"}

    @rule(book=BOOK_IDS, stock=st.integers(0, 3))
    def set_stock(self, book, stock):
        command = commands.update_book(book, {"stock": stock}, self._request_id())
        self.admin.append(command)
        result = self._apply(command)
        if book in self.stock:
            self.stock[book] = stock
            assert result["book"]["stock"] == stock
        else:
            assert result == {"ok": False, "error": "not_found"}

    @rule(book=BOOK_IDS, price=st.sampled_from([0, 1, 9.99, 12.5]))
    def set_price(self, book, price):
        command = commands.update_book(book, {"price": price}, self._request_id())
        self.admin.append(command)
        result = self._apply(command)
        if book in self.price:
            self.price[book] = float(price)
            assert result["book"]["price"] == float(price)
        else:
            assert result == {"ok": False, "error": "not_found"}

    @precondition(lambda self: self.admin)
    @rule(data=st.data())
    def retry_admin_write(self, data):
        command = data.draw(st.sampled_from(self.admin))
        before = self.state.snapshot()
        first = before["requests"][command.request_id]["result"]
        assert self._apply(copy.deepcopy(command)) == first
        assert self.state.snapshot() == before

    @rule()
    def snapshot_and_restore(self):
        snap = self.state.snapshot()
        fresh = CatalogState()
        fresh.restore(copy.deepcopy(snap))
        assert fresh.snapshot() == snap
        self.state = fresh

    @invariant()
    def stock_matches_model_and_never_negative(self):
        for book, stock in self.stock.items():
            assert self.state.book(book)["stock"] == stock
            assert stock >= 0
        assert all(b["stock"] >= 0 for b in self.state.books.values())
        assert self.state.book(4) is None

    @invariant()
    def successful_orders_match_copies_taken(self):
        for book in (1, 2, 3):
            in_state = {o for o, (b, took, _) in self.state.purchases.items() if b == book and took}
            in_model = {o for o, (b, took, _) in self.orders.items() if b == book and took}
            assert in_state == in_model
        assert set(self.state.purchases) == set(self.orders)

    @invariant()
    def replaying_the_log_is_deterministic(self):
        replay = CatalogState()
        for command in self.log:
            replay.apply(copy.deepcopy(command))
        assert replay.snapshot() == self.state.snapshot()


CatalogMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None,
                                            suppress_health_check=[HealthCheck.too_slow])
TestCatalogMachine = CatalogMachine.TestCase


def test_copies_taken_equal_successful_distinct_orders_with_no_admin_writes():
    """Without admin writes: initial stock - final stock == distinct successful order ids."""
    state = seeded()
    outcomes = {}
    for i in range(20):
        order = f"o{i % 7}"
        book = (i % 7) % 3 + 1  # each order id always names the same book
        outcome = buy(state, book, order)
        outcomes.setdefault(order, outcome)
        assert outcome == outcomes[order]
    for book in (1, 2, 3):
        taken = BOOKS[book - 1]["stock"] - state.book(book)["stock"]
        ok_orders = {o for o, r in outcomes.items() if r["ok"] and r["id"] == book}
        assert taken == len(ok_orders)
    assert state.book(1)["stock"] == 0 and state.book(3)["stock"] == 3


def test_the_state_view_names_every_field_and_is_plain_json():
    import json
    state = seeded()
    buy(state, 1, "o-1")
    state.apply(commands.update_book(1, {"stock": 0}, "r-1"))
    buy(state, 1, "o-2")
    view = state.view()
    assert json.loads(json.dumps(view)) == view
    assert view["purchases"]["o-1"] == {"book_id": 1, "took_stock": True, "price": state.books[1]["price"]}
    assert view["purchases"]["o-2"]["took_stock"] is False
    assert view["books"]["1"]["stock"] == 0 and view["requests"]["r-1"]["op"] == "update_book"


# -- purchases the order group has still to record -----------------------------


def test_a_purchase_asked_with_created_at_is_kept_until_recorded_whatever_the_retention():
    state = seeded()
    state.apply({"op": "expire", "now": 100.0, "cutoff": 0.0})      # the log's clock: 100
    state.apply({"op": "purchase", "id": 1, "order_id": "new", "created_at": 50.0})
    state.apply({"op": "purchase", "id": 2, "order_id": "none-left", "created_at": 60.0})
    buy(state, 1, "begun-first")                                    # asked without: not kept
    assert [p["order_id"] for p in state.unrecorded_before(1e9, 10)] == ["new", "none-left"]
    assert [p["order_id"] for p in state.unrecorded_before(1e9, 1, newest=True)] == ["none-left"]
    assert state.unrecorded_summary() == (2, 50.0)
    assert state.unrecorded_before(55.0, 10) == [
        {"order_id": "new", "id": 1, "created_at": 50.0, "outcome": state.purchase_outcome("new")}]
    assert state.unrecorded_order("none-left")["outcome"]["error"] == "out_of_stock"
    # A retry keeps the first entry; retention forgets the outcome for retries, not this.
    state.apply({"op": "purchase", "id": 1, "order_id": "new", "created_at": 99.0})
    state.apply({"op": "expire", "now": 10_000.0, "cutoff": 9_000.0})
    assert state.purchase_outcome("new") is None
    assert state.unrecorded_order("new")["created_at"] == 50.0
    assert state.apply({"op": "recorded", "order_ids": ["new", "unknown"]}) == {"ok": True, "recorded": 1}
    assert [p["order_id"] for p in state.unrecorded_before(1e9, 10)] == ["none-left"]
    restored = CatalogState()
    restored.restore(copy.deepcopy(state.snapshot()))
    assert restored.unrecorded_before(1e9, 10) == state.unrecorded_before(1e9, 10)


def test_a_state_with_nothing_unrecorded_snapshots_as_before():
    state = seeded()
    state.apply({"op": "purchase", "id": 1, "order_id": "new", "created_at": 50.0})
    state.apply({"op": "recorded", "order_ids": ["new"]})
    assert "unrecorded" not in state.snapshot()


@pytest.mark.parametrize("order_ids", [[], "new", [1], [""], ["x"] * (commands.MAX_RECORDED + 1)])
def test_a_recorded_request_that_is_not_a_list_of_order_ids_is_refused(order_ids):
    from bazar.web.errors import BadRequest
    with pytest.raises(BadRequest):
        commands.recorded(order_ids)
