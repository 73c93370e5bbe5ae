"""The order group's command vocabulary: the two steps an order goes through, once
(`Begin`, `Finish`), or both at once for an order the catalog has already decided (`Record`).

Like the catalog's (node/catalog/commands.py): frozen dataclasses, plain dicts on
the wire and in journals (`to_wire`, `from_wire`), results of one shape
(`{"ok": True, "order": ...}` or `{"ok": False, "error": ...}`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Union

from typing import Any

from bazar.node import validation
from bazar.node.retention import Expire
from bazar.node.wire import Malformed, decode, to_wire  # noqa: F401
from bazar.web.errors import BadRequest


@dataclass(frozen=True)
class Begin:
    """Record order `order_id` for book `id` as pending (a retry changes nothing)."""
    OP: ClassVar[str] = "begin"
    order_id: str
    id: int
    created_at: float


@dataclass(frozen=True)
class Finish:
    """Record the catalog's outcome of a pending order; the first outcome wins."""
    OP: ClassVar[str] = "finish"
    order_id: str
    outcome: dict
    catalog_index: int | None = None  # where the catalog applied it (read-your-writes)


@dataclass(frozen=True)
class Record:
    """Record an order the catalog has decided, in one step: `Begin` then `Finish` (an order
    already recorded keeps its first outcome; one recorded for another book is a conflict)."""
    OP: ClassVar[str] = "record"
    order_id: str
    id: int
    created_at: float
    outcome: dict
    catalog_index: int | None = None


Command = Union[Begin, Finish, Record, Expire]
TYPES = (Begin, Finish, Record, Expire)
BY_OP: dict[str, type] = {c.OP: c for c in TYPES}


def from_wire(wire: dict) -> Command:
    """The order command a log entry holds; Malformed if it holds none."""
    return decode(wire, BY_OP)


def begin(book: int, order: str, created_at: float) -> Begin:
    return Begin(order_id=order, id=book, created_at=round(created_at, 3))


def finish(order: str, outcome: dict, catalog_index: int | None) -> Finish:
    return Finish(order_id=order, outcome=outcome, catalog_index=catalog_index)


def record(book: int, order: str, created_at: float, outcome: dict, catalog_index: int | None) -> Record:
    return Record(order_id=order, id=book, created_at=round(created_at, 3), outcome=outcome,
                  catalog_index=catalog_index)


def record_of(item: Any) -> Record:
    """One item of `POST /records` (a frontend's records of the purchases it coordinated):
    order_id, id, created_at, the catalog's outcome and the catalog index."""
    if not isinstance(item, dict) or not isinstance(item.get("order_id"), str) or not item["order_id"]:
        raise BadRequest("every record needs an order_id, an id, a created_at and an outcome")
    outcome, index = item.get("outcome"), item.get("catalog_index")
    if not isinstance(outcome, dict) or not isinstance(outcome.get("ok"), bool):
        raise BadRequest("a record's outcome must be the catalog's: an object with ok")
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise BadRequest("a record's catalog_index must be a log index")
    return record(validation.book_id(item.get("id")), validation.order_id(item["order_id"]),
                  validation.timestamp(item.get("created_at")), outcome, index)
