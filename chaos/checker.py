"""The verdict on a chaos run: what clients saw, checked against where the cluster ended.

`check(history, final_state, faults)` runs every check and returns a
`CheckReport`.  Each check is a small function from the history and the
parsed final state (`Cluster`) to a `CheckResult`:

* acknowledged_purchases -- no purchase the client was told succeeded is lost;
* stock_conservation     -- stock moves only by restocks and completed orders;
* exactly_once           -- each order takes stock once, or not at all;
* replicas_converged     -- after healing, every replica holds the same state;
* linearizable           -- strong operations on each item have a linearization,
                            in which every acknowledged write's answer (a
                            restock's book, a purchase's price and title) is
                            the state at its linearization point;
* cached_reads_bounded   -- cached and local reads are never older than the
                            frontend promises;
* availability           -- informational: how much succeeded, how fast it recovered.
"""
from __future__ import annotations

import bisect
import itertools

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bazar.chaos import linearizability
from bazar.chaos.history import Operation
from bazar.chaos.linearizability import DEFAULT_MAX_STATES, State

MAX_EXAMPLES = 10


# -- results -------------------------------------------------------------------

@dataclass
class CheckResult:
    """The outcome of one named check; `examples` lists (at most 10) offending cases."""

    name: str
    ok: bool
    detail: str
    examples: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail,
                "examples": list(self.examples), "metrics": dict(self.metrics)}


@dataclass
class CheckReport:
    """All checks of one run; the run is valid when every check is ok."""

    checks: list[CheckResult]

    @property
    def ok(self) -> bool:
        return all(result.ok for result in self.checks)

    def result(self, name: str) -> CheckResult:
        """The result of the check called `name`; KeyError if there is none."""
        for result in self.checks:
            if result.name == name:
                return result
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [result.to_json() for result in self.checks]}

    def summary(self, examples: int = 0) -> str:
        """One line per check, PASS or FAIL with its detail; optionally a few examples under each failure."""
        lines = []
        for result in self.checks:
            lines.append(f"{'PASS' if result.ok else 'FAIL'} {result.name}: {result.detail}")
            if not result.ok:
                lines += [f"    - {example}" for example in result.examples[:examples]]
        return "\n".join(lines)


def _verdict(name: str, problems: list[str], clean: str, what: str) -> CheckResult:
    """A result that fails iff there are `problems`; the detail names the first one."""
    if not problems:
        return CheckResult(name, True, clean)
    detail = f"{len(problems)} {what}; first: {problems[0]}"
    return CheckResult(name, False, detail, problems[:MAX_EXAMPLES])


# -- the final state, parsed -------------------------------------------------

@dataclass(frozen=True)
class CatalogReplica:
    """One catalog replica: books by id, and order id -> whether it took stock."""

    name: str
    books: dict[str, State]
    applied: dict[str, bool]
    digest: str | None


@dataclass(frozen=True)
class OrderRecord:
    book_id: str
    status: str


@dataclass(frozen=True)
class OrderReplica:
    """One order replica: orders by id, plus ids it listed more than once."""

    name: str
    orders: dict[str, OrderRecord]
    duplicates: tuple[str, ...]
    digest: str | None

    def status(self, order_id: str | None) -> str | None:
        """The order's status, or None if this replica has no such order."""
        record = self.orders.get(order_id) if order_id is not None else None
        return record.status if record else None


@dataclass(frozen=True)
class Cluster:
    """The cluster after healing: initial books, the readable replicas, and the unreadable ones."""

    initial: dict[str, State]
    catalogs: list[CatalogReplica]
    order_replicas: list[OrderReplica]
    unreachable: tuple[str, ...]

    @classmethod
    def from_json(cls, final_state: Mapping[str, Any]) -> Cluster:
        """Parse the final-state document; replicas listed as unreachable (or null) are left out."""
        unreachable = set(final_state.get("unreachable") or ())
        unreachable |= {name for group in ("catalog", "order")
                        for name, body in (final_state.get(group) or {}).items() if body is None}
        catalogs = [_parse_catalog(name, body) for name, body in sorted((final_state.get("catalog") or {}).items())
                    if name not in unreachable]
        orders = [_parse_orders(name, body) for name, body in sorted((final_state.get("order") or {}).items())
                  if name not in unreachable]
        initial = {str(item): _parse_book(book) for item, book in (final_state.get("initial") or {}).items()}
        return cls(initial, catalogs, orders, tuple(sorted(unreachable)))

    @property
    def reference_orders(self) -> OrderReplica | None:
        """The first reachable order replica: the order group's answer (divergence is checked separately)."""
        return self.order_replicas[0] if self.order_replicas else None

    @property
    def reference_catalog(self) -> CatalogReplica | None:
        return self.catalogs[0] if self.catalogs else None


def _parse_book(book: Mapping[str, Any]) -> State:
    return State(int(book["stock"]), book.get("price"), book.get("title"))


def _parse_catalog(name: str, body: Mapping[str, Any]) -> CatalogReplica:
    books = {str(item): _parse_book(book) for item, book in (body.get("books") or {}).items()}
    applied = {str(order_id): bool(took) for order_id, took in (body.get("applied_orders") or {}).items()}
    return CatalogReplica(name, books, applied, body.get("digest"))


def _parse_orders(name: str, body: Mapping[str, Any]) -> OrderReplica:
    raw = body.get("orders") or {}
    # The orders usually come keyed by id; a list of records is accepted too,
    # and is the only form in which an id can (wrongly) appear twice.
    pairs = raw.items() if isinstance(raw, Mapping) else [(record["order_id"], record) for record in raw]
    orders: dict[str, OrderRecord] = {}
    duplicates = []
    for order_id, record in pairs:
        if order_id in orders:
            duplicates.append(str(order_id))
        orders[str(order_id)] = OrderRecord(str(record.get("book_id")), record.get("status"))
    return OrderReplica(name, orders, tuple(duplicates), body.get("digest"))


def _purchases(history: Iterable[Operation], outcome: str) -> list[Operation]:
    return [op for op in history if op.f == "purchase" and op.outcome == outcome]


# -- 1. acknowledged purchases ---------------------------------------------------

def check_acknowledged_purchases(history: Sequence[Operation], cluster: Cluster) -> CheckResult:
    """Every purchase acknowledged ok is completed on every order replica and took stock on every catalog."""
    acknowledged = _purchases(history, "ok")
    problems = []
    for op in acknowledged:
        problems += _missing_purchase(op, cluster)
    return _verdict("acknowledged_purchases", problems,
                    f"all {len(acknowledged)} acknowledged purchases are completed and applied everywhere",
                    "acknowledged purchase problem(s)")


def _missing_purchase(op: Operation, cluster: Cluster) -> list[str]:
    order_id, item = op.order_id, str(op.item)
    problems = []
    for replica in cluster.order_replicas:
        record = replica.orders.get(order_id)
        if record is None:
            problems.append(f"acknowledged order {order_id} (op {op.id}) is missing on {replica.name}")
        elif record.status != "completed":
            problems.append(f"acknowledged order {order_id} (op {op.id}) is {record.status} on {replica.name}")
        elif record.book_id != item:
            problems.append(f"acknowledged order {order_id} (op {op.id}) is for book {record.book_id} "
                            f"on {replica.name}, not {item}")
    for catalog in cluster.catalogs:
        if catalog.applied.get(order_id) is not True:
            problems.append(f"acknowledged order {order_id} (op {op.id}) took no stock on {catalog.name}")
    return problems


# -- 2. stock conservation ---------------------------------------------------------

def check_stock_conservation(history: Sequence[Operation], cluster: Cluster) -> CheckResult:
    """On every catalog replica, each item's stock is initial + restocks - completed orders, and >= 0.

    Restocks acknowledged ok count surely; restocks of unknown outcome may or
    may not have counted, so any total between the two is accepted.
    Completed orders are counted from the order group.  The catalog's own
    count of orders that took stock must agree with it.
    """
    orders = cluster.reference_orders
    if orders is None or not cluster.catalogs:
        return CheckResult("stock_conservation", False, "no reachable catalog or order replica to check")
    completed = Counter(record.book_id for record in orders.orders.values() if record.status == "completed")
    sure, maybe = _restock_totals(history)
    order_items = _order_items(history, orders)
    items = sorted(set(cluster.initial) | {str(op.item) for op in history}
                   | {item for catalog in cluster.catalogs for item in catalog.books}, key=_numeric_first)
    problems = []
    for catalog in cluster.catalogs:
        taken = Counter(order_items.get(order_id) for order_id, took in catalog.applied.items() if took)
        for item in items:
            problems += _conservation_problems(item, catalog, cluster.initial.get(item),
                                               sure[item], maybe[item], completed[item], taken[item])
    return _verdict("stock_conservation", problems,
                    f"stock of {len(items)} item(s) matches restocks and completed orders "
                    f"on {len(cluster.catalogs)} catalog replica(s)",
                    "conservation violation(s)")


def _conservation_problems(item: str, catalog: CatalogReplica, initial: State | None,
                           sure: int, maybe: int, completed: int, taken: int) -> list[str]:
    where = f"{catalog.name} item {item}"
    book = catalog.books.get(item)
    if initial is None or book is None:
        return [f"{where}: {'no initial stock' if initial is None else 'book is missing'}"]
    problems = []
    lowest = initial.stock + sure - completed
    highest = lowest + maybe
    if not lowest <= book.stock <= highest:
        expected = f"{lowest}" if maybe == 0 else f"{lowest}..{highest}"
        problems.append(f"{where}: stock {book.stock}, expected {expected} "
                        f"(initial {initial.stock} + restocks {sure}(+{maybe} unknown) - {completed} completed)")
    if book.stock < 0:
        problems.append(f"{where}: stock is negative ({book.stock})")
    if completed > initial.stock + sure + maybe:
        problems.append(f"{where}: oversold: {completed} completed orders but at most "
                        f"{initial.stock + sure + maybe} units were ever in stock")
    if taken != completed:
        problems.append(f"{where}: catalog took stock for {taken} order(s), order group completed {completed}")
    return problems


def _restock_totals(history: Iterable[Operation]) -> tuple[Counter, Counter]:
    """Per item: units restocked surely (ok) and units that may have been (unknown)."""
    sure: Counter = Counter()
    maybe: Counter = Counter()
    for op in history:
        if op.f == "restock" and op.ok:
            sure[str(op.item)] += int(op.args["amount"])
        elif op.f == "restock" and op.unknown:
            maybe[str(op.item)] += int(op.args["amount"])
    return sure, maybe


def _order_items(history: Iterable[Operation], orders: OrderReplica) -> dict[str, str]:
    """Which item each known order id is for: from the order group, else from the history."""
    items = {op.order_id: str(op.item) for op in history if op.f == "purchase" and op.order_id}
    items.update({order_id: record.book_id for order_id, record in orders.orders.items()})
    return items


def _numeric_first(item: str) -> tuple[int, Any]:
    return (0, int(item)) if item.isdigit() else (1, item)


# -- 3. exactly once -----------------------------------------------------------------

def check_exactly_once(history: Sequence[Operation], cluster: Cluster) -> CheckResult:
    """Each order takes stock exactly when it completes, and every purchase ends all-or-nothing.

    Promised: no order id listed twice; on every catalog, applied-true iff the
    order group says completed; no order left pending; every unknown-outcome
    purchase either fully happened or fully did not; no definitely failed
    purchase completed or took stock.
    """
    orders = cluster.reference_orders
    if orders is None:
        return CheckResult("exactly_once", False, "no reachable order replica to check")
    problems = []
    for replica in cluster.order_replicas:
        problems += [f"order {order_id} appears more than once on {replica.name}" for order_id in replica.duplicates]
        problems += [f"order {order_id} is still pending on {replica.name}"
                     for order_id, record in replica.orders.items() if record.status == "pending"]
    for catalog in cluster.catalogs:
        problems += _stock_without_order(catalog, orders)
    for op in _purchases(history, "unknown"):
        problems += _half_applied(op, cluster, orders)
    for op in _purchases(history, "fail"):
        problems += _failed_but_applied(op, cluster)
    return _verdict("exactly_once", problems,
                    "every order took stock exactly when it completed; none pending or half-applied",
                    "exactly-once violation(s)")


def _stock_without_order(catalog: CatalogReplica, orders: OrderReplica) -> list[str]:
    problems = []
    for order_id in sorted(set(catalog.applied) | set(orders.orders)):
        took = catalog.applied.get(order_id) is True
        completed = orders.status(order_id) == "completed"
        if took and not completed:
            problems.append(f"{catalog.name} took stock for order {order_id}, "
                            f"which is {orders.status(order_id) or 'absent'} on {orders.name}")
        elif completed and not took:
            problems.append(f"order {order_id} is completed on {orders.name} but {catalog.name} took no stock")
    return problems


def _half_applied(op: Operation, cluster: Cluster, orders: OrderReplica) -> list[str]:
    status = orders.status(op.order_id)
    took = [catalog.applied.get(op.order_id) is True for catalog in cluster.catalogs]
    happened = status == "completed" and all(took)
    did_not = status in (None, "failed") and not any(took)
    if happened or did_not:
        return []
    return [f"unknown purchase {op.order_id} (op {op.id}) is half-applied: order "
            f"{status or 'absent'} on {orders.name}, took stock on "
            f"{sum(took)} of {len(took)} catalog replica(s)"]


def _failed_but_applied(op: Operation, cluster: Cluster) -> list[str]:
    problems = [f"failed purchase {op.order_id} (op {op.id}) is completed on {replica.name}"
                for replica in cluster.order_replicas if replica.status(op.order_id) == "completed"]
    problems += [f"failed purchase {op.order_id} (op {op.id}) took stock on {catalog.name}"
                 for catalog in cluster.catalogs if catalog.applied.get(op.order_id) is True]
    return problems


# -- 4. convergence --------------------------------------------------------------------

def check_replicas_converged(cluster: Cluster) -> CheckResult:
    """Every replica could be read, and replicas of a group agree on digest and content."""
    problems = [f"{name} could not be read" for name in cluster.unreachable]
    if not cluster.catalogs:
        problems.append("no catalog replica could be read")
    if not cluster.order_replicas:
        problems.append("no order replica could be read")
    for catalog in cluster.catalogs[1:]:
        problems += _catalog_differences(cluster.catalogs[0], catalog)
    for replica in cluster.order_replicas[1:]:
        problems += _order_differences(cluster.order_replicas[0], replica)
    return _verdict("replicas_converged", problems,
                    f"{len(cluster.catalogs)} catalog and {len(cluster.order_replicas)} order replicas agree",
                    "divergence(s)")


def _catalog_differences(first: CatalogReplica, other: CatalogReplica) -> list[str]:
    problems = _digest_difference(first.name, first.digest, other.name, other.digest)
    problems += _mapping_differences(f"{other.name} vs {first.name}: book", first.books, other.books)
    problems += _mapping_differences(f"{other.name} vs {first.name}: applied order",
                                     first.applied, other.applied)
    return problems


def _order_differences(first: OrderReplica, other: OrderReplica) -> list[str]:
    problems = _digest_difference(first.name, first.digest, other.name, other.digest)
    problems += _mapping_differences(f"{other.name} vs {first.name}: order", first.orders, other.orders)
    return problems


def _digest_difference(name: str, digest: str | None, other_name: str, other_digest: str | None) -> list[str]:
    if digest is None or other_digest is None or digest == other_digest:
        return []
    return [f"{other_name} digest {other_digest} differs from {name} digest {digest}"]


def _mapping_differences(label: str, first: Mapping, other: Mapping) -> list[str]:
    return [f"{label} {key}: {other.get(key)} vs {first.get(key)}"
            for key in sorted(set(first) | set(other), key=str) if first.get(key) != other.get(key)]


# -- 5. linearizability and bounded staleness ------------------------------------------

def check_linearizable(history: Sequence[Operation], cluster: Cluster,
                       max_states: int = DEFAULT_MAX_STATES) -> CheckResult:
    """Each item's purchases, restocks, price changes and strong reads have a linearization.

    The linearization also explains what every acknowledged write answered:
    a restock's or price change's returned book is the state right after it,
    a purchase's price and title those of the book when it took its copy.
    A stale answer (the state before the write, or older) or an invented one
    fails the check even if every write took effect.
    Unknown purchases are resolved with the catalog's record of them (see
    `_took_stock`); other unknown writes stay optional.  A search that
    exceeds `max_states` fails the check as "unknown (search too large)".
    """
    initial = {int(item): state for item, state in cluster.initial.items() if item.isdigit()}
    verdicts = linearizability.check_history(history, initial, took_effect=_took_stock(cluster),
                                             max_states=max_states)
    problems = [f"item {item}: {verdict.detail}" + (f"; ops {list(verdict.window)}" if verdict.window else "")
                for item, verdict in verdicts.items() if verdict.linearizable is not True]
    explored = sum(verdict.explored for verdict in verdicts.values())
    answers = sum(1 for op in history if op.ok and op.is_write and linearizability.write_answer(op) is not None)
    result = _verdict("linearizable", problems,
                      f"{len(verdicts)} item(s) linearizable, {answers} write answers among them "
                      f"({explored} states explored)",
                      "item(s) not shown linearizable")
    result.metrics = {"explored": explored, "write_answers": answers,
                      "windows": {str(item): list(verdict.window) for item, verdict in verdicts.items()
                                  if verdict.window}}
    return result


def _took_stock(cluster: Cluster) -> linearizability.TookEffect:
    """What the catalog says about an unknown purchase: True if it took stock, else False.

    After healing, the catalog is the authority on stock.  A purchase it
    never applied, or refused, changed no stock.  With no catalog readable,
    nothing is known (None).
    """
    catalog = cluster.reference_catalog

    def took_effect(op: Operation) -> bool | None:
        if op.f != "purchase" or catalog is None or op.order_id is None:
            return None
        return catalog.applied.get(op.order_id) is True

    return took_effect


def check_cached_reads_bounded(history: Sequence[Operation], cluster: Cluster) -> CheckResult:
    """Cached and local reads are never staler than a write that completed before they started.

    The frontend promises: "a cached read never returns a value older than a
    write that completed before the read started".  Checked conservatively,
    per item, for every ok read with consistency "cached" or "local" that
    ran over [start, end] and returned stock v:

        settled = initial stock + the stock change of every write (purchase or
                  restock) acknowledged ok that ended before the read started;
        pending = every other write that may have taken effect by the read's
                  end: started no later than the read's end, and either ok,
                  or unknown and not known to have taken no stock;
        accept  iff  settled + (sum of pending decrements)
                     <= v <=
                     settled + (sum of pending increments).

    That range contains every stock value the item can have had between the
    last write completed before the read started and the read's end (it may
    contain a few more, never fewer).  The read's "index" is not used.
    """
    took_effect = _took_stock(cluster)
    problems = []
    reads = 0
    by_item: dict[int, list[Operation]] = defaultdict(list)
    for op in history:
        by_item[op.item].append(op)
    for item, ops in sorted(by_item.items()):
        initial = cluster.initial.get(str(item))
        writes = _WriteIndex([(op, _stock_change(op)) for op in ops if _may_change_stock(op, took_effect)])
        for read in ops:
            if read.f == "read" and read.ok and read.consistency in ("cached", "local"):
                reads += 1
                problem = _stale_read(read, initial, writes)
                if problem:
                    problems.append(problem)
    return _verdict("cached_reads_bounded", problems,
                    f"all {reads} cached/local reads within the staleness bound",
                    "stale cached/local read(s)")


def _may_change_stock(op: Operation, took_effect: linearizability.TookEffect) -> bool:
    if op.f not in ("purchase", "restock"):
        return False
    return op.ok or (op.unknown and took_effect(op) is not False)


def _stock_change(op: Operation) -> int:
    return -1 if op.f == "purchase" else int(op.args["amount"])


class _WriteIndex:
    """Prefix sums of one item's stock changes, so each read is checked in O(log n).

    `settled_before(t)`: the total change of ok writes that ended before t.
    `started_by(t)`: the (decrements, increments) of every write that started by t.
    """

    def __init__(self, writes: list[tuple[Operation, int]]) -> None:
        ended = sorted((op.end, change) for op, change in writes if op.ok)
        self._end_times = [end for end, _ in ended]
        self._settled = list(itertools.accumulate((change for _, change in ended), initial=0))
        started = sorted((op.start, change) for op, change in writes)
        self._start_times = [start for start, _ in started]
        self._down = list(itertools.accumulate((min(c, 0) for _, c in started), initial=0))
        self._up = list(itertools.accumulate((max(c, 0) for _, c in started), initial=0))
        ended_down = list(itertools.accumulate((min(c, 0) for _, c in ended), initial=0))
        ended_up = list(itertools.accumulate((max(c, 0) for _, c in ended), initial=0))
        self._ended_down, self._ended_up = ended_down, ended_up

    def bounds(self, start: float, end: float) -> tuple[int, int, int]:
        """(settled, lowest, highest) for a read over [start, end]: see _stale_read."""
        done = bisect.bisect_left(self._end_times, start)        # ok writes with end < start
        begun = bisect.bisect_right(self._start_times, end)      # writes with start <= end
        settled = self._settled[done]
        # Writes that started by the read's end, less those already settled (a subset).
        lowest = self._down[begun] - self._ended_down[done]
        highest = self._up[begun] - self._ended_up[done]
        return settled, lowest, highest


def _stale_read(read: Operation, initial: State | None, writes: _WriteIndex) -> str | None:
    if initial is None:
        return f"read {read.id} of item {read.item}: no initial stock to compare with"
    settled, lowest, highest = writes.bounds(read.start, read.end)
    settled += initial.stock
    seen = int(read.result["stock"])
    if settled + lowest <= seen <= settled + highest:
        return None
    return (f"{read.consistency} read {read.id} (client {read.client}) of item {read.item} returned stock "
            f"{seen}, allowed {settled + lowest}..{settled + highest}")


# -- 6. availability ------------------------------------------------------------------

def check_availability(history: Sequence[Operation], faults: Sequence[Mapping[str, Any]] = ()) -> CheckResult:
    """Informational: success rates outside and during faults, and recovery time per fault.

    An op counts as "during a fault" if it recorded one or started inside a
    fault window.  A fault's recovery time is the time from its start to the
    end of the earliest-finishing ok purchase that started after it.
    Fails only if no operation at all succeeded.
    """
    windows = [(str(f.get("kind", "?")), float(f["start"]),
                math.inf if f.get("end") is None else float(f["end"])) for f in faults]
    during, outside = [], []
    for op in history:
        in_fault = op.fault is not None or any(start <= op.start <= end for _, start, end in windows)
        (during if in_fault else outside).append(op)
    recovery = [{"kind": kind, "start": start, "seconds": _recovery_time(history, start)}
                for kind, start, _ in windows]
    metrics = {"ops": len(history), "ok": sum(op.ok for op in history),
               "ok_share_outside_faults": _ok_share(outside), "ok_share_during_faults": _ok_share(during),
               "recovery": recovery}
    detail = (f"{_percent(metrics['ok_share_outside_faults'])} of {len(outside)} ops ok outside faults, "
              f"{_percent(metrics['ok_share_during_faults'])} of {len(during)} during; "
              f"{_recovery_text(recovery)}")
    if metrics["ok"] == 0:
        return CheckResult("availability", False, f"no operation succeeded; {detail}",
                           [f"all {len(history)} operations failed or timed out"], metrics)
    return CheckResult("availability", True, detail, [], metrics)


def _recovery_time(history: Iterable[Operation], fault_start: float) -> float | None:
    finishes = [op.end for op in history if op.f == "purchase" and op.ok and op.start >= fault_start]
    return min(finishes) - fault_start if finishes else None


def _ok_share(ops: Sequence[Operation]) -> float | None:
    return sum(op.ok for op in ops) / len(ops) if ops else None


def _percent(share: float | None) -> str:
    return "n/a" if share is None else f"{share:.1%}"


def _recovery_text(recovery: list[dict[str, Any]]) -> str:
    if not recovery:
        return "no fault windows given"
    times = [entry["seconds"] for entry in recovery if entry["seconds"] is not None]
    unrecovered = len(recovery) - len(times)
    text = f"recovery after {len(recovery)} fault(s): max {max(times):.2f}s" if times else "no recovery seen"
    return text + (f", {unrecovered} never recovered" if times and unrecovered else "")


# -- all together ---------------------------------------------------------------------

def check(history: Sequence[Operation], final_state: Mapping[str, Any],
          faults: Sequence[Mapping[str, Any]] | None = None, *,
          max_states: int = DEFAULT_MAX_STATES) -> CheckReport:
    """Run every check on a run's history and its healed final state."""
    history = list(history)
    cluster = Cluster.from_json(final_state)
    return CheckReport([
        check_acknowledged_purchases(history, cluster),
        check_stock_conservation(history, cluster),
        check_exactly_once(history, cluster),
        check_replicas_converged(cluster),
        check_linearizable(history, cluster, max_states),
        check_cached_reads_bounded(history, cluster),
        check_availability(history, faults or ()),
    ])
