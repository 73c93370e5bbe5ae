"""Query-string and path parameters that are HTTP's business, not a command's.

Each returns the parsed value or raises BadRequest (answered 400, nothing changed).
"""
from __future__ import annotations

from bazar.web.errors import BadRequest

MAX_TOPIC = 200


def topic(raw: str) -> str:
    """A search topic from the path: 1-200 printable characters of valid UTF-8."""
    if not raw or len(raw) > MAX_TOPIC:
        raise BadRequest(f"topic must be 1-{MAX_TOPIC} characters")
    if "\ufffd" in raw or not raw.isprintable():
        # U+FFFD is what the URL decoder leaves of bytes that were not UTF-8.
        raise BadRequest("topic must be printable UTF-8 text")
    return raw


def limit(raw: str | None, default: int = 50, maximum: int = 1000) -> int:
    """`?limit=N`: an integer from 1 to `maximum` (`default` when absent)."""
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9 or not 0 < int(raw) <= maximum:
        raise BadRequest(f"limit must be an integer from 1 to {maximum}")
    return int(raw)


def min_index(raw: str | None) -> int | None:
    """`?min_index=N`: a log index (a non-negative integer of at most 18 digits), or None."""
    if raw is None:
        return None
    if not raw.isascii() or not raw.isdigit() or len(raw) > 18:
        raise BadRequest("min_index must be a non-negative integer")
    return int(raw)


def without_dot_segments(path: str) -> str:
    """A request's path (as WSGI gives it: percent-decoded) if no segment of it is `.` or
    `..`; BadRequest otherwise. No resource is named so, and such a path would be sent on
    (a topic, an order id) as one the next hop, or any URL library on the way, resolves to
    another resource: `/search/..`, `/search/%2E%2E` and `/search/a%2F..` are all refused."""
    if any(segment in (".", "..") for segment in path.split("/")):
        raise BadRequest("a path must not have . or .. segments (written or percent-encoded)")
    return path
