"""The chaos checker: handmade anomalies, handmade valid runs, and simulated valid runs."""
import copy
import hashlib
import json
from dataclasses import dataclass

from hypothesis import HealthCheck, Phase, assume, given, note, settings
from hypothesis import strategies as st

from bazar.chaos.checker import check
from bazar.chaos.history import Operation

CHECKS = ["acknowledged_purchases", "stock_conservation", "exactly_once", "replicas_converged",
          "linearizable", "cached_reads_bounded", "availability"]


# -- building histories and final states by hand -------------------------------------

def purchase(op_id, item, start, end, outcome="ok", error=None, client=1, price=10.0, title=None):
    order_id = f"k-{client}-{op_id}"
    result = {"order_id": order_id, "price": price, "title": title} if outcome == "ok" else None
    if outcome == "fail":
        result = {"error": error or "out of stock", "definite": True}
    return Operation(op_id, client, "purchase", item, {"order_id": order_id}, start,
                     None if outcome == "unknown" else end, outcome, result)


def restock(op_id, item, amount, start, end, outcome="ok", client=1, answered=None, price=10.0):
    """A restock; `answered` is the stock of the book it answered (None: no answer recorded)."""
    result = {"stock": answered, "price": price} if answered is not None else None
    return Operation(op_id, client, "restock", item, {"amount": amount}, start,
                     None if outcome == "unknown" else end, outcome, result)


def set_price(op_id, item, price, start, end, answered_stock, client=1):
    return Operation(op_id, client, "set_price", item, {"price": price}, start, end, "ok",
                     {"stock": answered_stock, "price": price})


def read(op_id, item, start, end, stock, consistency="strong", price=10.0, client=1):
    return Operation(op_id, client, "read", item, {"consistency": consistency}, start, end, "ok",
                     {"stock": stock, "price": price})


def digest(content):
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def healed(initial, stock, orders, applied=None, catalogs=2, order_replicas=2, price=10.0, title=None):
    """A final state where every replica agrees.

    initial, stock: item -> units; orders: order id -> (item, status);
    applied defaults to "took stock exactly for completed orders"; every book has `title`.
    """
    if applied is None:
        applied = {oid: status == "completed" for oid, (_, status) in orders.items()}
    books = {str(item): {"stock": units, "price": price} for item, units in stock.items()}
    catalog = {"books": books, "applied_orders": applied}
    order = {"orders": {oid: {"book_id": item, "status": status} for oid, (item, status) in orders.items()}}
    catalog["digest"], order["digest"] = digest(catalog), digest(order)
    return {
        "initial": {str(item): {"stock": units, "price": price, "title": title} for item, units in initial.items()},
        "catalog": {f"catalog{i}": copy.deepcopy(catalog) for i in range(1, catalogs + 1)},
        "order": {f"order{i}": copy.deepcopy(order) for i in range(1, order_replicas + 1)},
        "unreachable": [],
    }


def flagged(report, name):
    """Assert that check `name` failed (and hence the report); return its result."""
    result = report.result(name)
    assert not result.ok, report.summary(examples=3)
    assert not report.ok
    assert result.examples, result
    return result


def assert_clean(report):
    assert report.ok, report.summary(examples=5)
    assert [r.name for r in report.checks] == CHECKS


# -- valid runs, by hand --------------------------------------------------------------

def test_overlapping_purchases_reads_and_a_refusal_are_accepted():
    history = [
        purchase(1, 1, 0.0, 3.0, client=1),
        purchase(2, 1, 1.0, 4.0, client=2),
        read(3, 1, 2.0, 2.5, stock=1, client=3),               # between the two purchases
        read(4, 1, 0.5, 3.5, stock=2, consistency="cached", client=4),
        purchase(5, 1, 5.0, 6.0, outcome="fail", client=3),    # out of stock, at stock 0
        read(6, 1, 5.5, 7.0, stock=0, client=4),
    ]
    state = healed({1: 2}, {1: 0}, {"k-1-1": (1, "completed"), "k-2-2": (1, "completed"),
                                     "k-3-5": (1, "failed")})
    assert_clean(check(history, state))


def test_unknown_outcomes_either_way_and_harmless_failures_are_accepted():
    history = [
        purchase(1, 1, 0.0, None, outcome="unknown"),          # took effect (completed)
        purchase(2, 1, 0.5, None, outcome="unknown", client=2),  # never arrived
        purchase(3, 1, 0.7, None, outcome="unknown", client=3),  # refused by the order group
        purchase(4, 1, 1.0, 1.5, outcome="fail", error="no quorum", client=4),
        restock(5, 1, 3, 2.0, None, outcome="unknown", client=5),  # lost
        restock(6, 1, 2, 2.0, 2.5, client=6),
        read(7, 1, 3.0, 3.5, stock=6),
    ]
    state = healed({1: 5}, {1: 6}, {"k-1-1": (1, "completed"), "k-3-3": (1, "failed")})
    assert_clean(check(history, state))


def test_cached_read_may_lag_behind_a_write_that_had_not_completed():
    history = [purchase(1, 1, 0.0, 5.0), read(2, 1, 1.0, 2.0, stock=5, consistency="local"),
               read(3, 1, 6.0, 7.0, stock=4, consistency="cached")]
    state = healed({1: 5}, {1: 4}, {"k-1-1": (1, "completed")})
    assert_clean(check(history, state))


def test_cached_read_may_already_see_a_concurrent_restock():
    history = [restock(1, 1, 3, 0.0, 5.0), read(2, 1, 1.0, 2.0, stock=8, consistency="cached", client=2)]
    state = healed({1: 5}, {1: 8}, {})
    assert_clean(check(history, state))


# -- anomalies, by hand ------------------------------------------------------------------

def test_lost_acknowledged_purchase_is_flagged():
    history = [purchase(1, 1, 0.0, 1.0), purchase(2, 1, 0.0, 1.0, client=2)]
    state = healed({1: 5}, {1: 3}, {"k-1-1": (1, "completed"), "k-2-2": (1, "completed")})
    del state["order"]["order2"]["orders"]["k-2-2"]

    result = flagged(check(history, state), "acknowledged_purchases")

    assert any("k-2-2" in example and "order2" in example for example in result.examples)


def test_acknowledged_purchase_without_stock_taken_is_flagged():
    history = [purchase(1, 1, 0.0, 1.0)]
    state = healed({1: 5}, {1: 5}, {"k-1-1": (1, "completed")}, applied={})

    result = flagged(check(history, state), "acknowledged_purchases")

    assert "took no stock" in result.examples[0]


def test_double_apply_shows_as_one_unit_too_few():
    history = [purchase(1, 1, 0.0, 1.0)]
    state = healed({1: 5}, {1: 3}, {"k-1-1": (1, "completed")})

    result = flagged(check(history, state), "stock_conservation")

    assert "stock 3, expected 4" in result.detail


def test_oversell_to_negative_stock_is_flagged():
    history = [purchase(1, 1, 0.0, 1.0), purchase(2, 1, 0.5, 1.5, client=2)]
    state = healed({1: 1}, {1: -1}, {"k-1-1": (1, "completed"), "k-2-2": (1, "completed")})

    report = check(history, state)

    examples = flagged(report, "stock_conservation").examples
    assert any("negative" in e for e in examples) and any("oversold" in e for e in examples)
    flagged(report, "linearizable")


def test_more_completed_orders_than_units_is_flagged_even_if_stock_looks_fine():
    history = [purchase(1, 1, 0.0, 1.0), purchase(2, 1, 0.5, 1.5, client=2)]
    state = healed({1: 1}, {1: 0}, {"k-1-1": (1, "completed"), "k-2-2": (1, "completed")})

    examples = flagged(check(history, state), "stock_conservation").examples

    assert any("oversold: 2 completed orders but at most 1" in e for e in examples)


def test_catalog_count_of_taken_orders_must_match_completed_orders():
    history = [purchase(1, 1, 0.0, 1.0)]
    state = healed({1: 5}, {1: 4}, {"k-1-1": (1, "completed"), "k-9-9": (1, "failed")},
                   applied={"k-1-1": True, "k-9-9": True})

    report = check(history, state)

    assert any("took stock for 2 order(s)" in e for e in flagged(report, "stock_conservation").examples)
    assert any("k-9-9" in e for e in flagged(report, "exactly_once").examples)


def test_stale_strong_read_is_not_linearizable():
    history = [purchase(1, 1, 0.0, 1.0), read(2, 1, 2.0, 3.0, stock=5)]
    state = healed({1: 5}, {1: 4}, {"k-1-1": (1, "completed")})

    report = check(history, state)

    result = flagged(report, "linearizable")
    assert result.detail.startswith("1 item(s)") and "ops [1, 2]" in result.examples[0]
    assert report.result("cached_reads_bounded").ok


def test_write_answers_that_fit_some_order_of_concurrent_writes_are_accepted():
    # The restock overlaps the purchase and answered the stock after both; the price change
    # went before the purchase (it answered stock 5), so the purchase charged the new price.
    history = [purchase(1, 1, 0.0, 3.0, price=12.5, title="Dune"), restock(2, 1, 3, 1.0, 2.0, answered=7, client=2,
                                                                           price=12.5),
               set_price(3, 1, 12.5, 0.0, 0.5, answered_stock=5, client=3)]
    state = healed({1: 5}, {1: 7}, {"k-1-1": (1, "completed")}, price=12.5, title="Dune")
    state["initial"]["1"]["price"] = 10.0
    assert_clean(check(history, state))


def test_a_restock_answering_the_book_as_it_was_before_it_is_flagged():
    history = [restock(1, 1, 3, 0.0, 1.0, answered=8), restock(2, 1, 2, 2.0, 3.0, answered=8, client=2)]
    state = healed({1: 5}, {1: 10}, {})

    report = check(history, state)

    result = flagged(report, "linearizable")
    assert "op 2 (restock)" in result.examples[0] and "answered stock=8" in result.examples[0]
    assert [r.name for r in report.checks if not r.ok] == ["linearizable"]


def test_a_restock_answer_that_forgets_an_earlier_purchase_is_flagged():
    history = [purchase(1, 1, 0.0, 1.0), restock(2, 1, 3, 2.0, 3.0, answered=8, client=2)]
    state = healed({1: 5}, {1: 7}, {"k-1-1": (1, "completed")})

    report = check(history, state)

    flagged(report, "linearizable")
    assert report.result("stock_conservation").ok and report.result("cached_reads_bounded").ok


def test_an_invented_write_answer_is_flagged():
    state = healed({1: 5}, {1: 4}, {"k-1-1": (1, "completed")}, title="Dune")
    for invented in (purchase(1, 1, 0.0, 1.0, price=99.0, title="Dune"),
                     purchase(1, 1, 0.0, 1.0, price=10.0, title="Emma")):
        report = check([invented], state)
        assert [r.name for r in report.checks if not r.ok] == ["linearizable"], invented
    restocked = healed({1: 5}, {1: 8}, {})
    flagged(check([restock(1, 1, 3, 0.0, 1.0, answered=80)], restocked), "linearizable")


def test_a_purchase_charging_a_price_replaced_before_it_began_is_flagged():
    history = [set_price(1, 1, 12.5, 0.0, 1.0, answered_stock=5), purchase(2, 1, 2.0, 3.0, price=10.0, client=2)]
    state = healed({1: 5}, {1: 4}, {"k-2-2": (1, "completed")}, price=12.5)
    state["initial"]["1"]["price"] = 10.0

    assert "op 2 (purchase)" in flagged(check(history, state), "linearizable").examples[0]


def test_unknown_purchase_the_catalog_applied_must_fit_in_the_linearization():
    # The one unit went to the acknowledged purchase, and a read saw it gone.
    history = [purchase(1, 1, 0.0, None, outcome="unknown"), purchase(2, 1, 1.0, 2.0, client=2),
               read(3, 1, 3.0, 4.0, stock=0, client=3)]
    state = healed({1: 1}, {1: 0}, {"k-1-1": (1, "completed"), "k-2-2": (1, "completed")})

    result = flagged(check(history, state), "linearizable")

    assert 1 in result.metrics["windows"]["1"]


def test_unknown_purchase_the_catalog_never_applied_cannot_explain_a_read():
    history = [purchase(1, 1, 0.0, None, outcome="unknown"), read(2, 1, 5.0, 6.0, stock=4, client=2)]
    state = healed({1: 5}, {1: 5}, {})

    report = check(history, state)

    flagged(report, "linearizable")
    assert report.result("stock_conservation").ok and report.result("exactly_once").ok


def test_stale_cached_read_is_flagged():
    history = [purchase(1, 1, 0.0, 1.0), read(2, 1, 2.0, 3.0, stock=5, consistency="cached")]
    state = healed({1: 5}, {1: 4}, {"k-1-1": (1, "completed")})

    report = check(history, state)

    result = flagged(report, "cached_reads_bounded")
    assert "returned stock 5, allowed 4..4" in result.examples[0]
    assert report.result("linearizable").ok


def test_cached_read_from_the_future_is_flagged():
    history = [read(1, 1, 0.0, 1.0, stock=4, consistency="local"), purchase(2, 1, 2.0, 3.0)]
    state = healed({1: 5}, {1: 4}, {"k-1-2": (1, "completed")})

    flagged(check(history, state), "cached_reads_bounded")


def test_diverged_catalog_replicas_are_flagged():
    history = [purchase(1, 1, 0.0, 1.0)]
    state = healed({1: 5}, {1: 4}, {"k-1-1": (1, "completed")}, catalogs=3)
    state["catalog"]["catalog3"]["books"]["1"]["stock"] = 5
    state["catalog"]["catalog3"]["digest"] = "different"

    examples = flagged(check(history, state), "replicas_converged").examples

    assert any("catalog3 digest" in e for e in examples)
    assert any("catalog3 vs catalog1: book 1" in e for e in examples)


def test_diverged_order_replicas_are_flagged_even_with_equal_digests():
    history = [purchase(1, 1, 0.0, 1.0)]
    state = healed({1: 5}, {1: 4}, {"k-1-1": (1, "completed")})
    state["order"]["order2"]["orders"]["k-7-7"] = {"book_id": 1, "status": "failed"}

    examples = flagged(check(history, state), "replicas_converged").examples

    assert examples == ["order2 vs order1: order k-7-7: OrderRecord(book_id='1', status='failed') vs None"]


def test_unreachable_replica_is_a_failure_by_itself():
    state = healed({1: 5}, {1: 5}, {})
    state["unreachable"] = ["catalog3"]

    result = flagged(check([read(1, 1, 0.0, 1.0, stock=5)], state), "replicas_converged")

    assert result.examples == ["catalog3 could not be read"]


def test_pending_order_left_behind_is_flagged():
    history = [purchase(1, 1, 0.0, None, outcome="unknown")]
    state = healed({1: 5}, {1: 5}, {"k-1-1": (1, "pending")})

    examples = flagged(check(history, state), "exactly_once").examples

    assert any("k-1-1 is still pending on order1" in e for e in examples)


def test_half_applied_unknown_purchase_is_flagged():
    history = [purchase(1, 1, 0.0, None, outcome="unknown")]
    state = healed({1: 5}, {1: 4}, {"k-1-1": (1, "failed")}, applied={"k-1-1": True})

    examples = flagged(check(history, state), "exactly_once").examples

    assert any("half-applied" in e and "k-1-1" in e for e in examples)


def test_definitely_failed_purchase_must_not_complete():
    history = [purchase(1, 1, 0.0, 1.0, outcome="fail", error="no quorum")]
    state = healed({1: 5}, {1: 4}, {"k-1-1": (1, "completed")})

    examples = flagged(check(history, state), "exactly_once").examples

    assert any("failed purchase k-1-1 (op 1) is completed" in e for e in examples)


def test_order_listed_twice_is_flagged():
    state = healed({1: 5}, {1: 5}, {})
    record = {"order_id": "k-1-1", "book_id": 1, "status": "failed"}
    for replica in state["order"].values():
        replica["orders"] = [record, record]

    examples = flagged(check([read(1, 1, 0.0, 1.0, stock=5)], state), "exactly_once").examples

    assert "order k-1-1 appears more than once on order1" in examples


def test_search_too_large_fails_the_linearizable_check_with_a_reason():
    history = [purchase(i, 1, 0.0, 10.0, client=i) for i in range(1, 9)]
    state = healed({1: 8}, {1: 0}, {f"k-{i}-{i}": (1, "completed") for i in range(1, 9)})

    report = check(history, state, max_states=5)

    assert "search too large" in flagged(report, "linearizable").detail
    assert check(history, state).ok


def test_examples_are_capped_at_ten():
    history = [purchase(i, 1, 0.0, 1.0, client=i) for i in range(1, 16)]
    state = healed({1: 20}, {1: 20}, {})

    result = flagged(check(history, state), "acknowledged_purchases")

    assert len(result.examples) == 10 and result.detail.startswith("60 ")


# -- availability and the report ----------------------------------------------------

def test_availability_reports_shares_and_recovery_per_fault():
    history = [
        purchase(1, 1, 0.0, 1.0),
        read(2, 1, 0.5, 1.0, stock=4),
        purchase(3, 1, 10.0, None, outcome="unknown", client=2),
        purchase(4, 1, 11.0, 12.0, outcome="fail", error="no quorum", client=3),
        purchase(5, 1, 12.3, 13.5, client=3),
        purchase(6, 1, 12.5, 13.0, client=4),
    ]
    state = healed({1: 5}, {1: 2}, {"k-1-1": (1, "completed"), "k-3-5": (1, "completed"),
                                     "k-4-6": (1, "completed")})
    faults = [{"kind": "kill", "start": 10.0, "end": 12.2}, {"kind": "partition", "start": 20.0, "end": None}]

    report = check(history, state, faults=faults)

    assert_clean(report)
    metrics = report.result("availability").metrics
    assert metrics["ok_share_outside_faults"] == 1.0
    assert metrics["ok_share_during_faults"] == 0.0
    assert metrics["recovery"] == [{"kind": "kill", "start": 10.0, "seconds": 3.0},
                                   {"kind": "partition", "start": 20.0, "seconds": None}]


def test_availability_fails_when_nothing_succeeded():
    history = [purchase(1, 1, 0.0, 1.0, outcome="fail", error="no quorum")]
    state = healed({1: 5}, {1: 5}, {})

    assert "no operation succeeded" in flagged(check(history, state), "availability").detail


def test_report_summary_and_json():
    history = [purchase(1, 1, 0.0, 1.0), read(2, 1, 2.0, 3.0, stock=5)]
    report = check(history, healed({1: 5}, {1: 4}, {"k-1-1": (1, "completed")}))

    lines = report.summary().splitlines()
    assert len(lines) == len(CHECKS)
    assert lines[0].startswith("PASS acknowledged_purchases: ")
    assert lines[4].startswith("FAIL linearizable: ")
    assert len(report.summary(examples=2).splitlines()) == len(CHECKS) + 1
    document = json.loads(json.dumps(report.to_json()))
    assert document["ok"] is False
    assert [c["name"] for c in document["checks"] if not c["ok"]] == ["linearizable"]


# -- simulated valid runs --------------------------------------------------------------

FATES = ["done"] * 5 + ["unknown_applied", "unknown_lost", "refused"]
ITEMS = (1, 2, 3)


@dataclass(frozen=True)
class Plan:
    """One client operation to simulate; times in milliseconds."""

    client: int
    f: str
    item: int
    gap: int
    duration: int
    effect_at: int       # where in its span the op takes effect, in percent (unknown ops may land after it)
    fate: str
    value: int           # restock amount, price, or how stale a cached read is
    consistency: str
    lost_as_failed: bool  # a lost purchase is recorded "failed" by the order group, else absent


plans = st.builds(
    Plan, client=st.integers(0, 5), f=st.sampled_from(["purchase"] * 3 + ["restock", "set_price", "read", "read"]),
    item=st.sampled_from(ITEMS), gap=st.integers(0, 300), duration=st.integers(1, 1000),
    effect_at=st.integers(0, 100), fate=st.sampled_from(FATES), value=st.integers(1, 4),
    consistency=st.sampled_from(["strong", "cached", "local"]), lost_as_failed=st.booleans())


@dataclass
class Run:
    history: list
    final_state: dict


def simulate(initial, plan_list, replicas):
    """Run the plans against a sequential model; each op takes effect at one instant.

    Ops that complete take effect inside [start, end]; unknown ops that did
    take effect may land after the client gave up; acknowledged writes answer
    the book as they left it.  The result is a valid run.
    """
    clock = {}
    timed = []
    for op_id, plan in enumerate(plan_list, start=1):
        start = clock.get(plan.client, 0) + plan.gap
        end = start + plan.duration
        clock[plan.client] = end
        stretch = 3 if plan.fate == "unknown_applied" else 1
        timed.append((start + plan.effect_at * plan.duration * stretch / 100, op_id, plan, start / 1000, end / 1000))

    stock = {item: initial[item] for item in ITEMS}
    price = {item: 10.0 for item in ITEMS}
    timeline = {item: [initial[item]] for item in ITEMS}  # stock after each stock change
    settled = {item: [] for item in ITEMS}                # (end, timeline position) of ok stock changes
    history, orders, applied = [], {}, {}

    for _, op_id, plan, start, end in sorted(timed, key=lambda t: t[:2]):
        item, fate = plan.item, plan.fate
        takes_effect = fate in ("done", "unknown_applied")
        outcome = {"done": "ok", "unknown_applied": "unknown", "unknown_lost": "unknown", "refused": "fail"}[fate]
        args, result = {}, None
        if fate == "refused":
            result = {"error": "no quorum", "definite": True}
        if plan.f == "purchase":
            order_id = args["order_id"] = f"k-{plan.client}-{op_id}"
            if takes_effect:
                took = stock[item] > 0
                applied[order_id] = took
                orders[order_id] = (item, "completed" if took else "failed")
                if took:
                    stock[item] -= 1
                    timeline[item].append(stock[item])
                    result = {"order_id": order_id, "price": price[item]} if fate == "done" else None
                    if fate == "done":
                        settled[item].append((end, len(timeline[item]) - 1))
                elif fate == "done":
                    outcome, result = "fail", {"error": "out of stock", "definite": True}
            elif fate == "unknown_lost" and plan.lost_as_failed:
                orders[order_id] = (item, "failed")
        elif plan.f == "restock":
            args["amount"] = plan.value
            if takes_effect:
                stock[item] += plan.value
                timeline[item].append(stock[item])
                if fate == "done":
                    settled[item].append((end, len(timeline[item]) - 1))
                    result = {"stock": stock[item], "price": price[item]}
        elif plan.f == "set_price":
            args["price"] = float(plan.value)
            if takes_effect:
                price[item] = float(plan.value)
                if fate == "done":
                    result = {"stock": stock[item], "price": price[item]}
        else:
            args["consistency"] = plan.consistency
            if fate == "done":
                seen = stock[item]
                if plan.consistency != "strong":
                    # Any value from the last write completed before the read started, on.
                    oldest = max([pos for done, pos in settled[item] if done < start], default=0)
                    seen = timeline[item][max(oldest, len(timeline[item]) - plan.value)]
                result = {"stock": seen, "price": price[item]}
            elif fate == "unknown_applied":
                outcome = "unknown"
        history.append(Operation(op_id, plan.client, plan.f, item, args, start,
                                 None if outcome == "unknown" else end, outcome, result))

    # A final strong read of every item, after everything settled, as Jepsen tests do.
    settle = max((max(t[0], t[4] * 1000) for t in timed), default=0) / 1000 + 1
    for item in ITEMS:
        history.append(Operation(len(plan_list) + item, -1, "read", item, {"consistency": "strong"},
                                 settle, settle + 0.1, "ok", {"stock": stock[item], "price": price[item]}))

    final = healed(initial, stock, orders, applied, catalogs=replicas, order_replicas=replicas)
    for item in ITEMS:
        for replica in final["catalog"].values():
            replica["books"][str(item)]["price"] = price[item]
    return Run(sorted(history, key=lambda op: op.id), final)


# Explaining a failure (Phase.explain) can take minutes on these runs; shrinking is enough.
PROPERTY = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow],
                    phases=[phase for phase in Phase if phase is not Phase.explain])

runs = st.builds(simulate, st.fixed_dictionaries({item: st.integers(0, 4) for item in ITEMS}),
                 st.lists(plans, min_size=10, max_size=60), st.integers(1, 3))


@settings(PROPERTY, max_examples=60)
@given(runs)
def test_simulated_concurrent_runs_are_accepted(run):
    report = check(run.history, run.final_state)
    note(report.summary(examples=5))
    assert_clean(report)


@settings(PROPERTY, max_examples=30)
@given(runs, st.data())
def test_losing_any_acknowledged_order_on_any_replica_is_flagged(run, data):
    acknowledged = [op for op in run.history if op.f == "purchase" and op.ok]
    assume(acknowledged)
    victim = data.draw(st.sampled_from(acknowledged))
    replica = data.draw(st.sampled_from(sorted(run.final_state["order"])))
    del run.final_state["order"][replica]["orders"][victim.order_id]

    result = flagged(check(run.history, run.final_state), "acknowledged_purchases")

    assert any(victim.order_id in e and replica in e for e in result.examples)


@settings(PROPERTY, max_examples=30)
@given(runs, st.data())
def test_an_impossible_strong_read_is_not_linearizable(run, data):
    reads = [op for op in run.history if op.f == "read" and op.ok and op.consistency == "strong"]
    assume(reads)
    victim = data.draw(st.sampled_from(reads))
    restocked = sum(op.args["amount"] for op in run.history if op.f == "restock" and op.item == victim.item)
    impossible = run.final_state["initial"][str(victim.item)]["stock"] + restocked + 1
    run.history[run.history.index(victim)] = Operation(
        victim.id, victim.client, "read", victim.item, victim.args, victim.start, victim.end, "ok",
        {"stock": impossible, "price": victim.result["price"]})

    result = flagged(check(run.history, run.final_state), "linearizable")

    assert f"item {victim.item}:" in result.examples[0]


@settings(PROPERTY, max_examples=30)
@given(runs, st.data())
def test_an_invented_write_answer_is_not_linearizable(run, data):
    answered = [op for op in run.history if op.ok and op.f in ("restock", "purchase")]
    assume(answered)
    victim = data.draw(st.sampled_from(answered))
    if victim.f == "restock":
        restocked = sum(op.args["amount"] for op in run.history if op.f == "restock" and op.item == victim.item)
        invented = {**victim.result, "stock": run.final_state["initial"][str(victim.item)]["stock"] + restocked + 1}
    else:
        invented = {**victim.result, "price": 1000.0}  # no price ever set is that high
    run.history[run.history.index(victim)] = Operation(
        victim.id, victim.client, victim.f, victim.item, victim.args, victim.start, victim.end, "ok", invented)

    report = check(run.history, run.final_state)

    result = flagged(report, "linearizable")
    assert f"item {victim.item}:" in result.examples[0]
    assert [r.name for r in report.checks if not r.ok] == ["linearizable"]
