"""The history of a chaos run: one `Operation` per invoked client operation.

A history is stored as JSON Lines, one object per operation, in the format
the chaos runner writes::

    {"id": 17, "client": 3, "f": "purchase", "item": 2,
     "args": {"order_id": "k-3-17"}, "start": 12.345, "end": 12.351,
     "outcome": "ok", "result": {"order_id": "k-3-17", "price": 10.0},
     "fault": null}

Outcomes mean:

* ``ok``      -- the operation took effect, between ``start`` and ``end``;
* ``fail``    -- it definitely did not take effect.  A purchase refused for
  lack of stock is the one failure that still *observed* something: stock
  was 0 at its linearization point;
* ``unknown`` -- it may or may not have taken effect, at any time after
  ``start`` (``end`` is null, or the moment the client gave up).
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

FUNCTIONS = ("purchase", "restock", "set_price", "read")
OUTCOMES = ("ok", "fail", "unknown")
WRITES = ("purchase", "restock", "set_price")

_REQUIRED_KEYS = ("id", "client", "f", "item", "start", "outcome")


def is_out_of_stock(error: object) -> bool:
    """True if `error` is the catalog's out-of-stock refusal, however spelled.

    The frontend says "out of stock", the catalog says "out_of_stock";
    both mean the same definite, observing failure.
    """
    return isinstance(error, str) and error.strip().lower().replace("_", " ") == "out of stock"


@dataclass(frozen=True)
class Operation:
    """One client operation, from invocation to (possibly unknown) completion."""

    id: int
    client: int
    f: str
    item: int
    args: dict[str, Any]
    start: float
    end: float | None
    outcome: str
    result: dict[str, Any] | None = None
    fault: str | None = None

    def __post_init__(self) -> None:
        if self.f not in FUNCTIONS:
            raise ValueError(f"operation {self.id}: unknown function {self.f!r}")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"operation {self.id}: unknown outcome {self.outcome!r}")
        if self.outcome != "unknown" and self.end is None:
            raise ValueError(f"operation {self.id}: outcome {self.outcome!r} needs an end time")
        if self.end is not None and self.end < self.start:
            raise ValueError(f"operation {self.id}: ends ({self.end}) before it starts ({self.start})")

    # -- what the outcome means ---------------------------------------------

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    @property
    def failed(self) -> bool:
        return self.outcome == "fail"

    @property
    def unknown(self) -> bool:
        return self.outcome == "unknown"

    @property
    def is_write(self) -> bool:
        return self.f in WRITES

    @property
    def observed_out_of_stock(self) -> bool:
        """A purchase that definitely failed because stock was 0 when it ran."""
        return (self.f == "purchase" and self.failed
                and is_out_of_stock((self.result or {}).get("error")))

    @property
    def order_id(self) -> str | None:
        """A purchase's order id: the one the server reported, else the one the client sent."""
        if self.f != "purchase":
            return None
        return (self.result or {}).get("order_id") or self.args.get("order_id")

    @property
    def consistency(self) -> str | None:
        """The consistency level a read asked for ("strong", "local" or "cached")."""
        return self.args.get("consistency") if self.f == "read" else None

    # -- JSON -----------------------------------------------------------------

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Operation:
        """Build an operation from one decoded history line; raises ValueError if malformed."""
        missing = [key for key in _REQUIRED_KEYS if key not in record]
        if missing:
            raise ValueError(f"operation record lacks {', '.join(missing)}")
        end = record.get("end")
        return cls(
            id=int(record["id"]),
            client=int(record["client"]),
            f=record["f"],
            item=int(record["item"]),
            args=dict(record.get("args") or {}),
            start=float(record["start"]),
            end=None if end is None else float(end),
            outcome=record["outcome"],
            result=record.get("result"),
            fault=record.get("fault"),
        )

    def to_dict(self) -> dict[str, Any]:
        """The operation as a plain dict, ready for `json.dumps`."""
        return asdict(self)


def parse_history(lines: Iterable[str]) -> list[Operation]:
    """Decode JSON Lines into operations, skipping blank lines.

    Raises ValueError naming the (1-based) line of the first malformed record.
    """
    history = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            history.append(Operation.from_dict(json.loads(line)))
        except (ValueError, TypeError, KeyError) as error:
            raise ValueError(f"history line {number}: {error}") from error
    return history


def load_history(path: str | Path) -> list[Operation]:
    """Read a JSON Lines history file."""
    with open(path, encoding="utf-8") as stream:
        return parse_history(stream)


def format_operation(operation: Operation) -> str:
    """One history line (without the newline) for `operation`."""
    return json.dumps(operation.to_dict(), separators=(",", ":"))


def save_history(path: str | Path, history: Sequence[Operation]) -> None:
    """Write `history` as JSON Lines, one operation per line, replacing `path`."""
    with open(path, "w", encoding="utf-8") as stream:
        for operation in history:
            stream.write(format_operation(operation) + "\n")
