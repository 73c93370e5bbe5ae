"""Exactly-once purchases across the order group and the catalog group.

    1. order group:   begin(order id, book)   -> the order is recorded "pending"
    2. catalog group: purchase(order id, book) -> one copy taken, or refused
    3. order group:   finish(order id, outcome) -> "completed" or "failed"

Every step is idempotent per order id: the catalog remembers the outcome of
each order id it applied, and the order group keeps the first outcome. So a
client retry, a duplicate request, or a second coordinator (the recovery loop
finishing an order whose coordinator died) all converge on one outcome, and
stock is taken at most once.

What the buyer waits for: steps 1 and 2, not step 3
---------------------------------------------------
The purchase is *decided* when step 2 commits: from then on the catalog answers
every purchase, retry or lookup for that order id with the same remembered outcome,
and no `finish` can carry another one. So the coordinator answers as soon as step 2
has committed, with the order as that outcome decides it (`state.settle`), and lets
`finish` follow without waiting for it. `finish` is not even proposed at once: it waits
(`FinishQueue`) for the next purchase's `begin`, and both go to the followers in one
append-entries round (consensus/group_commit.py), or, when no purchase comes, it is
proposed alone FINISH_DELAY later. Proposed at once, it would have a round of its own,
and the next sequential purchase's `begin`, arriving while that round is in flight,
would wait for it. Nothing is lost if a `finish` never commits (its coordinator dies,
or its leader loses its role first): the order stays pending, and

- every read of an order (`resolved`) shows a pending order as the catalog's remembered
  outcome decides it, asked of the catalog leader at a confirmed read index (so it
  includes every purchase acknowledged before the read): `GET /orders/<id>` right
  after the answer shows what the answer said, whether or not `finish` has applied,
  on whichever replica leads the order group now. A pending order the catalog cannot
  be asked about is answered 503, never shown pending when it may be decided;
- the recovery loop (node/orders/recovery.py) still finishes every pending order,
  synchronously, once it is older than its grace.

Step 2 in batches
-----------------
Under load, the order leader's calls to the catalog are batched the way group commit
batches rounds (`web/batching.py`): while one call is in flight, the orders that arrive wait,
and go together in the next call (`POST /purchases`, committed by the catalog in one
round). A lone order goes at once, alone. Each item is the same idempotent purchase
command with its own outcome, so nothing above changes: a batch is only a transport.

Why step 1 stays synchronous, before the catalog is asked
---------------------------------------------------------
"No stock is taken without its order eventually recorded" rests on the order being in
the order group's log before the catalog can take stock for it. Were the catalog asked
while `begin` was still in flight, a coordinator that died (or an order leader deposed
before `begin` committed: the new leader drops the uncommitted entry) after the catalog
had committed would leave stock taken for an order id the order group never heard of.
Nothing would find it: the recovery loop walks the order group's pending orders, and
recovering from the catalog's side instead would need a sweep comparing the catalog's
remembered outcomes with the order group's orders, two sets kept in separate logs that
both forget after the retention, where an order already forgotten by the order group
looks exactly like one never begun, and an order group unavailable for longer than the
catalog's retention would lose orders for good. One commit is the price of keeping
the guarantee simple and unconditional, so `begin` commits first.
"""
from __future__ import annotations

import logging
import threading
import time

from bazar.node import validation
from bazar.node.api import Replica
from bazar.node.results import failure
from bazar.node.orders import commands
from bazar.node.orders.state import PENDING, settle
from bazar.web.batching import Batcher
from bazar.web.client import GroupClient, Refused, Unavailable
from bazar.web.errors import ApiError, unavailable
from bazar.web.metrics import OrderMetrics
from bazar.web.protocol import INDEX_HEADER

log = logging.getLogger("bazar.purchase")

# The longest a decided order's `finish` waits for a `begin` to share a round with. Reads
# of the order meanwhile ask the catalog (`resolved`), so it is kept short.
FINISH_DELAY = 0.02

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
        self.finishes = FinishQueue(replica, FINISH_DELAY)
        self.stock = Batcher(self._take_stock_one, self._take_stock_many, validation.MAX_PURCHASES)

    def purchase(self, book_id: int, order_id: str) -> dict:
        """Buy one copy of `book_id` as order `order_id`; return the order.

        The order returned is decided (completed or failed) as soon as the catalog has
        committed its outcome, though `finish` may not have applied yet (see the module
        docstring); it is pending only if the catalog could not be reached, and then the
        recovery loop decides it later. 503 if `begin` did not commit (nothing was asked
        of the catalog), 422 if the order id was used for another book."""
        with self.metrics.stage("begin"):   # the finishes waiting share this begin's round
            begun = self.replica.commit(commands.begin(book_id, order_id, time.time()),
                                        first=self.finishes.take())
        if begun.get("error") == "conflict":
            raise ApiError(422, "this Idempotency-Key was already used to buy another book")
        order = begun["order"]
        if order["status"] != PENDING:
            return order  # a retry of a purchase already recorded as decided
        with self.metrics.stage("take_stock"):
            taken = self._take_stock(order)
        if taken is None:
            return order
        outcome, catalog_index = taken
        self._record(order, outcome, catalog_index)
        return settle(order, outcome, catalog_index)

    def purchase_many(self, purchases: list[tuple[int, str]]) -> list[dict]:
        """`purchase` for several (book id, order id) at once, a frontend's batch: the
        `begin`s committed together (one round), then one call to the catalog for the
        orders they left pending. Per purchase, in order: {"status": 200, "order": ...} as
        `purchase` returns it, 422 (the order id was used for another book) or 503 (its
        `begin` was not confirmed: nothing was asked of the catalog for it)."""
        started, now = time.perf_counter(), time.time()
        begun = self.replica.commit_many([commands.begin(book, order, now) for book, order in purchases],
                                         first=self.finishes.take())
        self._observe("begin", started, len(purchases))
        answers: list[dict | None] = [None] * len(purchases)
        pending: list[tuple[int, dict]] = []
        for position, result in enumerate(begun):
            if result is None:
                answers[position] = {"status": 503}
            elif result.get("error") == "conflict":
                answers[position] = {"status": 422}
            elif result["order"]["status"] != PENDING:
                answers[position] = {"status": 200, "order": result["order"]}
            else:
                pending.append((position, result["order"]))
        if pending:
            started = time.perf_counter()
            orders = [order for _, order in pending]
            try:
                taken = self._take_stock_many(orders) if len(orders) > 1 else None
            except Exception:   # left pending, as when the catalog cannot be reached
                log.exception("%d orders: could not ask the catalog; left pending", len(orders))
                taken = [None] * len(orders)
            if taken is None:
                taken = [self._take_stock(order) for order in orders]
            self._observe("take_stock", started, len(orders))
            for (position, order), outcome in zip(pending, taken):
                if outcome is not None:
                    self._record(order, *outcome)
                    order = settle(order, *outcome)
                answers[position] = {"status": 200, "order": order}
        return answers

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
        remembers for it, if the catalog applied it (and `finish` proposed, so the record
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

    def _record(self, order: dict, outcome: dict, catalog_index: int) -> None:
        """Have `finish` proposed soon (FinishQueue) and return at once; the stage metric
        times it from here until applied. A `finish` that fails is only logged: the order
        stays pending, which every reader resolves and the recovery loop finishes."""
        timer = self.metrics.stages["finish"]
        started = time.perf_counter()

        def done(_result, ok: bool) -> None:  # on the Raft tick thread: must not block
            if ok:
                timer.observe(time.perf_counter() - started)
            else:
                log.info("order %s: finish not committed; the recovery loop will record it",
                         order["order_id"])

        self.finishes.add(commands.finish(order["order_id"], outcome, catalog_index), done)

    def _take_stock(self, order: dict) -> tuple[dict, int] | None:
        """The catalog's outcome for this order and the catalog index it was applied at
        (None: not known, the order stays pending), asked together with the other orders
        waiting meanwhile (`Batcher`)."""
        try:
            return self.stock.call(order)
        except Exception:   # the waiting orders stay pending: the recovery loop decides them
            log.exception("order %s: could not ask the catalog; left pending", order["order_id"])
            return None

    def _take_stock_many(self, orders: list[dict]) -> list[tuple[dict, int] | None] | None:
        """One `POST /purchases` for `orders`: each order's outcome as `_take_stock_one`
        gives it; None if the catalog cannot take batches (a replica of an older version:
        the caller asks one by one)."""
        body = {"purchases": [{"id": o["id"], "order_id": o["order_id"]} for o in orders]}
        try:
            response = self.catalog.write("POST", "/purchases", body,
                                          timeout=self.replica.config.raft.commit_timeout)
        except Unavailable:
            log.warning("%d orders: no catalog replica reachable; left pending", len(orders))
            return [None] * len(orders)
        except Refused:
            return [None] * len(orders)
        if response.status_code in (404, 405):
            return None
        answers = response.json().get("answers") if response.status_code == 200 else None
        if not isinstance(answers, list) or len(answers) != len(orders):
            log.warning("%d orders: catalog answered %s; left pending", len(orders), response.status_code)
            return [None] * len(orders)
        index = int(response.headers.get(INDEX_HEADER, 0))
        results: list[tuple[dict, int] | None] = []
        for order, answer in zip(orders, answers):
            if answer.get("status") == 200:
                results.append((answer["outcome"], index))
            elif answer.get("status") == 422:
                log.warning("order %s: the catalog knows this order id for another book", order["order_id"])
                results.append((failure("conflict", id=order["id"]), 0))
            else:
                results.append(None)
        return results

    def _take_stock_one(self, order: dict) -> tuple[dict, int] | None:
        """`POST /purchase` for one order: its outcome and the catalog index it was applied at."""
        try:
            response = self.catalog.write("POST", "/purchase",
                                          {"id": order["id"], "order_id": order["order_id"]},
                                          timeout=self.replica.config.raft.commit_timeout)
        except Unavailable:
            log.warning("order %s: no catalog replica reachable; left pending", order["order_id"])
            return None
        except Refused:  # logged by the client; the recovery loop tries again later
            return None
        if response.status_code == 422:
            # The catalog already applied this order id for another book, so it will never
            # take stock for this order: a definite failure, not something to retry.
            log.warning("order %s: the catalog knows this order id for another book", order["order_id"])
            return failure("conflict", id=order["id"]), 0
        if response.status_code != 200:
            log.warning("order %s: catalog answered %s; left pending", order["order_id"],
                        response.status_code)
            return None
        return response.json(), int(response.headers.get(INDEX_HEADER, 0))


class FinishQueue:
    """`finish` commands waiting to be proposed: with the next `begin` (`take`, so both
    share one append-entries round), or by a daemon thread `delay` seconds after the first
    of them arrived. Losing them (the process dies) loses nothing: see the module docstring."""

    def __init__(self, replica: Replica, delay: float) -> None:
        self.replica = replica
        self.delay = delay
        self._lock = threading.Lock()
        self._waiting: list[tuple[commands.Finish, object]] = []
        self._arrived = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, command: commands.Finish, on_done) -> None:
        """Queue `command`; `on_done(result, ok)` as `Replica.commit_nowait` calls it."""
        with self._lock:
            self._waiting.append((command, on_done))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="finish-queue", daemon=True)
                self._thread.start()
        self._arrived.set()

    def take(self) -> list[tuple[commands.Finish, object]]:
        """Every queued (command, on_done), in the order they were queued, for a caller that
        proposes them with its own command (`Replica.commit(..., first=...)`)."""
        with self._lock:
            waiting, self._waiting = self._waiting, []
        return waiting

    def propose(self) -> None:
        """Propose every queued command now, in the order they were queued."""
        for command, on_done in self.take():
            self.replica.commit_nowait(command, on_done)

    def _run(self) -> None:
        while True:
            self._arrived.wait()
            time.sleep(self.delay)
            self._arrived.clear()
            try:
                self.propose()
            except Exception:  # never lose the thread; a lost finish is recovered anyway
                log.exception("could not propose the queued finishes")

