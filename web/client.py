"""Talk to the replicas of one group over HTTP: writes to the leader, reads spread out.

Replicas answer every request with `X-Bazar-Leader` (the HTTP address of the
leader they follow) while they are in touch with that leader, so after one call
a client sends writes straight to the leader instead of paying an extra hop
through a follower. The client believes the latest answer only: it forgets the
leader it knew when a reply names none (the replica lost touch), when a replica
answers 503 (it cannot serve: never taken as the leader, even by its own word),
and when the leader cannot be reached. A replica that does not answer is
skipped for a short back-off, then tried again.

A replica answers 403 only to a request it cannot verify as signed with the
cluster secret (web/signing.py): it holds another secret, or what arrived is not
what was signed. Asking that replica again cannot help, so it is skipped for
`REFUSED_BACKOFF_SECONDS` (logged once) and the call goes on to the others, once:
a replica left on another secret (a secret change half done, a replica cut off
from its group's new secret) does not stop the ones that share this process's.
When every replica asked in a pass refused, the call fails at once with `Refused`,
never retried until the deadline (a request that no replica accepts, such as one
whose path the network rewrote, costs one attempt per replica).

Answers are believed only when signed: every answer a replica gives a signed request
carries its signature over the status, the headers this client acts on (the leader hint,
the membership index, Retry-After, ...), the body, this request's nonce and the
replica's address (web/signing.py). An answer without it, or with a wrong one, was
forged or altered on the way, or replayed: the client takes it as a failure of that
replica (logged, at most once per `COMPLAINT_SECONDS` for each; skipped for a back-off
like a replica that is down) and believes nothing of it: not its body, not a leader it
names, not a membership it announces. So someone on the path between this process and
a replica can stop its answers (as by cutting the wire), never change them.

Paths: a `.` or `..` segment (a topic or an order id that is just dots) is sent
percent-encoded (`%2E`), so that urllib3, which removes dot segments before sending,
sends the path the caller wrote; the replica decodes it back to the same segment.

Failover contract: every write Bazar sends is idempotent (a purchase carries its
order id, an admin write its request id, a stock take its order id), so a write
that failed to connect, timed out or was answered 503 is sent to the next
replica; applying it twice changes nothing. Reads go to the next replica on the
same failures. A 503 that names a leader sends the call there next, even when that
leader has just timed out on it (busy, not gone: the others still follow it; once per
pass, within the call's deadline). When every replica answered 503 in one pass, that
503 is returned (the caller passes its Retry-After on); when none answered,
`Unavailable` is raised at the deadline.

Membership: the client starts from the replicas its cluster file lists, and follows the
group's membership as the log has it. Every replica answer carries `X-Bazar-Members`, the
log index of the last membership change that replica applied; on a newer one than it
knows, the client fetches `GET /members` from that replica and from then on calls the
members it lists (`bazar member add|remove`, consensus/directory.py).

This is on every request's path, so it speaks urllib3 directly: a keep-alive
pool per replica, no per-request proxy, cookie or netrc machinery.
"""
from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import urllib3
from urllib3.exceptions import HTTPError, TimeoutError as Urllib3Timeout

from bazar.web.logs import request_id_headers
from bazar.web.protocol import LEADER_HEADER, MEMBERS_HEADER
from bazar.web.signing import Signer

BACKOFF_SECONDS = 1.0        # a replica that refused a connection is skipped this long
SLOW_BACKOFF_SECONDS = 3.0   # one that timed out (paused, overloaded) this long
REFUSED_BACKOFF_SECONDS = 5.0   # one that refused this process's signature (403) this long
READ_ATTEMPT_SECONDS = 0.8   # a paused replica must not hold a read for long
COMPLAINT_SECONDS = 10.0     # an unsigned answer is logged at most this often per replica
log = logging.getLogger("bazar.client")

POOL_SIZE = 32               # keep-alive connections per replica (one per concurrent request)


class Unavailable(Exception):
    """No replica of the group answered before the deadline."""


class Refused(Exception):
    """A replica refused this process's signed request (403): another cluster secret, or
    a request that was changed on the way. Definite: the call is not retried."""


class Unsigned(Exception):
    """A replica's answer that does not carry its signature for this request (forged,
    altered, replayed, or another replica's): a failure of that replica, never data."""


class Complaints:
    """Log a warning about a replica at most once per `interval` seconds (a man in the middle
    that forges every answer must not flood the log). Thread-safe."""

    def __init__(self, logger: logging.Logger, interval: float = COMPLAINT_SECONDS) -> None:
        self.logger = logger
        self.interval = interval
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def warn(self, replica: str, message: str) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(replica, -self.interval) < self.interval:
                return
            self._last[replica] = now
        self.logger.warning("%s", message)


def origin(url: str) -> str:
    """`scheme://host:port` of a URL: the replica it names, whatever the path."""
    return "/".join(url.split("/", 3)[:3])


def unsigned_message(url: str, status: int) -> str:
    return (f"{url} answered {status} without its signature for this request: forged or altered "
            f"on the way (or a replica with another cluster secret); not believed")


def escape_dot_segments(path: str) -> str:
    """`path` (with its query) with every `.` or `..` segment percent-encoded as `%2E`s,
    so that no URL normalisation removes it; other segments and the query are unchanged."""
    route, mark, query = path.partition("?")
    segments = ["%2E" * len(segment) if segment in (".", "..") else segment for segment in route.split("/")]
    return "/".join(segments) + mark + query


def announces_newer(headers: Any, known_index: int) -> bool:
    """True if a replica's answer (its `headers`) announces a membership change newer than
    the one at `known_index`: then its `GET /members` is worth fetching."""
    announced = headers.get(MEMBERS_HEADER, "")
    return announced.isdigit() and int(announced) > known_index


def parse_members(body: bytes) -> tuple[int, list[dict]]:
    """A replica's `GET /members` answer as (changed_index, [{"id", "raft", "http"}]), the
    group's membership as its log recorded it (consensus/directory.py). ValueError for
    anything else: a listing half understood must not redirect a client's calls, and a
    group always has a member, so an empty list is not one either."""
    listing = json.loads(body)
    index = listing.get("changed_index") if isinstance(listing, dict) else None
    members = listing.get("members") if isinstance(listing, dict) else None
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError("a /members answer without a changed_index")
    if not isinstance(members, list) or not members or not all(
            isinstance(m, dict) and all(isinstance(m.get(key), str) for key in ("id", "raft", "http"))
            for m in members):
        raise ValueError("a /members answer without its members' id, raft and http")
    return index, [{key: m[key] for key in ("id", "raft", "http")} for m in members]


@dataclass
class Reply:
    """A replica's answer: status, headers (case-insensitive) and the body."""
    status_code: int
    headers: Any
    body: bytes

    def json(self) -> Any:
        """The body as JSON; ValueError if it is not."""
        return json.loads(self.body)


class GroupClient:
    """HTTP calls to one Raft group's replicas, given their base URLs."""

    def __init__(self, urls: list[str], secret: str | None = None, timeout: float = 5.0,
                 source_host: str | None = None, write_attempt_timeout: float | None = None) -> None:
        self.urls = list(urls)
        self.timeout = timeout
        # How long one replica may take to answer a write before the next is tried
        # (the write is idempotent, so a slow first attempt that commits later is harmless).
        self.write_attempt_timeout = write_attempt_timeout
        self.leader: str | None = None
        self.members_index = 0  # the membership change `urls` reflects (0: the cluster file's)
        self._members_lock = threading.Lock()
        self._down_until: dict[str, float] = {}
        self._turn = itertools.count()
        self._signer = Signer(secret)  # every request is signed; the secret is never sent
        self._complaints = Complaints(log)
        self._pool_options = {"source_address": (source_host, 0)} if source_host else {}
        self._pools: dict[str, urllib3.HTTPConnectionPool] = {}  # one per replica's base URL

    # -- public calls ---------------------------------------------------------

    def write(self, method: str, path: str, body: Any = None, timeout: float | None = None,
              headers: dict | None = None) -> Reply:
        """Send an idempotent write, leader first; fail over to the other replicas on a
        connection failure, a timeout or a 503 (see the module's failover contract).
        Raises `Unavailable` when no replica answered by the deadline, `Refused` on a 403."""
        return self._call(method, path, body, timeout, headers, leader_first=True,
                          attempt_timeout=self.write_attempt_timeout)

    def read(self, path: str, timeout: float | None = None, headers: dict | None = None,
             attempt_timeout: float | None = None, prefer_leader: bool = False) -> Reply:
        """GET from the next healthy replica, falling over to the others.

        A replica that does not answer within `attempt_timeout` (READ_ATTEMPT_SECONDS
        by default), or answers 503 (out of touch with its leader, or not the leader
        for a strong read), is skipped for this call. With `prefer_leader`, the leader
        is asked first: only it serves strong reads. Raises as `write` does.
        """
        return self._call("GET", path, None, timeout, headers, leader_first=prefer_leader,
                          attempt_timeout=attempt_timeout or READ_ATTEMPT_SECONDS)

    # -- internals ------------------------------------------------------------

    def _call(self, method, path, body, timeout, headers, leader_first: bool,
              attempt_timeout: float | None = None) -> Reply:
        deadline = time.monotonic() + (timeout or self.timeout)
        path = escape_dot_segments(path)
        last: Exception | None = None
        payload = None if body is None else json.dumps(body).encode()
        # The request this call is made for keeps its id on the next hop (web/logs.py).
        all_headers = {**request_id_headers(), **(headers or {})}
        if payload is not None:
            all_headers["Content-Type"] = "application/json"
        while time.monotonic() < deadline:
            unavailable: Reply | None = None
            refused: Refused | None = None
            queue = self._leader_first() if leader_first else self._round_robin()
            slow: set[str] = set()   # replicas that timed out in this pass
            while queue:
                url = queue.pop(0)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    reply = self._send(method, url, path, payload, all_headers,
                                       min(remaining, attempt_timeout or remaining))
                except Urllib3Timeout as exc:
                    last = exc
                    self._mark_down(url, SLOW_BACKOFF_SECONDS)
                    slow.add(url)
                    continue
                except HTTPError as exc:
                    last = exc
                    self._mark_down(url, BACKOFF_SECONDS)
                    continue
                except Unsigned as exc:
                    last = exc
                    self._mark_down(url, BACKOFF_SECONDS)
                    continue
                if reply.status_code == 403:
                    # The replica refuses this process's signature: another cluster secret (a
                    # misconfiguration, or a secret change half done), or a request changed on
                    # the way. Sent to it again, it would be refused again: skip it a while.
                    refused = Refused(f"{url} refused this process's signed request: {reply.body[:200]!r}")
                    if self._healthy(url):
                        log.error("%s", refused)
                    self._mark_down(url, REFUSED_BACKOFF_SECONDS)
                    continue
                self._learn_members(url, reply)
                named = self._learn_leader(url, reply)
                if reply.status_code != 503:
                    return reply
                unavailable = reply
                if named in queue:  # it cannot serve, but knows who can: ask that one next
                    queue.remove(named)
                    queue.insert(0, named)
                elif named in slow:  # the leader it names was only slow: it is still the one
                    slow.discard(named)
                    queue.insert(0, named)
            if unavailable is not None:
                return unavailable  # every replica that answered could not serve: pass the 503 on
            if refused is not None:
                raise refused       # the others did not answer either: asking again cannot help
            time.sleep(0.05)
            leader_first = True
        raise Unavailable(f"no replica answered: {last}")

    def _send(self, method: str, base: str, path: str, payload: bytes | None, headers: dict,
              timeout: float) -> Reply:
        """The replica's answer, checked; `Unsigned` if it is not the one the replica signed
        for this request. A 403 is returned as it is: a replica refusing a request cannot
        sign its refusal (it may not share the key), and nothing of one is believed."""
        # Signed per attempt: each carries its own date and nonce, so none looks like a replay.
        url = base + path
        signature = self._signer.headers(method, url, payload, headers)
        response = self._pool_for(base).urlopen(method, path, body=payload, headers={**headers, **signature},
                                                timeout=urllib3.Timeout(total=timeout), redirect=False,
                                                retries=False)
        if response.status != 403 and not self._signer.genuine(url, signature, response.status,
                                                                response.headers, response.data):
            self._complaints.warn(origin(url), unsigned_message(url, response.status))
            raise Unsigned(unsigned_message(url, response.status))
        return Reply(response.status, response.headers, response.data)

    def _pool_for(self, base: str) -> urllib3.HTTPConnectionPool:
        """The keep-alive pool of the replica at `base`, called directly: a PoolManager would
        parse the URL and look the pool up again on every request (about 0.1 ms of CPU)."""
        pool = self._pools.get(base)
        if pool is None:
            pool = self._pools.setdefault(base, urllib3.connection_from_url(
                base, maxsize=POOL_SIZE, block=False, retries=False, **self._pool_options))
        return pool

    def _healthy(self, url: str) -> bool:
        return self._down_until.get(url, 0.0) <= time.monotonic()

    def _mark_down(self, url: str, seconds: float) -> None:
        self._down_until[url] = time.monotonic() + seconds
        if self.leader == url:
            self.leader = None

    def _learn_members(self, url: str, reply: Reply) -> None:
        """If `url` has applied a newer membership change than `urls` reflects, fetch the
        members it lists and call those from now on."""
        if not announces_newer(reply.headers, self.members_index):
            return
        try:
            index, members = parse_members(self._send("GET", url, "/members", None, {},
                                                      READ_ATTEMPT_SECONDS).body)
        except (HTTPError, Unsigned, ValueError):
            return  # asked again on the next answer that announces it
        self.adopt_members(index, [m["http"] for m in members])

    def adopt_members(self, index: int, urls: list[str]) -> None:
        """Call the replicas at `urls` from now on, if `index` (the log index of the membership
        change they reflect) is newer than what this client knows."""
        with self._members_lock:
            if index > self.members_index and urls:
                self.urls, self.members_index = list(urls), index

    def _learn_leader(self, url: str, reply: Reply) -> str | None:
        """Believe the leader `url`'s reply names, or forget the leader if it names none
        (or names itself while answering 503). Returns the leader now believed."""
        named = reply.headers.get(LEADER_HEADER)
        if named not in self.urls or (reply.status_code == 503 and named == url):
            named = None
        self.leader = named
        return named

    def _leader_first(self) -> list[str]:
        healthy = [u for u in self.urls if self._healthy(u)] or list(self.urls)
        leader = self.leader
        if leader in healthy:
            healthy.remove(leader)
            healthy.insert(0, leader)
        return healthy

    def _round_robin(self) -> list[str]:
        urls = self.urls
        start = next(self._turn) % len(urls)
        rotated = urls[start:] + urls[:start]
        healthy = [u for u in rotated if self._healthy(u)]
        return healthy + [u for u in rotated if u not in healthy]
