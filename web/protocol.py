"""Bazar's HTTP protocol between its own processes: every header name and retry hint, once.

- `X-Bazar-Leader`: on every replica answer, the HTTP address of the leader the replica
  follows, sent only while it is in touch with that leader (web/client.py believes it).
- `X-Bazar-Index`: the log index an answer reflects (the frontend's cache fences on it).
- `X-Bazar-Members`: on every replica answer, the log index of the last membership change
  the replica has applied; a client that knows an older list fetches `GET /members` from it
  (web/client.py), so clients follow the membership the log holds, not their cluster file.
- `X-Bazar-Secret`: the cluster secret, on requests to routes meant for Bazar's own
  processes (a replica's /purchase, /state).
- `Retry-After`: on every 503 that a retry can cure (no quorum, an election, a replica
  out of touch or catching up). Bazar always says one second: elections take a few
  hundred milliseconds here, and a client that waits longer only adds latency.
"""
from __future__ import annotations

LEADER_HEADER = "X-Bazar-Leader"
INDEX_HEADER = "X-Bazar-Index"
MEMBERS_HEADER = "X-Bazar-Members"
SECRET_HEADER = "X-Bazar-Secret"
RETRY_AFTER_HEADER = "Retry-After"
RETRY_AFTER_SECONDS = 1


def retry_after() -> dict[str, str]:
    """The headers of a 503 that a retry can cure."""
    return {RETRY_AFTER_HEADER: str(RETRY_AFTER_SECONDS)}


def secret_headers(secret: str | None) -> dict[str, str]:
    """The headers that carry the cluster secret (none when the cluster has no secret)."""
    return {SECRET_HEADER: secret} if secret else {}
