"""Linearizability of one book's stock counter, checked item by item.

Linearizability is *compositional* (P-compositionality): a history is
linearizable iff each item's sub-history is, because items share no state.
So the search below runs once per item, on a small model whose state is the
book's (stock, price, title):

=============  ==============================  ==========================
step           may happen when                 effect
=============  ==============================  ==========================
purchase       stock > 0                       stock - 1
out of stock   stock == 0  (a refused buy)     none
restock n      always                          stock + n
set_price p    always                          price = p
read (s, p)    (stock, price) == (s, p)        none
=============  ==============================  ==========================

A write's answer is part of the operation, as in Porcupine's models: an
acknowledged write may go at a point only if what it answered is the state it
leaves there. A restock answers the book after it (stock, price, title), a
price change too, a purchase the price it charged and the title (not the
stock). So a write that answers a stale state (the book before it, or before
an earlier write) or an invented one has no linearization, even when the
writes themselves all took effect correctly.

The search is Wing & Gong's, with Lowe's memoization, written as a
depth-first search over *configurations* (which ops are linearized, model
state).  A configuration is expanded by linearizing one more op that is
allowed to go next: one invoked no later than the earliest return among the
ops still waiting.  Configurations are memoized, so each is expanded once.

Ops whose outcome is unknown have no return, so no deadline: they may be
linearized at any point after their invocation, or (if optional) never.
Unknown ops with the same effect are interchangeable, so instead of
remembering *which* of them were linearized, a configuration counts how many
of each kind were used, always taking the earliest-invoked first (any
linearization can be rearranged to do so).  Without that symmetry reduction,
k unknown ops would multiply the search space by 2**k.
"""
from __future__ import annotations

import math
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from bazar.chaos.history import Operation

DEFAULT_MAX_STATES = 200_000
WINDOW_SIZE = 10

PURCHASE = "purchase"
OUT_OF_STOCK = "out_of_stock"
RESTOCK = "restock"
SET_PRICE = "set_price"
READ = "read"


class State(NamedTuple):
    """A book's stock, price and title; a price or title of None means "not known"."""

    stock: int
    price: float | None = None
    title: str | None = None


class Seen(NamedTuple):
    """What an operation reported about a book (a read's value, a write's answer).

    A field of None reports nothing, so it constrains nothing.
    """

    stock: int | None = None
    price: float | None = None
    title: str | None = None


@dataclass(frozen=True)
class Step:
    """One operation as the model sees it.

    `end` is None when the caller never learned the outcome: the step then
    has no deadline.  A step that is not `required` may be left out.
    `answer` is what an acknowledged write answered: the state after it must
    agree (None: it answered nothing we can check).
    """

    op_id: int
    kind: str
    value: Any
    start: float
    end: float | None
    required: bool = True
    answer: Seen | None = None


@dataclass(frozen=True)
class Verdict:
    """The answer for one item: linearizable is True, False, or None (search gave up)."""

    linearizable: bool | None
    explored: int
    window: tuple[int, ...] = ()
    detail: str = ""


TookEffect = Callable[[Operation], "bool | None"]


def _nothing_known(operation: Operation) -> bool | None:
    return None


# -- the model --------------------------------------------------------------

def apply(state: State, step: Step) -> State | None:
    """The state after `step`, or None if `step` cannot happen in `state` (or, for a
    write, cannot leave the state it answered)."""
    after = _effect(state, step)
    if after is None or (step.answer is not None and not agrees(after, step.answer)):
        return None
    return after


def _effect(state: State, step: Step) -> State | None:
    if step.kind == PURCHASE:
        return state._replace(stock=state.stock - 1) if state.stock > 0 else None
    if step.kind == OUT_OF_STOCK:
        return state if state.stock == 0 else None
    if step.kind == RESTOCK:
        return state._replace(stock=state.stock + step.value)
    if step.kind == SET_PRICE:
        return state._replace(price=step.value)
    if step.kind == READ:
        return state if agrees(state, step.value) else None
    raise ValueError(f"unknown step kind {step.kind!r}")


def agrees(state: State, seen: Seen | State) -> bool:
    """True if what was seen could be `state`: every field both of them know is equal."""
    return all(reported is None or known is None or reported == known
               for reported, known in zip(seen, state))


# -- from history to model steps ------------------------------------------

def to_steps(operations: Iterable[Operation], took_effect: TookEffect = _nothing_known) -> list[Step]:
    """The model steps for one item's operations.

    Operations that constrain nothing are dropped: definite failures other
    than out-of-stock, reads that are not strong or not ok, and unknown
    operations that `took_effect` says did not happen.  `took_effect` may
    also say an unknown operation did happen (True), making it required, or
    not know (None), making it optional.
    """
    steps = []
    for operation in operations:
        step = _to_step(operation, took_effect)
        if step is not None:
            steps.append(step)
    return steps


def _to_step(op: Operation, took_effect: TookEffect) -> Step | None:
    if op.f == "read":
        if op.ok and op.consistency == "strong":
            seen = Seen(int(op.result["stock"]), op.result.get("price"), op.result.get("title"))
            return Step(op.id, READ, seen, op.start, op.end)
        return None
    if op.observed_out_of_stock:
        return Step(op.id, OUT_OF_STOCK, None, op.start, op.end)
    if op.failed:
        return None
    kind, value = _write_effect(op)
    if op.ok:
        return Step(op.id, kind, value, op.start, op.end, answer=write_answer(op))
    happened = took_effect(op)
    if happened is False:
        return None
    return Step(op.id, kind, value, op.start, None, required=happened is True)


def write_answer(op: Operation) -> Seen | None:
    """What an acknowledged write answered about its book, or None if it answered nothing checkable.

    A purchase answers the price it charged and the title, never the stock.
    """
    result = op.result or {}
    stock = None if op.f == "purchase" else result.get("stock")
    seen = Seen(None if stock is None else int(stock), result.get("price"), result.get("title"))
    return seen if seen != Seen() else None


def _write_effect(op: Operation) -> tuple[str, Any]:
    if op.f == "purchase":
        return PURCHASE, None
    if op.f == "restock":
        return RESTOCK, int(op.args["amount"])
    return SET_PRICE, op.args["price"]


# -- the search ----------------------------------------------------------------

def check_steps(steps: Sequence[Step], initial: State,
                max_states: int = DEFAULT_MAX_STATES) -> Verdict:
    """Decide whether `steps`, starting from `initial`, have a linearization.

    Explores at most `max_states` configurations; past that the verdict is
    None ("search too large") rather than a guess.
    """
    return _Search(steps, initial).run(max_states)


def check_history(history: Iterable[Operation], initial: Mapping[int, State], *,
                  took_effect: TookEffect = _nothing_known,
                  max_states: int = DEFAULT_MAX_STATES) -> dict[int, Verdict]:
    """Check each item's sub-history on its own (compositionality); one verdict per item.

    An item without an initial state cannot be checked: its verdict is None.
    """
    by_item: dict[int, list[Operation]] = defaultdict(list)
    for operation in history:
        by_item[operation.item].append(operation)
    verdicts = {}
    for item, operations in sorted(by_item.items()):
        if item not in initial:
            verdicts[item] = Verdict(None, 0, detail=f"item {item}: no initial state to start from")
            continue
        verdicts[item] = check_steps(to_steps(operations, took_effect), initial[item], max_states)
    return verdicts


# A configuration: (bitmask of linearized timed steps, model state, how many of each pool used).
Config = tuple[int, State, tuple[int, ...]]


class _Search:
    """Depth-first search for a linearization, memoizing configurations."""

    def __init__(self, steps: Sequence[Step], initial: State) -> None:
        self.steps = list(steps)
        self.initial = initial
        # Timed steps are numbered in order of their return, so the pending
        # step with the earliest deadline is the lowest bit not yet set.
        self.timed = sorted((s for s in steps if s.end is not None), key=lambda s: (s.end, s.start))
        self.followers = _followers(self.timed)
        self.pools = _pools(s for s in steps if s.end is None)
        self.all_timed = (1 << len(self.timed)) - 1

    def run(self, max_states: int) -> Verdict:
        start: Config = (0, self.initial, (0,) * len(self.pools))
        seen = {start}
        stack = [start]
        deepest = start
        while stack:
            config = stack.pop()
            if self._is_complete(config):
                return Verdict(True, len(seen))
            if _progress(config) > _progress(deepest):
                deepest = config
            # Push in reverse so the preferred successor is expanded first.
            for successor in reversed(list(self._successors(config))):
                if successor in seen:
                    continue
                if len(seen) >= max_states:
                    return self._gave_up(len(seen))
                seen.add(successor)
                stack.append(successor)
        return self._refuted(deepest, len(seen))

    def _is_complete(self, config: Config) -> bool:
        mask, _, used = config
        return mask == self.all_timed and all(
            used[p] == len(pool) for p, pool in enumerate(self.pools) if pool[0].required)

    def _successors(self, config: Config) -> Iterator[Config]:
        """Configurations one legal step further, earliest deadline first."""
        mask, state, used = config
        due = _lowest_unset_bit(mask)
        frontier = self.timed[due].end if due < len(self.timed) else math.inf
        if due < len(self.timed):
            for j in [due, *self.followers[due]]:
                if not mask >> j & 1:
                    after = apply(state, self.timed[j])
                    if after is not None:
                        yield mask | 1 << j, after, used
        for p, pool in enumerate(self.pools):
            if used[p] < len(pool) and pool[used[p]].start <= frontier:
                after = apply(state, pool[used[p]])
                if after is not None:
                    yield mask, after, used[:p] + (used[p] + 1,) + used[p + 1:]

    def _gave_up(self, explored: int) -> Verdict:
        return Verdict(None, explored, detail=(
            f"unknown (search too large): gave up after {explored} states "
            f"({len(self.steps)} ops); raise max_states or shorten the run"))

    def _refuted(self, deepest: Config, explored: int) -> Verdict:
        mask, state, used = deepest
        stuck = self._stuck_step(deepest)
        window = self._window_around(stuck)
        return Verdict(False, explored, tuple(s.op_id for s in window), detail=(
            f"no linearization: op {stuck.op_id} ({stuck.kind}) can never be placed; "
            f"deepest point reached {mask.bit_count()} of {len(self.timed)} completed ops "
            f"with stock={state.stock}, price={state.price}" + _answer_note(state, stuck)))

    def _stuck_step(self, config: Config) -> Step:
        """The step the search could not get past: the earliest deadline, else a required unknown op."""
        mask, _, used = config
        due = _lowest_unset_bit(mask)
        if due < len(self.timed):
            return self.timed[due]
        return next(pool[used[p]] for p, pool in enumerate(self.pools)
                    if pool[0].required and used[p] < len(pool))

    def _window_around(self, stuck: Step) -> list[Step]:
        """`stuck`, the op that completed just before it, and the ops nearest it in time."""
        begin = stuck.start
        finish = stuck.end if stuck.end is not None else math.inf
        earlier = [s for s in self.timed if s.end < begin]
        neighbours = [s for s in self.steps if s is not stuck and s.start <= finish
                      and (s.end is None or s.end >= begin)]
        neighbours.sort(key=lambda s: abs(s.start - begin))
        window = [stuck] + ([earlier[-1]] if earlier else [])
        window += neighbours[:WINDOW_SIZE - len(window)]
        return sorted(window, key=lambda s: s.start)


def _answer_note(state: State, stuck: Step) -> str:
    """When the stuck write could have gone there but answered another state, say so."""
    if stuck.answer is None:
        return ""
    would_leave = _effect(state, stuck)
    if would_leave is None or agrees(would_leave, stuck.answer):
        return ""
    answered = ", ".join(f"{name}={value}" for name, value in stuck.answer._asdict().items() if value is not None)
    return (f"; there it would leave stock={would_leave.stock}, price={would_leave.price}, "
            f"but it answered {answered}")


def _progress(config: Config) -> tuple[int, int]:
    mask, _, used = config
    return mask.bit_count(), sum(used)


def _lowest_unset_bit(mask: int) -> int:
    return (~mask & (mask + 1)).bit_length() - 1


def _followers(timed: Sequence[Step]) -> list[list[int]]:
    """For each timed step i, the later-returning steps j invoked no later than i returns.

    These (with i itself) are exactly the steps that may be linearized while
    i is the pending step with the earliest deadline.
    """
    ends = [s.end for s in timed]
    followers: list[list[int]] = [[] for _ in timed]
    for j, step in enumerate(timed):
        for i in range(bisect_left(ends, step.start), j):
            followers[i].append(j)
    return followers


def _pools(untimed: Iterable[Step]) -> list[tuple[Step, ...]]:
    """Untimed steps grouped by identical effect, each pool ordered by invocation."""
    groups: dict[tuple, list[Step]] = defaultdict(list)
    for step in untimed:
        groups[(step.kind, step.value, step.required)].append(step)
    return [tuple(sorted(group, key=lambda s: s.start)) for group in groups.values()]
