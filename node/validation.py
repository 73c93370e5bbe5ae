"""Client input checked once, before it reaches a log: the field checks both groups'
command builders share.

Every write a client can ask for is checked by a builder in `node/catalog/commands.py`
or `node/orders/commands.py`: the frontend uses them to answer 400 without a hop, and
the replicas use them again because their HTTP port is reachable too. A command that
leaves a builder is well-typed, so `apply` never has to guess. Each check raises
BadRequest (a JSON 400) with a message saying what a valid value is.
"""
from __future__ import annotations

import re
import uuid
from typing import Any

from bazar.web.errors import BadRequest

MAX_BOOK_ID = 2 ** 31 - 1
MAX_PRICE = 1e9
MAX_STOCK = 10 ** 9
MAX_TEXT = 200
ORDER_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # used with fullmatch
NODE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")       # as cluster.yaml's ids
MAX_PURCHASES = 64  # purchases one POST /purchases carries, to either group (web/batching.py)
MAX_RECORDED = 512  # order ids one POST /recorded names, purchases one GET /unrecorded lists


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


def request_id(raw: Any) -> str:
    """An admin write's Idempotency-Key (or request_id), else a fresh one."""
    if raw is None:
        return uuid.uuid4().hex
    if not isinstance(raw, str) or not ORDER_ID.fullmatch(raw):
        raise BadRequest("request_id must be 1-128 characters of letters, digits and ._:-")
    return raw


def fields_of(body: Any, allowed: set[str]) -> dict:
    """A JSON body that is an object naming only `allowed` fields."""
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadRequest("unknown field(s): " + ", ".join(unknown))
    return body


def price(raw: Any) -> float:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        raise BadRequest("price must be a number >= 0")
    if not 0 <= raw <= MAX_PRICE:  # also refuses NaN, infinities and huge integers
        raise BadRequest(f"price must be a number from 0 to {MAX_PRICE:g}")
    return round(float(raw), 2)


def stock_count(raw: Any, name: str, minimum: int) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not minimum <= raw <= MAX_STOCK:
        raise BadRequest(f"{name} must be an integer from {minimum} to {MAX_STOCK}")
    return raw


def text(raw: Any, name: str) -> str:
    if not isinstance(raw, str) or not raw.strip() or len(raw) > MAX_TEXT:
        raise BadRequest(f"{name} must be a non-empty string of at most {MAX_TEXT} characters")
    return raw.strip()


def timestamp(raw: Any) -> float:
    """A wall-clock time in seconds since the epoch (an order's `created_at`), to the millisecond."""
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not 0 <= raw < 1e11:
        raise BadRequest("created_at must be a number of seconds since the epoch")
    return round(float(raw), 3)


def purchase_batch(body: dict) -> list[dict]:
    """The items of a `POST /purchases` body (either group's): a list of 1 to MAX_PURCHASES
    objects; each item's fields are checked by the group's own builder."""
    items = body.get("purchases")
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_PURCHASES:
        raise BadRequest(f"purchases must be a list of 1 to {MAX_PURCHASES} items")
    if not all(isinstance(item, dict) for item in items):
        raise BadRequest("every purchase needs an id and an order_id")
    return items

