"""Talk to the replicas of one group over HTTP: writes to the leader, reads spread out.

Replicas answer every request with `X-Bazar-Leader` (the HTTP address of the
leader they follow), so after one call a client sends writes straight to the
leader instead of paying an extra hop through a follower. A replica that does
not answer is skipped for a short back-off, then tried again.

Every write Bazar sends is idempotent (it carries an order or request id), so
a write is retried on another replica after a connection error.
"""
from __future__ import annotations

import itertools
import threading
import time
from typing import Any

import requests

LEADER_HEADER = "X-Bazar-Leader"
INDEX_HEADER = "X-Bazar-Index"
BACKOFF_SECONDS = 1.0        # a replica that refused a connection is skipped this long
SLOW_BACKOFF_SECONDS = 3.0   # one that timed out (paused, overloaded) this long
READ_ATTEMPT_SECONDS = 0.8   # a paused replica must not hold a read for long


class Unavailable(Exception):
    """No replica of the group answered before the deadline."""


class GroupClient:
    """HTTP calls to one Raft group's replicas, given their base URLs."""

    def __init__(self, urls: list[str], secret: str | None = None, timeout: float = 5.0,
                 source_host: str | None = None, write_attempt_timeout: float | None = None) -> None:
        self.urls = list(urls)
        # How long one replica may take to answer a write before the next is tried
        # (the write is idempotent, so a slow first attempt that commits later is harmless).
        self.write_attempt_timeout = write_attempt_timeout
        self.source_host = source_host
        self.timeout = timeout
        self.leader: str | None = None
        self._down_until: dict[str, float] = {}
        self._turn = itertools.cycle(range(len(self.urls)))
        self._local = threading.local()
        self._headers = {"X-Bazar-Secret": secret} if secret else {}

    # -- public calls ---------------------------------------------------------

    def write(self, method: str, path: str, body: Any = None, timeout: float | None = None,
              headers: dict | None = None) -> requests.Response:
        """Send an idempotent write, leader first; retry other replicas on connection errors."""
        return self._call(method, path, body, timeout, headers, order=self._leader_first(),
                          attempt_timeout=self.write_attempt_timeout)

    def read(self, path: str, timeout: float | None = None, headers: dict | None = None,
             attempt_timeout: float | None = None, prefer_leader: bool = False) -> requests.Response:
        """GET from the next healthy replica, falling over to the others.

        A replica that does not answer within `attempt_timeout` (READ_ATTEMPT_SECONDS
        by default), or answers 503 (behind, or no quorum for a strong read), is
        skipped for this call. With `prefer_leader`, the leader is asked first: it has
        applied every write acknowledged so far.
        """
        order = self._leader_first() if prefer_leader else self._round_robin()
        return self._call("GET", path, None, timeout, headers, order=order,
                          attempt_timeout=attempt_timeout or READ_ATTEMPT_SECONDS, skip_unavailable=True)

    def get_from(self, url: str, path: str, timeout: float = 1.0) -> requests.Response:
        """GET from one specific replica, no fail-over (for status polling)."""
        return self._session().get(url + path, timeout=timeout, headers=self._headers)

    # -- internals ------------------------------------------------------------

    def _call(self, method, path, body, timeout, headers, order, attempt_timeout=None,
              skip_unavailable=False) -> requests.Response:
        deadline = time.monotonic() + (timeout or self.timeout)
        last: Exception | requests.Response | None = None
        while time.monotonic() < deadline:
            for url in order:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    response = self._session().request(
                        method, url + path, json=body, timeout=min(remaining, attempt_timeout or remaining),
                        headers={**self._headers, **(headers or {})})
                except requests.Timeout as exc:
                    last = exc
                    self._mark_down(url, SLOW_BACKOFF_SECONDS)
                    continue
                except requests.RequestException as exc:
                    last = exc
                    self._mark_down(url, BACKOFF_SECONDS)
                    continue
                self._learn_leader(response)
                if skip_unavailable and response.status_code == 503:
                    last = response
                    continue
                return response
            if isinstance(last, requests.Response):
                return last  # every replica answered, none could serve: pass the 503 on
            time.sleep(0.05)
            order = self._leader_first()
        raise Unavailable(f"no replica answered: {last}")

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            session.trust_env = False  # no proxy/netrc lookups per request: replicas are direct peers
            if self.source_host:
                adapter = _SourceAddressAdapter(self.source_host)
                session.mount("http://", adapter)
        return session

    def _healthy(self, url: str) -> bool:
        return self._down_until.get(url, 0.0) <= time.monotonic()

    def _mark_down(self, url: str, seconds: float) -> None:
        self._down_until[url] = time.monotonic() + seconds
        if self.leader == url:
            self.leader = None

    def _learn_leader(self, response: requests.Response) -> None:
        leader = response.headers.get(LEADER_HEADER)
        if leader in self.urls:
            self.leader = leader

    def _leader_first(self) -> list[str]:
        healthy = [u for u in self.urls if self._healthy(u)] or list(self.urls)
        leader = self.leader
        if leader in healthy:
            healthy.remove(leader)
            healthy.insert(0, leader)
        return healthy

    def _round_robin(self) -> list[str]:
        start = next(self._turn)
        rotated = self.urls[start:] + self.urls[:start]
        healthy = [u for u in rotated if self._healthy(u)]
        return healthy + [u for u in rotated if u not in healthy]


class _SourceAddressAdapter(requests.adapters.HTTPAdapter):
    """Connections that leave from a given local address (this process's configured host)."""

    def __init__(self, host: str) -> None:
        self.source_address = (host, 0)
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = self.source_address
        super().init_poolmanager(*args, **kwargs)
