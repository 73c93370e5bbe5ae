"""OrderState: the order record state machine, without any network."""
from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bazar.node.orders import COMPLETED, FAILED, PENDING, OrderState

OK = {"ok": True, "id": 1, "title": "RPCs for Noobs", "price": 20.5}
OUT = {"ok": False, "error": "out_of_stock", "id": 1}


def begin(state: OrderState, order: str, book: int = 1, at: float = 100.0) -> dict:
    return state.apply({"op": "begin", "order_id": order, "id": book, "created_at": at})


def finish(state: OrderState, order: str, outcome: dict) -> dict:
    return state.apply({"op": "finish", "order_id": order, "outcome": outcome})


# -- begin ---------------------------------------------------------------------


def test_begin_creates_pending_order():
    state = OrderState()
    result = begin(state, "a", 3, at=12.5)
    assert result == {"ok": True, "order": {"order_id": "a", "id": 3, "status": PENDING, "title": None,
                                "price": None, "error": None, "catalog_index": None,
                                "created_at": 12.5, "seq": 1}}
    assert state.order("a") == result["order"]
    assert state.pending_ids == {"a"}


def test_begin_again_is_idempotent():
    state = OrderState()
    first = begin(state, "a", 3, at=1.0)
    again = begin(state, "a", 3, at=2.0)  # a retry, later
    assert again == first
    assert len(state.orders) == 1
    assert state.order("a")["created_at"] == 1.0
    assert state.order("a")["seq"] == 1


def test_begin_after_finish_returns_the_finished_order():
    state = OrderState()
    begin(state, "a")
    finish(state, "a", OK)
    result = begin(state, "a")
    assert result["order"]["status"] == COMPLETED
    assert state.pending_ids == set()


def test_an_order_for_a_book_the_catalog_does_not_know_is_answered_but_not_kept():
    state = OrderState()
    begin(state, "a", 999)
    result = finish(state, "a", {"ok": False, "error": "not_found", "id": 999})
    assert result["ok"] and result["order"]["status"] == FAILED and result["order"]["error"] == "not_found"
    assert state.order("a") is None and state.pending_ids == set() and state.newest(10) == []


def test_begin_with_same_id_and_other_book_is_a_conflict_and_changes_nothing():
    state = OrderState()
    begin(state, "a", 1)
    before = state.snapshot()
    result = begin(state, "a", 2)
    assert result["error"] == "conflict"
    assert result["order"]["id"] == 1
    assert state.snapshot() == before
    assert state.order("a")["id"] == 1
    assert state.pending_ids == {"a"}


def test_returned_orders_are_copies():
    state = OrderState()
    begin(state, "a")["order"]["status"] = "hacked"
    state.order("a")["status"] = "hacked"
    state.newest(10)[0]["status"] = "hacked"
    state.pending()[0]["status"] = "hacked"
    assert state.order("a")["status"] == PENDING


# -- finish --------------------------------------------------------------------


def test_finish_completes_once_and_first_outcome_wins():
    state = OrderState()
    begin(state, "a")
    done = finish(state, "a", OK)["order"]
    assert done["status"] == COMPLETED
    assert (done["title"], done["price"], done["error"]) == ("RPCs for Noobs", 20.5, None)
    again = finish(state, "a", OUT)["order"]
    assert again == done
    assert state.order("a") == done
    assert state.pending_ids == set()


def test_finish_fails_once_and_first_outcome_wins():
    state = OrderState()
    begin(state, "a")
    failed = finish(state, "a", OUT)["order"]
    assert failed["status"] == FAILED
    assert failed["error"] == "out_of_stock"
    assert failed["title"] is None and failed["price"] is None
    assert finish(state, "a", OK)["order"] == failed
    assert state.order("a")["status"] == FAILED


def test_finish_failure_without_error_text():
    state = OrderState()
    begin(state, "a")
    assert finish(state, "a", {"ok": False})["order"]["error"] == "failed"


def test_finish_unknown_order():
    state = OrderState()
    begin(state, "a")
    before = state.snapshot()
    assert finish(state, "zzz", OK) == {"ok": False, "error": "not_found"}
    assert state.snapshot() == before
    assert state.order("zzz") is None


def test_unknown_op():
    state = OrderState()
    assert state.apply({"op": "purchase", "order_id": "a"}) == {"ok": False, "error": "unknown command"}
    assert state.apply({}) == {"ok": False, "error": "unknown command"}
    assert state.orders == {}


# -- queries -------------------------------------------------------------------


def _four_orders() -> OrderState:
    state = OrderState()
    for i, name in enumerate(["a", "b", "c", "d"], start=1):
        begin(state, name, i, at=float(i))
    finish(state, "a", OK)
    finish(state, "c", OUT)
    return state


def test_newest_is_newest_first_with_limit():
    state = _four_orders()
    assert [o["order_id"] for o in state.newest(10)] == ["d", "c", "b", "a"]
    assert [o["order_id"] for o in state.newest(2)] == ["d", "c"]
    assert [o["order_id"] for o in state.newest(1)] == ["d"]
    assert [o["seq"] for o in state.newest(4)] == [4, 3, 2, 1]


def test_newest_with_status_filter():
    state = _four_orders()
    assert [o["order_id"] for o in state.newest(10, PENDING)] == ["d", "b"]
    assert [o["order_id"] for o in state.newest(1, PENDING)] == ["d"]
    assert [o["order_id"] for o in state.newest(10, COMPLETED)] == ["a"]
    assert [o["order_id"] for o in state.newest(10, FAILED)] == ["c"]
    assert state.newest(10, "weird") == []


def test_finishing_does_not_reorder():
    state = _four_orders()
    finish(state, "b", OK)
    assert [o["order_id"] for o in state.newest(10)] == ["d", "c", "b", "a"]


def test_newest_with_zero_limit_returns_nothing():
    state = _four_orders()
    assert state.newest(0) == []


def test_pending_and_pending_ids():
    state = _four_orders()
    assert state.pending_ids == {"b", "d"}
    assert sorted(o["order_id"] for o in state.pending()) == ["b", "d"]
    assert all(o["status"] == PENDING for o in state.pending())


def test_pending_survives_snapshot_restore():
    state = _four_orders()
    snap = state.snapshot()
    restored = OrderState()
    restored.restore(copy.deepcopy(snap))
    assert restored.pending_ids == {"b", "d"}
    assert sorted(o["order_id"] for o in restored.pending()) == ["b", "d"]
    assert restored.snapshot() == snap
    assert restored.newest(10) == state.newest(10)

    # Equal future behaviour.
    for command in [{"op": "finish", "order_id": "b", "outcome": OK},
                    {"op": "begin", "order_id": "e", "id": 5, "created_at": 5.0},
                    {"op": "begin", "order_id": "a", "id": 2, "created_at": 6.0},
                    {"op": "finish", "order_id": "a", "outcome": OUT}]:
        assert restored.apply(copy.deepcopy(command)) == state.apply(copy.deepcopy(command))
    assert restored.snapshot() == state.snapshot()
    assert restored.pending_ids == state.pending_ids == {"d", "e"}
    assert restored.order("e")["seq"] == 5


def test_snapshot_is_independent_of_later_changes():
    state = _four_orders()
    snap = state.snapshot()
    finish(state, "b", OK)
    assert snap["orders"]["b"]["status"] == PENDING


# -- property: interleavings with duplicates ----------------------------------

ORDER_POOL = [f"k{i}" for i in range(5)]
BEGIN = st.builds(lambda o, b: {"op": "begin", "order_id": o, "id": b, "created_at": 1.0},
                  st.sampled_from(ORDER_POOL), st.integers(1, 2))
FINISH = st.builds(lambda o, ok: {"op": "finish", "order_id": o, "outcome": OK if ok else OUT},
                   st.sampled_from(ORDER_POOL), st.booleans())


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(BEGIN, FINISH), max_size=40), st.integers(0, 40))
def test_any_interleaving_leaves_each_order_once_with_one_final_status(log, cut):
    state = OrderState()
    book: dict[str, int] = {}
    final: dict[str, str] = {}
    for i, command in enumerate(log):
        if i == cut:  # a snapshot + restore somewhere in the sequence changes nothing
            restored = OrderState()
            restored.restore(state.snapshot())
            state = restored
        result = state.apply(copy.deepcopy(command))
        order_id = command["order_id"]
        if command["op"] == "begin":
            if order_id not in book:
                book[order_id] = command["id"]
                assert result["order"]["status"] == PENDING
            elif book[order_id] != command["id"]:
                assert result["error"] == "conflict"
            else:
                assert "error" not in result
            assert result["order"]["id"] == book[order_id]
        else:
            if order_id not in book:
                assert result == {"ok": False, "error": "not_found"}
                continue
            status = COMPLETED if command["outcome"]["ok"] else FAILED
            final.setdefault(order_id, status)
            assert result["order"]["status"] == final[order_id]

    # Each order id recorded exactly once, in first-begin order, with one status.
    assert list(state.orders) == list(book)
    assert [o["seq"] for o in state.orders.values()] == list(range(1, len(book) + 1))
    for order_id, order in state.orders.items():
        assert order["id"] == book[order_id]
        assert order["status"] == final.get(order_id, PENDING)
    assert state.pending_ids == {o for o in book if o not in final}
    listed = [o["order_id"] for o in state.newest(1000)]
    assert sorted(listed) == sorted(book) and len(listed) == len(set(listed))

    # Replaying the log on a fresh instance gives the same state.
    replay = OrderState()
    for command in log:
        replay.apply(copy.deepcopy(command))
    assert replay.snapshot() == state.snapshot()
    assert replay.pending_ids == state.pending_ids


def test_finish_records_where_the_catalog_applied_the_purchase():
    state = OrderState()
    begin(state, "a", 3, at=1.0)
    state.apply({"op": "finish", "order_id": "a", "catalog_index": 42,
                 "outcome": {"ok": True, "title": "T", "price": 2.0}})
    assert state.order("a")["catalog_index"] == 42


# -- settle: the one place an outcome becomes a status ------------------------------


def test_settle_decides_a_copy_as_finish_records_it():
    from bazar.node.orders.state import settle
    state = OrderState()
    pending = begin(state, "a")["order"]
    shown = settle(pending, OK, 42)
    assert pending["status"] == PENDING  # the argument is left as it was
    recorded = state.apply({"op": "finish", "order_id": "a", "catalog_index": 42, "outcome": OK})["order"]
    assert shown == recorded == state.order("a")
    assert settle(pending, OUT, 7)["status"] == FAILED and settle(pending, OUT, 7)["error"] == "out_of_stock"


def test_newest_with_pending_brings_the_pending_orders_met_without_counting_them():
    state = OrderState()
    for order in "abcde":
        begin(state, order)
    finish(state, "a", OK)
    finish(state, "c", OK)
    finish(state, "e", OUT)
    # newest first: e (failed), d (pending), c (completed), b (pending), a (completed)
    assert [o["order_id"] for o in state.newest(1, COMPLETED)] == ["c"]
    assert [o["order_id"] for o in state.newest(1, COMPLETED, with_pending=True)] == ["d", "c"]
    assert [o["order_id"] for o in state.newest(2, COMPLETED, with_pending=True)] == ["d", "c", "b", "a"]
    assert [o["order_id"] for o in state.newest(2, None, with_pending=True)] == ["e", "d"]


# -- record: begin and finish at once, for an order the catalog decided first -----


def record(state: OrderState, order: str, outcome: dict, book: int = 1, at: float = 100.0) -> dict:
    return state.apply({"op": "record", "order_id": order, "id": book, "created_at": at, "outcome": outcome,
                        "catalog_index": 7})


def test_record_creates_the_decided_order_and_keeps_the_first_outcome():
    state = OrderState()
    assert record(state, "a", OK)["order"]["status"] == COMPLETED
    assert record(state, "a", OUT)["order"]["status"] == COMPLETED
    assert state.order("a")["catalog_index"] == 7 and state.pending() == []
    begin(state, "b")
    assert record(state, "b", OUT)["order"]["status"] == FAILED


def test_record_replaces_an_order_begun_for_another_book_that_took_no_stock():
    # Begun for book 2 while the catalog could not be asked; the catalog had applied the
    # order id for book 1: the catalog's purchase is the order.
    state = OrderState()
    begin(state, "k", book=2)
    assert record(state, "k", OK, book=1)["order"]["status"] == COMPLETED
    assert state.order("k")["id"] == 1 and state.pending() == []
    # One decided for another book by the catalog itself (not a conflict) stays.
    record(state, "d", OUT, book=2)
    assert record(state, "d", OK, book=1)["ok"] is False
    assert state.order("d")["id"] == 2
