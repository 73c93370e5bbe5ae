"""The order state machine: the record of every purchase.

A purchase spans two Raft groups, so an order moves through two states:

    begin  -> "pending"   (recorded before the catalog is asked for stock)
    finish -> "completed" (the catalog took one copy) or "failed" (it refused)
    record -> both at once, for an order the catalog decided first (node/orders/purchase.py)

An order is recorded in one of two ways. Normally the catalog decides it first (its
purchase command says the order group has not recorded it yet, so the catalog keeps it
until told otherwise) and `record` follows; when the catalog could not be asked, or
did not answer in time, `begin` records it pending and `finish` decides it later. A
purchase whose coordinator died before `record` is recorded by the order group's
leader from the catalog's list of unrecorded purchases; a pending order whose
coordinator died is finished by it (node/orders/recovery.py). Every command is
idempotent per order id, so retries never record an order twice.

Readers never show a missing or pending order as it is stored: they ask the catalog for
the outcome it keeps and show the order `settle`d by it (node/orders/purchase.py).

A finished order is remembered for the retention (node/retention.py), then
forgotten; a pending one is kept until it is finished.
"""
from __future__ import annotations

import copy
from typing import Any

from bazar.node import retention
from bazar.node.results import failure, ok
from bazar.node.orders import commands

PENDING, COMPLETED, FAILED = "pending", "completed", "failed"
# The layout of `snapshot()`: 2 added the log's clock, the finished orders' stamps and next_seq.
STATE_VERSION = 2


def settle(order: dict, outcome: dict, catalog_index: int | None) -> dict:
    """The pending `order` as the catalog's `outcome` for it decides it (a new dict).

    The one place an outcome becomes a status: `finish` records it, and the coordinator
    answers and reads show it before `finish` has applied (node/orders/purchase.py).
    `catalog_index` is where the catalog applied it: it lets any frontend wait for that
    entry (read-your-writes on the book's stock)."""
    decided = dict(order, catalog_index=catalog_index)
    if outcome.get("ok"):
        decided.update(status=COMPLETED, title=outcome["title"], price=outcome["price"])
    else:
        decided.update(status=FAILED, error=outcome.get("error", "failed"))
    return decided


class OrderState:
    """Orders by id, in the order they were first recorded."""

    def __init__(self) -> None:
        self.orders: dict[str, dict[str, Any]] = {}  # insertion order == log order
        self.pending_ids: set[str] = set()  # derived from orders; kept so recovery need not scan
        self.next_seq = 1
        self.clock: float | None = None
        self.finished = retention.Stamps()  # finished orders, stamped when they were finished

    def apply(self, wire: dict | commands.Command) -> dict:
        """Apply one committed command (as it is in the log, or typed); return the order it touched."""
        try:
            command = wire if isinstance(wire, commands.TYPES) else commands.from_wire(wire)
            return self._HANDLERS[type(command)](self, command)
        except commands.Malformed as exc:
            return failure(str(exc))
        except (KeyError, TypeError, ValueError, AttributeError):
            return failure("malformed command")

    def _begin(self, command: commands.Begin) -> dict:
        order = self.orders.get(command.order_id)
        if order is not None:
            if order["id"] != command.id:
                # The same idempotency key reused for another book: refuse, change nothing.
                return failure("conflict", order=dict(order))
            return ok(order=dict(order))
        order = {"order_id": command.order_id, "id": command.id, "status": PENDING,
                 "title": None, "price": None, "error": None, "catalog_index": None,
                 "created_at": command.created_at, "seq": self.next_seq}
        self.next_seq += 1
        self.orders[order["order_id"]] = order
        self.pending_ids.add(order["order_id"])
        return ok(order=dict(order))

    def _finish(self, command: commands.Finish) -> dict:
        order = self.orders.get(command.order_id)
        if order is None:
            return failure("not_found")
        if order["status"] == PENDING:  # the first outcome wins; later ones are retries
            decided = settle(order, command.outcome, command.catalog_index)
            self.pending_ids.discard(command.order_id)
            if decided["error"] == "not_found":
                # No such book: there is no order to keep (book ids are never removed, so the
                # frontend, which checks first, never gets here; a peer skipping it can).
                del self.orders[command.order_id]
                return ok(order=decided)
            self.orders[command.order_id] = decided  # same key: its place in log order stays
            self.finished.stamp(command.order_id, self.clock)
            return ok(order=dict(decided))
        return ok(order=dict(order))

    def _record(self, command: commands.Record) -> dict:
        order = self.orders.get(command.order_id)
        if (order is not None and order["id"] != command.id
                and (order["status"] == PENDING or order["error"] == "conflict")):
            # The catalog applied this order id for `command.id` (a `record` only ever
            # carries the catalog's outcome), so the order recorded here for another book,
            # begun while the catalog could not be asked, never took or will take stock:
            # the catalog's purchase is the order.
            del self.orders[command.order_id]
            self.pending_ids.discard(command.order_id)
            self.finished.forget(command.order_id)
        begun = self._begin(commands.begin(command.id, command.order_id, command.created_at))
        if not begun["ok"]:
            return begun
        return self._finish(commands.finish(command.order_id, command.outcome, command.catalog_index))

    def _expire(self, command: retention.Expire) -> dict:
        """Forget the orders finished before the command's cutoff."""
        self.clock = retention.advance(self.clock, command)
        expired = self.finished.due(self.clock, command.cutoff)
        for order_id in expired:
            del self.orders[order_id]
        return ok(expired=len(expired))

    # The one dispatch table.
    _HANDLERS = {commands.Begin: _begin, commands.Finish: _finish, commands.Record: _record,
                 retention.Expire: _expire}

    # -- queries ------------------------------------------------------------

    def order(self, order_id: str) -> dict | None:
        order = self.orders.get(order_id)
        return dict(order) if order else None

    def newest(self, limit: int, status: str | None = None, with_pending: bool = False) -> list[dict]:
        """Up to `limit` orders, newest first, optionally of one status.

        With `with_pending`, the pending orders met on the way come too, without counting
        towards `limit`: whoever decides them (node/orders/purchase.py's `resolved`) can then
        pick the newest `limit` of `status` as decided, none missing."""
        result: list[dict] = []
        if limit <= 0:
            return result
        counted = 0
        for order in reversed(self.orders.values()):
            if status is None or order["status"] == status:
                result.append(dict(order))
                counted += 1
                if counted >= limit:
                    break
            elif with_pending and order["status"] == PENDING:
                result.append(dict(order))
        return result

    def pending(self) -> list[dict]:
        return [dict(self.orders[order_id]) for order_id in self.pending_ids]

    def remembered(self) -> int:
        """Orders kept (each is a retry's answer): what retention bounds."""
        return len(self.orders)

    def view(self) -> dict:
        """The whole state as JSON with named fields, for GET /state."""
        return {"orders": {order_id: dict(o) for order_id, o in self.orders.items()}}

    # -- snapshots ----------------------------------------------------------

    def snapshot(self) -> dict:
        return {"version": STATE_VERSION, "orders": copy.deepcopy(self.orders), "next_seq": self.next_seq,
                "clock": self.clock, "finished": self.finished.pairs()}

    def restore(self, snapshot: dict) -> None:
        """Replace the whole state with a snapshot of any version (also one read back from JSON)."""
        self.orders = copy.deepcopy(snapshot["orders"])
        self.pending_ids = {i for i, o in self.orders.items() if o["status"] == PENDING}
        if snapshot.get("version", 1) >= 2:
            self.next_seq = snapshot["next_seq"]
            self.clock = snapshot["clock"]
            self.finished = retention.Stamps(snapshot["finished"])
        else:  # nothing was forgotten yet; finished orders' retention starts with the first Expire
            self.next_seq = len(self.orders) + 1
            self.clock = None
            self.finished = retention.Stamps((i, None) for i in self.orders if i not in self.pending_ids)
