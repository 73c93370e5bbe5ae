"""The catalog state machine: books, stock and the purchases already applied.

A plain Python class with a deterministic `apply`. Every replica of the catalog
group applies the same commands in the same log order and so holds the same
state; nothing here knows about Raft, HTTP or threads.

A purchase is one command, "decrement if stock > 0", decided where it is
applied. It is never a read on one replica followed by a write of an absolute
value, which is how naive implementations oversell.

A purchase the order group has not recorded yet (its command carries `created_at`, see
node/orders/purchase.py) is also kept in `unrecorded`, with its outcome, until a
`Recorded` command names it: the order group's leader reads them there and records
each one whose coordinator died before it could. They are kept whatever the retention
(retention forgets only what a retry needs), so no purchase that took stock is ever
forgotten before its order is recorded.
"""
from __future__ import annotations

import copy
from typing import Any

from bazar.node import retention
from bazar.node.catalog import commands
from bazar.node.results import failure, ok

# The layout of `snapshot()`: 2 added the log's clock and the outcomes' stamps (node/retention.py).
STATE_VERSION = 2


class CatalogState:
    """Books by id, plus the outcome of every purchase and admin request applied."""

    def __init__(self) -> None:
        self.books: dict[int, dict[str, Any]] = {}
        self.next_id = 1
        self.seeded = False
        # order id -> (book id, took stock?, price paid): lets a retried purchase
        # return its first outcome instead of taking stock again.
        self.purchases: dict[str, tuple[int, bool, float]] = {}
        # order id -> {"id", "created_at", "outcome"}: purchases the order group has still
        # to record (see the module docstring), in the order they were applied.
        self.unrecorded: dict[str, dict] = {}
        # request id -> {"op", "id", "result"}, for admin writes retried after a timeout.
        self.requests: dict[str, dict] = {}
        # Both are forgotten after the retention: when is decided in the log (node/retention.py).
        self.clock: float | None = None
        self.purchase_stamps = retention.Stamps()
        self.request_stamps = retention.Stamps()

    # -- commands -----------------------------------------------------------

    def apply(self, wire: dict | commands.Command) -> dict:
        """Apply one committed command (as it is in the log, or typed); return its result.

        Never raises on bad data: validation happens before commands reach the log, and
        if a malformed one ever does, every replica answers it the same way instead of
        stalling the log.
        """
        try:
            command = wire if isinstance(wire, commands.TYPES) else commands.from_wire(wire)
        except commands.Malformed as exc:
            return failure(str(exc))
        request_id = getattr(command, "request_id", None)
        if request_id is not None and request_id in self.requests:
            return self._replay(request_id, command)
        try:
            result = self._HANDLERS[type(command)](self, command)
        except (KeyError, TypeError, ValueError):
            return failure("malformed command")
        if request_id is not None:
            self.requests[request_id] = {"op": command.OP, "id": getattr(command, "id", None), "result": result}
            self.request_stamps.stamp(request_id, self.clock)
        return result

    def _replay(self, request_id: str, command: commands.Command) -> dict:
        """The first result of an admin write retried with the same request id.

        A request id names one operation on one book: the same id sent with another
        operation or for another book is a client's mistake (or someone guessing ids),
        answered with a conflict and nothing changed, never with the first write's
        result, which would be an answer about a different book.
        """
        first = self.requests[request_id]
        if first["op"] is not None and (first["op"], first["id"]) != (command.OP, getattr(command, "id", None)):
            return failure("conflict")
        return first["result"]

    def _seed(self, command: commands.Seed) -> dict:
        """Load the initial catalog once, on a fresh group; later seeds are no-ops."""
        if self.seeded:
            return ok(seeded=False)
        for book in command.books:
            self._add(book["title"], book["topic"], book["price"], book["stock"])
        self.seeded = True
        return ok(seeded=True)

    def _add_book(self, command: commands.AddBook) -> dict:
        book = self._add(command.title, command.topic, command.price, command.stock)
        return ok(book=dict(book))

    def _update_book(self, command: commands.UpdateBook) -> dict:
        book = self.books.get(command.id)
        if book is None:
            return failure("not_found")
        if command.price is not None:
            book["price"] = command.price
        if command.stock is not None:
            book["stock"] = command.stock
        if command.restock is not None:
            book["stock"] += command.restock
        return ok(book=dict(book))

    def _purchase(self, command: commands.Purchase) -> dict:
        order_id = command.order_id
        if order_id in self.purchases:
            if self.purchases[order_id][0] != command.id:
                # The order id was first used for another book: its outcome says nothing
                # about this one, and taking stock again would break exactly-once.
                return failure("conflict", id=command.id)
            return self._purchase_outcome(order_id)
        book = self.books.get(command.id)
        if book is None:
            return failure("not_found", id=command.id)
        took = book["stock"] > 0
        if took:
            book["stock"] -= 1
        self.purchases[order_id] = (book["id"], took, book["price"])
        self.purchase_stamps.stamp(order_id, self.clock)
        outcome = self._purchase_outcome(order_id)
        if command.created_at is not None:
            self.unrecorded[order_id] = {"id": book["id"], "created_at": command.created_at, "outcome": outcome}
        return outcome

    def _recorded(self, command: commands.Recorded) -> dict:
        """Forget the named purchases as unrecorded: the order group has them now."""
        forgotten = [self.unrecorded.pop(order_id, None) for order_id in command.order_ids]
        return ok(recorded=sum(entry is not None for entry in forgotten))

    def _expire(self, command: retention.Expire) -> dict:
        """Forget purchase outcomes and admin results recorded before the command's cutoff."""
        self.clock = retention.advance(self.clock, command)
        purchases = self.purchase_stamps.due(self.clock, command.cutoff)
        for order_id in purchases:
            del self.purchases[order_id]
        requests = self.request_stamps.due(self.clock, command.cutoff)
        for request_id in requests:
            del self.requests[request_id]
        return ok(expired=len(purchases) + len(requests))

    def _read(self, command: commands.Read) -> dict:
        """A logged read of an old journal (see commands.Read): answered, changes nothing."""
        if command.topic is not None:
            return ok(items=self.search(command.topic))
        book = self.book(command.id)
        return ok(book=book) if book else failure("not_found")

    # The one dispatch table: a command's type picks its handler.
    _HANDLERS = {commands.Seed: _seed, commands.AddBook: _add_book, commands.UpdateBook: _update_book,
                 commands.Purchase: _purchase, commands.Recorded: _recorded, commands.Read: _read,
                 retention.Expire: _expire}

    # -- queries ------------------------------------------------------------

    def book(self, book_id: int) -> dict | None:
        """A copy of one book, or None."""
        book = self.books.get(book_id)
        return dict(book) if book else None

    def search(self, topic: str) -> list[dict]:
        """Books whose topic equals `topic`, ignoring case, as id/title pairs."""
        wanted = topic.casefold()
        return [{"id": b["id"], "title": b["title"]}
                for b in self.books.values() if b["topic"].casefold() == wanted]

    def topics(self) -> list[str]:
        return sorted({b["topic"] for b in self.books.values()})

    def purchase_outcome(self, order_id: str) -> dict | None:
        """The outcome of an applied purchase, or None if never applied."""
        return self._purchase_outcome(order_id) if order_id in self.purchases else None

    def _purchase_outcome(self, order_id: str) -> dict:
        book_id, took, price = self.purchases[order_id]
        if not took:
            return failure("out_of_stock", id=book_id)
        return ok(id=book_id, title=self.books[book_id]["title"], price=price)

    def unrecorded_before(self, cutoff: float, limit: int, newest: bool = False) -> list[dict]:
        """Up to `limit` purchases the order group has still to record, created before
        `cutoff`, oldest applied first (or, with `newest`, newest first): each {"order_id",
        "id", "created_at", "outcome"}."""
        found = []
        entries = reversed(self.unrecorded.items()) if newest else self.unrecorded.items()
        for order_id, entry in entries:
            if len(found) >= limit:
                break
            if entry["created_at"] < cutoff:
                found.append(dict(entry, order_id=order_id))
        return found

    def unrecorded_summary(self) -> tuple[int, float | None]:
        """How many purchases are kept as unrecorded, and the first kept one's created_at."""
        first = next(iter(self.unrecorded.values()), None)
        return len(self.unrecorded), first["created_at"] if first else None

    def unrecorded_order(self, order_id: str) -> dict | None:
        """The purchase of `order_id` if the order group has still to record it, else None."""
        entry = self.unrecorded.get(order_id)
        return dict(entry, order_id=order_id) if entry is not None else None

    def remembered(self) -> int:
        """Outcomes kept for retries (purchases and admin writes): what retention bounds."""
        return len(self.purchases) + len(self.requests)

    def view(self) -> dict:
        """The whole state as JSON with named fields, for GET /state (chaos and the tests
        read it); unlike `snapshot`, its shape is a contract, not a storage format."""
        return {
            "books": {str(i): dict(b) for i, b in self.books.items()},
            "next_id": self.next_id,
            "seeded": self.seeded,
            "purchases": {order_id: {"book_id": book_id, "took_stock": took, "price": price}
                          for order_id, (book_id, took, price) in self.purchases.items()},
            "requests": {request_id: dict(r) for request_id, r in self.requests.items()},
            "unrecorded": {order_id: dict(entry) for order_id, entry in self.unrecorded.items()},
        }

    # -- snapshots ----------------------------------------------------------

    def snapshot(self) -> dict:
        """The whole state as plain data (for Raft snapshots and digests). `unrecorded` is
        there only when not empty, so a state without any has the layout and digest it had
        before purchases were kept as unrecorded (a reader of version 2 that predates it
        would drop it: upgrade every catalog replica before the order replicas)."""
        snapshot = {
            "version": STATE_VERSION,
            "books": copy.deepcopy(self.books),
            "next_id": self.next_id,
            "seeded": self.seeded,
            "purchases": dict(self.purchases),
            "requests": dict(self.requests),
            "clock": self.clock,
            "stamps": {"purchases": self.purchase_stamps.pairs(), "requests": self.request_stamps.pairs()},
        }
        if self.unrecorded:
            snapshot["unrecorded"] = copy.deepcopy(self.unrecorded)
        return snapshot

    def restore(self, snapshot: dict) -> None:
        """Replace the whole state with a snapshot taken by `snapshot`, of any version, also
        after a trip through JSON (a backup): book ids come back as strings, tuples as lists."""
        self.books = {int(book_id): dict(book) for book_id, book in copy.deepcopy(snapshot["books"]).items()}
        self.next_id = snapshot["next_id"]
        self.seeded = snapshot["seeded"]
        self.purchases = {order_id: tuple(outcome) for order_id, outcome in snapshot["purchases"].items()}
        self.requests = {key: _remembered(value) for key, value in copy.deepcopy(snapshot["requests"]).items()}
        self.unrecorded = copy.deepcopy(snapshot.get("unrecorded", {}))
        if snapshot.get("version", 1) >= 2:
            self.clock = snapshot["clock"]
            self.purchase_stamps = retention.Stamps(snapshot["stamps"]["purchases"])
            self.request_stamps = retention.Stamps(snapshot["stamps"]["requests"])
        else:  # recorded before outcomes expired: their retention starts with the first Expire
            self.clock = None
            self.purchase_stamps = retention.Stamps((key, None) for key in self.purchases)
            self.request_stamps = retention.Stamps((key, None) for key in self.requests)

    def _add(self, title: str, topic: str, price: float, stock: int) -> dict:
        book = {"id": self.next_id, "title": title, "topic": topic, "price": price, "stock": stock}
        self.books[book["id"]] = book
        self.next_id += 1
        return book


def _remembered(value: dict) -> dict:
    """A remembered admin write as stored now; snapshots from before requests were tied
    to an operation hold the bare result, which matches any retry (op None), as it did."""
    if "result" in value and "op" in value:
        return value
    return {"op": None, "id": None, "result": value}
