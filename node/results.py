"""What a command's `apply` returns, in one shape in both groups: `ok(...)` or
`failure(code, ...)`, so every caller (routes, the purchase coordinator, the frontend)
tells them apart by `result["ok"]` alone."""
from __future__ import annotations

from typing import Any


def ok(**payload: Any) -> dict:
    """The result of a command that did what it was asked."""
    return {"ok": True, **payload}


def failure(error: str, **details: Any) -> dict:
    """The result of a command that changed nothing: an error code and what it is about."""
    return {"ok": False, "error": error, **details}
