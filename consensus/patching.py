"""Replace a function of a pinned library, but only if it is the code we read.

Bazar corrects PySyncObj 0.3.17 in a few places (its follower's append-entries
handling, its journal, its forked snapshot writer). A correction is written
against one exact version of the function it replaces; run against any other
version it could silently undo a fix or break the library. So every
replacement names the SHA-256 of the source it was written for, and
`replace` refuses (PatchMismatch, at import time, before any node starts)
when the installed code differs.

`applied()` lists what was replaced; `consensus/corrections.py` is the index that says,
for each, the rule it enforces and the tests that fail without it.
"""
from __future__ import annotations

import hashlib
import inspect
import textwrap
from dataclasses import dataclass
from typing import Any, Callable


class PatchMismatch(RuntimeError):
    """The installed library is not the one a correction was written for; not retryable."""


@dataclass(frozen=True)
class Patch:
    owner: str      # "pysyncobj.syncobj.SyncObj"
    name: str       # "_SyncObj__onMessageReceived"
    why: str        # one line: what the original does wrong
    original: Any   # the replaced function, for tests that show the original's failure
    digest: str = ""  # the SHA-256 of the replaced function's source, checked when installed


_APPLIED: dict[tuple[int, str], Patch] = {}


def source_digest(func: Callable[..., Any]) -> str:
    """SHA-256 of a function's source, indentation removed (stable across re-indenting)."""
    return hashlib.sha256(textwrap.dedent(inspect.getsource(func)).encode()).hexdigest()


def replace(owner: Any, name: str, new: Any, expected_digest: str, why: str) -> None:
    """Set `owner.name = new` if the current `owner.name` has source digest `expected_digest`.

    Idempotent: replacing twice with the same `new` is a no-op, so importing the
    patch module again (or reloading it in tests) never stacks corrections.
    """
    key = (id(owner), name)
    if key in _APPLIED:
        return
    current = owner.__dict__[name] if name in getattr(owner, "__dict__", {}) else getattr(owner, name)
    target = current.__func__ if isinstance(current, (staticmethod, classmethod)) else current
    found = source_digest(target)
    if found != expected_digest:
        where = f"{qualified_name(owner)}.{name}"
        raise PatchMismatch(
            f"refusing to start: {where} is not the code Bazar's correction was written for "
            f"(source sha256 {found[:16]}..., expected {expected_digest[:16]}...). "
            f"Install the pinned PySyncObj version (see setup.py).")
    setattr(owner, name, new)
    _APPLIED[key] = Patch(qualified_name(owner), name, why, current, found)


def qualified_name(owner: Any) -> str:
    """"pysyncobj.syncobj.SyncObj" for a class, "pysyncobj.syncobj" for a module."""
    if isinstance(owner, type):
        return f"{owner.__module__}.{owner.__qualname__}"
    return getattr(owner, "__name__", repr(owner))


def original(owner: Any, name: str) -> Any:
    """The function `replace` put aside for `owner.name` (KeyError if none was replaced)."""
    return _APPLIED[(id(owner), name)].original


def applied() -> list[Patch]:
    """Every correction installed in this process, in the order they were installed."""
    return list(_APPLIED.values())
