"""Build log commands from client input, refusing anything malformed.

Every write a client can ask for is checked here once, before it reaches a log:
the frontend uses these to answer 400 without a hop, and the replicas use them
again because their HTTP port is reachable too. A command that leaves this
module is well-typed, so `apply` never has to guess.
"""
from __future__ import annotations

import re
import uuid
from typing import Any

from web.errors import BadRequest

MAX_BOOK_ID = 2 ** 31 - 1
MAX_PRICE = 1e9
MAX_STOCK = 10 ** 9
MAX_TEXT = 200
ORDER_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # used with fullmatch


def book_id(raw: Any) -> int:
    """A positive book id from a path segment or JSON value."""
    if isinstance(raw, bool):
        raise BadRequest("book id must be a positive integer")
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 12:
        value = int(raw)
    else:
        raise BadRequest("book id must be a positive integer")
    if not 0 < value <= MAX_BOOK_ID:
        raise BadRequest("book id must be a positive integer")
    return value


def order_id(raw: str | None) -> str:
    """The client's Idempotency-Key if it is usable, else a fresh order id."""
    if raw is None or raw == "":
        return uuid.uuid4().hex
    if not isinstance(raw, str) or not ORDER_ID.fullmatch(raw):
        raise BadRequest("Idempotency-Key must be 1-128 characters of letters, digits and ._:-")
    return raw


def purchase(book: Any, order: str) -> dict:
    return {"op": "purchase", "id": book_id(book), "order_id": order_id(order)}


def update_book(book: Any, body: Any, request_id: str | None = None) -> dict:
    """PUT /books/<id>: any of price (>= 0), stock (int >= 0), restock (int > 0)."""
    body = _object(body, allowed={"price", "stock", "restock", "request_id"})
    fields = {k: v for k, v in body.items() if k != "request_id"}
    if not fields:
        raise BadRequest("give at least one of price, stock, restock")
    command = {"op": "update_book", "id": book_id(book),
               "request_id": _request_id(body.get("request_id", request_id))}
    if "price" in fields:
        command["price"] = _price(fields["price"])
    if "stock" in fields:
        command["stock"] = _count(fields["stock"], "stock", minimum=0)
    if "restock" in fields:
        command["restock"] = _count(fields["restock"], "restock", minimum=1)
    return command


def add_book(body: Any, request_id: str | None = None) -> dict:
    """POST /books: title, topic, price, stock, all required."""
    body = _object(body, allowed={"title", "topic", "price", "stock", "request_id"})
    missing = [k for k in ("title", "topic", "price", "stock") if k not in body]
    if missing:
        raise BadRequest("missing field(s): " + ", ".join(missing))
    return {"op": "add_book",
            "request_id": _request_id(body.get("request_id", request_id)),
            "title": _text(body["title"], "title"),
            "topic": _text(body["topic"], "topic"),
            "price": _price(body["price"]),
            "stock": _count(body["stock"], "stock", minimum=0)}


def topic(raw: str) -> str:
    if not raw or len(raw) > MAX_TEXT:
        raise BadRequest(f"topic must be 1-{MAX_TEXT} characters")
    if "\ufffd" in raw or not raw.isprintable():
        # U+FFFD is what the URL decoder leaves of bytes that were not UTF-8.
        raise BadRequest("topic must be printable UTF-8 text")
    return raw


def limit(raw: str | None, default: int = 50, maximum: int = 1000) -> int:
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9 or not 0 < int(raw) <= maximum:
        raise BadRequest(f"limit must be an integer from 1 to {maximum}")
    return int(raw)


def _object(body: Any, allowed: set[str]) -> dict:
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadRequest("unknown field(s): " + ", ".join(unknown))
    return body


def _request_id(raw: Any) -> str:
    if raw is None:
        return uuid.uuid4().hex
    if not isinstance(raw, str) or not ORDER_ID.fullmatch(raw):
        raise BadRequest("request_id must be 1-128 characters of letters, digits and ._:-")
    return raw


def _price(raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise BadRequest("price must be a number >= 0")
    if not 0 <= raw <= MAX_PRICE:  # also refuses NaN, infinities and huge integers
        raise BadRequest(f"price must be a number from 0 to {MAX_PRICE:g}")
    return round(float(raw), 2)


def _count(raw: Any, name: str, minimum: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not minimum <= raw <= MAX_STOCK:
        raise BadRequest(f"{name} must be an integer from {minimum} to {MAX_STOCK}")
    return raw


def _text(raw: Any, name: str) -> str:
    if not isinstance(raw, str) or not raw.strip() or len(raw) > MAX_TEXT:
        raise BadRequest(f"{name} must be a non-empty string of at most {MAX_TEXT} characters")
    return raw.strip()
