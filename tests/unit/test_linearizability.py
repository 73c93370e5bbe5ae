"""The per-item linearizability search for the stock-counter model."""
import random

import pytest

from bazar.chaos.history import Operation
from bazar.chaos.linearizability import (
    OUT_OF_STOCK, PURCHASE, READ, RESTOCK, SET_PRICE, Seen, State, Step, apply, check_history, check_steps,
    to_steps,
)

START = State(stock=5, price=10.0)


def buy(op_id, start, end):
    return Step(op_id, PURCHASE, None, start, end)


def read(op_id, start, end, stock, price=10.0):
    return Step(op_id, READ, State(stock, price), start, end)


def unknown_buy(op_id, start, required=False):
    return Step(op_id, PURCHASE, None, start, None, required=required)


def restocked(op_id, start, end, amount, answered_stock, price=10.0):
    """A restock that answered the book as (answered_stock, price)."""
    return Step(op_id, RESTOCK, amount, start, end, answer=Seen(answered_stock, price))


def charged(op_id, start, end, price, title=None):
    """A purchase that answered the price it charged (and the title)."""
    return Step(op_id, PURCHASE, None, start, end, answer=Seen(None, price, title))


# -- the model --------------------------------------------------------------------------

def test_model_steps():
    assert apply(State(1, 10.0), buy(1, 0, 1)) == State(0, 10.0)
    assert apply(State(0, 10.0), buy(1, 0, 1)) is None
    assert apply(State(0, 10.0), Step(1, OUT_OF_STOCK, None, 0, 1)) == State(0, 10.0)
    assert apply(State(2, 10.0), Step(1, OUT_OF_STOCK, None, 0, 1)) is None
    assert apply(State(2, 10.0), Step(1, RESTOCK, 3, 0, 1)) == State(5, 10.0)
    assert apply(State(2, 10.0), Step(1, SET_PRICE, 12.5, 0, 1)) == State(2, 12.5)
    assert apply(State(2, 10.0), read(1, 0, 1, 2)) == State(2, 10.0)
    assert apply(State(2, 10.0), read(1, 0, 1, 2, price=11.0)) is None
    assert apply(State(2, 10.0), read(1, 0, 1, 2, price=None)) == State(2, 10.0)


def test_a_write_must_leave_the_state_it_answered():
    assert apply(State(2, 10.0), restocked(1, 0, 1, 3, 5)) == State(5, 10.0)
    assert apply(State(2, 10.0), restocked(1, 0, 1, 3, 2)) is None        # the book before it
    assert apply(State(2, 10.0), restocked(1, 0, 1, 3, 5, price=12.5)) is None
    assert apply(State(2, 10.0), charged(1, 0, 1, 10.0)) == State(1, 10.0)  # a purchase reports no stock
    assert apply(State(2, 10.0), charged(1, 0, 1, 12.5)) is None
    assert apply(State(2, 10.0, "Dune"), charged(1, 0, 1, 10.0, "Dune")) == State(1, 10.0, "Dune")
    assert apply(State(2, 10.0, "Dune"), charged(1, 0, 1, 10.0, "Emma")) is None
    assert apply(State(2, 10.0), Step(1, SET_PRICE, 12.5, 0, 1, answer=Seen(2, 12.5))) == State(2, 12.5)
    assert apply(State(2, 10.0), Step(1, SET_PRICE, 12.5, 0, 1, answer=Seen(2, 10.0))) is None


# -- accepted histories ------------------------------------------------------------------

def test_sequential_history_is_linearizable():
    steps = [buy(1, 0, 1), read(2, 2, 3, 4), Step(3, RESTOCK, 2, 4, 5), read(4, 6, 7, 6)]
    assert check_steps(steps, START).linearizable is True


def test_a_read_concurrent_with_a_purchase_may_see_either_value():
    for seen in (5, 4):
        steps = [buy(1, 0, 10), read(2, 1, 2, seen)]
        assert check_steps(steps, START).linearizable is True, seen


def test_linearization_may_reorder_concurrent_ops_against_their_invocation_order():
    # Read B starts first but must go after the purchase, which must go after read A.
    steps = [read(1, 0, 3, 5), buy(2, 1, 6), read(3, 2, 7, 4)]
    assert check_steps(steps, START).linearizable is True


def test_out_of_stock_refusal_linearizes_where_stock_is_zero():
    steps = [buy(1, 0, 4), Step(2, OUT_OF_STOCK, None, 1, 3)]
    assert check_steps(steps, State(1, 10.0)).linearizable is True


def test_an_unknown_purchase_may_take_effect_late_or_never():
    took_effect = [unknown_buy(1, 0), read(2, 5, 6, 5), read(3, 7, 8, 4), read(4, 9, 10, 4)]
    never = [unknown_buy(1, 0), read(2, 5, 6, 5), read(3, 7, 8, 5)]
    assert check_steps(took_effect, START).linearizable is True
    assert check_steps(never, START).linearizable is True


def test_concurrent_writes_may_answer_in_either_order():
    # The restock may go before or after the purchase: it answers 8 or 7 accordingly.
    for answered in (8, 7):
        steps = [buy(1, 0, 10), restocked(2, 1, 2, 3, answered)]
        assert check_steps(steps, START).linearizable is True, answered
    # A purchase concurrent with a price change may charge either price, as long as the
    # price change's answer (the stock it saw) tells the same order.
    for charged_price, stock_after_price_change in ((10.0, 4), (12.5, 5)):
        steps = [Step(1, SET_PRICE, 12.5, 0, 10, answer=Seen(stock_after_price_change, 12.5)),
                 charged(2, 1, 2, charged_price)]
        assert check_steps(steps, START).linearizable is True, charged_price
    steps = [Step(1, SET_PRICE, 12.5, 0, 10, answer=Seen(5, 12.5)), charged(2, 1, 2, 10.0)]
    assert check_steps(steps, START).linearizable is False


def test_a_retried_write_answers_its_first_application():
    # A restock retried after a timeout gets its first result back (the catalog remembers it),
    # which may be older than a purchase that completed between the attempts: still valid,
    # because the restock's linearization point is its first application.
    steps = [restocked(1, 0, 9, 3, 8), buy(2, 2, 3), read(3, 10, 11, 7)]
    assert check_steps(steps, START).linearizable is True


# -- rejected histories -------------------------------------------------------------------

def test_a_restock_answering_the_book_before_it_is_rejected_and_pointed_at():
    steps = [restocked(1, 0, 1, 3, 8), restocked(2, 2, 3, 2, 8)]   # the second should say 10

    verdict = check_steps(steps, START)

    assert verdict.linearizable is False
    assert "op 2" in verdict.detail and "answered stock=8" in verdict.detail
    assert check_steps([restocked(1, 0, 1, 3, 8), restocked(2, 2, 3, 2, 10)], START).linearizable is True


def test_a_restock_answering_a_state_from_before_an_earlier_write_is_rejected():
    # The purchase completed before the restock began; the restock's answer forgets it.
    steps = [buy(1, 0, 1), restocked(2, 2, 3, 3, 8)]
    assert check_steps(steps, START).linearizable is False
    assert check_steps([buy(1, 0, 1), restocked(2, 2, 3, 3, 7)], START).linearizable is True


def test_an_invented_write_answer_is_rejected():
    assert check_steps([restocked(1, 0, 1, 3, 80)], START).linearizable is False
    assert check_steps([charged(1, 0, 1, 99.0)], START).linearizable is False
    assert check_steps([charged(1, 0, 1, 10.0, "Not a book here")], START._replace(title="Dune")).linearizable is False


def test_a_purchase_charging_a_price_replaced_before_it_began_is_rejected():
    steps = [Step(1, SET_PRICE, 12.5, 0, 1, answer=Seen(5, 12.5)), charged(2, 2, 3, 10.0)]
    assert check_steps(steps, START).linearizable is False



def test_stale_read_after_completed_purchase_is_rejected_and_pointed_at():
    steps = [buy(1, 0, 1), read(2, 2, 3, 5)]

    verdict = check_steps(steps, START)

    assert verdict.linearizable is False
    assert set(verdict.window) == {1, 2}
    assert "op 2" in verdict.detail


def test_register_like_history_that_goes_back_in_time_is_rejected():
    # Two concurrent price writes; reads see 12, then 11, then 12 again: the
    # value would have to change three times with only two writes.
    steps = [Step(1, SET_PRICE, 11.0, 0, 10), Step(2, SET_PRICE, 12.0, 0, 10),
             read(3, 1, 2, 5, price=12.0), read(4, 3, 4, 5, price=11.0), read(5, 5, 6, 5, price=12.0)]

    assert check_steps(steps, START).linearizable is False
    assert check_steps(steps[:4], START).linearizable is True


def test_overselling_is_rejected_even_when_purchases_overlap():
    assert check_steps([buy(1, 0, 1), buy(2, 2, 3)], State(1, 10.0)).linearizable is False
    assert check_steps([buy(1, 0, 3), buy(2, 1, 2)], State(1, 10.0)).linearizable is False


def test_out_of_stock_refusal_while_stock_remains_is_rejected():
    steps = [Step(1, OUT_OF_STOCK, None, 0, 1)]
    assert check_steps(steps, START).linearizable is False


def test_an_unknown_purchase_cannot_be_undone():
    steps = [unknown_buy(1, 0), read(2, 5, 6, 4), read(3, 7, 8, 5)]
    assert check_steps(steps, START).linearizable is False


def test_an_unknown_purchase_cannot_take_effect_before_it_was_invoked():
    steps = [read(1, 0, 1, 4), unknown_buy(2, 2)]
    assert check_steps(steps, START).linearizable is False


def test_interchangeable_unknown_ops_are_used_earliest_invoked_first():
    # Only the early purchase can explain the first read; the late one the second.
    steps = [unknown_buy(1, 0), unknown_buy(2, 10), read(3, 2, 3, 4), read(4, 11, 12, 3)]
    assert check_steps(steps, START).linearizable is True


def test_a_required_unknown_purchase_must_find_stock():
    # It took stock (say the catalog), so with one unit the acknowledged purchase cannot also have.
    steps = [unknown_buy(1, 0, required=True), buy(2, 5, 6)]
    assert check_steps(steps, State(1, 10.0)).linearizable is False
    steps = [unknown_buy(1, 0, required=False), buy(2, 5, 6)]
    assert check_steps(steps, State(1, 10.0)).linearizable is True


def test_many_interchangeable_unknown_ops_do_not_blow_up_the_search():
    # 40 optional unknown purchases and an impossible read: the search must
    # exhaust every configuration, which stays small only thanks to symmetry.
    steps = [unknown_buy(i, i * 0.1) for i in range(40)] + [read(99, 10, 11, 45)]

    verdict = check_steps(steps, State(40, 10.0))

    assert verdict.linearizable is False
    assert verdict.explored < 1_000


def test_search_gives_up_at_the_state_limit_with_a_clear_reason():
    steps = [unknown_buy(i, i * 0.1) for i in range(40)] + [read(99, 10, 11, 45)]

    verdict = check_steps(steps, State(40, 10.0), max_states=10)

    assert verdict.linearizable is None
    assert "search too large" in verdict.detail


# -- from a recorded history ----------------------------------------------------------

def op(op_id, f, item, start, end, outcome="ok", args=None, result=None):
    return Operation(op_id, 1, f, item, args or {}, start, end, outcome, result)


def test_to_steps_keeps_only_what_constrains_the_model():
    history = [
        op(1, "purchase", 1, 0, 1, args={"order_id": "a"}, result={"order_id": "a", "price": 1.0}),
        op(2, "purchase", 1, 0, 1, "fail", {"order_id": "b"}, {"error": "out of stock"}),
        op(3, "purchase", 1, 0, 1, "fail", {"order_id": "c"}, {"error": "no quorum", "definite": True}),
        op(4, "purchase", 1, 0, None, "unknown", {"order_id": "d"}),
        op(5, "read", 1, 0, 1, args={"consistency": "strong"}, result={"stock": 3, "price": 1.0}),
        op(6, "read", 1, 0, 1, args={"consistency": "cached"}, result={"stock": 3, "price": 1.0}),
        op(7, "read", 1, 0, None, "unknown", {"consistency": "strong"}),
        op(8, "restock", 1, 0, 2.0, "unknown", {"amount": 4}),
        op(9, "set_price", 1, 0, 1, args={"price": 2.5}),
    ]

    steps = {step.op_id: step for step in to_steps(history, took_effect=lambda o: o.id == 4 or None)}

    assert sorted(steps) == [1, 2, 4, 5, 8, 9]
    assert steps[2].kind == OUT_OF_STOCK
    assert steps[4].end is None and steps[4].required
    assert steps[8] == Step(8, RESTOCK, 4, 0, None, required=False)
    assert steps[5].value == State(3, 1.0)
    assert steps[1].answer == Seen(None, 1.0)         # a purchase answers its price, not the stock
    assert steps[9].answer is None                    # nothing answered, nothing to check


def test_to_steps_keeps_what_writes_answered():
    history = [
        op(1, "restock", 1, 0, 1, args={"amount": 2}, result={"stock": 7, "price": 1.0, "title": "Dune"}),
        op(2, "set_price", 1, 0, 1, args={"price": 2.0}, result={"stock": 7, "price": 2.0, "title": "Dune"}),
        op(3, "purchase", 1, 0, 1, args={"order_id": "a"}, result={"order_id": "a", "price": 2.0, "title": "Dune"}),
    ]

    answers = [step.answer for step in to_steps(history)]

    assert answers == [Seen(7, 1.0, "Dune"), Seen(7, 2.0, "Dune"), Seen(None, 2.0, "Dune")]


def test_items_are_checked_independently():
    history = [
        op(1, "purchase", 1, 0, 1, args={"order_id": "a"}),
        op(2, "read", 1, 2, 3, args={"consistency": "strong"}, result={"stock": 4, "price": 10.0}),
        op(3, "purchase", 2, 0, 1, args={"order_id": "b"}),
        op(4, "read", 2, 2, 3, args={"consistency": "strong"}, result={"stock": 5, "price": 10.0}),
        op(5, "read", 3, 2, 3, args={"consistency": "strong"}, result={"stock": 5, "price": 10.0}),
    ]

    verdicts = check_history(history, {1: START, 2: START})

    assert verdicts[1].linearizable is True
    assert verdicts[2].linearizable is False and set(verdicts[2].window) == {3, 4}
    assert verdicts[3].linearizable is None and "no initial state" in verdicts[3].detail


# -- a simulated concurrent run -----------------------------------------------------------

def simulate(seed, clients=8, items=3, ops_per_item=200):
    """Clients run ops back to back; each op takes effect at a random instant inside [start, end].

    Every write answers the book as it left it (a purchase: the price it charged).
    Returns the history and the initial states; the history is linearizable by construction.
    """
    rng = random.Random(seed)
    initial = {item: State(rng.randint(0, 20), 10.0) for item in range(1, items + 1)}
    clock = [0.0] * clients
    planned = []
    for op_id in range(items * ops_per_item):
        client = rng.randrange(clients)
        start = clock[client] + rng.uniform(0, 0.2)
        end = start + rng.uniform(0.05, 1.5)
        clock[client] = end
        f = rng.choice(["purchase", "purchase", "purchase", "read", "read", "restock", "set_price"])
        planned.append((rng.uniform(start, end), op_id, client, f, rng.randint(1, items), start, end))
    state = dict(initial)
    history = []
    for _, op_id, client, f, item, start, end in sorted(planned):
        args, outcome, result = {}, "ok", None
        if f == "purchase":
            args = {"order_id": f"k-{client}-{op_id}"}
            if state[item].stock > 0:
                state[item] = state[item]._replace(stock=state[item].stock - 1)
                result = {"order_id": args["order_id"], "price": state[item].price}
            else:
                outcome, result = "fail", {"error": "out of stock", "definite": True}
        elif f == "restock":
            args = {"amount": rng.randint(1, 3)}
            state[item] = state[item]._replace(stock=state[item].stock + args["amount"])
            result = {"stock": state[item].stock, "price": state[item].price}
        elif f == "set_price":
            args = {"price": float(rng.randint(5, 15))}
            state[item] = state[item]._replace(price=args["price"])
            result = {"stock": state[item].stock, "price": state[item].price}
        else:
            args = {"consistency": "strong"}
            result = {"stock": state[item].stock, "price": state[item].price}
        history.append(Operation(op_id, client, f, item, args, start, end, outcome, result))
    history.sort(key=lambda o: o.id)
    return history, initial


@pytest.mark.parametrize("seed", range(3))
def test_eight_clients_two_hundred_ops_per_item_are_linearizable(seed):
    history, initial = simulate(seed)

    verdicts = check_history(history, initial)

    assert {item: v.linearizable for item, v in verdicts.items()} == {1: True, 2: True, 3: True}


@pytest.mark.parametrize("seed", range(3))
def test_one_impossible_read_in_a_long_concurrent_run_is_found(seed):
    history, initial = simulate(seed)
    victim = next(o for o in reversed(history) if o.f == "read" and o.item == 2)
    never = initial[2].stock + sum(o.args["amount"] for o in history if o.f == "restock" and o.item == 2) + 1
    history[history.index(victim)] = Operation(victim.id, victim.client, "read", 2, victim.args, victim.start,
                                               victim.end, "ok", {"stock": never, "price": 10.0})

    verdicts = check_history(history, initial)

    assert verdicts[1].linearizable is True and verdicts[3].linearizable is True
    assert verdicts[2].linearizable is False
    assert victim.id in verdicts[2].window and len(verdicts[2].window) <= 10


@pytest.mark.parametrize("seed", range(3))
def test_one_stale_write_answer_in_a_long_concurrent_run_is_found(seed):
    history, initial = simulate(seed)
    # The last restock of item 2 answers the stock it found instead of the stock it left.
    victim = next(o for o in reversed(history) if o.f == "restock" and o.item == 2)
    stale = {**victim.result, "stock": victim.result["stock"] - victim.args["amount"]}
    history[history.index(victim)] = Operation(victim.id, victim.client, "restock", 2, victim.args, victim.start,
                                               victim.end, "ok", stale)

    verdicts = check_history(history, initial)

    assert verdicts[1].linearizable is True and verdicts[3].linearizable is True
    assert verdicts[2].linearizable is False
    assert victim.id in verdicts[2].window


@pytest.mark.parametrize("seed", range(3))
def test_one_invented_purchase_price_in_a_long_concurrent_run_is_found(seed):
    history, initial = simulate(seed)
    victim = next(o for o in reversed(history) if o.f == "purchase" and o.ok and o.item == 3)
    history[history.index(victim)] = Operation(victim.id, victim.client, "purchase", 3, victim.args, victim.start,
                                               victim.end, "ok", {**victim.result, "price": 1000.0})

    verdicts = check_history(history, initial)

    assert verdicts[3].linearizable is False and victim.id in verdicts[3].window
    assert verdicts[1].linearizable is True and verdicts[2].linearizable is True
