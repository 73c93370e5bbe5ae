"""Exactly-once purchases across the order group and the catalog group.

Two kinds of process coordinate purchases with the protocol below: a frontend, for every
purchase a shopper makes (frontend/checkout.py, which asks the catalog directly and sends
the record on with `POST /records`), and an order replica, for a purchase sent to it
(`POST /purchase`, this module, which also decides "pending" orders). What follows is
written for the order replica; a frontend differs only where its docstring says.

    1. catalog group: purchase(order id, book, created_at) -> one copy taken, or refused;
                      the catalog keeps the purchase as *unrecorded*
    2. order group:   record(order id, book, outcome)      -> "completed" or "failed"
    3. catalog group: recorded(order ids)                  -> no longer kept as unrecorded

The buyer waits for step 1 only. Every step is idempotent per order id: the catalog
remembers the outcome of each order id it applied and answers a retry with it, and the
order group keeps the first outcome. So a client retry, a duplicate request, or a second
coordinator (the recovery loop recording an order whose coordinator died) all converge
on one outcome, and stock is taken at most once.

What an answer promises, and when
---------------------------------
The purchase is *decided* when step 1 commits: from then on the catalog answers every
purchase, retry or lookup for that order id with the same outcome, so the coordinator
answers then, with the order as that outcome decides it (`state.settle`). Its `record`
follows without being waited for: it is queued (`RecordQueue`) and proposed with the
others that arrive within FINISH_DELAY, all in one round.

"No stock is taken without its order eventually recorded" rests on step 1 itself: the
catalog keeps every purchase asked with `created_at` (a new order) in its list of
unrecorded purchases, whatever its retention, until step 3 names it, and step 3 is sent
only for orders the order group has committed. If the coordinator dies between steps 1
and 2, or its leader loses its role before `record` commits, the recovery loop of
whichever replica leads the order group (node/orders/recovery.py) reads that list, records
each purchase older than its grace, waits for the commit, then sends step 3. Meanwhile:

- `GET /orders/<id>` for an order this group has no record of asks the catalog
  (`unrecorded`, at a confirmed read index: it includes every purchase acknowledged before
  the read) and shows the order as the catalog decided it; listings add the catalog's
  unrecorded purchases (`unrecorded_orders`). Right after the answer, on whichever replica
  leads the order group now, an order reads as the answer said. If the catalog cannot be
  asked, such a read is answered 503, never "no such order" when one may exist.
- Only the order group's leader, while in touch with a majority, coordinates (503
  elsewhere), so a retry finds a recorded order in its state without asking the catalog.

When the catalog cannot decide in time
--------------------------------------
If the catalog cannot be reached, or does not confirm in time (it may still apply the
purchase), the coordinator records the order *pending* (`begin`, waited for) and answers
it pending; the recovery loop asks the catalog again later (without `created_at`: the
order is recorded), which decides it once, and `record`s the outcome. A purchase that
did apply meanwhile is also in the catalog's unrecorded list; `record` settles the pending
order with it, whichever comes first. A pending order is read as the catalog decides it
(`resolved`), like an unrecorded one.

Batches
-------
Under load, the coordinator's calls to the catalog are batched the way group commit
batches rounds (`web/batching.py`): while one call is in flight, the orders that arrive
wait, and go together in the next call (`POST /purchases`, committed by the catalog in one
round). A lone order goes at once, alone. Each item is the same idempotent purchase
command with its own outcome, so nothing above changes: a batch is only a transport.

Why not record the order first
------------------------------
Earlier versions committed `begin` in the order group before asking the catalog, so that
the order group's own log held every order before stock could be taken. That cost one
synchronous commit per purchase (a third of its latency) and a second log entry for
`finish`. Keeping the unrecorded purchases in the catalog, which decides them anyway,
gives the same guarantee with one commit on the buyer's path: the catalog forgets none
of them before the order group has it, whatever its retention or the order group's
downtime.
"""
from __future__ import annotations

import logging
import time

from bazar.node import validation
from bazar.node.api import Replica
from bazar.node.results import failure
from bazar.node.validation import MAX_RECORDED
from bazar.node.orders import commands
from bazar.node.orders.state import PENDING, settle
from bazar.node.orders.stock import StockTaker, new_order
from bazar.web.batching import Batcher, Gatherer
from bazar.web.client import GroupClient, Refused, Unavailable
from bazar.web.errors import ApiError, unavailable
from bazar.web.metrics import OrderMetrics
from bazar.web.protocol import INDEX_HEADER

log = logging.getLogger("bazar.purchase")

# The longest a decided order's `record` waits for others to share a round with. Reads of
# the order meanwhile ask the catalog (`unrecorded`), so it is kept short.
FINISH_DELAY = 0.02

# The longest a purchase waits for a leader just elected to be in touch with its majority.
LEADING_WAIT = 1.0

# The longest a read of a pending order waits for the catalog's answer: well inside the
# time a frontend gives one order replica for a read (web/client.py READ_ATTEMPT_SECONDS),
# so a slow catalog makes the read a 503, never the order replica look down.
RESOLVE_TIMEOUT = 0.5


class PurchaseCoordinator:
    """Runs the three steps above from an order replica, and decides pending orders for readers."""

    def __init__(self, replica: Replica, catalog: GroupClient, metrics: OrderMetrics) -> None:
        self.replica = replica
        self.catalog = catalog
        self.metrics = metrics  # each step's duration: the per-stage breakdown of a purchase
        self.records = RecordQueue(replica, FINISH_DELAY)
        self.taker = StockTaker(catalog, replica.config.raft.commit_timeout)
        self.stock = Batcher(self.taker.one, self.taker.many, validation.MAX_PURCHASES)

    def purchase(self, book_id: int, order_id: str) -> dict:
        """Buy one copy of `book_id` as order `order_id`; return the order.

        The order returned is decided (completed or failed) as soon as the catalog has
        committed its outcome, though its record may not have applied yet (see the module
        docstring); it is pending only if the catalog could not say, and then the recovery
        loop decides it later. 422 if the order id was used for another book; 503 if the
        catalog could not say and the order could not be recorded pending either."""
        return self._answer(self.purchase_many([(book_id, order_id)])[0])

    def purchase_many(self, purchases: list[tuple[int, str]]) -> list[dict]:
        """`purchase` for several (book id, order id) at once, a frontend's batch: one call
        to the catalog for all of them (batched further with other callers' by `Batcher`),
        their records proposed together. Per purchase, in order: {"status": 200, "order":
        ...} as `purchase` returns it, 422 (the order id was used for another book) or 503
        (nothing is known to have happened: asking again is safe).

        Only the order group's leader coordinates purchases, and only while a majority of
        its group answered it within the replicas' lag bound (503 otherwise, as a commit
        would be): its own state is the one its records go to, so it sees every order its
        group decided, and a retry asks the catalog again only for an order that is still
        pending or not recorded yet. A leader that lost its majority less than that bound
        ago may still answer a purchase: the catalog keeps it until it is recorded."""
        if not self._leading():
            raise unavailable("this replica is not the order group's leader with a majority; ask another")
        known = self.replica.state.read(lambda m: [m.order(order) for _, order in purchases])[0]
        answers: list[dict | None] = [None] * len(purchases)
        asked: list[tuple[int, dict]] = []
        now = round(time.time(), 3)
        for position, ((book, order_id), order) in enumerate(zip(purchases, known)):
            if order is None:
                order = new_order(book, order_id, now)
            elif order["id"] != book:
                answers[position] = {"status": 422}
                continue
            elif order["status"] != PENDING:
                answers[position] = {"status": 200, "order": order}  # a retry of a decided order
                continue
            asked.append((position, order))
        if not asked:
            return answers
        started = time.perf_counter()
        orders = [order for _, order in asked]
        if len(orders) == 1:
            taken = [self._take_stock(orders[0])]
        else:
            try:
                taken = self.taker.many(orders)
            except Exception:   # as when the catalog cannot be reached
                log.exception("%d orders: could not ask the catalog", len(orders))
                taken = [None] * len(orders)
            if taken is None:
                taken = [self._take_stock(order) for order in orders]
        self._observe("take_stock", started, len(orders))
        undecided: list[tuple[int, dict]] = []
        for (position, order), outcome in zip(asked, taken):
            if outcome is None:
                undecided.append((position, order))
            elif outcome[0].get("error") == "conflict" and order["seq"] is None:
                answers[position] = {"status": 422}  # the catalog knows the order id for another book
            else:
                self._record(order, *outcome)
                answers[position] = {"status": 200, "order": settle(order, *outcome)}
        if undecided:
            self._begin_undecided(undecided, answers)
        return answers

    def _begin_undecided(self, undecided: list[tuple[int, dict]], answers: list) -> None:
        """Orders the catalog could not decide in time (it may still apply them): record
        the new ones pending (`begin`) so that the recovery loop decides them, and answer
        each as its record stands; 503 where even that did not commit."""
        new = [(position, order) for position, order in undecided if order["seq"] is None]
        for position, order in undecided:
            if order["seq"] is not None:
                answers[position] = {"status": 200, "order": order}
        if not new:
            return
        started = time.perf_counter()
        begun = self.replica.commit_many([commands.begin(o["id"], o["order_id"], o["created_at"]) for _, o in new],
                                         first=self.records.take())
        self._observe("begin", started, len(new))
        for (position, _), result in zip(new, begun):
            if result is None:
                answers[position] = {"status": 503}
            elif result.get("error") == "conflict":
                answers[position] = {"status": 422}
            else:
                answers[position] = {"status": 200, "order": result["order"]}

    def _leading(self) -> bool:
        """True if this replica leads the order group in touch with its majority. A leader
        just elected is in touch once an entry of its term has committed (milliseconds):
        it is given up to LEADING_WAIT for that, as a commit would wait for it."""
        member = self.replica.member
        deadline = time.monotonic() + LEADING_WAIT
        while member.is_leader:
            if member.in_touch(self.replica.max_lag):
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return False

    @staticmethod
    def _answer(answer: dict) -> dict:
        """One answer of `purchase_many` as `purchase` gives it: the order, or the error."""
        if answer["status"] == 422:
            raise ApiError(422, "this Idempotency-Key was already used to buy another book")
        if answer["status"] != 200:
            raise unavailable("the catalog did not decide the purchase in time and it could not be "
                              "recorded as pending; nothing is known to have happened: retry")
        return answer["order"]

    def _observe(self, stage: str, started: float, count: int) -> None:
        """Time a stage that `count` purchases went through together: once for each."""
        elapsed = time.perf_counter() - started
        for _ in range(count):
            self.metrics.stages[stage].observe(elapsed)

    def finish(self, order: dict) -> dict:
        """Take stock for a pending order and commit the outcome, waiting for it (the
        recovery loop's step); the order stays pending if the catalog cannot be reached."""
        with self.metrics.stage("take_stock"):
            taken = self._take_stock(order)
        if taken is None:
            return order
        outcome, catalog_index = taken
        finished = self.replica.commit(commands.finish(order["order_id"], outcome, catalog_index))
        return finished["order"]

    def resolved(self, order: dict) -> dict:
        """`order` as a reader must see it: a pending one decided by the outcome the catalog
        remembers for it, if the catalog applied it (and `record` proposed, so the record
        catches up); still pending if the catalog never took stock for it, in which case no
        purchase of it was answered yet. 503 if the catalog cannot tell in RESOLVE_TIMEOUT."""
        if order["status"] != PENDING:
            return order
        try:
            response = self.catalog.read(f"/purchases/{order['order_id']}?consistency=strong",
                                         timeout=RESOLVE_TIMEOUT, prefer_leader=True)
        except (Unavailable, Refused):
            response = None
        if response is not None and response.status_code == 404:
            return order  # the catalog never applied it: truly undecided
        if response is None or response.status_code != 200:
            raise unavailable(f"order {order['order_id']} is not recorded as decided yet and the "
                              f"catalog cannot say whether it was; retry")
        outcome = response.json()
        if outcome.get("id") != order["id"]:
            # The catalog knows this order id for another book: it never takes stock for this order.
            outcome = failure("conflict", id=order["id"])
        catalog_index = int(response.headers.get(INDEX_HEADER, 0))
        self._record(order, outcome, catalog_index)
        return settle(order, outcome, catalog_index)

    def unrecorded(self, order_id: str) -> dict | None:
        """An order this replica has no record of, as a reader must see it: decided by the
        catalog and not recorded here yet (its `record` is on its way, or its coordinator
        died and the recovery loop will record it); None if the catalog has no such
        purchase waiting to be recorded. 503 if the catalog cannot tell in RESOLVE_TIMEOUT."""
        response = self._ask_catalog(f"/purchases/{order_id}?consistency=strong")
        if response.status_code == 404:
            return None
        outcome = response.json()
        if not outcome.get("unrecorded"):
            return None  # recorded by the order group (and forgotten since), or never tracked
        order = new_order(outcome["id"], order_id, outcome["created_at"])
        catalog_index = int(response.headers.get(INDEX_HEADER, 0))
        self._record(order, outcome, catalog_index)
        return settle(order, outcome, catalog_index)

    def unrecorded_orders(self, limit: int) -> list[dict]:
        """The newest `limit` orders the catalog decided that the order group has not
        recorded yet, newest first, as readers must see them (for listings); 503 if the
        catalog cannot tell."""
        response = self._ask_catalog(f"/unrecorded?newest=1&limit={min(limit, MAX_RECORDED)}")
        index = int(response.headers.get(INDEX_HEADER, 0))
        orders = [settle(new_order(p["id"], p["order_id"], p["created_at"]), p["outcome"], index)
                  for p in response.json()["purchases"]]
        return sorted(orders, key=lambda o: o["created_at"], reverse=True)

    def record_unrecorded(self, purchases: list[dict], index: int) -> tuple[list[str], int]:
        """Record the catalog's unrecorded `purchases` (as `GET /unrecorded` lists them) that
        this group has no decided order for, waiting for the commit; return the order ids
        now recorded here (which the catalog may stop keeping) and how many of them this
        call recorded."""
        known = self.replica.state.read(lambda m: [m.order(p["order_id"]) for p in purchases])[0]
        missing = [p for p, order in zip(purchases, known)
                   if order is None or order["status"] == PENDING or order["id"] != p["id"]]
        if missing:
            self.replica.commit_many([commands.record(p["id"], p["order_id"], p["created_at"], p["outcome"], index)
                                      for p in missing])
        now = self.replica.state.read(lambda m: [m.order(p["order_id"]) for p in purchases])[0]
        recorded = {p["order_id"] for p, order in zip(purchases, now)
                    if order is not None and order["id"] == p["id"] and order["status"] != PENDING}
        return ([p["order_id"] for p in purchases if p["order_id"] in recorded],
                sum(p["order_id"] in recorded for p in missing))

    def _ask_catalog(self, path: str):
        """A read at the catalog leader (or, if it is unreachable, a replica in touch with
        it) that the answer of a reader depends on: 503 if none answers 200 or 404 in time."""
        try:
            response = self.catalog.read(path, timeout=RESOLVE_TIMEOUT, prefer_leader=True)
        except (Unavailable, Refused):
            response = None
        if response is None or response.status_code not in (200, 404):
            raise unavailable("the catalog cannot say now whether an order not recorded here yet was "
                              "decided; retry")
        return response

    def _record(self, order: dict, outcome: dict, catalog_index: int) -> None:
        """Have the order's `record` proposed soon (RecordQueue) and return at once; the
        stage metric times it from here until applied. A `record` that fails is only logged:
        the catalog keeps the purchase as unrecorded (or the order stays pending), which
        every reader resolves and the recovery loop records."""
        timer = self.metrics.stages["finish"]
        started = time.perf_counter()

        def done(_result, ok: bool) -> None:  # on the Raft tick thread: must not block
            if ok:
                timer.observe(time.perf_counter() - started)
            else:
                log.info("order %s: record not committed; the recovery loop will record it",
                         order["order_id"])

        command = commands.record(order["id"], order["order_id"], order["created_at"], outcome, catalog_index)
        self.records.add(command, done)

    def _take_stock(self, order: dict) -> tuple[dict, int] | None:
        """The catalog's outcome for this order and the catalog index it was applied at
        (None: not known, the order stays pending), asked together with the other orders
        waiting meanwhile (`Batcher`)."""
        try:
            return self.stock.call(order)
        except Exception:   # the waiting orders stay pending: the recovery loop decides them
            log.exception("order %s: could not ask the catalog; left pending", order["order_id"])
            return None

class RecordQueue(Gatherer):
    """`record` commands waiting to be proposed, all together (one append-entries round) by
    a daemon thread `delay` seconds after the first of them arrived, or with a `begin` that
    comes first (`take`). Items are (command, on_done) pairs, `on_done(result, ok)` as
    `Replica.commit_nowait` calls it. Losing them (the process dies) loses nothing: see the
    module docstring."""

    def __init__(self, replica: Replica, delay: float) -> None:
        super().__init__(delay, "record-queue")
        self.replica = replica

    def flush(self, items: list) -> None:
        self.replica.commit_nowait_many(items)

    def propose(self) -> None:
        """Propose every queued command now, together, in the order they were queued."""
        self.flush_now()

    def add(self, command: commands.Command, on_done=None) -> None:
        """Queue `command` (kept as the pair `Replica.commit_nowait_many` takes)."""
        super().add((command, on_done))
