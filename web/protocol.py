"""Bazar's HTTP protocol between its own processes: every header name and retry hint, once.

- `X-Bazar-Leader`: on every replica answer, the HTTP address of the leader the replica
  follows, sent only while it is in touch with that leader (web/client.py believes it).
- `X-Bazar-Index`: the log index an answer reflects (the frontend's cache fences on it).
- `X-Bazar-Secret`: the cluster secret, on requests to routes meant for Bazar's own
  processes (a replica's /purchase, /state).
- `X-Request-ID`: the id of one client request, on every hop it makes (frontend, order
  replica, catalog replica) and on every answer, so the logs of all three can be joined
  (web/logs.py validates it and keeps it for the request's thread).
- `Retry-After`: on every 503 that a retry can cure (no quorum, an election, a replica
  out of touch or catching up). Bazar always says one second: elections take a few
  hundred milliseconds here, and a client that waits longer only adds latency.
"""
from __future__ import annotations

LEADER_HEADER = "X-Bazar-Leader"
INDEX_HEADER = "X-Bazar-Index"
SECRET_HEADER = "X-Bazar-Secret"
REQUEST_ID_HEADER = "X-Request-ID"
RETRY_AFTER_HEADER = "Retry-After"
RETRY_AFTER_SECONDS = 1


def retry_after() -> dict[str, str]:
    """The headers of a 503 that a retry can cure."""
    return {RETRY_AFTER_HEADER: str(RETRY_AFTER_SECONDS)}


def secret_headers(secret: str | None) -> dict[str, str]:
    """The headers that carry the cluster secret (none when the cluster has no secret)."""
    return {SECRET_HEADER: secret} if secret else {}
