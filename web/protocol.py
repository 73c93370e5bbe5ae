"""Bazar's HTTP protocol between its own processes: every header name and retry hint, once.

- `X-Bazar-Leader`: on every replica answer, the HTTP address of the leader the replica
  follows, sent only while it is in touch with that leader (web/client.py believes it).
- `X-Bazar-Index`: the log index an answer reflects (the frontend's cache fences on it).
- `X-Bazar-Date`, `X-Bazar-Nonce`, `X-Bazar-Signature`: on every request one Bazar
  process sends a replica, signed with a key derived from the cluster secret; the
  secret itself never travels (web/signing.py).
- `X-Bazar-Answer-Signature`: on every replica answer to a signed request, the replica's
  HMAC (under another key derived from the secret) of the answer's status, the headers
  clients act on (`ANSWERED_HEADERS`), its body, the request's nonce and the replica's own
  address: clients believe no answer without it (web/signing.py).
- `X-Bazar-Members`: on every replica answer, the log index of the last membership change
  the replica has applied; a client that knows an older list fetches `GET /members` from it
  (web/client.py), so clients follow the membership the log holds, not their cluster file.
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
DATE_HEADER = "X-Bazar-Date"
NONCE_HEADER = "X-Bazar-Nonce"
SIGNATURE_HEADER = "X-Bazar-Signature"
ANSWER_SIGNATURE_HEADER = "X-Bazar-Answer-Signature"
MEMBERS_HEADER = "X-Bazar-Members"
REQUEST_ID_HEADER = "X-Request-ID"
RETRY_AFTER_HEADER = "Retry-After"
RETRY_AFTER_SECONDS = 1
# The headers of a replica's answer that its clients act on, all covered by its signature.
ANSWERED_HEADERS = (LEADER_HEADER, MEMBERS_HEADER, INDEX_HEADER, RETRY_AFTER_HEADER, "Content-Type")


def retry_after() -> dict[str, str]:
    """The headers of a 503 that a retry can cure."""
    return {RETRY_AFTER_HEADER: str(RETRY_AFTER_SECONDS)}
