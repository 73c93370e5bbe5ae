"""The catalog group's command vocabulary: every replicated catalog operation, once.

Each operation is a frozen dataclass; `OP` is its name on the wire. Commands
travel and sit in journals as plain, versioned dicts (`{"op": "purchase", "v": 1,
...}`, see node/wire.py), because journals written by earlier versions hold
exactly those; `to_wire` and `from_wire` are the only two places that convert.
`CatalogState.apply` takes a wire dict, decodes it here and dispatches through one
table. The builders (`purchase`, `update_book`, `add_book`) validate client input
and are what HTTP routes, the frontend, the seed and the bench use to make commands.

Every result has one shape: `{"ok": True, ...payload}` or
`{"ok": False, "error": <code>, ...}`, the codes being "not_found",
"out_of_stock", "conflict" (an id first used for another book or operation),
"unknown command" and "malformed command".

To add an operation: a dataclass here (with its builder), a handler in
`CatalogState` registered in its dispatch table, and, if it changes what readers
see, a line in `keys_changed`. See docs/architecture.md, "Extending Bazar".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Union

from bazar.node.retention import Expire
from bazar.node.validation import (MAX_RECORDED, book_id, fields_of, order_id, price,  # noqa: F401
                                   request_id, stock_count, text, timestamp)
from bazar.node.wire import Malformed, decode, fields, to_wire  # noqa: F401
from bazar.web.errors import BadRequest


@dataclass(frozen=True)
class Seed:
    """Load the initial catalog once, on a fresh group (later seeds change nothing)."""
    OP: ClassVar[str] = "seed"
    books: list


@dataclass(frozen=True)
class AddBook:
    OP: ClassVar[str] = "add_book"
    title: str
    topic: str
    price: float
    stock: int
    request_id: str | None = None  # remembered with the result, so a retry applies once


@dataclass(frozen=True)
class UpdateBook:
    """Any of: set the price, set the stock, add `restock` copies (in that order)."""
    OP: ClassVar[str] = "update_book"
    id: int
    request_id: str | None = None
    price: float | None = None
    stock: int | None = None
    restock: int | None = None


@dataclass(frozen=True)
class Purchase:
    """Take one copy for `order_id` if stock > 0; once per order id, whatever the retries.

    `created_at` (the order replica's clock) is set when the order group has not recorded
    the order yet (node/orders/purchase.py): the catalog then keeps it among the purchases
    the order group has still to record (`CatalogState.unrecorded`) until told `Recorded`."""
    OP: ClassVar[str] = "purchase"
    id: int
    order_id: str
    created_at: float | None = None


@dataclass(frozen=True)
class Recorded:
    """The order group has recorded these orders: stop keeping them as unrecorded."""
    OP: ClassVar[str] = "recorded"
    order_ids: list


@dataclass(frozen=True)
class Read:
    """A read that went through the log (before reads used a read index): kept so that
    journals holding such entries still replay; changes nothing."""
    OP: ClassVar[str] = "read"
    id: int | None = None
    topic: str | None = None


Command = Union[Seed, AddBook, UpdateBook, Purchase, Recorded, Read, Expire]
TYPES = (Seed, AddBook, UpdateBook, Purchase, Recorded, Read, Expire)
BY_OP: dict[str, type] = {c.OP: c for c in TYPES}


def from_wire(wire: dict) -> Command:
    """The catalog command a log entry holds; Malformed if it holds none."""
    return decode(wire, BY_OP)


# -- builders: client input -> a valid command, or BadRequest ---------------------

def purchase(book: Any, order: str | None, created_at: Any = None) -> Purchase:
    return Purchase(id=book_id(book), order_id=order_id(order),
                    created_at=None if created_at is None else timestamp(created_at))


def recorded(order_ids: Any) -> Recorded:
    """POST /recorded: 1 to MAX_PURCHASES order ids the order group has recorded."""
    if (not isinstance(order_ids, list) or not 0 < len(order_ids) <= MAX_RECORDED
            or not all(isinstance(o, str) and o for o in order_ids)):
        raise BadRequest(f"order_ids must be a list of 1 to {MAX_RECORDED} order ids")
    return Recorded(order_ids=[order_id(o) for o in order_ids])


def update_book(book: Any, body: Any, request: str | None = None) -> UpdateBook:
    """PUT /books/<id>: any of price (>= 0), stock (int >= 0), restock (int > 0)."""
    body = fields_of(body, allowed={"price", "stock", "restock", "request_id"})
    changes = {k: v for k, v in body.items() if k != "request_id"}
    if not changes:
        raise BadRequest("give at least one of price, stock, restock")
    return UpdateBook(
        id=book_id(book), request_id=request_id(body.get("request_id", request)),
        price=price(changes["price"]) if "price" in changes else None,
        stock=stock_count(changes["stock"], "stock", minimum=0) if "stock" in changes else None,
        restock=stock_count(changes["restock"], "restock", minimum=1) if "restock" in changes else None)


def add_book(body: Any, request: str | None = None) -> AddBook:
    """POST /books: title, topic, price, stock, all required."""
    body = fields_of(body, allowed={"title", "topic", "price", "stock", "request_id"})
    missing = [k for k in ("title", "topic", "price", "stock") if k not in body]
    if missing:
        raise BadRequest("missing field(s): " + ", ".join(missing))
    return AddBook(request_id=request_id(body.get("request_id", request)),
                   title=text(body["title"], "title"), topic=text(body["topic"], "topic"),
                   price=price(body["price"]), stock=stock_count(body["stock"], "stock", minimum=0))


def seed(books: list[dict]) -> Seed:
    """The seed command for a list of books, each validated like a POST /books body."""
    if not isinstance(books, list):
        raise BadRequest("expected a JSON list of books")
    checked = [add_book(b) for b in books]
    return Seed(books=[{"title": b.title, "topic": b.topic, "price": b.price, "stock": b.stock}
                       for b in checked])


# -- what readers must forget -----------------------------------------------------

ALL = None  # keys_changed's answer when anything may have changed


def info_key(book: int) -> tuple:
    """The cache key of GET /info/<book>."""
    return ("info", book)


def search_key(topic: str) -> tuple:
    """The cache key of GET /search/<topic> (topics match ignoring case)."""
    return ("search", topic.casefold())


def topics_key() -> tuple:
    """The cache key of the list of topics (GET /topics): only an added book can change it."""
    return ("topics",)


def keys_changed(command: dict, result: dict) -> list[tuple] | None:
    """The read keys an applied command changed, given its result; ALL (None) when any
    may have (the seed). The one table the frontend's follower invalidates from and
    its own writes fence with."""
    op = command.get("op") if isinstance(command, dict) else None
    if op == Seed.OP:
        return ALL if result.get("seeded") else []
    if op == Purchase.OP and result.get("ok"):
        return [info_key(result["id"])]
    if op == UpdateBook.OP and "book" in result:
        return [info_key(result["book"]["id"])]
    if op == AddBook.OP and "book" in result:
        return [info_key(result["book"]["id"]), search_key(result["book"]["topic"]), topics_key()]
    return []
