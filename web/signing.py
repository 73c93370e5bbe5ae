"""Requests between Bazar's own processes, signed so that the secret never travels.

Every request a Bazar process sends to a replica carries three headers:

- `X-Bazar-Date`: the sender's clock, in whole seconds since the epoch;
- `X-Bazar-Nonce`: 128 random bits, never used twice;
- `X-Bazar-Signature`: HMAC-SHA256, under the *signing key*, of the method, the
  destination (the replica's `host:port` as the sender names it, which is the
  address the cluster file and the membership give it), the path with its query,
  the date, the nonce, the Idempotency-Key header and the SHA-256 of the body, one
  per line.

The signing key is derived from the cluster secret (HMAC of a fixed label under
the secret), so it differs from the Raft password, and neither the secret nor
the key is ever sent: an eavesdropper learns only signatures, which are useless
for any other request. A replica (`Verifier`) accepts a request only if

1. the signature matches what it computes itself, with its own advertised address
   as the destination (compared in constant time), so the sender knew the key,
   changed nothing that is signed, and meant this replica: a request recorded on
   its way to one replica is refused by its siblings, whose nonces are their own;
2. the date is within `WINDOW_SECONDS` of its own clock, so a recorded request
   cannot be played back later;
3. the nonce has not been seen within that window, so it cannot be played back
   at once either.

How it fails: a sender whose clock is off by more than the window is refused
(403, the message says by how much: the hosts need NTP); a replica that restarts
forgets the nonces it saw, so a request recorded in the last `WINDOW_SECONDS`
could be replayed to it once. Every internal write is idempotent (see
web/client.py), so such a replay repeats what was already done and changes
nothing. What is *not* protected is the confidentiality of bodies and answers:
HTTP between processes is plain, so run it on a private network, or put TLS in
between (docs/security.md).

Answers are signed too. A replica answers every request it verified with
`X-Bazar-Answer-Signature`: HMAC-SHA256, under the *answer key* (derived from the
secret like the signing key, under another label, so that no request signature is ever
a valid answer signature or the reverse), of its own address, the request's nonce, the
status, each header of `ANSWERED_HEADERS` (the leader hint, the membership index, the
log index, Retry-After, Content-Type) and the SHA-256 of the body, one per line. The
sender checks it (`Signer.genuine`) before it believes anything of the answer: so a man
in the middle cannot forge or alter an answer, and cannot replay an old one (the nonce
is this request's own), nor pass one replica's answer off as another's (the address is
the one the sender dialled). An answer the replica could not sign is one to a request it
refused (403, which clients take as a definite refusal and believe nothing of) or one
waitress gave before the request reached the replica (400, 413, 431: a malformed
request, which no Bazar process sends); clients take any other unsigned answer as a
failure of that replica, never as data. Each side computes one HMAC per answer; the keys
are derived once, when a `Signer` or `Verifier` is made.

This module is pure (no Flask, no network): `sign` for senders, `Verifier` for
receivers, `PeerAuth` for senders that use `requests`.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from typing import Mapping
from urllib.parse import unquote

from requests import RequestException
from urllib3.util import parse_url

from bazar.web.protocol import (ANSWER_SIGNATURE_HEADER, ANSWERED_HEADERS, DATE_HEADER, NONCE_HEADER,
                                SIGNATURE_HEADER)

WINDOW_SECONDS = 30
_LABEL = b"bazar http request signing v1"
_ANSWER_LABEL = b"bazar http answer signing v1"


def signing_key(secret: str) -> bytes:
    """The key requests are signed with, derived from (and not revealing) the secret."""
    return derived_key(secret, _LABEL)


def answer_key(secret: str) -> bytes:
    """The key replicas sign their answers with: another one derived from the secret."""
    return derived_key(secret, _ANSWER_LABEL)


def derived_key(secret: str, label: bytes) -> bytes:
    """A key for one purpose (`label`), derived from the secret: HMAC-SHA256 of the label
    under the secret. Keys of different labels reveal nothing of each other or the secret."""
    return hmac.new(secret.encode(), label, hashlib.sha256).digest()


def _message(method: str, destination: str, target: str, date: str, nonce: str, idempotency_key: str,
             body: bytes) -> bytes:
    return "\n".join([method.upper(), destination.lower(), target, date, nonce, idempotency_key,
                      hashlib.sha256(body).hexdigest()]).encode()


def destination(url: str) -> str:
    """The replica a URL names, as signed: `host:port`. ValueError for a URL without both
    (a signature must say which replica it is for)."""
    parts = parse_url(url)
    if not parts.host or not parts.port:
        raise ValueError(f"a signed request names its replica's host and port: {url!r}")
    return f"{parts.host}:{parts.port}"


def signed_target(url_or_path: str) -> str:
    """What is signed of a URL: the path urllib3 sends for it, percent-decoded (as the
    receiver's framework gives it), and its query as sent.

    urllib3 (under `requests` too) normalises a URL before sending it: it removes `.` and
    `..` segments and percent-encodes what may not appear raw. The signature covers that
    path, not the one written, so that what is signed is what arrives: a replica never
    refuses a request for a path its sender wrote differently. (The group client escapes
    dot segments first, so that the path sent is still the one meant.)"""
    parts = parse_url(url_or_path)
    return unquote(parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def sign(key: bytes, method: str, to: str, target: str, body: bytes | None = None,
         headers: Mapping[str, str] | None = None, now: float | None = None) -> dict[str, str]:
    """The headers that sign a request for `target` (see `signed_target`) at the replica
    `to` (`host:port`, see `destination`)."""
    date = str(int(time.time() if now is None else now))
    nonce = secrets.token_hex(16)
    idempotency_key = (headers or {}).get("Idempotency-Key", "")
    mac = hmac.new(key, _message(method, to, target, date, nonce, idempotency_key, body or b""),
                   hashlib.sha256).hexdigest()
    return {DATE_HEADER: date, NONCE_HEADER: nonce, SIGNATURE_HEADER: mac}


def _answer_message(replica: str, nonce: str, status: int, headers: Mapping[str, str], body: bytes) -> bytes:
    return "\n".join([replica.lower(), nonce, str(status),
                      *(f"{name}:{headers.get(name) or ''}" for name in ANSWERED_HEADERS),
                      hashlib.sha256(body).hexdigest()]).encode()


def sign_answer(key: bytes, replica: str, nonce: str, status: int, headers: Mapping[str, str],
                body: bytes) -> str:
    """The `X-Bazar-Answer-Signature` of an answer from `replica` (its `host:port`) to the
    request that carried `nonce`. A header of ANSWERED_HEADERS that is absent is signed as
    empty (an empty leader hint means none, as an absent one does)."""
    return hmac.new(key, _answer_message(replica, nonce, status, headers, body), hashlib.sha256).hexdigest()


def answer_is_genuine(key: bytes, replica: str, nonce: str, status: int, headers: Mapping[str, str],
                      body: bytes) -> bool:
    """True if the answer carries the signature `replica` makes for it (constant time)."""
    given = headers.get(ANSWER_SIGNATURE_HEADER) or ""
    expected = sign_answer(key, replica, nonce, status, headers, body)
    return hmac.compare_digest(expected.encode(), given.encode())


class Refused(Exception):
    """A request that is not signed by a holder of the key; the message says why."""


class Verifier:
    """Checks the signed requests one replica receives: the replica at `address`
    (`host:port`, as its peers name it: its advertised HTTP address). Thread-safe."""

    def __init__(self, key: bytes, address: str, window: float = WINDOW_SECONDS,
                 answer_key: bytes | None = None) -> None:
        self._key = key
        self._answer_key = answer_key
        self._address = address
        self._window = window
        # The nonces seen, by the date they were signed with. A replay carries the date it
        # was first signed with (the date is signed), so it can only be found under that date,
        # and once a date has left the window its requests are refused for the date alone:
        # those nonces are forgotten (`_forget_older_than`). So a replica remembers about a
        # window's worth of requests (its request rate x the window), not every one it took.
        self._seen: dict[int, set[str]] = {}
        self._lock = threading.Lock()

    @property
    def remembered(self) -> int:
        """How many nonces this verifier holds right now."""
        with self._lock:
            return sum(len(nonces) for nonces in self._seen.values())

    def verify(self, method: str, target: str, headers: Mapping[str, str], body: bytes,
               now: float | None = None) -> None:
        """Return if the request is signed, fresh and new; raise `Refused` otherwise."""
        date, nonce, mac = (headers.get(DATE_HEADER), headers.get(NONCE_HEADER),
                            headers.get(SIGNATURE_HEADER))
        if not (date and nonce and mac):
            raise Refused("this route is for Bazar's own processes: the request is not signed")
        expected = hmac.new(self._key, _message(method, self._address, target, date, nonce,
                                                headers.get("Idempotency-Key", ""), body),
                            hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected.encode(), mac.encode()):
            raise Refused("the request's signature is wrong (another cluster secret, a request "
                          "meant for another replica, or one changed on the way)")
        now = time.time() if now is None else now
        signed_at = int(date)  # a valid signature: `date` is digits we signed ourselves
        skew = now - signed_at
        if abs(skew) > self._window:
            raise Refused(f"the request was signed {skew:+.0f} s from this replica's clock, more "
                          f"than the {self._window:g} s allowed: a replay, or clocks apart (use NTP)")
        with self._lock:
            # A second's slack: another thread may be checking a request against a clock it
            # read a moment before this one.
            self._forget_older_than(now - self._window - 1)
            nonces = self._seen.setdefault(signed_at, set())
            if nonce in nonces:
                raise Refused("the request was already received once (a replay)")
            nonces.add(nonce)

    def sign_answer(self, nonce: str, status: int, headers: Mapping[str, str], body: bytes) -> str | None:
        """The signature of this replica's answer to the verified request that carried
        `nonce` (see `sign_answer`); None if this verifier was given no answer key."""
        if self._answer_key is None:
            return None
        return sign_answer(self._answer_key, self._address, nonce, status, headers, body)

    def _forget_older_than(self, oldest: float) -> None:
        """Drop the nonces of dates before `oldest`: the window check refuses those dates.
        (If this replica's own clock steps back, a forgotten nonce could pass once more, as
        after a restart: see the module's docstring.) The dates held span about twice the
        window, one key per second, so the scan is short."""
        for signed_at in [d for d in self._seen if d < oldest]:
            del self._seen[signed_at]


class Signer:
    """Signs the requests one process sends; signs nothing when the cluster has no secret
    (a loopback-only cluster started by hand, where replicas check nothing either)."""

    def __init__(self, secret: str | None) -> None:
        self._key = signing_key(secret) if secret else None
        self._answer_key = answer_key(secret) if secret else None

    def headers(self, method: str, url: str, body: bytes | None = None,
                headers: Mapping[str, str] | None = None) -> dict[str, str]:
        """The signature headers for a request to `url`, a full URL (the replica's
        `host:port` is signed; ValueError without one)."""
        if self._key is None:
            return {}
        return sign(self._key, method, destination(url), signed_target(url), body, headers)

    def genuine(self, url: str, sent: Mapping[str, str], status: int, headers: Mapping[str, str],
                body: bytes) -> bool:
        """True if an answer (`status`, `headers`, `body`) is the one the replica at `url`
        signed for the request sent with the signature headers `sent` (`headers` above).
        Always True for a signer without a secret, whose replicas sign nothing either."""
        if self._answer_key is None:
            return True
        return answer_is_genuine(self._answer_key, destination(url), sent.get(NONCE_HEADER, ""),
                                 status, headers, body)


class UnsignedAnswer(RequestException):
    """An answer that is not the one the replica asked signed for this request: forged or
    altered on the way, an old one replayed, or another replica's. Nothing of it is true.
    A `requests` failure like a refused connection, so callers that handle those handle it."""


class PeerAuth(Signer):
    """A `requests` auth hook that signs each request, `requests.get(url, auth=PeerAuth(s))`,
    and checks each answer: one not signed by the replica for this request raises
    `UnsignedAnswer` from the call, but a 403 (a refusal, which says nothing else) and the
    answers waitress gives before a request reaches the replica (400, 413, 431: see the
    module), which `requests` returns as they are."""

    UNSIGNABLE = frozenset({400, 403, 413, 431})

    def __call__(self, prepared):
        body = prepared.body or b""
        if isinstance(body, str):
            body = body.encode()
        sent = self.headers(prepared.method, prepared.url, body, prepared.headers)
        prepared.headers.update(sent)
        if sent:
            prepared.register_hook("response", lambda response, **_: self._check(response, sent))
        return prepared

    def _check(self, response, sent) -> None:
        if response.status_code in self.UNSIGNABLE and ANSWER_SIGNATURE_HEADER not in response.headers:
            return
        if not self.genuine(response.url, sent, response.status_code, response.headers, response.content):
            raise UnsignedAnswer(f"{response.url} answered {response.status_code} without its signature "
                                 f"for this request: forged or altered on the way")
