"""What both groups' command vocabularies share: field validation and result shapes.

Every write a client can ask for is checked once, before it reaches a log: the
frontend uses the builders in `node/catalog/commands.py` to answer 400 without a
hop, and the replicas use them again because their HTTP port is reachable too.
A command that leaves a builder is well-typed, so `apply` never has to guess.

Results have one shape in both groups: `ok(...)` or `failure(code, ...)`.

A command in the log is plain, versioned data: `{"op": ..., "v": COMMAND_FORMAT,
...fields}`, never a pickled class, so renaming a command class or its module never
makes a journal unreadable. Journals written before the format was versioned hold
the same dicts without "v": they are format 1. A format newer than this version
reads is refused the same way on every replica, rather than applied half understood.
"""
from __future__ import annotations

import dataclasses
import re
import uuid
from typing import Any

from bazar.cluster.config import ConfigError, address
from bazar.web.errors import BadRequest

MAX_BOOK_ID = 2 ** 31 - 1
MAX_PRICE = 1e9
MAX_STOCK = 10 ** 9
MAX_TEXT = 200
ORDER_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")  # used with fullmatch
NODE_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")       # as cluster.yaml's ids


class Malformed(ValueError):
    """A log entry that holds no command of its group; every replica answers it the same way."""


COMMAND_FORMAT = 1  # bump when an older Bazar would misread what to_wire writes
FORMAT_KEY = "v"    # one letter: it is in every journal entry
ENVELOPE = ("op", FORMAT_KEY)  # the wire keys that are not a command's own fields


def to_wire(command: Any) -> dict:
    """The dict a typed command is in the log: `op`, the format, then every field set."""
    return {"op": command.OP, FORMAT_KEY: COMMAND_FORMAT, **fields(command)}


def fields(command: Any) -> dict:
    """A typed command's own fields that are set: what an HTTP body asking for it carries."""
    return {k: v for k, v in dataclasses.asdict(command).items() if v is not None}


def decode(wire: Any, by_op: dict[str, type]) -> Any:
    """The typed command a wire dict of any format so far holds, by its `op` in `by_op`;
    Malformed otherwise. The format is checked first: a newer one may name ops or
    fields this version has never heard of."""
    if not isinstance(wire, dict):
        raise Malformed("unknown command")
    version = wire.get(FORMAT_KEY, 1)  # entries written before the format was versioned
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise Malformed("malformed command")
    if version > COMMAND_FORMAT:
        raise Malformed(f"command format {version} was written by a newer Bazar "
                        f"(this one reads format {COMMAND_FORMAT} and older)")
    op = wire.get("op")
    cls = by_op.get(op) if isinstance(op, str) else None  # an unhashable op must not raise TypeError
    if cls is None:
        raise Malformed("unknown command")
    try:
        return cls(**{k: v for k, v in wire.items() if k not in ENVELOPE})
    except TypeError:
        raise Malformed("malformed command") from None


def ok(**payload: Any) -> dict:
    """The result of a command that did what it was asked."""
    return {"ok": True, **payload}


def failure(error: str, **details: Any) -> dict:
    """The result of a command that changed nothing: an error code and what it is about."""
    return {"ok": False, "error": error, **details}


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


def membership_change(body: Any) -> dict:
    """A membership change as `RaftMember.change_membership` takes it, from a JSON body:
    {"op": "add", "id", "raft": "host:port", "http": "host:port"} or
    {"op": "remove", "id", "raft": "host:port"}."""
    fields = fields_of(body, {"op", "id", "raft", "http"})
    op = fields.get("op")
    if op not in ("add", "remove"):
        raise BadRequest("op must be add or remove")
    node_id = fields.get("id")
    if not isinstance(node_id, str) or not NODE_ID.fullmatch(node_id):
        raise BadRequest("id must be 1-64 letters, digits, '-' or '_'")
    wanted = ("raft", "http") if op == "add" else ("raft",)
    try:
        addresses = {key: address(fields.get(key), key) for key in wanted}
    except ConfigError as exc:
        raise BadRequest(str(exc)) from None
    change = {"op": op, "id": node_id, "raft": str(addresses["raft"])}
    if op == "add":
        change["http"] = addresses["http"].url
    return change
