"""How a command is in the log: plain, versioned data, shared by both groups' vocabularies.

A command in the log is `{"op": ..., "v": COMMAND_FORMAT, ...fields}`, never a pickled
class, so renaming a command class or its module never makes a journal unreadable.
Journals written before the format was versioned hold the same dicts without "v": they
are format 1. A format newer than this version reads is refused the same way on every
replica, rather than applied half understood.
"""
from __future__ import annotations

import dataclasses
from typing import Any


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
